//! The store contract suite (feature `contract-tests`): what every [`Store`] promises
//! (SPEC §7 "State", §14), written once and run by each store's own tests against the
//! real thing, the way `object_store` runs its shared integration tests against every
//! backend. [`FileStore`](super::FileStore) runs it in this crate's `tests/contract.rs`,
//! the PostgreSQL store in `gitstate-postgres`'s.
//!
//! A store's tests implement the small [`Harness`] (where a store lives, and how its
//! process dies, is torn mid-write, finds its record damaged, or meets a second writer)
//! and call [`all`]:
//!
//! ```ignore
//! #[tokio::test]
//! async fn the_store_keeps_the_contract() {
//!     gitstate_runtime::store::contract::all(&MyHarness::new()).await;
//! }
//! ```
//!
//! Each test starts from a new, empty [`Harness::place`] and asserts whole values: the
//! records ([`EnvState`]s compared whole), the outbox, the events in order. What is one
//! store's own stays in its own tests: the rotation of `events.jsonl` by size, for one,
//! is the file store's (PostgreSQL keeps every event), tested in its `tests.rs`; so are
//! the file store's exact bytes on disk and the PostgreSQL store's migrations.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gitstate_core::{
    AlarmKind, CommitId, EnvName, EnvState, Event, EventKind, ExpectedRecord, Incident, Journal, OpenAlarm,
    Outbox, Phase, Status, Undelivered,
};
use jiff::Timestamp;

use super::{Store, StoreError};
use crate::controls::Suspension;

/// How the suite reaches one kind of store: where it lives, and what can happen to the
/// process that writes it. Every method panics when the harness itself fails (a test
/// fixture, not the store under test); only [`Harness::open`] and
/// [`Harness::second_writer`] return the store's own errors, which are what is tested.
#[async_trait]
pub trait Harness: Sync {
    /// The store under test.
    type Store: Store;
    /// Where one store lives (a state directory, a database), removed when dropped.
    type Place: Send + Sync;

    /// A new, empty place for the test called `test`.
    async fn place(&self, test: &str) -> Self::Place;

    /// Opens the store of `place` as a new process would, ready to write: the file store
    /// takes its lock, the PostgreSQL store connects and takes the lead (waiting the few
    /// moments the server needs to notice a dead leader's session).
    async fn open(&self, place: &Self::Place) -> Result<Self::Store, StoreError>;

    /// The process dies without flushing anything: its lock, or its session, goes with it.
    async fn crash(&self, store: Self::Store);

    /// The process dies in the middle of a write (to `env`'s record and the events) that
    /// was never acknowledged: files, half a line at the end of `state.log` and of
    /// `events.jsonl`; PostgreSQL, a transaction that changed `env`'s row and added an
    /// event, its connection dropped before the commit.
    async fn torn_write(&self, place: &Self::Place, store: Self::Store, env: &EnvName);

    /// Damages the stored record of `env` (no process has the store open) so that it no
    /// longer parses; returns the name the error must carry: the file (and line), or the
    /// row, e.g. `gitstate_environments row (cluster "default", name "production")`.
    async fn corrupt(&self, place: &Self::Place, env: &EnvName) -> String;

    /// Every record of `place` as stored, byte for byte (files: `state.json` and
    /// `state.log`; PostgreSQL: the rows): to see that a reader changed nothing.
    async fn stored(&self, place: &Self::Place) -> Vec<u8>;

    /// A second process asks to write while the first holds the store: the file store
    /// refuses the lock ([`StoreError::Locked`] naming `pid <ours>`); the PostgreSQL store
    /// opens but does not get the lead (its writes fail with [`StoreError::NotLeader`]).
    async fn second_writer(&self, place: &Self::Place) -> Result<Self::Store, StoreError>;

    /// Takes `store`'s hold away behind its back while its process lives (PostgreSQL: an
    /// administrator terminates its session, and this returns once the store has noticed);
    /// false where that cannot happen (a file lock is held until its process dies).
    async fn cut(&self, place: &Self::Place, store: &Self::Store) -> bool;
}

/// Runs every test of the suite, each in a place of its own.
pub async fn all(h: &impl Harness) {
    acknowledged_changes_survive_a_crash(h).await;
    a_torn_write_loses_nothing_acknowledged_and_shows_nothing_of_itself(h).await;
    in_sync_times_are_held_back_until_a_flush(h).await;
    overrides_round_trip_and_empty_ones_are_pruned(h).await;
    operators_events_are_read_back_after_the_loops_own(h).await;
    a_corrupt_record_is_named_and_left_untouched(h).await;
    one_writer_at_a_time_and_a_cut_one_is_fenced(h).await;
}

/// Checkpoints of three environments, events, an outbox, one environment changed and
/// one forgotten, then a crash: a new process finds exactly what was acknowledged.
pub async fn acknowledged_changes_survive_a_crash(h: &impl Harness) {
    let place = h.place("acknowledged_changes").await;
    let store = h.open(&place).await.unwrap();
    let (a, b, c) = (name("production"), name("staging"), name("canary"));
    store
        .checkpoint(&[(a.clone(), drifting(1)), (b.clone(), in_sync(0)), (c.clone(), in_sync(5))])
        .await
        .unwrap();
    let events = [event(&a, 1), event(&a, 2), event(&b, 3)];
    store.record(&events[..2]).await.unwrap();
    store.record(&events[2..]).await.unwrap();
    let outbox = outbox();
    store.save_outbox(&outbox).await.unwrap();
    store.checkpoint(&[(a.clone(), drifting(2))]).await.unwrap();
    store.forget(std::slice::from_ref(&b)).await.unwrap();
    let want = BTreeMap::from([(a.clone(), drifting(2)), (c.clone(), in_sync(5))]);
    assert_eq!(store.environments(), want, "the store itself knows what it wrote");
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), want);
    assert_eq!(store.names(), [c.clone(), a.clone()]);
    assert_eq!(store.environments_among(&[a.clone(), b.clone()]), BTreeMap::from([(a, drifting(2))]));
    assert_eq!(store.outbox().await.unwrap(), outbox);
    assert_eq!(store.recent_events(10), events, "every event, oldest first");
    assert_eq!(store.recent_events(2), events[1..], "the latest two");
    h.crash(store).await;
}

/// A write torn by a crash: a new process finds what was acknowledged before it, and
/// nothing of the torn write; what it writes next is read back whole.
pub async fn a_torn_write_loses_nothing_acknowledged_and_shows_nothing_of_itself(h: &impl Harness) {
    let place = h.place("torn_write").await;
    let a = name("production");
    let store = h.open(&place).await.unwrap();
    store.checkpoint(&[(a.clone(), drifting(1))]).await.unwrap();
    store.record(&[event(&a, 1), event(&a, 2)]).await.unwrap();
    h.torn_write(&place, store, &a).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a.clone(), drifting(1))]));
    assert_eq!(store.recent_events(10), [event(&a, 1), event(&a, 2)], "no partial event");
    // The torn part swallows nothing written after it.
    store.checkpoint(&[(a.clone(), drifting(3))]).await.unwrap();
    store.record(&[event(&a, 3)]).await.unwrap();
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a.clone(), drifting(3))]));
    assert_eq!(store.recent_events(10), [event(&a, 1), event(&a, 2), event(&a, 3)]);
    h.crash(store).await;
}

/// A pass that changes nothing but in-sync times writes nothing (SPEC §7: "a quiet pass
/// writes nothing"); [`Store::flush`] writes them; any other change writes the whole record.
pub async fn in_sync_times_are_held_back_until_a_flush(h: &impl Harness) {
    let place = h.place("in_sync_times").await;
    let a = name("production");
    let store = h.open(&place).await.unwrap();
    store.checkpoint(&[(a.clone(), in_sync(0))]).await.unwrap();
    assert!(in_sync(0).same_but_in_sync_time(&in_sync(10)));
    store.checkpoint(&[(a.clone(), in_sync(10))]).await.unwrap();
    assert_eq!(store.environments()[&a], in_sync(10), "the store itself knows the latest");
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a.clone(), in_sync(0))]), "held back, lost in a crash");
    store.checkpoint(&[(a.clone(), in_sync(20))]).await.unwrap();
    store.flush().await.unwrap();
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a.clone(), in_sync(20))]), "written by flush");
    store.checkpoint(&[(a.clone(), in_sync(30))]).await.unwrap();
    let failing = EnvState { consecutive_probe_failures: 1, ..in_sync(40) };
    store.checkpoint(&[(a.clone(), failing.clone())]).await.unwrap();
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a, failing)]), "written whole, in-sync time too");
    h.crash(store).await;
}

/// What operators said survives a new process; an environment with nothing left said is
/// pruned, the others kept.
pub async fn overrides_round_trip_and_empty_ones_are_pruned(h: &impl Harness) {
    let place = h.place("overrides").await;
    let (a, b) = (name("production"), name("staging"));
    let now = at(100);
    let suspension = Suspension {
        reason: Some("incident 42".into()),
        by: "ada".into(),
        via: "cli".into(),
        since: at(50),
        until: None,
    };
    let store = h.open(&place).await.unwrap();
    assert!(store.overrides().unwrap().environments.is_empty());
    let (a2, b2, s2) = (a.clone(), b.clone(), suspension.clone());
    let written = store
        .update_overrides(Box::new(move |o| {
            o.environments.entry(a2).or_default().suspension = Some(s2);
            o.environments.entry(b2).or_default().retry_requested_at = Some(at(60));
        }))
        .await
        .unwrap();
    assert_eq!(written.environments.keys().collect::<Vec<_>>(), [&a, &b]);
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    store.refresh().await.unwrap();
    let read = store.overrides().unwrap();
    assert_eq!(read, written);
    assert_eq!(read.environments[&a].suspension, Some(suspension));
    assert_eq!(read.controls(&a, now).suspended, Some(None), "suspended until resumed");
    assert_eq!(read.controls(&b, now).retry_requested_at, Some(at(60)));
    let a2 = a.clone();
    let written = store
        .update_overrides(Box::new(move |o| {
            if let Some(o) = o.environments.get_mut(&a2) {
                o.suspension = None;
            }
        }))
        .await
        .unwrap();
    assert_eq!(written.environments.keys().collect::<Vec<_>>(), [&b], "nothing left said is nothing kept");
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    let read = store.overrides().unwrap();
    assert_eq!(read, written);
    assert_eq!(read.controls(&a, now).suspended, None);
    h.crash(store).await;
}

/// Events an operator's command appended (whoever leads) are read back by a new
/// process, after the loop's own.
pub async fn operators_events_are_read_back_after_the_loops_own(h: &impl Harness) {
    let place = h.place("operators_events").await;
    let a = name("production");
    let store = h.open(&place).await.unwrap();
    store.record(&[event(&a, 1), event(&a, 2)]).await.unwrap();
    let suspended = Event {
        at: at(70),
        environment: a.clone(),
        kind: EventKind::Suspended {
            reason: Some("incident 42".into()),
            by: "ada".into(),
            via: "cli".into(),
            until: None,
        },
    };
    store.append_unfenced(std::slice::from_ref(&suspended)).await.unwrap();
    h.crash(store).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.recent_events(10), [event(&a, 1), event(&a, 2), suspended]);
    h.crash(store).await;
}

/// A record that does not parse is an error naming it, however often it is read, and
/// reading it changes nothing: it is never reset.
pub async fn a_corrupt_record_is_named_and_left_untouched(h: &impl Harness) {
    let place = h.place("corrupt_record").await;
    let (a, b) = (name("production"), name("staging"));
    let store = h.open(&place).await.unwrap();
    store.checkpoint(&[(a.clone(), drifting(1)), (b.clone(), in_sync(0))]).await.unwrap();
    h.crash(store).await;

    let named = h.corrupt(&place, &a).await;
    let before = h.stored(&place).await;
    let first = h.open(&place).await.unwrap_err();
    assert!(matches!(first, StoreError::Corrupt { .. }), "{first:?}");
    let message = first.to_string();
    assert!(message.contains(&named), "{message} names {named}");
    let again = h.open(&place).await.unwrap_err();
    assert_eq!(again.to_string(), message, "still corrupt, the same way");
    assert_eq!(h.stored(&place).await, before, "left untouched");
}

/// One process writes at a time: a second one is refused the lock, or gets no lead and
/// writes nothing; once the first dies a new one writes; where a living writer's hold
/// can be cut, its writes are fenced from then on.
pub async fn one_writer_at_a_time_and_a_cut_one_is_fenced(h: &impl Harness) {
    let place = h.place("one_writer").await;
    let a = name("production");
    let first = h.open(&place).await.unwrap();
    first.checkpoint(&[(a.clone(), drifting(1))]).await.unwrap();
    first.record(&[event(&a, 1)]).await.unwrap();
    match h.second_writer(&place).await {
        Err(StoreError::Locked { holder, .. }) => assert_eq!(holder, format!("pid {}", std::process::id())),
        Err(e) => panic!("a second writer is refused with Locked, not {e:?}"),
        Ok(second) => {
            let e = second.checkpoint(&[(a.clone(), drifting(9))]).await.unwrap_err();
            assert!(e.message.contains("not the leader"), "{e}");
            let e = second.record(&[event(&a, 9)]).await.unwrap_err();
            assert!(e.message.contains("not the leader"), "{e}");
            assert!(second.forget(std::slice::from_ref(&a)).await.is_err());
            assert!(second.save_outbox(&outbox()).await.is_err());
            h.crash(second).await;
        }
    }
    // What the first wrote is all there is.
    first.checkpoint(&[(a.clone(), drifting(2))]).await.unwrap();
    let written = if h.cut(&place, &first).await {
        let next = h.open(&place).await.unwrap();
        assert_eq!(next.environments(), BTreeMap::from([(a.clone(), drifting(2))]));
        next.checkpoint(&[(a.clone(), drifting(3))]).await.unwrap();
        let e = first.checkpoint(&[(a.clone(), drifting(9))]).await.unwrap_err();
        assert!(e.message.contains("not the leader"), "a cut writer is fenced: {e}");
        assert!(first.record(&[event(&a, 9)]).await.is_err());
        h.crash(next).await;
        drifting(3)
    } else {
        drifting(2)
    };
    h.crash(first).await;

    let store = h.open(&place).await.unwrap();
    assert_eq!(store.environments(), BTreeMap::from([(a.clone(), written)]));
    assert_eq!(store.recent_events(10), [event(&a, 1)], "nothing of the refused writers");
    assert!(store.outbox().await.unwrap().is_empty());
    h.crash(store).await;
}

fn name(n: &str) -> EnvName {
    EnvName::new(n).unwrap()
}

/// A time of the suite: `s` seconds after 2027-01-15T08:00:00Z.
fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn commit(c: char) -> CommitId {
    CommitId::parse(&c.to_string().repeat(40)).unwrap()
}

/// An environment in sync since `s`, every field but the incident's set.
fn in_sync(s: i64) -> EnvState {
    EnvState {
        reference: Some("refs/heads/environments/production".into()),
        expected: Some(ExpectedRecord {
            commit: commit('a'),
            since: at(-600),
            since_known: true,
            from_reflog: true,
            converged: true,
        }),
        phase: Some(Phase::InSync),
        incident: None,
        alarms: Vec::new(),
        consecutive_probe_failures: 0,
        last_in_sync_at: Some(at(s)),
        last_retry: Some(at(-900)),
        last_convergence_lag_s: Some(12.5),
        verification: Some(Box::new(gitstate_core::verify::Verification {
            sha: commit('a'),
            state: gitstate_core::verify::VerificationState::Verified,
            since: at(-500),
            until: at(-400),
            next_check_at: None,
            failures: vec![gitstate_core::verify::CheckFailure {
                check: "smoke".into(),
                at: at(-450),
                reason: "exit 1".into(),
            }],
        })),
        verified: vec![commit('a')],
        converged_on: vec![commit('a')],
        running: vec![gitstate_core::Running {
            target: "web".into(),
            instance: "https://eu.example.com/meta".into(),
            sha: commit('a').to_string(),
            since: at(-590),
        }],
        last_trusted: Some(commit('a')),
        trust: Some(
            serde_json::from_value(serde_json::json!({
                "sha": commit('a'), "state": "trusted", "signer": "ada@example.com", "key": "SHA256:abc"
            }))
            .unwrap(),
        ),
    }
}

/// An environment drifted, `attempts` remediations in, its drift alarm open.
fn drifting(attempts: u32) -> EnvState {
    EnvState {
        expected: Some(ExpectedRecord {
            commit: commit('b'),
            since: at(-300),
            since_known: false,
            from_reflog: false,
            converged: false,
        }),
        phase: Some(Phase::Alarm),
        incident: Some(Box::new(Incident {
            since: at(-200),
            attempts,
            last_attempt_at: Some(at(-100)),
            next_attempt_at: Some(at(200)),
            in_sync_since: None,
            flapping: true,
        })),
        alarms: vec![OpenAlarm {
            kind: AlarmKind::Drift,
            since: at(-50),
            last_notified_at: Some(at(-40)),
            cause: Some(gitstate_core::Cause::Commit(commit('b'))),
        }],
        consecutive_probe_failures: 2,
        ..in_sync(-700)
    }
}

/// The `i`th event of the suite.
fn event(env: &EnvName, i: u32) -> Event {
    Event {
        at: at(i64::from(i)),
        environment: env.clone(),
        kind: EventKind::DriftDetected { expected: commit('b'), status: Status::Behind },
    }
}

/// An outbox with a notification waiting, a failure noted and an open cause (SPEC §17:
/// causes survive restarts and failover).
fn outbox() -> Outbox {
    let cause: gitstate_core::CauseRecord = serde_json::from_value(serde_json::json!({
        "cause": "origin:10.0.0.7:443", "alarm": "unreachable", "since": "2027-01-15T07:58:00Z",
        "grouped_at": "2027-01-15T07:58:10Z",
        "members": [
            {"environment": "production", "alarm": "unreachable", "since": "2027-01-15T07:58:00Z", "severity": "critical"},
            {"environment": "staging", "alarm": "unreachable", "since": "2027-01-15T07:58:05Z", "severity": "warning",
             "labels": {"team": "shop"}, "released": true}
        ],
        "told": {"webhook": {"members": ["production", "staging"], "at": "2027-01-15T07:58:10Z"}}
    }))
    .unwrap();
    let pending: Undelivered = serde_json::from_value(serde_json::json!({
        "sink": "webhook", "failures": 2, "last_try": "2027-01-15T07:59:00Z", "skipped": 1,
        "notification": {
            "event": "alarm_raised", "alarm": "drift", "environment": "production",
            "reference": "refs/heads/environments/production", "expected_sha": "b".repeat(40),
            "since": "2027-01-15T07:59:10Z", "ended_at": null, "resolution": null,
            "summary": "production does not run bbbbbbbbbbbb", "targets": []
        }
    }))
    .unwrap();
    Outbox {
        pending: vec![pending],
        failure_noted: BTreeMap::from([("production/webhook/drift".to_owned(), at(-30))]),
        causes: BTreeMap::from([(cause.cause.to_string(), cause)]),
        source_failures: 2,
    }
}
