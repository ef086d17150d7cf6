//! `overrides.json` in the state dir (SPEC §9): what operators said, written by
//! `suspend`, `resume` and `retry` under a short lock of its own (`overrides.lock`, never
//! the `watch` lock), atomically, and read by the controller every ref poll.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::overrides::{OVERRIDES_SCHEMA, Override, Overrides};
use crate::store::{OverridesChange, StoreError};

/// How long `suspend`, `resume` and `retry` wait for another one holding the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// `overrides.json` under `dir`.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join("overrides.json")
}

/// Reads it (nothing when there is no file); a file that does not parse is an error
/// naming it, never reset.
pub(super) fn read(dir: &Path) -> Result<Overrides, StoreError> {
    let path = path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Overrides { schema: OVERRIDES_SCHEMA, ..Overrides::default() });
        }
        Err(e) => return Err(StoreError::Io { path, source: e }),
    };
    let o: Overrides = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt { path: path.clone(), message: e.to_string() })?;
    if !(1..=OVERRIDES_SCHEMA).contains(&o.schema) {
        return Err(StoreError::Corrupt {
            path,
            message: format!("unknown schema {} (this gitstate reads 1 to {OVERRIDES_SCHEMA})", o.schema),
        });
    }
    Ok(o)
}

/// Changes it under its own lock (waiting for another writer at most a few seconds) and
/// writes it atomically; returns what was written.
pub(super) fn update(dir: &Path, change: OverridesChange<'_>) -> Result<Overrides, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io { path: dir.to_path_buf(), source: e })?;
    let lock_path = dir.join("overrides.lock");
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| StoreError::Io { path: lock_path.clone(), source: e })?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: lock_path,
                    holder: "another suspend, resume or retry".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io { path: lock_path, source: e });
            }
        }
    }
    let mut o = read(dir)?;
    o.schema = OVERRIDES_SCHEMA;
    change(&mut o);
    o.environments.retain(|_, v| *v != Override::default());
    let mut json = serde_json::to_vec_pretty(&o).unwrap_or_default();
    json.push(b'\n');
    let path = path(dir);
    crate::fs::write_atomic(&path, &json).map_err(|e| StoreError::Io { path, source: e })?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use gitstate_core::EnvName;
    use jiff::Timestamp;

    use super::*;
    use crate::overrides::Suspension;

    #[test]
    fn updates_round_trip_and_a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let env = EnvName::new("production").unwrap();
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let e2 = env.clone();
        update(
            dir.path(),
            Box::new(move |o| {
                o.environments.entry(e2).or_default().suspension = Some(Suspension {
                    reason: Some("incident 42".into()),
                    by: "ada".into(),
                    via: "cli".into(),
                    since: now,
                    until: None,
                });
            }),
        )
        .unwrap();
        let o = read(dir.path()).unwrap();
        assert_eq!(o.controls(&env, now).suspended, Some(None));
        let e3 = env.clone();
        update(dir.path(), Box::new(move |o| o.environments.get_mut(&e3).unwrap().suspension = None))
            .unwrap();
        assert!(read(dir.path()).unwrap().environments.is_empty(), "nothing left is nothing kept");
        std::fs::write(path(dir.path()), "{oops").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("overrides.json"), "{e}");
    }
}
