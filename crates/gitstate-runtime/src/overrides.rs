//! What operators said (SPEC §9): suspensions and retry requests, kept by the store
//! (`overrides.json` in files, a row in PostgreSQL), written by `suspend`, `resume` and
//! `retry` (see [`crate::controls`]) and read by the controller within a `ref_poll`.

use std::collections::BTreeMap;

use gitstate_core::{CommitId, Controls, EnvName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Why, as given.
    pub reason: Option<String>,
    /// Who (the OS user, or the dashboard's user).
    pub by: String,
    /// How: `cli` or `dashboard` (suspensions made before SPEC §20 read as `cli`).
    #[serde(default = "via_cli")]
    pub via: String,
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
    /// Commits not to deploy here (SPEC §15), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vetoes: Vec<Veto>,
}

/// A vetoed commit: while the environment's ref points at it, it is not deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veto {
    /// The commit.
    pub sha: CommitId,
    /// When.
    pub since: Timestamp,
    /// Who (`gitstate` for a rollback by the loop, else the OS or dashboard user).
    pub by: String,
    /// How: `loop`, `cli` or `dashboard`.
    pub via: String,
    /// Why.
    pub reason: Option<String>,
}

/// The schema written: 2 since vetoes (SPEC §15). A reader meeting a newer one refuses it.
pub const OVERRIDES_SCHEMA: u32 = 2;

/// The content of `overrides.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Format version: [`OVERRIDES_SCHEMA`] (1 before vetoes; read as well).
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
            vetoed: o.vetoes.iter().map(|v| v.sha).collect(),
            trust: None,
            unsigned_running: Vec::new(),
        }
    }

    /// The vetoes of `env`.
    pub fn vetoes(&self, env: &EnvName) -> &[Veto] {
        self.environments.get(env).map_or(&[], |o| &o.vetoes[..])
    }

    /// The suspension of `env` in force at `now`.
    pub fn suspension(&self, env: &EnvName, now: Timestamp) -> Option<&Suspension> {
        self.environments.get(env)?.suspension.as_ref().filter(|s| s.active(now))
    }
}

fn via_cli() -> String {
    "cli".into()
}
