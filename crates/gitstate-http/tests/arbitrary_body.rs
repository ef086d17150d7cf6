//! `parse_body` on arbitrary input: arbitrary bytes, arbitrary JSON (Unicode, deep nesting,
//! huge numbers) at every pointer position, and the corpus of bodies that once crashed it
//! (`corpus/body/`). `scripts/fuzz` runs the same properties with far more cases.

use gitstate_core::{CommitId, FailureKind, ReportedCommit};
use gitstate_http::body::{AUTO_POINTERS, parse_body};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// What a model of SPEC §4 says a body reports: the first automatic pointer holding a
/// string decides; a valid commit id there is the answer, anything else is `invalid`.
fn model(v: &Value) -> Option<String> {
    for p in AUTO_POINTERS {
        if let Some(Value::String(s)) = v.pointer(p) {
            return valid_hex(s).then(|| s.to_ascii_lowercase());
        }
    }
    None
}

fn valid_hex(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{0,70}",
        "\\PC{0,50}",
        ".{0,20}",
        Just("é".repeat(40)),
        Just("🚀".repeat(20)),
        Just("\u{1b}[2J".into()),
        Just("0123456\u{0}789".into()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("sha".to_owned()),
            Just("commit".to_owned()),
            Just("git".to_owned()),
            Just("id".to_owned()),
            Just("full".to_owned()),
            Just("gitCommit".to_owned()),
            "\\PC{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn check_result(body: &[u8], r: &Result<ReportedCommit, gitstate_core::ProbeFailure>) {
    match r {
        // A commit is only ever read from hex that stands in the body.
        Ok(c) => {
            let hex = c.to_string();
            assert!(valid_hex(&hex), "{hex}");
            let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
            assert!(lower.contains(&hex), "{hex} is not in the body");
        }
        Err(f) => {
            assert_eq!(f.kind, FailureKind::Invalid);
            assert!(!f.message.is_empty());
            assert!(f.actual.as_ref().is_none_or(|a| a.len() <= 131), "actual is bounded");
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), pointer in prop::option::of("(/[a-z~01]{0,4}){0,3}")) {
        let r = parse_body(&body, pointer.as_deref());
        check_result(&body, &r);
    }

    #[test]
    fn arbitrary_json_matches_the_model(v in any_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let r = parse_body(&body, None);
        check_result(&body, &r);
        let want = model(&v);
        match (&r, &want) {
            (Ok(c), Some(w)) => prop_assert_eq!(&c.to_string(), w),
            (Err(_), None) => {}
            // A document that is only hex digits (a number) is a plain-text body.
            (Ok(c), None) => prop_assert!(String::from_utf8_lossy(&body).trim().eq_ignore_ascii_case(&c.to_string())),
            (Err(e), Some(w)) => prop_assert!(false, "model reads {w}, parser failed: {e:?}"),
        }
    }

    #[test]
    fn arbitrary_json_at_every_pointer(v in any_json(), value in any_json()) {
        // Put an arbitrary value at each known position and at a configured pointer.
        for p in AUTO_POINTERS.iter().chain(&["/build/rev", "/0", "/a~1b"]) {
            let mut doc = json!({});
            let mut at = &mut doc;
            let parts: Vec<String> = p.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
            for (i, part) in parts.iter().enumerate() {
                let next = if i + 1 == parts.len() { value.clone() } else { json!({}) };
                at = at.as_object_mut().unwrap().entry(part.clone()).or_insert(next);
            }
            doc.as_object_mut().unwrap().insert("noise".into(), v.clone());
            let body = serde_json::to_vec(&doc).unwrap();
            for pointer in [None, Some(*p)] {
                let r = parse_body(&body, pointer);
                check_result(&body, &r);
                if let (Some(_), Value::String(s)) = (pointer, &value) {
                    prop_assert_eq!(r.is_ok(), valid_hex(s), "{:?}", r);
                }
            }
        }
    }

    #[test]
    fn numbers_of_any_length_are_invalid(digits in "[1-9][0-9]{0,12000}") {
        let body = format!(r#"{{"sha":{digits}}}"#);
        prop_assert!(parse_body(body.as_bytes(), None).is_err());
    }
}

#[test]
fn deep_and_huge_bodies_are_invalid_with_a_reason() {
    for body in [
        "[".repeat(100_000).into_bytes(),
        format!(r#"{{"sha":"{}"}}"#, "a".repeat(10 << 20)).into_bytes(),
        format!(r#"{{"sha":{}}}"#, "9".repeat(10_000)).into_bytes(),
    ] {
        let f = parse_body(&body, None).unwrap_err();
        assert_eq!(f.kind, FailureKind::Invalid);
        assert!(f.actual.as_ref().is_none_or(|a| a.len() <= 131));
    }
}

#[test]
fn duplicate_keys_are_ambiguous() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let body = format!(r#"{{"sha":"{sha}","sha":"{}"}}"#, "f".repeat(40));
    let f = parse_body(body.as_bytes(), None).unwrap_err();
    assert!(f.message.contains("duplicate key \"sha\""), "{}", f.message);
    assert!(CommitId::parse(sha).is_ok());
}

/// Every body that ever crashed or fooled the parser, replayed with every pointer.
#[test]
fn the_corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/body");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let body = std::fs::read(entry.unwrap().path()).unwrap();
        for pointer in [None].into_iter().chain(AUTO_POINTERS.iter().map(|p| Some(*p))) {
            check_result(&body, &parse_body(&body, pointer));
        }
        n += 1;
    }
    assert!(n >= 8, "the corpus is there ({n} files)");
}
