//! Reading a commit id out of what a target reports (SPEC §4: `deployment-meta.json` and
//! the other well-known shapes), whoever fetched it — the HTTP probe's response body, the
//! exec probe's output: pure functions, no I/O. Entry point: [`parse_report`].

use crate::commit::ReportedCommit;
use crate::observation::ProbeFailure;
use serde_json::Value;

/// The JSON pointers tried, in order, when no `sha_pointer` is configured: deployment-meta
/// (`/sha`), Dockerflow `__version__` (`/commit`), Spring Boot actuator `info` in simple and
/// full mode (`/git/commit/id`, `/git/commit/id/full`), Kubernetes-style `/version` (`/gitCommit`).
pub const AUTO_POINTERS: [&str; 5] =
    ["/sha", "/commit", "/git/commit/id", "/git/commit/id/full", "/gitCommit"];

/// Reads the commit from a response body.
///
/// With `pointer`, the body must be JSON and the pointer must hold a string. Without,
/// a body that is only a hex id (surrounding whitespace allowed) is taken as it is; else
/// the first of [`AUTO_POINTERS`] holding a string is used. Anything else is an `invalid`
/// failure saying why, with what was found attached as `actual` when there was a value.
pub fn parse_report(body: &[u8], pointer: Option<&str>) -> Result<ReportedCommit, ProbeFailure> {
    if pointer.is_none()
        && let Some(text) = plain_hex(body)
    {
        return ReportedCommit::parse(text)
            .map_err(|e| ProbeFailure::invalid(format!("plain-text body: {e}")).with_actual(text));
    }
    let json: Value = serde_json::from_slice::<Strict>(body).map(|s| s.0).map_err(|e| {
        let what =
            if pointer.is_some() { "body is not JSON" } else { "body is neither JSON nor a plain commit id" };
        ProbeFailure::invalid(format!("{what}: {e}"))
    })?;
    match pointer {
        Some(p) => match json.pointer(p) {
            None => Err(ProbeFailure::invalid(format!("no value at sha_pointer {p:?}"))),
            Some(v) => commit_at(p, v),
        },
        None => {
            for p in AUTO_POINTERS {
                if let Some(v @ Value::String(_)) = json.pointer(p) {
                    return commit_at(p, v);
                }
            }
            // Say what was there if a known pointer held something other than a string.
            for p in AUTO_POINTERS {
                if let Some(v) = json.pointer(p)
                    && !v.is_object()
                {
                    return commit_at(p, v);
                }
            }
            Err(ProbeFailure::invalid(format!(
                "no commit id in the JSON body (looked at {}; set sha_pointer for another layout)",
                AUTO_POINTERS.join(", ")
            )))
        }
    }
}

/// A JSON value that refuses duplicate object keys: `{"sha": A, "sha": B}` is ambiguous
/// (parsers disagree on which one wins), so it is `invalid`, never a guess.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(serde::de::Error::custom(format!("duplicate key {shown:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn commit_at(pointer: &str, v: &Value) -> Result<ReportedCommit, ProbeFailure> {
    match v {
        Value::String(s) => ReportedCommit::parse(s)
            .map_err(|e| ProbeFailure::invalid(format!("value at {pointer}: {e}")).with_actual(s.as_str())),
        other => Err(ProbeFailure::invalid(format!(
            "value at {pointer} is {}, not a commit id string",
            kind(other)
        ))
        .with_actual(short_json(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as JSON, cut to at most 64 bytes on a character boundary.
fn short_json(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 64 {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The body as text when it is only ASCII hex digits around whitespace.
fn plain_hex(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::FailureKind;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn ok(body: &str, pointer: Option<&str>) -> String {
        parse_report(body.as_bytes(), pointer).unwrap().to_string()
    }

    fn bad(body: &[u8], pointer: Option<&str>) -> String {
        let f = parse_report(body, pointer).unwrap_err();
        assert_eq!(f.kind, FailureKind::Invalid);
        f.message
    }

    #[test]
    fn deployment_meta() {
        let body = format!(
            r#"{{"schema":1,"sha":"{SHA}","ref":"refs/heads/environments/production","environment":"production","built_at":"2026-11-24T06:00:00Z"}}"#
        );
        assert_eq!(ok(&body, None), SHA);
    }

    #[test]
    fn dockerflow_spring_simple_and_full_kubernetes() {
        assert_eq!(
            ok(&format!(r#"{{"source":"x","version":"1.2","commit":"{SHA}","build":"b"}}"#), None),
            SHA
        );
        assert_eq!(ok(r#"{"git":{"branch":"main","commit":{"id":"0123456","time":"t"}}}"#, None), "0123456");
        let full =
            format!(r#"{{"git":{{"commit":{{"id":{{"abbrev":"0123456","full":"{SHA}"}},"time":"t"}}}}}}"#);
        assert_eq!(ok(&full, None), SHA);
        assert_eq!(ok(&format!(r#"{{"major":"1","gitCommit":"{SHA}","gitTreeState":"clean"}}"#), None), SHA);
    }

    #[test]
    fn plain_text_bodies_and_case() {
        assert_eq!(ok(&format!("  {}\r\n", SHA.to_uppercase()), None), SHA);
        assert_eq!(ok("0123456\n", None), "0123456");
        assert!(bad(b"0123", None).contains("shorter than 7"));
    }

    #[test]
    fn configured_pointer_wins() {
        let body = format!(r#"{{"sha":"{SHA}","build":{{"rev":"abcdef0"}}}}"#);
        assert_eq!(ok(&body, Some("/build/rev")), "abcdef0");
        assert!(bad(body.as_bytes(), Some("/nope")).contains("no value at sha_pointer \"/nope\""));
        assert!(bad(SHA.as_bytes(), Some("/sha")).contains("not JSON"));
    }

    #[test]
    fn garbage_is_invalid_with_a_reason() {
        assert!(bad(br#"{"sha": 1234567}"#, None).contains("is a number"));
        assert!(bad(br#"{"sha": "abc"}"#, None).contains("shorter than 7"));
        assert!(bad(br#"{"sha": "not-a-sha-at-all"}"#, None).contains("not hexadecimal"));
        assert!(bad(br#"{"hello": "world"}"#, None).contains("no commit id"));
        assert!(bad(b"<html>oops</html>", None).contains("neither JSON"));
        assert!(bad(b"", None).contains("neither JSON"));
        assert!(bad(b"\xff\xfe\x00garbage", None).contains("neither JSON"));
        assert!(bad(br#"{"sha": null}"#, None).contains("null"));
        let f = parse_report(br#"{"sha": [1,2,3]}"#, None).unwrap_err();
        assert_eq!(f.actual.as_deref(), Some("[1,2,3]"));
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
        assert!(bad(deep.as_bytes(), None).contains("recursion limit"));
        let deep_obj = format!(r#"{}"x"{}"#, r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
        assert!(bad(deep_obj.as_bytes(), None).contains("recursion limit"));
    }
}
