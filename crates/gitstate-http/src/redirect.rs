//! Which redirects a probe follows (SPEC §8): at most [`MAX_REDIRECTS`], to the same
//! scheme, host and port, except an http → https upgrade on the same host; never
//! https → http; anything goes with `follow_redirects = "any"` (still at most 3, never
//! a downgrade to http).

use serde::Deserialize;
use url::Url;

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;

/// The `follow_redirects` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FollowRedirects {
    /// Same scheme, host and port (or an http → https upgrade of the same host).
    #[default]
    SameHost,
    /// Any host.
    Any,
    /// None: a 3xx answer is a failure.
    None,
}

/// Whether a redirect from `from` to `to` may be followed; the reason when not.
pub fn allowed(mode: FollowRedirects, from: &Url, to: &Url) -> Result<(), String> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(format!("redirect to a {} URL refused", to.scheme()));
    }
    if from.scheme() == "https" && to.scheme() == "http" {
        return Err("redirect from https to http refused".into());
    }
    match mode {
        FollowRedirects::None => Err("redirects are not followed (follow_redirects = \"none\")".into()),
        FollowRedirects::Any => Ok(()),
        FollowRedirects::SameHost => {
            let same_host = from.host_str() == to.host_str();
            let same_origin = same_host
                && from.scheme() == to.scheme()
                && from.port_or_known_default() == to.port_or_known_default();
            let upgrade = same_host && from.scheme() == "http" && to.scheme() == "https";
            if same_origin || upgrade {
                Ok(())
            } else {
                Err(format!(
                    "redirect to another origin refused ({}); set follow_redirects = \"any\" to allow it",
                    origin(to)
                ))
            }
        }
    }
}

fn origin(u: &Url) -> String {
    match u.port() {
        Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or("")),
        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn same_host_rules() {
        let m = FollowRedirects::SameHost;
        assert!(allowed(m, &u("http://a:8080/x"), &u("http://a:8080/y")).is_ok());
        assert!(allowed(m, &u("http://a/x"), &u("https://a/y")).is_ok(), "upgrade");
        assert!(allowed(m, &u("https://a/x"), &u("http://a/y")).is_err(), "downgrade");
        assert!(allowed(m, &u("http://a:8080/x"), &u("http://a:8081/y")).is_err(), "port");
        assert!(allowed(m, &u("http://a/x"), &u("http://b/y")).unwrap_err().contains("http://b"));
        assert!(allowed(m, &u("http://a/x"), &u("file:///etc/passwd")).is_err());
    }

    #[test]
    fn any_and_none() {
        assert!(allowed(FollowRedirects::Any, &u("http://a/x"), &u("http://b/y")).is_ok());
        assert!(allowed(FollowRedirects::Any, &u("https://a/x"), &u("http://b/y")).is_err());
        assert!(allowed(FollowRedirects::None, &u("http://a/x"), &u("http://a/y")).is_err());
    }
}
