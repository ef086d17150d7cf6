//! `${VAR}` expansion at load time (SPEC §5): URLs, header values and webhook bodies take
//! values from the environment; an unset variable is an error, never an empty string.
//! `${GITSTATE_…}` in remediation webhook bodies is left for remediation time.

/// The variables a remediation fills in itself.
pub const RUNTIME_VARS: [&str; 4] =
    ["GITSTATE_ENVIRONMENT", "GITSTATE_REF", "GITSTATE_EXPECTED_SHA", "GITSTATE_ATTEMPT"];

/// Expands `${NAME}` from `lookup`; `keep_runtime` leaves [`RUNTIME_VARS`] untouched.
pub fn expand(
    s: &str,
    keep_runtime: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated \"${{\" in {s:?}"));
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(format!("invalid variable name {name:?} in \"${{…}}\""));
        }
        if keep_runtime && RUNTIME_VARS.contains(&name) {
            out.push_str(&rest[i..i + 2 + end + 1]);
        } else if name.starts_with("GITSTATE_") && RUNTIME_VARS.contains(&name) {
            return Err(format!("${{{name}}} is only available in remediation webhooks"));
        } else {
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_rejects_unset_ones() {
        assert_eq!(expand("Bearer ${TOKEN}", false, &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("a${EMPTY}b", false, &env).unwrap(), "ab");
        assert_eq!(expand("no vars $HOME {x}", false, &env).unwrap(), "no vars $HOME {x}");
        assert!(expand("${NOPE}", false, &env).unwrap_err().contains("NOPE is not set"));
        assert!(expand("${TOKEN", false, &env).unwrap_err().contains("unterminated"));
        assert!(expand("${1X}", false, &env).is_err());
        assert!(expand("${}", false, &env).is_err());
    }

    #[test]
    fn runtime_variables_wait_for_the_remediation() {
        let body = r#"{"sha":"${GITSTATE_EXPECTED_SHA}","t":"${TOKEN}"}"#;
        let loaded = expand(body, true, &env).unwrap();
        assert_eq!(loaded, r#"{"sha":"${GITSTATE_EXPECTED_SHA}","t":"s3cret"}"#);
        assert!(expand("${GITSTATE_REF}", false, &env).is_err());
    }
}
