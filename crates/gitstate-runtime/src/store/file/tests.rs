//! The file store's own tests (the contract suite runs in `tests/`).

use super::*;
use events::parse_events;
use std::fs::OpenOptions;
use std::io::Write;

#[test]
fn corrupt_state_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = FileStore::state_path(dir.path());
    std::fs::write(&path, "{not json").unwrap();
    let e = FileStore::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("corrupt state file") && e.contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
}

#[test]
fn a_second_lock_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let held = FileStore::lock(dir.path()).unwrap();
    let e = FileStore::lock(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    drop(held);
    assert!(FileStore::lock(dir.path()).is_ok());
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
    let store = FileStore::open(dir.path()).unwrap().with_rotation(Rotation { max_bytes: 4096, keep: 2 });
    for i in 0..200 {
        store.append(&[event(i)]).unwrap();
    }
    let size = |f: &str| std::fs::metadata(dir.path().join(f)).map(|m| m.len());
    assert!(size("events.jsonl").unwrap() < 4096 + 512);
    assert!(size("events.jsonl.1").unwrap() >= 4096);
    assert!(size("events.jsonl.2").is_ok());
    assert!(size("events.jsonl.3").is_err(), "only events_keep old files");
    // The current file and its predecessor hold the newest events, in order, none lost.
    let newest = FileStore::events(dir.path(), usize::MAX).unwrap();
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
    let store = FileStore::open(dir.path()).unwrap();
    store.append(&[event(1)]).unwrap();
    // A crash mid-append leaves half a line.
    let line = serde_json::to_string(&event(2)).unwrap();
    let mut f = OpenOptions::new().append(true).open(dir.path().join("events.jsonl")).unwrap();
    f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
    assert_eq!(FileStore::events(dir.path(), 10).unwrap(), [event(1)]);
    store.append(&[event(3)]).unwrap();
    assert_eq!(FileStore::events(dir.path(), 10).unwrap(), [event(1), event(3)]);
    assert_eq!(FileStore::events(dir.path(), 1).unwrap(), [event(3)]);
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
    let store = FileStore::open(dir.path()).unwrap();
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
    let read = FileStore::read(dir.path()).unwrap();
    assert_eq!(read.environments[&names[7]], changed[7].1, "a changed one is written whole");
    assert_eq!(read.environments[&names[0]], env_state(0, 0), "an in-sync time waits");
    assert_eq!(store.environments()[&names[0]], env_state(0, 11), "the store itself knows it");
    store.flush().unwrap();
    let read = FileStore::read(dir.path()).unwrap();
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
        let open = || { let mut s = FileStore::open(dir.path()).unwrap(); s.compact_above = 600; s };
        let mut store = open();
        let name = |i: u8| EnvName::new(&format!("env-{i}")).unwrap();
        // The model: what was acknowledged, and the in-sync times certainly on disk.
        let mut model: BTreeMap<EnvName, EnvState> = BTreeMap::new();
        let mut flushed: BTreeMap<EnvName, EnvState> = BTreeMap::new();
        let mut outbox = Outbox::default();
        let mut previous_log: Option<Vec<u8>> = None;
        let mut clock = 0;
        for step in steps {
            let log_before = std::fs::read(FileStore::log_path(dir.path())).ok();
            let generation_before = FileStore::read(dir.path()).unwrap().generation;
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
                    let mut f = OpenOptions::new().append(true).create(true).open(FileStore::log_path(dir.path())).unwrap();
                    f.write_all(&bytes).unwrap();
                    store = open();
                }
                Step::StaleLog => {
                    // Only right after a compaction: the new log holds nothing yet.
                    let fresh = log_before.as_deref() == Some(&log::header(generation_before)[..]);
                    drop(store);
                    if let Some(old) = previous_log.as_ref().filter(|_| fresh) {
                        std::fs::write(FileStore::log_path(dir.path()), old).unwrap();
                    }
                    store = open();
                }
                Step::Reopen => {
                    drop(store);
                    store = open();
                }
            }
            let read = FileStore::read(dir.path()).unwrap();
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
    std::fs::write(FileStore::state_path(dir.path()), old.to_string()).unwrap();
    let state = FileStore::read(dir.path()).unwrap();
    assert_eq!(state.outbox.pending.len(), 1);
    assert_eq!(state.outbox.pending[0].failures, 2);
    assert_eq!(state.environments[&EnvName::new("production").unwrap()].consecutive_probe_failures, 2);
    // Written back, it is in the outbox only.
    let store = FileStore::open(dir.path()).unwrap();
    store.save(&[]).unwrap();
    let text = std::fs::read_to_string(FileStore::state_path(dir.path())).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["environments"]["production"].get("undelivered").is_none(), "{text}");
    assert_eq!(v["outbox"]["pending"].as_array().unwrap().len(), 1);
}

#[test]
fn saves_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let name = EnvName::new("production").unwrap();
    let st = EnvState { consecutive_probe_failures: 2, ..EnvState::default() };
    store.save(&[(name.clone(), st.clone())]).unwrap();
    assert_eq!(FileStore::read(dir.path()).unwrap().environments[&name], st);
    // State may name internal hosts and hold undelivered alarms: its owner's only.
    let at = jiff::Timestamp::now();
    let kind = gitstate_core::EventKind::DriftDetected {
        expected: gitstate_core::CommitId::parse(&"a".repeat(40)).unwrap(),
        status: gitstate_core::Status::Behind,
    };
    store.append(&[gitstate_core::Event { at, environment: name, kind }]).unwrap();
    let _lock = FileStore::lock(dir.path()).unwrap();
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
    let path = FileStore::state_path(dir.path());
    std::fs::write(&path, bytes).unwrap();
    match FileStore::read(dir.path()) {
        Ok(state) => {
            // What was read writes back and reads again the same.
            let store = FileStore::open(dir.path()).unwrap();
            let envs: Vec<_> = state.environments.clone().into_iter().collect();
            store.save(&envs).unwrap();
            assert_eq!(FileStore::read(dir.path()).unwrap().environments, state.environments);
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
        let path = FileStore::log_path(dir.path());
        std::fs::write(&path, &bytes).unwrap();
        match FileStore::read(dir.path()) {
            Ok(state) => {
                let store = FileStore::open(dir.path()).unwrap();
                let more = (EnvName::new("staging").unwrap(), env_state(2, 0));
                store.save(std::slice::from_ref(&more)).unwrap();
                let again = FileStore::read(dir.path()).unwrap();
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

/// `overrides.json` of schema 1 (before vetoes) still reads; a schema this gitstate does
/// not know is an error naming the file, and the file is left as it was.
#[test]
fn overrides_of_an_unknown_schema_are_named_never_reset() {
    use crate::store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overrides.json");
    std::fs::write(
        &path,
        r#"{"schema":1,"environments":{"production":{"retry_requested_at":"2027-01-15T08:00:00Z"}}}"#,
    )
    .unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let o = store.overrides().unwrap();
    assert!(o.environments.values().next().unwrap().vetoes.is_empty());
    let newer = r#"{"schema":3,"environments":{}}"#;
    std::fs::write(&path, newer).unwrap();
    let e = store.overrides().unwrap_err().to_string();
    assert!(e.contains("unknown schema 3") && e.contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}
