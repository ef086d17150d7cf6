//! `gitstate stamp`: write deployment-meta.json (SPEC §4) for a repository and revision,
//! to stdout or atomically to a file (temp file, fsync, rename).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use gitstate_core::EnvName;
use serde::Serialize;

use crate::cli::Stamp;
use crate::exit;

/// The file's content.
#[derive(Debug, Serialize)]
pub struct DeploymentMeta {
    /// Format version: 1.
    pub schema: u32,
    /// The commit.
    pub sha: String,
    /// The full ref the revision named, or null for a bare commit id.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The environment, when given.
    pub environment: Option<String>,
    /// When the file was written (RFC 3339, seconds).
    pub built_at: String,
}

/// Runs the command.
pub fn run(args: Stamp) -> anyhow::Result<i32> {
    if let Some(e) = &args.environment {
        EnvName::new(e)?;
    }
    let repo = gix_open(&args.repo)?;
    let (sha, reference) = resolve(&repo, &args.rev)
        .with_context(|| format!("revision {:?} in {}", args.rev, args.repo.display()))?;
    let meta = DeploymentMeta {
        schema: 1,
        sha,
        reference,
        environment: args.environment,
        built_at: jiff::Timestamp::now().round(jiff::Unit::Second)?.to_string(),
    };
    let mut json = serde_json::to_string_pretty(&meta)?;
    json.push('\n');
    if args.output == Path::new("-") {
        std::io::stdout().write_all(json.as_bytes())?;
    } else {
        gitstate_runtime::fs::write_atomic_public(&args.output, json.as_bytes())
            .with_context(|| format!("writing {}", args.output.display()))?;
    }
    Ok(exit::IN_SYNC)
}

fn gix_open(path: &Path) -> anyhow::Result<gix::Repository> {
    gix::open_opts(path, gix::open::Options::isolated())
        .with_context(|| format!("opening the repository {}", path.display()))
}

/// The commit `rev` names and, when it names a ref (following `HEAD` to its branch), the ref.
fn resolve(repo: &gix::Repository, rev: &str) -> anyhow::Result<(String, Option<String>)> {
    let reference = match repo.try_find_reference(rev) {
        // A symbolic ref such as HEAD names the branch it points at; detached HEAD names none.
        Ok(Some(r)) => match r.target() {
            gix::refs::TargetRef::Symbolic(target) => Some(target.as_bstr().to_string()),
            gix::refs::TargetRef::Object(_) if r.name().as_bstr() == "HEAD" => None,
            gix::refs::TargetRef::Object(_) => Some(r.name().as_bstr().to_string()),
        },
        _ => None,
    };
    let id = repo.rev_parse_single(rev)?;
    let commit = id.object()?.peel_to_kind(gix::object::Kind::Commit).context("it does not name a commit")?;
    let sha = commit.id.to_hex().to_string();
    if sha.len() != 40 && sha.len() != 64 {
        bail!("unexpected object id {sha}");
    }
    Ok((sha, reference))
}
