//! `[policy]` and `[environments.policy]`: the tables that apply merged key by key (an
//! environment's keys over the global ones), then read once by [`Policy`]'s own
//! deserializer over its defaults, so each policy field is written once, in the core. An
//! error points at the key (unknown) or the value (invalid) it is about.

use std::collections::BTreeMap;
use std::ops::Range;

use gitstate_core::Policy;
use serde::Deserialize;
use toml::Spanned;

use super::raw::PolicyTable;
use super::*;

/// The policy `layers` make, later layers overriding earlier keys; `span` locates the
/// table for what no single key explains (`backoff_max` below `backoff`).
pub(super) fn resolve(
    ctx: &Ctx,
    layers: &[&PolicyTable],
    span: Option<Range<usize>>,
) -> Result<Policy, ConfigError> {
    let mut merged: BTreeMap<&str, (&Spanned<String>, &Spanned<toml::Value>)> = BTreeMap::new();
    for layer in layers {
        for (key, value) in layer.iter() {
            merged.insert(key.get_ref(), (key, value));
        }
    }
    let read = |entries: Vec<(&str, &Spanned<toml::Value>)>| {
        let table: toml::Table =
            entries.into_iter().map(|(k, v)| (k.to_owned(), v.get_ref().clone())).collect();
        Policy::deserialize(toml::Value::Table(table))
    };
    let policy = match read(merged.iter().map(|(k, (_, v))| (*k, *v)).collect()) {
        Ok(p) => p,
        Err(whole) => {
            // Read key by key to find the one at fault and point at it.
            for (k, (key, value)) in &merged {
                if let Err(e) = read(vec![(*k, *value)]) {
                    let message = e.message();
                    return Err(if message.starts_with("unknown field") {
                        ctx.err(Some(key.span()), message.to_owned())
                    } else {
                        ctx.err(Some(value.span()), format!("{k}: {message}"))
                    });
                }
            }
            return Err(ctx.err(span, whole.message().to_owned()));
        }
    };
    policy.validate().map_err(|m| ctx.err(span, format!("policy: {m}")))?;
    Ok(policy)
}
