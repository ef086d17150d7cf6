//! `[policy]` and `[environments.policy]`: the global table applied to the defaults, then
//! each environment's overrides, and the result validated.

use gitstate_core::Policy;

use super::raw::PolicyPatch;
use super::*;

pub(super) fn apply(
    ctx: &Ctx,
    mut p: Policy,
    patch: &PolicyPatch,
    span: Option<std::ops::Range<usize>>,
) -> Result<Policy, ConfigError> {
    if let Some(v) = patch.mode {
        p.mode = v;
    }
    if let Some(v) = patch.grace {
        p.grace = v.0;
    }
    if let Some(v) = patch.settle {
        p.settle = v.0;
    }
    if let Some(v) = patch.max_attempts {
        p.max_attempts = v;
    }
    if let Some(v) = patch.backoff {
        p.backoff = v.0;
    }
    if let Some(v) = patch.backoff_max {
        p.backoff_max = v.0;
    }
    if let Some(v) = patch.unreachable_after {
        p.unreachable_after = v;
    }
    if let Some(v) = patch.on_diverged {
        p.on_diverged = v;
    }
    if let Some(v) = patch.renotify {
        p.renotify = v.0;
    }
    p.validate().map_err(|m| ctx.err(span, format!("policy: {m}")))?;
    Ok(p)
}
