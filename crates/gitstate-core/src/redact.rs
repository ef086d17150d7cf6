//! Keeping secrets out of output, logs and errors: [`redact_url`].

/// `url` with any password or user name replaced, for output and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_only() {
        assert_eq!(redact_url("https://u:p@host/x.git"), "https://***@host/x.git");
        assert_eq!(redact_url("https://token@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_url("git://127.0.0.1:9/r"), "git://127.0.0.1:9/r");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
