//! `gitstate expected`: what each environment should run now, ref → commit. Explicit refs
//! are resolved in one batch; `[[discover]]` prefixes are listed once, not looked up one
//! by one.

use std::collections::HashSet;

use gitstate_core::ExpectedState;
use serde::Serialize;

use crate::cli::{Output, Select};
use crate::config::discover;
use crate::output::table::Table;
use crate::output::{self, Paint};
use crate::{exit, plan};

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    #[serde(rename = "ref")]
    reference: std::borrow::Cow<'a, str>,
    expected: Option<gitstate_core::CommitId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The JSON document, its rows written as they are made (at 1,000 environments a vector of
/// rows was a tenth of the run's page faults).
struct Listing<I>(I);

impl<'a, I: Iterator<Item = Row<'a>> + Clone> Serialize for Listing<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Rows<I>(I);
        impl<'a, I: Iterator<Item = Row<'a>> + Clone> Serialize for Rows<I> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.clone())
            }
        }
        let mut doc = s.serialize_struct("Listing", 2)?;
        doc.serialize_field("schema", &1u32)?;
        doc.serialize_field("environments", &Rows(self.0.clone()))?;
        doc.end()
    }
}

/// Runs the command.
pub async fn run(args: Select) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    // Run under `block_on` with nothing else to do: the Git work needs no pool thread.
    let source = plan::source(&config)?.on_this_thread();
    // Discovered environments come straight from the listing: no target is built, no ref
    // is looked up twice.
    let listed = plan::listings(&config, &source).await?;
    let (found, skipped) = discover::discovered(&config, &listed);
    plan::warn_skipped(&skipped);
    let names =
        config.environments.iter().map(|e| e.name.as_str()).chain(found.iter().map(|(_, n, _)| n.as_str()));
    plan::check_selection(names, &args.environments)?;
    let only: HashSet<&str> = args.environments.iter().map(String::as_str).collect();
    let selected = |name: &str| only.is_empty() || only.contains(name);

    let explicit: Vec<_> = config.environments.iter().filter(|e| selected(e.name.as_str())).collect();
    let refs: Vec<String> = explicit.iter().map(|e| e.reference.clone()).collect();
    let resolved = if refs.is_empty() { Vec::new() } else { source.resolve(&refs).await? };
    let errors: Vec<Option<String>> = explicit
        .iter()
        .zip(&resolved)
        .map(|(e, r)| r.as_ref().err().map(|err| format!("environment {}: {err}", e.name)))
        .collect();
    let explicit_rows = explicit.iter().zip(&resolved).zip(&errors).map(|((e, r), error)| Row {
        name: e.name.as_str(),
        reference: r.as_ref().map_or(e.reference.as_str(), |x| x.reference.as_str()).into(),
        expected: r.as_ref().ok().map(|x| x.commit),
        error: error.as_deref(),
    });
    let found_rows = found.iter().filter(|(_, n, _)| selected(n.as_str())).map(|(_, name, e)| Row {
        name: name.as_str(),
        reference: e.reference.as_str().into(),
        expected: Some(e.commit),
        error: None,
    });
    let rows = explicit_rows.chain(found_rows);
    match args.output {
        Output::Json => output::emit_json(&Listing(rows))?,
        Output::Html => {
            anyhow::bail!("-o html is for check, status and reconcile; expected prints text or json")
        }
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            let mut t = Table::new(&["ENVIRONMENT", "REF", "COMMIT"]);
            for r in rows {
                let commit: std::borrow::Cow<'_, str> = match (&r.expected, &r.error) {
                    (Some(c), _) => c.as_str().to_owned().into(),
                    (None, Some(e)) => p.bad(e).into(),
                    (None, None) => "-".into(),
                };
                t.row(vec![r.name.into(), r.reference, commit]);
            }
            output::emit(t.render().as_bytes())?;
        }
    }
    if errors.iter().any(Option::is_some) {
        for e in errors.iter().flatten() {
            eprintln!("error: {e}");
        }
        return Ok(exit::ERROR);
    }
    Ok(exit::IN_SYNC)
}
