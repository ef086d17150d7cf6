//! What operators said (SPEC §9): suspensions and retry requests, kept by the store
//! (`overrides.json` in files, a row in PostgreSQL), written by `suspend`, `resume` and
//! `retry` (see [`crate::controls`]) and read by the controller within a `ref_poll`.

use std::collections::BTreeMap;

use gitstate_core::{Controls, EnvName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Why, as given.
    pub reason: Option<String>,
    /// Who (the OS user).
    pub by: String,
    /// When.
    pub since: Timestamp,
    /// When it ends by itself, if it does.
    pub until: Option<Timestamp>,
}

impl Suspension {
    /// Whether it holds at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

/// What operators said about one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Override {
    /// Suspended, unless `None` (or past its `until`).
    pub suspension: Option<Suspension>,
    /// The latest `gitstate retry`.
    pub retry_requested_at: Option<Timestamp>,
}

/// The content of `overrides.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Format version; 1.
    pub schema: u32,
    /// Per environment.
    pub environments: BTreeMap<EnvName, Override>,
}

impl Overrides {
    /// What the engine is to do with `env` at `now`.
    pub fn controls(&self, env: &EnvName, now: Timestamp) -> Controls {
        let Some(o) = self.environments.get(env) else { return Controls::default() };
        Controls {
            suspended: o.suspension.as_ref().filter(|s| s.active(now)).map(|s| s.until),
            frozen_until: None,
            retry_requested_at: o.retry_requested_at,
        }
    }

    /// The suspension of `env` in force at `now`.
    pub fn suspension(&self, env: &EnvName, now: Timestamp) -> Option<&Suspension> {
        self.environments.get(env)?.suspension.as_ref().filter(|s| s.active(now))
    }
}
