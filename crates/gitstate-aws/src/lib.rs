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
//! IAM: the probe needs `tag:GetResources` and nothing else.

pub mod probe;
pub mod tags;

pub use probe::{AwsClients, AwsProbe, AwsTarget};
pub use tags::{DEFAULT_SHA_TAG, reading_from_tags};
