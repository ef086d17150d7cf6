//! # gitstate-http
//!
//! Everything in gitstate that speaks HTTP: the well-known-file probe
//! (`/.well-known/deployment-meta.json`), the webhook remediator, and the Alertmanager
//! and webhook alarm sinks. Depends on `gitstate-core` only, never on the CLI.
//!
//! The adapters arrive with the HTTP-probe and closed-loop issues; this crate exists so
//! the workspace layout of SPEC §2 holds from the start.
