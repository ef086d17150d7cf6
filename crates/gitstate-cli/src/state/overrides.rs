//! `overrides.json` in the state dir (SPEC §9): what operators said — suspensions and
//! retry requests — written by `suspend`, `resume` and `retry` under a short lock of its
//! own (never the `watch` lock), atomically, and read by `reconcile` and `watch` (which
//! applies a change within `ref_poll`).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitstate_core::{Controls, EnvName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::StateError;

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

/// How long `suspend`, `resume` and `retry` wait for another one holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

impl Overrides {
    /// `overrides.json` under `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("overrides.json")
    }

    /// Reads it (nothing when there is no file); a file that does not parse is an error
    /// naming it, never reset.
    pub fn read(dir: &Path) -> Result<Self, StateError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { schema: 1, ..Self::default() });
            }
            Err(e) => return Err(StateError::Io { path, source: e }),
        };
        let o: Self = serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt { path: path.clone(), message: e.to_string() })?;
        if o.schema != 1 {
            return Err(StateError::Corrupt { path, message: format!("unknown schema {}", o.schema) });
        }
        Ok(o)
    }

    /// Changes it under its own lock (waiting for another writer at most a few seconds)
    /// and writes it atomically.
    pub fn update<T>(dir: &Path, change: impl FnOnce(&mut Self) -> T) -> Result<T, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::Io { path: dir.to_path_buf(), source: e })?;
        let lock_path = dir.join("overrides.lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| StateError::Io { path: lock_path.clone(), source: e })?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        path: lock_path,
                        holder: "another suspend, resume or retry".into(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StateError::Io { path: lock_path, source: e });
                }
            }
        }
        let mut o = Self::read(dir)?;
        o.schema = 1;
        let out = change(&mut o);
        o.environments.retain(|_, v| *v != Override::default());
        let mut json = serde_json::to_vec_pretty(&o).unwrap_or_default();
        json.push(b'\n');
        let path = Self::path(dir);
        crate::fsutil::write_atomic(&path, &json).map_err(|e| StateError::Io { path, source: e })?;
        Ok(out)
    }

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

/// Who is acting: the OS user.
pub fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// This machine's name (a pod's name in Kubernetes), to say who leads.
pub fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_and_a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvName::new("production").unwrap();
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        Overrides::update(dir.path(), |o| {
            o.environments.entry(env.clone()).or_default().suspension = Some(Suspension {
                reason: Some("incident 42".into()),
                by: "ada".into(),
                since: now,
                until: None,
            });
        })
        .unwrap();
        let o = Overrides::read(dir.path()).unwrap();
        assert_eq!(o.controls(&env, now).suspended, Some(None));
        Overrides::update(dir.path(), |o| o.environments.get_mut(&env).unwrap().suspension = None).unwrap();
        assert!(Overrides::read(dir.path()).unwrap().environments.is_empty(), "nothing left is nothing kept");
        std::fs::write(Overrides::path(dir.path()), "{oops").unwrap();
        let e = Overrides::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("overrides.json"), "{e}");
    }
}
