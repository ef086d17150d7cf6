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
