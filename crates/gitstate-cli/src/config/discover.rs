//! `[[discover]]`: every ref under a prefix becomes an environment (like Argo CD's
//! ApplicationSet git generator). The environment name is the rest of the ref name;
//! `{environment}` is substituted in URLs, tag values, command arguments and webhook
//! bodies; explicit `[[environments]]` win on a name clash. Entry: [`environments`].

use gitstate_core::{EnvName, Expected, Policy};

use super::raw::{RawRemediate, RawTarget};
use super::{Config, ConfigError, Ctx, EnvironmentConfig, remediate, targets};

/// One `[[discover]]` block: templates instantiated per discovered ref.
#[derive(Debug, Clone)]
pub struct DiscoverConfig {
    /// Refs under this prefix become environments.
    pub ref_prefix: String,
    /// Globs (`*`, `?`) on environment names to leave out.
    pub exclude: Vec<String>,
    pub(super) targets: Vec<RawTarget>,
    pub(super) remediate: Option<RawRemediate>,
    /// The block's policy.
    pub policy: Policy,
    /// The block's freeze windows.
    pub windows: Vec<gitstate_runtime::controls::FreezeWindow>,
    pub(super) ctx: Ctx,
}

/// An environment to work on, with its commit when a `[[discover]]` listing already read it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The environment.
    pub config: EnvironmentConfig,
    /// Its ref and commit, as listed (discovered environments only).
    pub listed: Option<Expected>,
}

/// A ref under a prefix that could not become an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The full ref name.
    pub reference: String,
    /// Why it was skipped (the rest of the name is not a valid environment name).
    pub reason: String,
}

/// The environments `[[discover]]` finds in `listed` (`listed[i]` for `config.discover[i]`):
/// `(block, name, ref)` in listing order, leaving out excluded names, names an explicit
/// environment (or an earlier block) already has, and refs whose rest is not a valid name
/// (returned as skipped).
pub fn discovered<'a>(
    config: &Config,
    listed: &'a [Vec<Expected>],
) -> (Vec<(usize, EnvName, &'a Expected)>, Vec<Skipped>) {
    // Names listed under one prefix are unique; only explicit environments and several
    // blocks can clash.
    let check_clashes = !config.environments.is_empty() || config.discover.len() > 1;
    let mut taken: std::collections::HashSet<EnvName> =
        config.environments.iter().map(|e| e.name.clone()).collect();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (bi, (d, refs)) in config.discover.iter().zip(listed).enumerate() {
        for e in refs {
            let rest = &e.reference[d.ref_prefix.len().min(e.reference.len())..];
            let name = match EnvName::new(rest) {
                Ok(n) => n,
                Err(err) => {
                    skipped.push(Skipped { reference: e.reference.clone(), reason: err.to_string() });
                    continue;
                }
            };
            if d.exclude.iter().any(|g| glob_match(g, name.as_str())) {
                continue;
            }
            if check_clashes && !taken.insert(name.clone()) {
                // An explicit environment (or an earlier discover block) wins.
                continue;
            }
            out.push((bi, name, e));
        }
    }
    (out, skipped)
}

/// The environments `config` describes: explicit ones first, then one per ref listed
/// under each discover prefix, with the commits already known from the listing.
pub fn environments(
    config: &Config,
    listed: &[Vec<Expected>],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Planned>, Vec<Skipped>), ConfigError> {
    let mut out: Vec<Planned> =
        config.environments.iter().cloned().map(|config| Planned { config, listed: None }).collect();
    let (found, skipped) = discovered(config, listed);
    for (bi, name, e) in found {
        let d = &config.discover[bi];
        let env = EnvironmentConfig {
            targets: targets(&d.ctx, &d.targets, name.as_str(), lookup)?,
            remediate: d
                .remediate
                .as_ref()
                .map(|r| remediate(&d.ctx, r, name.as_str(), lookup))
                .transpose()?,
            reference: e.reference.clone(),
            policy: d.policy.clone(),
            windows: d.windows.clone(),
            name,
        };
        out.push(Planned { config: env, listed: Some(e.clone()) });
    }
    Ok((out, skipped))
}

/// Shell-style glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("legacy-*", "legacy-eu"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*-eu-*", "web-eu-1"));
        assert!(!glob_match("legacy-*", "prod"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }
}
