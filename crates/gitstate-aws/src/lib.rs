//! # gitstate-aws
//!
//! The AWS resource-tag probe: every resource the Resource Groups Tagging API matches
//! (tag filters, optional resource-type filters, every page followed) is an instance; the
//! commit it runs is the value of a tag, `gitstate:sha` by default (Terraform
//! `default_tags`, CloudFormation stack tags, CDK `Tags.of(app)`). Depends on
//! `gitstate-core` only, never on the CLI.
//!
//! - [`AwsProbe`] implements [`gitstate_core::ActualStateProbe`]; build it from an
//!   [`AwsTarget`]. The SDK client is created on first use from the standard credential
//!   chain, with the SDK's standard retries and a bounded total time per target;
//!   [`AwsProbe::shared`] shares it through [`AwsClients`] between targets with the same
//!   region, profile, endpoint and timeout.
//! - [`reading_from_tags`] is the pure tag-map parsing.
//!
//! Feature `sdk` (default): the probe itself, with the AWS SDK. Without it the crate is
//! [`AwsTarget`] and the tag parsing only — what a build that leaves the SDK out needs to
//! read (and reject with a clear error) a configuration naming AWS targets.
//!
//! IAM: the probe needs `tag:GetResources` and nothing else.
//!
//! The smallest complete use of the pure part: one resource's tags, read as an instance.
//!
//! ```
//! use gitstate_aws::{DEFAULT_SHA_TAG, reading_from_tags};
//! use std::time::Duration;
//!
//! let sha = "4e69ed0b2a6b9a5d4e1c0f8a7b6c5d4e3f2a1b0c";
//! let arn = "arn:aws:lambda:eu-west-1:123456789012:function:workers";
//! let tags = [("service", "workers"), ("gitstate:sha", sha)];
//! let reading = reading_from_tags(arn, tags, DEFAULT_SHA_TAG, Duration::ZERO);
//! assert_eq!(reading.instance, arn);
//! assert_eq!(reading.result.unwrap().to_string(), sha);
//! ```
//!
//! The gitstate book explains the whole: `docs/` in the repository (`mdbook serve docs`):
//! *AWS: resource tags* (`docs/src/probes/aws.md`), with the Terraform, CloudFormation and
//! CDK ways to stamp the tag.
// The workspace denies `unsafe`; libraries forbid it outright (only the binary's
// allocator tuning, `gitstate-cli/src/memory.rs`, allows it).
#![forbid(unsafe_code)]

#[cfg(feature = "sdk")]
pub mod probe;
pub mod tags;
pub mod target;

#[cfg(feature = "sdk")]
pub use probe::{AwsClients, AwsProbe};
pub use tags::{DEFAULT_SHA_TAG, reading_from_tags};
pub use target::AwsTarget;
