//! `gitstate.toml`: finding it, parsing it (every error names file:line:column),
//! expanding `${VAR}`, validating names, durations, URLs and refs, and turning it into a
//! typed [`Config`]. By concern: `raw.rs` (the TOML schema serde sees), `load.rs` (find,
//! parse, `${VAR}`, checks), `policy.rs`, `targets.rs`, `remediate.rs`, `types.rs` (the
//! validated [`Config`]); `[[discover]]` blocks become environments in [`discover`].

pub mod discover;
pub mod expand;
pub(crate) mod raw;

mod load;
mod policy;
mod remediate;
mod targets;
#[cfg(test)]
mod tests;
mod types;

pub use gitstate_aws::AwsTarget;
pub use gitstate_http::WebhookFormat;
pub(crate) use load::Ctx;
use load::*;
pub use load::{check_schema, load, locate, parse};
use policy::resolve;
pub(crate) use remediate::remediate;
pub(crate) use targets::targets;
pub use types::*;
