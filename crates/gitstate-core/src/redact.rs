//! Keeping secrets out of output, logs and errors: [`redact_url`] (user-info and query
//! values), [`redact_text`] (every URL in a text), [`Redacted`] for `Debug` of what may
//! hold them.

/// `url` with any user name or password, and the value of every query parameter,
/// replaced by `***`, for output, logs and errors: `https://***@h/x?token=***&v=***`.
/// Parameter names, the path and the fragment are kept.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end + 3]);
    match rest[..host_end].rfind('@') {
        Some(at) => {
            out.push_str("***@");
            out.push_str(&rest[at + 1..host_end]);
        }
        None => out.push_str(&rest[..host_end]),
    }
    let tail = &rest[host_end..];
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match before_fragment.split_once('?') {
        None => out.push_str(before_fragment),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) if !value.is_empty() => {
                        out.push_str(name);
                        out.push_str("=***");
                    }
                    _ => out.push_str(pair),
                }
            }
        }
    }
    out.push_str(fragment);
    out
}

/// `text` (a command's stderr, say) with every URL in it passed through [`redact_url`]: a
/// `https://user:token@host/x?key=v` a script printed comes back as
/// `https://***@host/x?key=***`.
pub fn redact_text(text: &str) -> String {
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '`' | ',');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts after the last separator before "://", and runs to the next one.
        let start =
            rest[..i].rfind(ends).map_or(0, |p| p + rest[p..].chars().next().map_or(1, char::len_utf8));
        let end = rest[i..].find(ends).map_or(rest.len(), |p| i + p);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Shows what it wraps as `***`: for `Debug` of configuration fields that may hold
/// secrets (header values, body templates with `${TOKEN}` expanded).
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `Debug` of a URL through [`redact_url`].
pub struct RedactedUrl<'a>(pub &'a str);

impl std::fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_url_in_a_text_is_redacted() {
        let err =
            "fatal: could not read from https://bot:s3cret@git.example.com/x.git?token=abc (403)\nretry";
        assert_eq!(
            redact_text(err),
            "fatal: could not read from https://***@git.example.com/x.git?token=*** (403)\nretry"
        );
        assert_eq!(redact_text("no url here"), "no url here");
        assert_eq!(redact_text("\"ssh://u:p@h/r\""), "\"ssh://***@h/r\"");
    }

    proptest! {
        #[test]
        fn arbitrary_text_is_redacted_without_panic(s in "\\PC*", user in "[a-z]{1,8}", secret in "[A-Za-z0-9]{6,12}") {
            let text = format!("{s} https://{user}:{secret}@h.example/p {s}");
            let out = redact_text(&text);
            prop_assert!(!out.contains(&format!("{user}:{secret}@")), "{}", out);
        }
    }

    #[test]
    fn redacts_user_info_and_query_values() {
        assert_eq!(redact_url("https://u:p@host/x.git"), "https://***@host/x.git");
        assert_eq!(redact_url("https://token@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_url("git://127.0.0.1:9/r"), "git://127.0.0.1:9/r");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("https://u@h:8/m?token=s3cr3t&flag&empty=&region=eu#frag"),
            "https://***@h:8/m?token=***&flag&empty=&region=***#frag"
        );
        assert_eq!(redact_url("https://h?token=s3cr3t"), "https://h?token=***");
        assert_eq!(redact_url("https://u:p@h?x=@y"), "https://***@h?x=***");
    }

    proptest! {
        #[test]
        fn arbitrary_urls_never_show_a_planted_secret(
            prefix in "[a-z]{1,5}://[a-z0-9.:]{0,12}",
            path in "(/[a-zA-Z0-9._~-]{0,8}){0,3}",
            name in "[a-z_]{1,8}",
            other in "(&[a-z]{1,4}=[a-z0-9]{0,4}){0,3}",
        ) {
            let url = format!("{prefix}{path}?{name}=PLANTEDsecret{other}");
            prop_assert!(!redact_url(&url).contains("PLANTEDsecret"));
            let url = format!("{}PLANTED:secret@{}{path}", &prefix[..prefix.find("://").unwrap() + 3], &prefix[prefix.find("://").unwrap() + 3..]);
            prop_assert!(!redact_url(&url).contains("PLANTED"));
        }
    }
}
