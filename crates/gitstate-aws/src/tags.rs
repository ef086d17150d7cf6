//! Reading the commit from a resource's tags: a pure function, no network.
//! Entry point: [`reading_from_tags`].

use std::time::Duration;

use gitstate_core::{ProbeFailure, Reading, ReportedCommit};

/// The default tag key holding the deployed commit (Terraform: `default_tags`).
pub const DEFAULT_SHA_TAG: &str = "gitstate:sha";

/// The reading of one resource: its ARN is the instance; the commit comes from `sha_tag`.
/// No tags at all, or no `sha_tag`, is `missing`; a value that is not a commit id is `invalid`.
pub fn reading_from_tags<'a>(
    arn: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    sha_tag: &str,
    elapsed: Duration,
) -> Reading {
    let mut any = false;
    let mut value = None;
    for (k, v) in tags {
        any = true;
        if k == sha_tag {
            value = Some(v);
        }
    }
    let result = match value {
        Some(v) => ReportedCommit::parse(v)
            .map_err(|e| ProbeFailure::invalid(format!("tag {sha_tag}: {e}")).with_actual(v)),
        None if !any => Err(ProbeFailure::missing(format!("resource has no tags (expected {sha_tag})"))),
        None => Err(ProbeFailure::missing(format!("resource has no {sha_tag} tag"))),
    };
    Reading { instance: arn.to_owned(), result, elapsed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitstate_core::FailureKind;

    const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:workers";

    fn read(tags: &[(&str, &str)]) -> Reading {
        reading_from_tags(ARN, tags.iter().copied(), DEFAULT_SHA_TAG, Duration::ZERO)
    }

    #[test]
    fn reads_the_sha_tag() {
        let r = read(&[("service", "workers"), ("gitstate:sha", "0123456789ABCDEF0123456789abcdef01234567")]);
        assert_eq!(r.result.unwrap().as_str(), "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(r.instance, ARN);
        assert_eq!(read(&[("gitstate:sha", " abcdef1 ")]).result.unwrap().as_str(), "abcdef1");
    }

    #[test]
    fn missing_and_invalid() {
        let f = read(&[]).result.unwrap_err();
        assert_eq!(f.kind, FailureKind::Missing);
        assert!(f.message.contains("no tags"));
        let f = read(&[("service", "workers")]).result.unwrap_err();
        assert_eq!(f.kind, FailureKind::Missing);
        assert!(f.message.contains("no gitstate:sha tag"));
        let f = read(&[("gitstate:sha", "v1.2.3")]).result.unwrap_err();
        assert_eq!((f.kind, f.actual.as_deref()), (FailureKind::Invalid, Some("v1.2.3")));
        let f = read(&[("gitstate:sha", "")]).result.unwrap_err();
        assert_eq!(f.kind, FailureKind::Invalid);
        // A custom key.
        let r = reading_from_tags(ARN, [("deploy/sha", "abcdef12")], "deploy/sha", Duration::ZERO);
        assert!(r.result.is_ok());
    }

    /// What SPEC §4 says a tag map gives, written independently: the value of the last
    /// `sha_tag` pair decides (AWS allows one), else `missing`.
    fn model(tags: &[(String, String)], sha_tag: &str) -> Result<String, FailureKind> {
        match tags.iter().rev().find(|(k, _)| k == sha_tag) {
            None => Err(FailureKind::Missing),
            Some((_, v)) => {
                let t = v.trim();
                let ok = (7..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit());
                if ok { Ok(t.to_ascii_lowercase()) } else { Err(FailureKind::Invalid) }
            }
        }
    }

    fn key() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![Just("gitstate:sha".to_owned()), Just("service".to_owned()), "\\PC{0,12}"]
    }

    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[0-9a-fA-F]{0,70}",
            " [0-9a-f]{7,40} ",
            "\\PC{0,40}",
            Just("é".repeat(40)),
            Just("🚀".repeat(20))
        ]
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tag_maps_match_the_model(tags in proptest::collection::vec((key(), value()), 0..8)) {
            let r = reading_from_tags(ARN, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())), DEFAULT_SHA_TAG, Duration::ZERO);
            match (r.result, model(&tags, DEFAULT_SHA_TAG)) {
                (Ok(c), Ok(want)) => proptest::prop_assert_eq!(c.to_string(), want),
                (Err(f), Err(kind)) => {
                    proptest::prop_assert_eq!(f.kind, kind);
                    proptest::prop_assert!(f.actual.as_ref().is_none_or(|a| a.len() <= 131));
                }
                (got, want) => proptest::prop_assert!(false, "got {got:?}, model says {want:?}"),
            }
        }
    }
}
