//! # gitstate-aws
//!
//! The AWS resource-tag probe: reads the deployed commit from a tag (default
//! `gitstate:sha`) of every resource the Resource Groups Tagging API matches.
//! Depends on `gitstate-core` only, never on the CLI.
//!
//! The probe arrives with the AWS-probe issue; this crate exists so the workspace layout
//! of SPEC §2 holds from the start.
