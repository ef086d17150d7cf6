//! `[policy]` and `[environments.policy]`: the tables that apply merged key by key (an
//! environment's keys over the global ones), then read once by [`Policy`]'s own
//! deserializer over its defaults, so each policy field is written once, in the core. An
//! error points at the key (unknown) or the value (invalid) it is about.

use std::collections::BTreeMap;
use std::ops::Range;

use gitstate_core::Policy;

use gitstate_runtime::controls::FreezeWindow;
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
) -> Result<(Policy, Vec<FreezeWindow>), ConfigError> {
    let mut merged: BTreeMap<&str, (&Spanned<String>, &Spanned<toml::Value>)> = BTreeMap::new();
    // SPEC §17: `labels` merge key by key (a tier's keys win), unlike every other key.
    let mut labels: Option<Spanned<toml::Value>> = None;
    for layer in layers {
        for (key, value) in layer.iter() {
            if key.get_ref() == "labels" {
                match (labels.as_mut().and_then(|l| l.get_mut().as_table_mut()), value.get_ref().as_table()) {
                    (Some(so_far), Some(table)) => {
                        so_far.extend(table.clone());
                        continue;
                    }
                    _ => labels = Some(Spanned::new(value.span(), value.get_ref().clone())),
                }
            }
            merged.insert(key.get_ref(), (key, value));
        }
    }
    if let (Some(l), Some((key, _))) = (&labels, merged.get("labels").copied()) {
        merged.insert("labels", (key, l));
    }
    // Freeze windows are the CLI's (a calendar, not a decision rule): read apart.
    let windows = match merged.remove("windows") {
        Some((_, value)) => windows(ctx, value)?,
        None => Vec::new(),
    };
    let read = |entries: Vec<(&str, &Spanned<toml::Value>)>| {
        let table: toml::Table =
            entries.into_iter().map(|(k, v)| (k.to_owned(), v.get_ref().clone())).collect();
        Policy::deserialize(toml::Value::Table(table))
    };
    let mut policy = match read(merged.iter().map(|(k, (_, v))| (*k, *v)).collect()) {
        Ok(p) => p,
        Err(whole) => {
            // Read key by key to find the one at fault and point at it.
            for (k, (key, value)) in &merged {
                if let Err(e) = read(vec![(*k, *value)]) {
                    let message = e.message();
                    return Err(if message.starts_with(&format!("unknown field `{k}`")) {
                        // `windows` is read apart (above), but it is a key of the table all the same.
                        ctx.err(Some(key.span()), format!("{message}, or `windows`"))
                    } else if message.starts_with("unknown field") {
                        ctx.err(Some(key.span()), message.to_owned())
                    } else {
                        ctx.err(Some(value.span()), format!("{k}: {message}"))
                    });
                }
            }
            return Err(ctx.err(span, whole.message().to_owned()));
        }
    };
    // A check's relative `ca_file` is the configuration's directory's, as a target's is.
    if let Some(v) = policy.verify.as_mut() {
        for h in v.checks.iter_mut().filter_map(|c| c.http.as_mut()) {
            h.ca_file = h.ca_file.take().map(|ca| ctx.dir.join(ca));
        }
    }
    policy.validate().map_err(|m| {
        // Point at the key the message names (the longest, so `backoff_max` before
        // `backoff`), else at the table.
        let named = merged
            .iter()
            .filter(|(k, _)| m.contains(**k))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, (key, _))| key.span());
        ctx.err(named.or(span), format!("policy: {m}"))
    })?;
    Ok((policy, windows))
}

/// `[[policy.windows]]`: each with `schedule`, `duration` and `timezone` (default UTC).
fn windows(ctx: &Ctx, value: &Spanned<toml::Value>) -> Result<Vec<FreezeWindow>, ConfigError> {
    let at = |m: String| ctx.err(Some(value.span()), m);
    let Some(list) = value.get_ref().as_array() else {
        return Err(at("windows: give a list of [[policy.windows]] tables".into()));
    };
    list.iter()
        .enumerate()
        .map(|(i, w)| {
            let t = w.as_table().ok_or_else(|| at(format!("windows[{i}]: not a table")))?;
            if let Some(k) = t.keys().find(|k| !["schedule", "duration", "timezone"].contains(&k.as_str())) {
                return Err(at(format!(
                    "windows[{i}]: unknown field `{k}`, expected `schedule`, `duration` or `timezone`"
                )));
            }
            let text = |k: &str| t.get(k).and_then(toml::Value::as_str);
            let schedule =
                text("schedule").ok_or_else(|| at(format!("windows[{i}]: schedule is missing")))?;
            let duration =
                text("duration").ok_or_else(|| at(format!("windows[{i}]: duration is missing")))?;
            let duration =
                gitstate_core::parse_duration(duration).map_err(|m| at(format!("windows[{i}]: {m}")))?;
            FreezeWindow::new(schedule, duration, text("timezone").unwrap_or("UTC"))
                .map_err(|m| at(format!("windows[{i}]: {m}")))
        })
        .collect()
}
