//! [`AwsTarget`]: what an AWS target asks for, without the SDK (a build without the
//! `sdk` feature still reads configurations that name AWS targets).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::tags::DEFAULT_SHA_TAG;

/// One AWS target's settings (SPEC §5 `[environments.targets.aws]`).
#[derive(Debug, Clone)]
pub struct AwsTarget {
    /// The region to query.
    pub region: String,
    /// Tag filters: a resource matches when, for every key, it has one of the values.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Resource-type filters such as `lambda:function`, `ec2:instance` (empty: all types).
    pub resource_types: Vec<String>,
    /// The tag holding the commit.
    pub sha_tag: String,
    /// An endpoint override (an emulator such as moto).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared config files.
    pub profile: Option<String>,
    /// Total time for one observation, retries and pages included.
    pub timeout: Duration,
}

impl AwsTarget {
    /// A target with the defaults: `gitstate:sha`, all resource types, 30 s.
    pub fn new(region: impl Into<String>, tags: BTreeMap<String, Vec<String>>) -> Self {
        Self {
            region: region.into(),
            tags,
            resource_types: Vec::new(),
            sha_tag: DEFAULT_SHA_TAG.to_owned(),
            endpoint_url: None,
            profile: None,
            timeout: Duration::from_secs(30),
        }
    }

    #[cfg_attr(not(feature = "sdk"), allow(dead_code))]
    pub(crate) fn filters(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={}", v.join("|"))).collect();
        let mut s = format!("tags {} in {}", tags.join(", "), self.region);
        if !self.resource_types.is_empty() {
            s.push_str(&format!(" (types {})", self.resource_types.join(", ")));
        }
        s
    }
}
