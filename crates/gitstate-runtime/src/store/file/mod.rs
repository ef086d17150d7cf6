//! The state directory (SPEC §7): `state.json` and `state.log` (what the loop remembers:
//! a snapshot written atomically, then the changes of each pass appended and synced to
//! disk — before each remediation starts too — and folded into a new snapshot now and
//! then), `lock` (one `reconcile` or `watch` at a time; the holder's pid inside), and
//! `events.jsonl` (the append-only audit trail). Entry type: [`FileStore`], which is also
//! the engine's [`Journal`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod events;
mod lock;
mod log;
mod overrides;
mod write;

use async_trait::async_trait;
use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError, Outbox, StateFile, Undelivered};

pub use events::Rotation;
pub use lock::Lock;

use super::{OverridesChange, Store, StoreError, among};
use crate::overrides::Overrides;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The store in files: a state directory (`[state] dir`) of one process at a time. Open
/// it with [`FileStore::open`] after taking its [`FileStore::lock`]; the engine writes
/// through its [`Journal`] half, everything else reads it through [`Store`].
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    state: Mutex<Inner>,
    rotation: Rotation,
    /// The log is folded into a new snapshot past this size (or the snapshot's).
    compact_above: u64,
    /// The latest events, oldest first (at most [`RECENT`]), for the dashboard.
    recent: Mutex<std::collections::VecDeque<Event>>,
}

/// What the store knows, and how far its files are behind it.
#[derive(Debug)]
struct Inner {
    /// Exactly what the loop remembers; the files hold all of it but the in-sync times of
    /// `unsaved`.
    file: StateFile,
    /// `state.log` open for appending, once checked (its torn tail cut off) or created.
    log: Option<File>,
    /// Bytes in `state.log`.
    log_len: u64,
    /// What was found in `state.log` when the store was opened.
    found: LogFound,
    /// Bytes of the last snapshot read or written.
    snapshot_len: u64,
    /// Environments whose only change not yet written is their `last_in_sync_at`: an
    /// environment in sync on every pass is rewritten now and then, not on every pass.
    unsaved: std::collections::BTreeSet<EnvName>,
    /// The snapshot differs from the files in a way the log cannot say (a migration).
    rewrite: bool,
    /// When the last snapshot was written (or the store opened).
    compacted_at: Instant,
}

/// `state.log` as found by [`FileStore::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFound {
    /// None, or one that does not continue the snapshot: replaced before the first append.
    Replace,
    /// It continues the snapshot; its complete lines end at `complete`.
    Continue { complete: u64 },
}

/// Events kept in memory for the dashboard.
const RECENT: usize = 500;

/// `state.log` is folded into a new `state.json` once it is larger than the snapshot and
/// than this.
const COMPACT_ABOVE: u64 = 1024 * 1024;

/// How long an environment in sync on every pass may go without its `last_in_sync_at`
/// written: the files are never further behind than this.
pub const IN_SYNC_WRITTEN_EVERY: Duration = Duration::from_secs(600);

impl FileStore {
    /// `state.json` under `dir`.
    pub fn state_path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// `state.log` under `dir`.
    pub fn log_path(dir: &Path) -> PathBuf {
        dir.join("state.log")
    }

    /// Reads the state (`state.json` with the changes of `state.log` applied; an empty
    /// state when there is none). A file that does not parse is an error naming it (and
    /// the line, in the log); it is never reset. Reading changes no file.
    pub fn read(dir: &Path) -> Result<StateFile, StoreError> {
        Ok(Self::load(dir)?.file)
    }

    /// Reads the snapshot and the log, retrying when a writer folded the log into a new
    /// snapshot between the two reads.
    fn load(dir: &Path) -> Result<Inner, StoreError> {
        let log_path = Self::log_path(dir);
        let mut attempt = 0;
        loop {
            let (mut file, snapshot_len, migrated) = Self::read_snapshot(dir)?;
            let bytes = match std::fs::read(&log_path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(&log_path)(e)),
            };
            let corrupt = |(line, message): (usize, String)| StoreError::Corrupt {
                path: PathBuf::from(format!("{}:{line}", log_path.display())),
                message,
            };
            let found = match log::parse(&bytes).map_err(corrupt)? {
                log::Read::Changes { lines, complete } => match log::generation(&lines) {
                    Some(g) if g == file.generation => {
                        log::apply(&mut file, lines);
                        LogFound::Continue { complete }
                    }
                    Some(g) if g < file.generation => LogFound::Replace,
                    Some(_) if attempt < 3 => {
                        // A newer log than the snapshot: a writer compacted in between.
                        attempt += 1;
                        continue;
                    }
                    Some(g) => {
                        return Err(StoreError::Corrupt {
                            path: log_path,
                            message: format!(
                                "it continues generation {g} of state.json, which is of generation {} (or missing): \
                                 move state.log away too to start from state.json alone",
                                file.generation
                            ),
                        });
                    }
                    None => LogFound::Replace,
                },
                log::Read::Missing => LogFound::Replace,
            };
            return Ok(Inner {
                file,
                log: None,
                log_len: 0,
                found,
                snapshot_len,
                unsaved: Default::default(),
                rewrite: migrated,
                compacted_at: Instant::now(),
            });
        }
    }

    /// `state.json`, its length, and whether a migration changed what it says.
    fn read_snapshot(dir: &Path) -> Result<(StateFile, u64, bool), StoreError> {
        let path = Self::state_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((StateFile::new(), 0, false)),
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt =
            |e: serde_json::Error| StoreError::Corrupt { path: path.clone(), message: e.to_string() };
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
        let moved = migrate_undelivered(&mut value).map_err(corrupt)?;
        let mut state: StateFile = serde_json::from_value(value).map_err(corrupt)?;
        let migrated = !moved.is_empty();
        state.outbox.pending.extend(moved);
        if state.schema != StateFile::SCHEMA {
            return Err(StoreError::Corrupt { path, message: format!("unknown schema {}", state.schema) });
        }
        Ok((state, text.len() as u64, migrated))
    }

    /// Opens the store of `dir` with its current content (the directory made if missing).
    /// Take [`FileStore::lock`] first when this process is to write.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Self::open_read_only(dir)
    }

    /// Opens the store of `dir` to read it (`status`, a dry run): nothing is created; a
    /// missing directory is an empty state. The caller writes nothing through it.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let recent = Self::events(dir, RECENT).unwrap_or_default().into();
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(Self::load(dir)?),
            rotation: Rotation::default(),
            compact_above: COMPACT_ABOVE,
            recent: Mutex::new(recent),
        })
    }

    /// A copy of every environment's state.
    pub fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        self.inner().file.environments.clone()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// gitstate 0.1 kept undelivered notifications per environment (`undelivered`); they now
/// live in the state file's `outbox`. Takes them out of each environment of `value`.
fn migrate_undelivered(value: &mut serde_json::Value) -> Result<Vec<Undelivered>, serde_json::Error> {
    let mut moved = Vec::new();
    let Some(envs) = value.get_mut("environments").and_then(|e| e.as_object_mut()) else { return Ok(moved) };
    for env in envs.values_mut() {
        if let Some(list) = env.as_object_mut().and_then(|o| o.remove("undelivered")) {
            moved.extend(serde_json::from_value::<Vec<Undelivered>>(list)?);
        }
    }
    Ok(moved)
}

#[async_trait]
impl Store for FileStore {
    fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        FileStore::environments(self)
    }

    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
        among(&self.inner().file.environments, names)
    }

    fn names(&self) -> Vec<EnvName> {
        self.inner().file.environments.keys().cloned().collect()
    }

    fn recent_events(&self, n: usize) -> Vec<Event> {
        FileStore::recent_events(self, n)
    }

    /// Reads the rotated files (`events.jsonl.N` … `.1`) and `events.jsonl` whole.
    async fn events_since(&self, since: jiff::Timestamp) -> Result<Vec<Event>, StoreError> {
        let mut files: Vec<std::path::PathBuf> =
            (1..=64).map(|n| self.dir.join(format!("events.jsonl.{n}"))).take_while(|p| p.exists()).collect();
        files.reverse();
        files.push(self.dir.join("events.jsonl"));
        let mut out = Vec::new();
        for path in files {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Io { path, source: e }),
            };
            out.extend(events::parse_events(&bytes, usize::MAX).into_iter().filter(|e| e.at >= since));
        }
        Ok(out)
    }

    fn overrides(&self) -> Result<Overrides, StoreError> {
        overrides::read(&self.dir)
    }

    async fn update_overrides(&self, change: OverridesChange<'_>) -> Result<Overrides, StoreError> {
        overrides::update(&self.dir, change)
    }

    async fn append_unfenced(&self, events: &[Event]) -> Result<(), StoreError> {
        self.append(events)
    }

    /// Operators' overrides are read from their file each time: nothing to refresh.
    async fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        FileStore::flush(self)
    }
}

#[async_trait]
impl Journal for FileStore {
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        Ok(self.save(states)?)
    }

    async fn record(&self, events: &[Event]) -> Result<(), JournalError> {
        Ok(self.append(events)?)
    }

    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError> {
        Ok(FileStore::forget(self, environments)?)
    }

    async fn outbox(&self) -> Result<Outbox, JournalError> {
        Ok(self.inner().file.outbox.clone())
    }

    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError> {
        Ok(FileStore::save_outbox(self, outbox)?)
    }
}

#[cfg(test)]
mod tests;
