//! The state directory (SPEC §7): `state.json` and `state.log` (what the loop remembers:
//! a snapshot written atomically, then the changes of each pass appended and synced to
//! disk — before each remediation starts too — and folded into a new snapshot now and
//! then), `lock` (one `reconcile` or `watch` at a time; the holder's pid inside), and
//! `events.jsonl` (the append-only audit trail). Entry type: [`StateStore`], which is also
//! the engine's [`Journal`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod log;
pub mod overrides;
pub mod postgres;

use async_trait::async_trait;
use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError, Outbox, StateFile, Undelivered};

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the lock.
    #[error("the state lock {path} is held by {holder}: another gitstate reconcile or watch is running")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, e.g. `pid 1234`.
        holder: String,
    },
    /// `state.json` cannot be read as gitstate state; it is left untouched.
    #[error(
        "corrupt state file {path}: {message}; it was left untouched: fix it, or move it away to start with no memory"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The database could not be used.
    #[error("PostgreSQL: {message}")]
    Database {
        /// What failed, and the server's code and message.
        message: String,
    },
    /// This replica does not hold its cluster's leader lock (any longer): it writes nothing.
    #[error("not the leader of cluster {cluster:?}: this replica writes nothing")]
    NotLeader {
        /// The cluster.
        cluster: String,
    },
    /// An I/O error on a state file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The entries of `all` named in `names`, copied.
fn among(all: &BTreeMap<EnvName, EnvState>, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
    names.iter().filter_map(|n| Some((n.clone(), all.get(n)?.clone()))).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// Where the loop's memory lives — the files of `[state] dir` ([`StateStore`]) or
/// PostgreSQL ([`postgres::PgStore`]) — as `watch`, its dashboard and `/status` see it.
#[async_trait]
pub trait Store: Journal + std::fmt::Debug {
    /// Every environment's state as this process knows it.
    fn environments(&self) -> BTreeMap<EnvName, EnvState>;
    /// The states of `names` only (those known): what a pass of a few environments needs,
    /// without a copy of every other one.
    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState>;
    /// The names of the environments with a state.
    fn names(&self) -> Vec<EnvName>;
    /// The latest `n` events (oldest first).
    fn recent_events(&self, n: usize) -> Vec<Event>;
    /// What operators said (`suspend`, `resume`, `retry`), as last read.
    fn overrides(&self) -> Result<overrides::Overrides, StateError>;
    /// Reads what operators wrote since (`suspend`, `resume`, `retry`).
    async fn refresh(&self) -> Result<(), StateError>;
    /// Writes what is held back.
    async fn flush(&self) -> Result<(), StateError>;
    /// Whether this process may act (remediate, notify, write): always, with files; the
    /// leader only, with PostgreSQL.
    fn is_leader(&self) -> bool {
        true
    }
}

#[async_trait]
impl Store for StateStore {
    fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        StateStore::environments(self)
    }

    fn environments_among(&self, names: &[EnvName]) -> BTreeMap<EnvName, EnvState> {
        among(&self.inner().file.environments, names)
    }

    fn names(&self) -> Vec<EnvName> {
        self.inner().file.environments.keys().cloned().collect()
    }

    fn recent_events(&self, n: usize) -> Vec<Event> {
        StateStore::recent_events(self, n)
    }

    fn overrides(&self) -> Result<overrides::Overrides, StateError> {
        overrides::Overrides::read(&self.dir)
    }

    async fn refresh(&self) -> Result<(), StateError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), StateError> {
        StateStore::flush(self)
    }
}

/// The exclusive lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// How `events.jsonl` is rotated: past `max_bytes` it becomes `events.jsonl.1` (the older
/// ones shift to `.2`, …) and `keep` old files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size past which the current file is rotated (`[state] events_max_bytes`).
    pub max_bytes: u64,
    /// Old files kept (`[state] events_keep`); 0 keeps none.
    pub keep: u32,
}

impl Rotation {
    /// The smallest `events_max_bytes` accepted.
    pub const MIN_BYTES: u64 = 4096;
}

impl Default for Rotation {
    /// 64 MiB, 5 old files.
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, keep: 5 }
    }
}

/// The state directory.
#[derive(Debug)]
pub struct StateStore {
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

/// `state.log` as found by [`StateStore::load`].
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

impl StateStore {
    /// `state.json` under `dir`.
    pub fn state_path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// `state.log` under `dir`.
    pub fn log_path(dir: &Path) -> PathBuf {
        dir.join("state.log")
    }

    /// Takes the exclusive lock of `dir` (created when missing), writing our pid into it.
    pub fn lock(dir: &Path) -> Result<Lock, StateError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "another process".to_owned(),
                    p => format!("pid {p}"),
                };
                return Err(StateError::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(Lock { _file: file })
    }

    /// Reads the state (`state.json` with the changes of `state.log` applied; an empty
    /// state when there is none). A file that does not parse is an error naming it (and
    /// the line, in the log); it is never reset. Reading changes no file.
    pub fn read(dir: &Path) -> Result<StateFile, StateError> {
        Ok(Self::load(dir)?.file)
    }

    /// Reads the snapshot and the log, retrying when a writer folded the log into a new
    /// snapshot between the two reads.
    fn load(dir: &Path) -> Result<Inner, StateError> {
        let log_path = Self::log_path(dir);
        let mut attempt = 0;
        loop {
            let (mut file, snapshot_len, migrated) = Self::read_snapshot(dir)?;
            let bytes = match std::fs::read(&log_path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(&log_path)(e)),
            };
            let corrupt = |(line, message): (usize, String)| StateError::Corrupt {
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
                        return Err(StateError::Corrupt {
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
    fn read_snapshot(dir: &Path) -> Result<(StateFile, u64, bool), StateError> {
        let path = Self::state_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((StateFile::new(), 0, false)),
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt =
            |e: serde_json::Error| StateError::Corrupt { path: path.clone(), message: e.to_string() };
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
        let moved = migrate_undelivered(&mut value).map_err(corrupt)?;
        let mut state: StateFile = serde_json::from_value(value).map_err(corrupt)?;
        let migrated = !moved.is_empty();
        state.outbox.pending.extend(moved);
        if state.schema != StateFile::SCHEMA {
            return Err(StateError::Corrupt { path, message: format!("unknown schema {}", state.schema) });
        }
        Ok((state, text.len() as u64, migrated))
    }

    /// Opens the store of `dir` with its current content.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let recent = Self::events(dir, RECENT).unwrap_or_default().into();
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(Self::load(dir)?),
            rotation: Rotation::default(),
            compact_above: COMPACT_ABOVE,
            recent: Mutex::new(recent),
        })
    }

    /// The latest `n` events written (oldest first), without reading the file again.
    pub fn recent_events(&self, n: usize) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().skip(recent.len().saturating_sub(n)).cloned().collect()
    }

    /// The last `limit` events of `events.jsonl` (oldest first), read from its last MiB
    /// only. A line that is not an event — a torn last line after a crash mid-append, the
    /// partial first line of that tail, one a person mangled — is skipped, never an error.
    pub fn events(dir: &Path, limit: usize) -> Result<Vec<Event>, StateError> {
        const TAIL: u64 = 1024 * 1024;
        let path = dir.join("events.jsonl");
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        let len = file.metadata().map_err(io(&path))?.len();
        file.seek(std::io::SeekFrom::Start(len.saturating_sub(TAIL))).map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        Ok(parse_events(&bytes, limit))
    }

    /// Rotates `events.jsonl` as `rotation` says (the default: 64 MiB, 5 old files).
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// A copy of every environment's state.
    pub fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        self.inner().file.environments.clone()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges `states` in: the environments that changed are appended to `state.log` and
    /// synced to disk before this returns. One whose only change is its `last_in_sync_at`
    /// is written at the latest [`IN_SYNC_WRITTEN_EVERY`] later (or by [`Self::flush`]).
    pub fn save(&self, states: &[(EnvName, EnvState)]) -> Result<(), StateError> {
        let mut inner = self.inner();
        let mut lines = Vec::new();
        for (name, s) in states {
            match inner.file.environments.get(name) {
                Some(old) if old == s => continue,
                Some(old) if old.same_but_in_sync_time(s) => {
                    inner.unsaved.insert(name.clone());
                }
                _ => {
                    inner.unsaved.remove(name);
                    lines.push(log::Line::Env(Box::new(log::EnvLine {
                        name: name.clone(),
                        state: s.clone(),
                    })));
                }
            }
            inner.file.environments.insert(name.clone(), s.clone());
        }
        self.write(&mut inner, &lines)
    }

    /// Removes environments' states.
    pub fn forget(&self, names: &[EnvName]) -> Result<(), StateError> {
        let mut inner = self.inner();
        let mut lines = Vec::new();
        for name in names {
            inner.unsaved.remove(name);
            if inner.file.environments.remove(name).is_some() {
                lines.push(log::Line::Forget(name.clone()));
            }
        }
        self.write(&mut inner, &lines)
    }

    /// Replaces the outbox.
    fn save_outbox(&self, outbox: &Outbox) -> Result<(), StateError> {
        let mut inner = self.inner();
        if inner.file.outbox == *outbox {
            return Ok(());
        }
        inner.file.outbox = outbox.clone();
        self.write(&mut inner, &[log::Line::Outbox(outbox.clone())])
    }

    /// Writes everything known, the in-sync times too (a new snapshot when any is unsaved).
    pub fn flush(&self) -> Result<(), StateError> {
        let mut inner = self.inner();
        if !inner.unsaved.is_empty() || inner.rewrite {
            self.compact(&mut inner)?;
        }
        Ok(())
    }

    /// Appends `lines` to the log (one write, synced), then folds the log into a new
    /// snapshot when it has grown past the snapshot, or when in-sync times have waited
    /// long enough.
    fn write(&self, inner: &mut Inner, lines: &[log::Line]) -> Result<(), StateError> {
        if !lines.is_empty() {
            let path = Self::log_path(&self.dir);
            let bytes = log::encode(lines);
            let log = self.open_log(inner)?;
            log.write_all(&bytes).map_err(io(&path))?;
            log.sync_data().map_err(io(&path))?;
            inner.log_len += bytes.len() as u64;
        }
        let overgrown = inner.log_len > self.compact_above.max(inner.snapshot_len);
        let due = !inner.unsaved.is_empty() && inner.compacted_at.elapsed() >= IN_SYNC_WRITTEN_EVERY;
        if overgrown || due || inner.rewrite {
            self.compact(inner)?;
        }
        Ok(())
    }

    /// The log, opened for appending: the one found when it continues the snapshot (its
    /// torn tail cut off), else a new one.
    fn open_log<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut File, StateError> {
        if inner.log.is_none() {
            let path = Self::log_path(&self.dir);
            let (file, len) = match inner.found {
                LogFound::Continue { complete } => {
                    let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                    if f.metadata().map_err(io(&path))?.len() != complete {
                        f.set_len(complete).map_err(io(&path))?;
                        f.sync_data().map_err(io(&path))?;
                    }
                    (f, complete)
                }
                LogFound::Replace => {
                    let header = log::header(inner.file.generation);
                    crate::fsutil::write_atomic(&path, &header).map_err(io(&path))?;
                    (OpenOptions::new().write(true).open(&path).map_err(io(&path))?, header.len() as u64)
                }
            };
            let mut file = file;
            file.seek(std::io::SeekFrom::Start(len)).map_err(io(&path))?;
            inner.found = LogFound::Continue { complete: len };
            inner.log = Some(file);
            inner.log_len = len;
        }
        Ok(inner.log.as_mut().expect("opened above"))
    }

    /// Writes everything known as a new snapshot of the next generation, then starts an
    /// empty log continuing it. A crash between the two leaves the old log, which names
    /// the old generation and is then ignored: the new snapshot already holds it.
    fn compact(&self, inner: &mut Inner) -> Result<(), StateError> {
        let path = Self::state_path(&self.dir);
        inner.file.generation += 1;
        let json = serde_json::to_vec_pretty(&inner.file).map(|mut j| {
            j.push(b'\n');
            j
        });
        let written = match json {
            Ok(json) => crate::fsutil::write_atomic(&path, &json).map(|()| json.len()).map_err(io(&path)),
            Err(e) => Err(StateError::Corrupt { path: path.clone(), message: e.to_string() }),
        };
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                inner.file.generation -= 1;
                return Err(e);
            }
        };
        inner.snapshot_len = len as u64;
        inner.unsaved.clear();
        inner.rewrite = false;
        inner.compacted_at = Instant::now();
        inner.log = None;
        inner.found = LogFound::Replace;
        self.open_log(inner).map(|_| ())
    }

    /// Appends events to `events.jsonl`, one JSON object a line, rotating it first when it
    /// has grown past its size. A torn last line (a crash mid-append) is ended first, so
    /// that it never swallows the next event.
    pub fn append(&self, events: &[Event]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        let _serial = self.inner();
        let path = self.dir.join("events.jsonl");
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&path)(e)),
        };
        let len = if len >= self.rotation.max_bytes { self.rotate(&path)? } else { len };
        let mut buf = Vec::new();
        if len > 0 && !ends_with_newline(&path).map_err(io(&path))? {
            buf.push(b'\n');
        }
        for e in events {
            // An event always serialises: it is made of strings, numbers and timestamps.
            if let Ok(line) = serde_json::to_string(e) {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
        let mut f =
            OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(io(&path))?;
        f.write_all(&buf).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.extend(events.iter().cloned());
        let over = recent.len().saturating_sub(RECENT);
        recent.drain(..over);
        Ok(())
    }

    /// Shifts `events.jsonl` to `events.jsonl.1` (and `.1` to `.2`, …), dropping the oldest
    /// beyond `keep`; the current file starts empty (length 0 returned).
    fn rotate(&self, path: &Path) -> Result<u64, StateError> {
        let old = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        if self.rotation.keep == 0 {
            std::fs::remove_file(path).map_err(io(path))?;
            return Ok(0);
        }
        for n in (1..self.rotation.keep).rev() {
            match std::fs::rename(old(n), old(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&old(n))(e)),
                _ => {}
            }
        }
        std::fs::rename(path, old(1)).map_err(io(path))?;
        Ok(0)
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

/// The events in `bytes`, one JSON object a line, the last `limit`; other lines skipped.
fn parse_events(bytes: &[u8], limit: usize) -> Vec<Event> {
    let mut out: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(e) = serde_json::from_slice::<Event>(line) {
            if out.len() == limit {
                out.pop_front();
            }
            if limit > 0 {
                out.push_back(e);
            }
        }
    }
    out.into()
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    f.seek(std::io::SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

impl From<StateError> for JournalError {
    fn from(e: StateError) -> Self {
        let (path, message) = match e {
            StateError::Io { path, source } => (path, source.to_string()),
            StateError::Corrupt { path, message } => (path, message),
            StateError::Locked { path, holder } => (path, format!("held by {holder}")),
            e @ (StateError::Database { .. } | StateError::NotLeader { .. }) => {
                (PathBuf::from("postgres"), e.to_string())
            }
        };
        JournalError { path: path.display().to_string(), message }
    }
}

#[async_trait]
impl Journal for StateStore {
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        Ok(self.save(states)?)
    }

    async fn record(&self, events: &[Event]) -> Result<(), JournalError> {
        Ok(self.append(events)?)
    }

    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError> {
        Ok(StateStore::forget(self, environments)?)
    }

    async fn outbox(&self) -> Result<Outbox, JournalError> {
        Ok(self.inner().file.outbox.clone())
    }

    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError> {
        Ok(StateStore::save_outbox(self, outbox)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_state_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = StateStore::state_path(dir.path());
        std::fs::write(&path, "{not json").unwrap();
        let e = StateStore::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt state file") && e.contains(&path.display().to_string()), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateStore::lock(dir.path()).unwrap();
        let e = StateStore::lock(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        assert!(StateStore::lock(dir.path()).is_ok());
    }

    fn event(i: u32) -> Event {
        Event {
            at: jiff::Timestamp::from_second(1_800_000_000 + i64::from(i)).unwrap(),
            environment: EnvName::new("production").unwrap(),
            kind: gitstate_core::EventKind::RemediationFinished {
                expected: gitstate_core::CommitId::parse(&"a".repeat(40)).unwrap(),
                attempt: i,
                ok: false,
                exit_code: Some(1),
                detail: "x".repeat(200),
                output_tail: None,
            },
        }
    }

    #[test]
    fn events_rotate_by_size_keeping_events_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            StateStore::open(dir.path()).unwrap().with_rotation(Rotation { max_bytes: 4096, keep: 2 });
        for i in 0..200 {
            store.append(&[event(i)]).unwrap();
        }
        let size = |f: &str| std::fs::metadata(dir.path().join(f)).map(|m| m.len());
        assert!(size("events.jsonl").unwrap() < 4096 + 512);
        assert!(size("events.jsonl.1").unwrap() >= 4096);
        assert!(size("events.jsonl.2").is_ok());
        assert!(size("events.jsonl.3").is_err(), "only events_keep old files");
        // The current file and its predecessor hold the newest events, in order, none lost.
        let newest = StateStore::events(dir.path(), usize::MAX).unwrap();
        let attempts = |evs: &[Event]| -> Vec<u32> {
            evs.iter()
                .filter_map(|e| match e.kind {
                    gitstate_core::EventKind::RemediationFinished { attempt, .. } => Some(attempt),
                    _ => None,
                })
                .collect()
        };
        let got = attempts(&newest);
        assert_eq!(*got.last().unwrap(), 199);
        let older = parse_events(&std::fs::read(dir.path().join("events.jsonl.1")).unwrap(), usize::MAX);
        assert_eq!(attempts(&older).last().unwrap() + 1, got[0], "rotation loses nothing between files");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_never_swallows_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.append(&[event(1)]).unwrap();
        // A crash mid-append leaves half a line.
        let line = serde_json::to_string(&event(2)).unwrap();
        let mut f = OpenOptions::new().append(true).open(dir.path().join("events.jsonl")).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        assert_eq!(StateStore::events(dir.path(), 10).unwrap(), [event(1)]);
        store.append(&[event(3)]).unwrap();
        assert_eq!(StateStore::events(dir.path(), 10).unwrap(), [event(1), event(3)]);
        assert_eq!(StateStore::events(dir.path(), 1).unwrap(), [event(3)]);
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Any bytes: no panic; every complete event line in them is read, in order.
        #[test]
        fn arbitrary_bytes_in_events_read_the_complete_lines(
            chunks in proptest::collection::vec(
                proptest::prop_oneof![
                    (0u32..50).prop_map(|i| serde_json::to_string(&event(i)).unwrap() + "\n"),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)
                        .prop_map(|b: Vec<u8>| String::from_utf8_lossy(&b).replace('\n', "") + "\n"),
                ],
                0..12,
            ),
            torn in 0usize..200,
        ) {
            let mut bytes: Vec<u8> = chunks.concat().into_bytes();
            let want: Vec<Event> = chunks.iter().filter_map(|c| serde_json::from_str(c.trim_end()).ok()).collect();
            let last = serde_json::to_string(&event(99)).unwrap();
            bytes.extend_from_slice(&last.as_bytes()[..torn.min(last.len() - 1)]);
            proptest::prop_assert_eq!(parse_events(&bytes, usize::MAX), want);
        }
    }

    fn env_state(failures: u32, in_sync_at: i64) -> EnvState {
        EnvState {
            consecutive_probe_failures: failures,
            last_in_sync_at: Some(jiff::Timestamp::from_second(1_800_000_000 + in_sync_at).unwrap()),
            ..EnvState::default()
        }
    }

    fn file_len(dir: &Path, name: &str) -> u64 {
        std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
    }

    #[test]
    fn a_quiet_pass_writes_nothing_and_in_sync_times_are_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let names: Vec<EnvName> = (0..100).map(|i| EnvName::new(&format!("e{i}")).unwrap()).collect();
        let pass = |failures: u32, at: i64| -> Vec<(EnvName, EnvState)> {
            names.iter().map(|n| (n.clone(), env_state(failures, at))).collect()
        };
        store.save(&pass(0, 0)).unwrap();
        let (json, log) = (file_len(dir.path(), "state.json"), file_len(dir.path(), "state.log"));
        assert!(log > 100 * 40, "the first pass logs every environment: {log}");
        // Ten quiet passes: only the in-sync time moves; nothing is written.
        for at in 1..=10 {
            store.save(&pass(0, at)).unwrap();
        }
        assert_eq!((file_len(dir.path(), "state.json"), file_len(dir.path(), "state.log")), (json, log));
        // One environment changes: one line.
        let mut changed = pass(0, 11);
        changed[7].1.consecutive_probe_failures = 1;
        store.save(&changed).unwrap();
        let grown = file_len(dir.path(), "state.log") - log;
        assert!(grown > 0 && grown < 400, "one environment's line, not the fleet: {grown} bytes");
        let read = StateStore::read(dir.path()).unwrap();
        assert_eq!(read.environments[&names[7]], changed[7].1, "a changed one is written whole");
        assert_eq!(read.environments[&names[0]], env_state(0, 0), "an in-sync time waits");
        assert_eq!(store.environments()[&names[0]], env_state(0, 11), "the store itself knows it");
        store.flush().unwrap();
        let read = StateStore::read(dir.path()).unwrap();
        assert_eq!(read.environments, store.environments());
        assert_eq!(file_len(dir.path(), "state.log"), log::header(read.generation).len() as u64);
    }

    /// What a store must have on disk after each step, whatever happens to the process.
    #[derive(Debug, Clone)]
    enum Step {
        /// A pass saves these (environment index, failures, in-sync time) states.
        Save(Vec<(u8, u32, i64)>),
        Forget(u8),
        Outbox(u32),
        Flush,
        /// The process dies mid-append: part of a line, never acknowledged, is on disk.
        Torn(Vec<u8>),
        /// The process dies between writing a snapshot and replacing the log: the log of
        /// the generation before is left.
        StaleLog,
        /// A new process opens the store.
        Reopen,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => proptest::collection::vec((0u8..6, 0u32..3, 0i64..1000), 0..6).prop_map(Step::Save),
            1 => (0u8..6).prop_map(Step::Forget),
            1 => (0u32..3).prop_map(Step::Outbox),
            1 => Just(Step::Flush),
            1 => proptest::collection::vec(any::<u8>(), 0..600).prop_map(Step::Torn),
            1 => Just(Step::StaleLog),
            1 => Just(Step::Reopen),
        ]
    }

    /// Two states are the same but for `last_in_sync_at`.
    fn same_but_in_sync(a: &EnvState, b: &EnvState) -> bool {
        EnvState { last_in_sync_at: None, ..a.clone() } == EnvState { last_in_sync_at: None, ..b.clone() }
    }

    proptest::proptest! {
        // Each case writes and syncs files: capped when scripts/fuzz asks for more.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(gitstate_testkit::proptest_cases(128)))]

        /// The store against a model of what SPEC §7 promises: after every acknowledged
        /// write, a reader (another process) sees every change but in-sync times, which are
        /// never older than the last flush or further back than what was written; torn
        /// appends and a crash mid-compaction lose nothing acknowledged; a small
        /// compaction threshold makes compactions frequent.
        #[test]
        fn the_store_keeps_every_acknowledged_change(steps in proptest::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let open = || { let mut s = StateStore::open(dir.path()).unwrap(); s.compact_above = 600; s };
            let mut store = open();
            let name = |i: u8| EnvName::new(&format!("env-{i}")).unwrap();
            // The model: what was acknowledged, and the in-sync times certainly on disk.
            let mut model: BTreeMap<EnvName, EnvState> = BTreeMap::new();
            let mut flushed: BTreeMap<EnvName, EnvState> = BTreeMap::new();
            let mut outbox = Outbox::default();
            let mut previous_log: Option<Vec<u8>> = None;
            let mut clock = 0;
            for step in steps {
                let log_before = std::fs::read(StateStore::log_path(dir.path())).ok();
                let generation_before = StateStore::read(dir.path()).unwrap().generation;
                let reopened = matches!(step, Step::Torn(_) | Step::StaleLog | Step::Reopen);
                match step {
                    Step::Save(states) => {
                        // In-sync times only move forwards, as the clock does; `same` keeps one.
                        let states: Vec<_> = states
                            .into_iter()
                            .map(|(i, f, same)| {
                                clock += i64::from(same % 2 == 0);
                                (name(i), env_state(f, clock))
                            })
                            .collect();
                        store.save(&states).unwrap();
                        for (n, s) in states {
                            if model.get(&n).is_none_or(|old| !same_but_in_sync(old, &s)) {
                                flushed.insert(n.clone(), s.clone());
                            }
                            model.insert(n, s);
                        }
                    }
                    Step::Forget(i) => {
                        store.forget(&[name(i)]).unwrap();
                        model.remove(&name(i));
                        flushed.remove(&name(i));
                    }
                    Step::Outbox(n) => {
                        outbox.failure_noted = (0..n).map(|k| (format!("k{k}"), jiff::Timestamp::UNIX_EPOCH)).collect();
                        store.save_outbox(&outbox).unwrap();
                    }
                    Step::Flush => {
                        store.flush().unwrap();
                        flushed = model.clone();
                    }
                    Step::Torn(bytes) => {
                        let bytes: Vec<u8> = bytes.into_iter().filter(|b| *b != b'\n').collect();
                        drop(store);
                        let mut f = OpenOptions::new().append(true).create(true).open(StateStore::log_path(dir.path())).unwrap();
                        f.write_all(&bytes).unwrap();
                        store = open();
                    }
                    Step::StaleLog => {
                        // Only right after a compaction: the new log holds nothing yet.
                        let fresh = log_before.as_deref() == Some(&log::header(generation_before)[..]);
                        drop(store);
                        if let Some(old) = previous_log.as_ref().filter(|_| fresh) {
                            std::fs::write(StateStore::log_path(dir.path()), old).unwrap();
                        }
                        store = open();
                    }
                    Step::Reopen => {
                        drop(store);
                        store = open();
                    }
                }
                let read = StateStore::read(dir.path()).unwrap();
                if read.generation != generation_before {
                    previous_log = log_before;
                }
                proptest::prop_assert_eq!(&read.outbox, &outbox);
                proptest::prop_assert_eq!(read.environments.keys().collect::<Vec<_>>(), model.keys().collect::<Vec<_>>());
                for (n, s) in &read.environments {
                    proptest::prop_assert!(same_but_in_sync(s, &model[n]), "{n}: {s:?} vs {:?}", model[n]);
                    // The in-sync time on disk is at least the one certainly written.
                    proptest::prop_assert!(s.last_in_sync_at >= flushed[n].last_in_sync_at, "{n}");
                }
                // The store's own view is exact (after a reopen it is what the disk says).
                let mine = store.environments();
                for (n, s) in &mine {
                    proptest::prop_assert!(same_but_in_sync(s, &model[n]));
                }
                // A new process knows the in-sync times on disk, not those the dead one held.
                if reopened {
                    model = mine.clone();
                    flushed = mine;
                }
            }
        }
    }

    /// gitstate 0.1 kept undelivered notifications in each environment's state; they move
    /// to the outbox when read, and nothing else changes.
    #[test]
    fn undelivered_notifications_of_0_1_move_to_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let note = serde_json::json!({
            "sink": "webhook", "failures": 2,
            "notification": {
                "event": "alarm_raised", "alarm": "drift", "environment": "production",
                "reference": "refs/heads/environments/production", "expected_sha": "a".repeat(40),
                "since": "2026-11-24T06:00:00Z", "ended_at": null, "resolution": null,
                "summary": "production does not run aaaaaaaaaaaa", "targets": []
            }
        });
        let old = serde_json::json!({"schema": 1, "environments": {"production": {
            "consecutive_probe_failures": 2, "undelivered": [note]
        }}});
        std::fs::write(StateStore::state_path(dir.path()), old.to_string()).unwrap();
        let state = StateStore::read(dir.path()).unwrap();
        assert_eq!(state.outbox.pending.len(), 1);
        assert_eq!(state.outbox.pending[0].failures, 2);
        assert_eq!(state.environments[&EnvName::new("production").unwrap()].consecutive_probe_failures, 2);
        // Written back, it is in the outbox only.
        let store = StateStore::open(dir.path()).unwrap();
        store.save(&[]).unwrap();
        let text = std::fs::read_to_string(StateStore::state_path(dir.path())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["environments"]["production"].get("undelivered").is_none(), "{text}");
        assert_eq!(v["outbox"]["pending"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn saves_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let name = EnvName::new("production").unwrap();
        let st = EnvState { consecutive_probe_failures: 2, ..EnvState::default() };
        store.save(&[(name.clone(), st.clone())]).unwrap();
        assert_eq!(StateStore::read(dir.path()).unwrap().environments[&name], st);
        // State may name internal hosts and hold undelivered alarms: its owner's only.
        let at = jiff::Timestamp::now();
        let kind = gitstate_core::EventKind::DriftDetected {
            expected: gitstate_core::CommitId::parse(&"a".repeat(40)).unwrap(),
            status: gitstate_core::Status::Behind,
        };
        store.append(&[gitstate_core::Event { at, environment: name, kind }]).unwrap();
        let _lock = StateStore::lock(dir.path()).unwrap();
        store.compact(&mut store.inner()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in ["state.json", "state.log", "events.jsonl", "lock"] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }

    /// Whatever `state.json` holds, reading it gives a state or an error naming the file;
    /// the file is never changed by reading.
    fn check_state_bytes(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = StateStore::state_path(dir.path());
        std::fs::write(&path, bytes).unwrap();
        match StateStore::read(dir.path()) {
            Ok(state) => {
                // What was read writes back and reads again the same.
                let store = StateStore::open(dir.path()).unwrap();
                let envs: Vec<_> = state.environments.clone().into_iter().collect();
                store.save(&envs).unwrap();
                assert_eq!(StateStore::read(dir.path()).unwrap().environments, state.environments);
            }
            Err(e) => {
                assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "a corrupt state is kept as it was");
            }
        }
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            "\\PC{0,16}".prop_map(serde_json::Value::from),
            "[0-9a-f]{40}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("2026-11-24T06:00:00Z")),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_as_state_are_read_or_named(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            check_state_bytes(&bytes);
        }

        /// Whatever `state.log` holds after a real snapshot: a state or an error naming the
        /// log and the line; reading changes nothing; a state read is written on.
        #[test]
        fn arbitrary_bytes_as_the_log_are_read_or_named(
            lines in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(log::header(0)),
                (0u32..3).prop_map(|f| log::encode(&[log::Line::Env(Box::new(log::EnvLine {
                    name: EnvName::new("production").unwrap(), state: env_state(f, 0) }))])),
                proptest::strategy::Just(b"{\"forget\":\"production\"}\n".to_vec()),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            ], 0..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let bytes = lines.concat();
            let path = StateStore::log_path(dir.path());
            std::fs::write(&path, &bytes).unwrap();
            match StateStore::read(dir.path()) {
                Ok(state) => {
                    let store = StateStore::open(dir.path()).unwrap();
                    let more = (EnvName::new("staging").unwrap(), env_state(2, 0));
                    store.save(std::slice::from_ref(&more)).unwrap();
                    let again = StateStore::read(dir.path()).unwrap();
                    proptest::prop_assert_eq!(again.environments.get(&more.0), Some(&more.1));
                    proptest::prop_assert_eq!(again.environments.len(), state.environments.len() + usize::from(!state.environments.contains_key(&more.0)));
                }
                Err(e) => {
                    proptest::prop_assert!(e.to_string().contains(&format!("{}:", path.display())), "{}", e);
                    proptest::prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
                }
            }
        }

        #[test]
        fn arbitrary_values_in_a_real_state(
            value in any_json(),
            at in proptest::sample::select(vec!["expected", "incident", "alarms", "consecutive_probe_failures", "last_in_sync_at", "undelivered", "phase", "unknown_field"]),
        ) {
            let mut doc = serde_json::json!({
                "schema": 1,
                "environments": {"production": {"consecutive_probe_failures": 0}}
            });
            doc["environments"]["production"][at] = value;
            check_state_bytes(&serde_json::to_vec(&doc).unwrap());
        }
    }

    /// Every state file that ever crashed or fooled the reader, replayed.
    #[test]
    fn the_state_corpus_replays() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus/state");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            check_state_bytes(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 4);
    }
}
