//! [`Links`]: where a commit and a comparison of two commits can be read (GitHub,
//! GitLab, Codeberg or any forge), for reports, alarms and the dashboard.

/// URL templates: `{sha}` in `commit`, `{from}` and `{to}` in `compare`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// E.g. `https://github.com/acme/shop/commit/{sha}`.
    pub commit: Option<String>,
    /// E.g. `https://github.com/acme/shop/compare/{from}...{to}`.
    pub compare: Option<String>,
}

impl Links {
    /// The templates a repository on github.com, gitlab.com or codeberg.org has, from a
    /// remote URL in any of git's forms (`https://github.com/acme/shop.git`,
    /// `git@github.com:acme/shop.git`, `ssh://git@gitlab.com/group/sub/shop`); none for
    /// other hosts.
    pub fn derive(remote: &str) -> Self {
        let rest = remote
            .strip_prefix("https://")
            .or_else(|| remote.strip_prefix("http://"))
            .or_else(|| remote.strip_prefix("ssh://"))
            .or_else(|| remote.strip_prefix("git://"))
            .unwrap_or(remote);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let (host, path) = match rest.split_once(['/', ':']) {
            Some((host, path)) => (host.split(':').next().unwrap_or(host), path),
            None => return Self::default(),
        };
        // An scp-like `host:path` or a URL with a port: drop a numeric port segment.
        let path = match path.split_once('/') {
            Some((port, p)) if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() => p,
            _ => path,
        };
        let path = path.trim_matches('/').trim_end_matches(".git");
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !valid(path) || path.split('/').count() < 2 || path.split('/').any(|p| p.is_empty() || p == "..") {
            return Self::default();
        }
        let base = format!("https://{}/{path}", host.to_ascii_lowercase());
        match host.to_ascii_lowercase().as_str() {
            "github.com" | "codeberg.org" => Self {
                commit: Some(format!("{base}/commit/{{sha}}")),
                compare: Some(format!("{base}/compare/{{from}}...{{to}}")),
            },
            "gitlab.com" => Self {
                commit: Some(format!("{base}/-/commit/{{sha}}")),
                compare: Some(format!("{base}/-/compare/{{from}}...{{to}}")),
            },
            _ => Self::default(),
        }
    }

    /// The link to `sha`, if there is a template.
    pub fn commit(&self, sha: &str) -> Option<String> {
        self.commit.as_ref().map(|t| t.replace("{sha}", sha))
    }

    /// The link comparing `from` (what runs) with `to` (what should), if there is a template.
    pub fn compare(&self, from: &str, to: &str) -> Option<String> {
        self.compare.as_ref().map(|t| t.replace("{from}", from).replace("{to}", to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forges_are_derived_from_remote_urls_in_every_form() {
        for url in [
            "https://github.com/acme/shop.git",
            "https://user:tok@github.com/acme/shop",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com/acme/shop.git",
            "ssh://git@github.com:22/acme/shop.git",
        ] {
            let l = Links::derive(url);
            assert_eq!(l.commit("abc").as_deref(), Some("https://github.com/acme/shop/commit/abc"), "{url}");
            assert_eq!(
                l.compare("a", "b").as_deref(),
                Some("https://github.com/acme/shop/compare/a...b"),
                "{url}"
            );
        }
        let gl = Links::derive("git@gitlab.com:group/sub/shop.git");
        assert_eq!(
            gl.compare("a", "b").as_deref(),
            Some("https://gitlab.com/group/sub/shop/-/compare/a...b")
        );
        let cb = Links::derive("https://codeberg.org/acme/shop");
        assert_eq!(cb.commit("c").as_deref(), Some("https://codeberg.org/acme/shop/commit/c"));
        for other in [
            "https://git.example.com/acme/shop.git",
            "/srv/git/shop.git",
            "https://github.com/",
            "github.com",
        ] {
            assert_eq!(Links::derive(other), Links::default(), "{other}");
        }
    }
}
