//! The state directory (SPEC §7): `state.json` (what the loop remembers, written
//! atomically after each pass and before each remediation starts), `lock` (one
//! `reconcile` or `watch` at a time; the holder's pid inside), and `events.jsonl` (the
//! append-only audit trail). Entry type: [`StateStore`], which is also the engine's
//! [`Journal`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub mod overrides;

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
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
    state: Mutex<StateFile>,
    rotation: Rotation,
    /// The latest events, oldest first (at most [`RECENT`]), for the dashboard.
    recent: Mutex<std::collections::VecDeque<Event>>,
}

/// Events kept in memory for the dashboard.
const RECENT: usize = 500;

impl StateStore {
    /// `state.json` under `dir`.
    pub fn state_path(dir: &Path) -> PathBuf {
        dir.join("state.json")
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

    /// Reads `state.json` (an empty state when there is none). A file that does not parse
    /// is an error naming it; it is never reset.
    pub fn read(dir: &Path) -> Result<StateFile, StateError> {
        let path = Self::state_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        let corrupt =
            |e: serde_json::Error| StateError::Corrupt { path: path.clone(), message: e.to_string() };
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
        let moved = migrate_undelivered(&mut value).map_err(corrupt)?;
        let mut state: StateFile = serde_json::from_value(value).map_err(corrupt)?;
        state.outbox.pending.extend(moved);
        if state.schema != StateFile::SCHEMA {
            return Err(StateError::Corrupt { path, message: format!("unknown schema {}", state.schema) });
        }
        Ok(state)
    }

    /// Opens the store of `dir` with its current content.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let recent = Self::events(dir, RECENT).unwrap_or_default().into();
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(Self::read(dir)?),
            rotation: Rotation::default(),
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

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of every environment's state.
    pub fn environments(&self) -> BTreeMap<EnvName, EnvState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).environments.clone()
    }

    /// Merges `states` in and writes `state.json` atomically.
    pub fn save(&self, states: &[(EnvName, EnvState)]) -> Result<(), StateError> {
        self.change(|file| {
            for (name, s) in states {
                file.environments.insert(name.clone(), s.clone());
            }
        })
    }

    /// Removes environments' states and writes `state.json` atomically.
    pub fn forget(&self, names: &[EnvName]) -> Result<(), StateError> {
        self.change(|file| {
            for name in names {
                file.environments.remove(name);
            }
        })
    }

    fn change(&self, f: impl FnOnce(&mut StateFile)) -> Result<(), StateError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
        let mut json = serde_json::to_vec_pretty(&*guard)
            .map_err(|e| StateError::Corrupt { path: Self::state_path(&self.dir), message: e.to_string() })?;
        json.push(b'\n');
        let path = Self::state_path(&self.dir);
        crate::fsutil::write_atomic(&path, &json).map_err(io(&path))
    }

    /// Appends events to `events.jsonl`, one JSON object a line, rotating it first when it
    /// has grown past its size. A torn last line (a crash mid-append) is ended first, so
    /// that it never swallows the next event.
    pub fn append(&self, events: &[Event]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        let _serial = self.state.lock().unwrap_or_else(|p| p.into_inner());
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

#[async_trait]
impl Journal for StateStore {
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        self.save(states).map_err(|e| JournalError {
            path: Self::state_path(&self.dir).display().to_string(),
            message: e.to_string(),
        })
    }

    async fn record(&self, events: &[Event]) -> Result<(), JournalError> {
        self.append(events).map_err(|e| JournalError {
            path: self.dir.join("events.jsonl").display().to_string(),
            message: e.to_string(),
        })
    }

    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError> {
        self.forget(environments).map_err(|e| JournalError {
            path: Self::state_path(&self.dir).display().to_string(),
            message: e.to_string(),
        })
    }

    async fn outbox(&self) -> Result<Outbox, JournalError> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).outbox.clone())
    }

    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError> {
        self.change(|file| file.outbox = outbox.clone()).map_err(|e| JournalError {
            path: Self::state_path(&self.dir).display().to_string(),
            message: e.to_string(),
        })
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
        use std::os::unix::fs::PermissionsExt;
        for f in ["state.json", "events.jsonl", "lock"] {
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
