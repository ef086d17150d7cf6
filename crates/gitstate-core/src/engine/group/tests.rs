//! The grouping rules, driven by hand: what each kind of sink is told as alarms sharing a
//! cause are raised, repeated and resolved over passes.

use super::*;
use crate::commit::CommitId;

const SHA: &str = "3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a";

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn env(n: &str) -> EnvName {
    n.parse().unwrap()
}

fn note(e: &str, event: AlarmEvent, cause: Option<Cause>, since: i64) -> AlarmNotification {
    AlarmNotification {
        event,
        alarm: AlarmKind::Unreachable,
        environment: env(e),
        reference: "refs/heads/main".into(),
        expected_sha: SHA.parse::<CommitId>().unwrap(),
        since: at(since),
        ended_at: None,
        resolution: None,
        summary: String::new(),
        targets: Vec::new(),
        severity: Severity::Critical,
        labels: [("team".to_owned(), "shop".to_owned()), ("tier".to_owned(), e.to_owned())].into(),
        runbook_url: None,
        cause,
    }
}

fn origin() -> Option<Cause> {
    Some(Cause::Origin("127.0.0.1:8080".into()))
}

fn sinks() -> Vec<(String, Grouping)> {
    vec![
        ("webhook".into(), Grouping::PerCause),
        ("alertmanager".into(), Grouping::Both),
        ("custom".into(), Grouping::PerAlarm),
    ]
}

/// One pass: route, plan, and every send lands (or fails, for the sinks in `failing`).
fn pass(
    causes: &mut BTreeMap<String, CauseRecord>,
    notes: Vec<AlarmNotification>,
    now: Timestamp,
    wait: u64,
    failing: &[&str],
) -> (Routed, Vec<CauseSend>) {
    let routed =
        route(causes, notes, now, Duration::from_secs(wait), &mut |e, _| Cause::Environment(e.clone()));
    let sends =
        plan(causes, &sinks(), &routed.touched, now, Duration::from_secs(wait), Duration::from_secs(3600));
    for s in &sends {
        settle(causes, s, failing.contains(&s.sink.as_str()), now);
    }
    (routed, sends)
}

fn events(sends: &[CauseSend], sink: &str) -> Vec<(CauseEvent, Vec<String>)> {
    sends
        .iter()
        .filter(|s| s.sink == sink)
        .map(|s| (s.note.event, s.note.members.iter().map(|m| m.to_string()).collect()))
        .collect()
}

#[test]
fn fifty_alarms_of_one_origin_are_one_opening_and_one_resolution() {
    let mut causes = BTreeMap::new();
    let names: Vec<String> = (0..50).map(|i| format!("shop-{i:02}")).collect();
    let raises = names.iter().map(|n| note(n, AlarmEvent::AlarmRaised, origin(), 0)).collect();
    let (routed, sends) = pass(&mut causes, raises, at(0), 0, &[]);
    // Grouping sinks get no environment's own raise; the others get all fifty.
    assert!(routed.grouped.is_empty(), "{:?}", routed.grouped);
    assert_eq!(routed.every.len(), 50);
    let opened = events(&sends, "webhook");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].0, CauseEvent::CauseOpened);
    assert_eq!(opened[0].1.len(), 50);
    assert_eq!(events(&sends, "alertmanager").len(), 1);
    assert!(events(&sends, "custom").is_empty());
    let first = sends.iter().find(|s| s.sink == "webhook").unwrap().note.clone();
    assert_eq!(first.labels, [("team".to_owned(), "shop".to_owned())].into(), "only the labels all share");
    assert!(
        first.summary.contains("origin 127.0.0.1:8080") && first.summary.contains("50 environments"),
        "{}",
        first.summary
    );

    // Later passes: repeats and refreshes go nowhere grouped; Alertmanager's cause is refreshed.
    let again = names.iter().map(|n| note(n, AlarmEvent::AlarmFiring, origin(), 0)).collect();
    let (routed, sends) = pass(&mut causes, again, at(30), 0, &[]);
    assert!(routed.grouped.is_empty());
    assert!(events(&sends, "webhook").is_empty());
    assert_eq!(events(&sends, "alertmanager"), vec![(CauseEvent::CauseFiring, opened[0].1.clone())]);

    // All resolve in one pass: one resolution, and the cause is forgotten.
    let resolved = names.iter().map(|n| note(n, AlarmEvent::AlarmResolved, origin(), 0)).collect();
    let (routed, sends) = pass(&mut causes, resolved, at(60), 0, &[]);
    assert!(routed.grouped.is_empty());
    let done = events(&sends, "webhook");
    assert_eq!(done, vec![(CauseEvent::CauseResolved, vec![])]);
    assert_eq!(sends[0].note.id(), first.id(), "the same fingerprint from opening to resolution");
    assert!(causes.is_empty(), "{causes:?}");
}

#[test]
fn a_cause_with_one_member_after_the_wait_is_that_alarm_as_itself() {
    let mut causes = BTreeMap::new();
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmRaised, origin(), 0)], at(0), 10, &[]);
    assert!(routed.grouped.is_empty(), "held while the cause may form");
    assert!(sends.is_empty());
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmFiring, origin(), 0)], at(5), 10, &[]);
    assert!(routed.grouped.is_empty() && sends.is_empty());
    let (routed, _) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmFiring, origin(), 0)], at(10), 10, &[]);
    assert_eq!(
        routed.grouped.iter().map(|n| n.event).collect::<Vec<_>>(),
        [AlarmEvent::AlarmRaised],
        "released"
    );
    let (routed, _) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmRepeated, origin(), 0)], at(20), 10, &[]);
    assert_eq!(routed.grouped.len(), 1, "its repeats go out as itself");
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmResolved, origin(), 0)], at(30), 10, &[]);
    assert_eq!(routed.grouped.iter().map(|n| n.event).collect::<Vec<_>>(), [AlarmEvent::AlarmResolved]);
    assert!(sends.is_empty());
    assert!(causes.is_empty());
}

#[test]
fn an_alarm_that_resolves_while_held_is_never_sent() {
    let mut causes = BTreeMap::new();
    pass(&mut causes, vec![note("a", AlarmEvent::AlarmRaised, origin(), 0)], at(0), 10, &[]);
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmResolved, origin(), 0)], at(4), 10, &[]);
    assert!(routed.grouped.is_empty() && sends.is_empty());
    assert_eq!(routed.every.len(), 1, "Alertmanager still hears of it");
    assert!(causes.is_empty());
}

#[test]
fn members_joining_later_are_one_change_after_the_wait() {
    let mut causes = BTreeMap::new();
    let first = ["a", "b", "c"].map(|n| note(n, AlarmEvent::AlarmRaised, origin(), 0)).to_vec();
    let (_, sends) = pass(&mut causes, first, at(0), 10, &[]);
    assert!(sends.is_empty(), "nothing before the wait");
    let (_, sends) = pass(&mut causes, vec![], at(10), 10, &[]);
    assert_eq!(
        events(&sends, "webhook"),
        vec![(CauseEvent::CauseOpened, vec!["a".into(), "b".into(), "c".into()])]
    );
    // A fourth joins 2 s later: not a page of its own, and no change before the wait.
    let (routed, sends) =
        pass(&mut causes, vec![note("d", AlarmEvent::AlarmRaised, origin(), 12)], at(12), 10, &[]);
    assert!(routed.grouped.is_empty());
    assert!(events(&sends, "webhook").is_empty());
    let (_, sends) = pass(&mut causes, vec![], at(19), 10, &[]);
    assert!(events(&sends, "webhook").is_empty());
    let (_, sends) = pass(&mut causes, vec![], at(20), 10, &[]);
    let changed: Vec<_> = sends.iter().filter(|s| s.sink == "webhook").collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].note.event, CauseEvent::CauseChanged);
    assert_eq!(changed[0].note.joined, vec![env("d")]);
    assert!(changed[0].note.summary.contains("joined: d"), "{}", changed[0].note.summary);
    let (_, sends) = pass(&mut causes, vec![], at(40), 10, &[]);
    assert!(events(&sends, "webhook").is_empty(), "told once");
}

#[test]
fn a_failed_send_is_tried_again_and_never_doubled() {
    let mut causes = BTreeMap::new();
    let raises = ["a", "b"].map(|n| note(n, AlarmEvent::AlarmRaised, origin(), 0)).to_vec();
    let (_, sends) = pass(&mut causes, raises, at(0), 0, &["webhook"]);
    assert_eq!(events(&sends, "webhook").len(), 1);
    assert_eq!(causes.values().next().unwrap().told["webhook"].failures, 1);
    let (_, sends) = pass(&mut causes, vec![], at(1), 0, &[]);
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseOpened, vec!["a".into(), "b".into()])]);
    let (_, sends) = pass(&mut causes, vec![], at(2), 0, &[]);
    assert!(events(&sends, "webhook").is_empty());
    // A resolution that fails is kept until it lands.
    let resolved = ["a", "b"].map(|n| note(n, AlarmEvent::AlarmResolved, origin(), 0)).to_vec();
    let (_, sends) = pass(&mut causes, resolved, at(3), 0, &["webhook"]);
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseResolved, vec![])]);
    assert!(!causes.is_empty(), "kept for the webhook");
    let (_, sends) = pass(&mut causes, vec![], at(4), 0, &[]);
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseResolved, vec![])]);
    assert!(causes.is_empty());
}

/// Found by the property below: an opening that never landed, then every member resolved,
/// left the cause kept forever for a sink that was owed nothing.
#[test]
fn a_cause_whose_opening_never_landed_is_forgotten_when_it_ends() {
    let mut causes = BTreeMap::new();
    let raises = ["a", "b"].map(|n| note(n, AlarmEvent::AlarmRaised, origin(), 0)).to_vec();
    pass(&mut causes, raises, at(0), 0, &["webhook"]);
    let resolved = ["a", "b"].map(|n| note(n, AlarmEvent::AlarmResolved, origin(), 0)).to_vec();
    let (_, sends) = pass(&mut causes, resolved, at(1), 0, &[]);
    assert!(events(&sends, "webhook").is_empty(), "nothing to resolve for a sink never told");
    assert!(causes.is_empty(), "{causes:?}");
}

#[test]
fn the_source_cause_opens_after_unreachable_after_and_holds_back_its_members() {
    let mut causes = BTreeMap::new();
    let mut failures = 0;
    let policy = Policy { unreachable_after: 2, ..Policy::default() };
    let envs: Vec<(EnvName, Policy)> = ["a", "b"].iter().map(|n| (env(n), policy.clone())).collect();
    note_source(&mut causes, &mut failures, SourceSeen::Failed, &envs, at(0));
    assert!(causes.is_empty(), "one failed read is not an outage");
    note_source(&mut causes, &mut failures, SourceSeen::Failed, &envs, at(10));
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmRepeated, None, 0)], at(10), 0, &[]);
    assert!(routed.every.is_empty() && routed.grouped.is_empty(), "a member's own alarm is held back");
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseOpened, vec!["a".into(), "b".into()])]);
    assert_eq!(sends[0].note.cause, Cause::Source);
    note_source(&mut causes, &mut failures, SourceSeen::Failed, &envs, at(20));
    let (_, sends) = pass(&mut causes, vec![], at(20), 0, &[]);
    assert!(events(&sends, "webhook").is_empty(), "no second page");
    note_source(&mut causes, &mut failures, SourceSeen::Read, &envs, at(30));
    let (routed, sends) =
        pass(&mut causes, vec![note("a", AlarmEvent::AlarmRepeated, None, 0)], at(30), 0, &[]);
    assert_eq!(routed.grouped.len(), 1, "no longer held back");
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseResolved, vec![])]);
    assert_eq!(failures, 0);
}

#[test]
fn an_environments_own_cause_goes_everywhere_at_once_when_nothing_can_share_it() {
    let mut causes = BTreeMap::new();
    let own = Some(Cause::Environment(env("a")));
    // No wait; or a kind no other environment can share.
    for (c, kind, wait) in [(None, AlarmKind::Unreachable, 0), (own, AlarmKind::Vetoed, 30)] {
        let mut raise = note("a", AlarmEvent::AlarmRaised, c, 0);
        raise.alarm = kind;
        let (routed, sends) = pass(&mut causes, vec![raise], at(0), wait, &[]);
        assert_eq!((routed.every.len(), routed.grouped.len()), (1, 1));
        assert!(sends.is_empty());
    }
    assert!(causes.is_empty());
}

#[test]
fn an_own_raise_of_a_kind_others_share_waits_then_goes_as_itself() {
    let mut causes = BTreeMap::new();
    let (routed, _) = pass(&mut causes, vec![note("a", AlarmEvent::AlarmRaised, None, 0)], at(0), 30, &[]);
    assert_eq!((routed.every.len(), routed.grouped.len()), (1, 0), "held from grouping sinks");
    let (routed, _) = pass(&mut causes, vec![], at(29), 30, &[]);
    assert!(routed.grouped.is_empty());
    let (routed, sends) = pass(&mut causes, vec![], at(30), 30, &[]);
    assert_eq!(routed.grouped.len(), 1, "released as itself at the end of the wait");
    assert!(sends.is_empty());
    // Its repeat and resolution go as itself too; then nothing is kept.
    let (routed, _) = pass(&mut causes, vec![note("a", AlarmEvent::AlarmRepeated, None, 0)], at(40), 30, &[]);
    assert_eq!(routed.grouped.len(), 1);
    let (routed, _) = pass(&mut causes, vec![note("a", AlarmEvent::AlarmResolved, None, 0)], at(50), 30, &[]);
    assert_eq!(routed.grouped.len(), 1);
    assert!(causes.is_empty(), "{causes:?}");
}

/// The first environment to show a bad commit is seen alone: raised as its own. When the
/// others show it within the wait, it joins their cause: one page with all of them.
#[test]
fn the_first_of_a_cause_seen_alone_joins_it_at_the_end_of_its_wait() {
    let mut causes = BTreeMap::new();
    let shared = Cause::Origin("127.0.0.1:8080".into());
    let mut fleet_shares = false;
    let mut step = |causes: &mut BTreeMap<String, CauseRecord>, notes, t: i64, shares: bool| {
        fleet_shares = shares;
        let shared = shared.clone();
        let routed = route(causes, notes, at(t), Duration::from_secs(30), &mut |e, _| {
            if fleet_shares { shared.clone() } else { Cause::Environment(e.clone()) }
        });
        let sends = plan(
            causes,
            &sinks(),
            &routed.touched,
            at(t),
            Duration::from_secs(30),
            Duration::from_secs(3600),
        );
        (routed, sends)
    };
    let (routed, _) = step(&mut causes, vec![note("a", AlarmEvent::AlarmRaised, None, 0)], 0, false);
    assert!(routed.grouped.is_empty());
    let (routed, _) = step(
        &mut causes,
        vec![
            note("b", AlarmEvent::AlarmRaised, origin(), 5),
            note("c", AlarmEvent::AlarmRaised, origin(), 5),
        ],
        5,
        true,
    );
    assert!(routed.grouped.is_empty());
    // a's wait ends: it joins the origin's cause (still waiting), nothing as itself.
    let (routed, sends) = step(&mut causes, vec![], 30, true);
    assert!(routed.grouped.is_empty(), "{:?}", routed.grouped);
    assert!(sends.is_empty());
    let (routed, sends) = step(&mut causes, vec![], 35, true);
    assert!(routed.grouped.is_empty());
    assert_eq!(
        events(&sends, "webhook"),
        vec![(CauseEvent::CauseOpened, vec!["a".into(), "b".into(), "c".into()])]
    );
    // Its resolution (its note still says its own cause) is the cause's business.
    let (routed, sends) = step(&mut causes, vec![note("a", AlarmEvent::AlarmResolved, None, 0)], 100, true);
    assert!(routed.grouped.is_empty(), "{:?}", routed.grouped);
    assert_eq!(events(&sends, "webhook"), vec![(CauseEvent::CauseChanged, vec!["b".into(), "c".into()])]);
}

#[test]
fn a_cause_of_info_alarms_is_never_opened() {
    let mut causes = BTreeMap::new();
    let mut quiet = vec![
        note("a", AlarmEvent::AlarmRaised, origin(), 0),
        note("b", AlarmEvent::AlarmRaised, origin(), 0),
    ];
    for n in &mut quiet {
        n.severity = Severity::Info;
    }
    let (_, sends) = pass(&mut causes, quiet, at(0), 0, &[]);
    assert!(sends.is_empty());
    // A warning member joining makes it a page, at the loudest severity.
    let mut loud = note("c", AlarmEvent::AlarmRaised, origin(), 1);
    loud.severity = Severity::Warning;
    let (_, sends) = pass(&mut causes, vec![loud], at(1), 0, &[]);
    let opened: Vec<_> = sends.iter().filter(|s| s.sink == "webhook").collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].note.severity, Severity::Warning);
}

/// One step of a random history: an environment's alarm raised or resolved (or nothing),
/// some seconds later, a send that fails or not.
#[derive(Debug, Clone)]
struct Step {
    env: usize,
    raise: Option<bool>,
    after_s: i64,
    fail: bool,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    (0usize..5, proptest::option::of(any::<bool>()), 0i64..4, proptest::bool::weighted(0.2))
        .prop_map(|(env, raise, after_s, fail)| Step { env, raise, after_s, fail })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Over random histories of five environments sharing an origin, sends failing at
    /// random: what a grouping sink hears adds up. Checked against what happened, not
    /// against the rules: every alarm raised is heard of — as itself or as a member of
    /// the cause — unless it resolved within the wait; the cause opens at most once per
    /// episode and resolves once, after it opened; a resolution as itself follows a raise
    /// as itself; once quiet, what the sink was last told is who is open.
    #[test]
    fn what_a_grouping_sink_hears_adds_up(steps in proptest::collection::vec(step(), 1..40), wait in 0u64..4) {
        let mut causes = BTreeMap::new();
        let names: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
        let mut open: BTreeMap<usize, (i64, i64)> = BTreeMap::new(); // env → (raised at, since)
        let mut now = 0i64;
        // What the grouping sink heard (successful sends only).
        let mut own_raised: BTreeSet<String> = BTreeSet::new();
        let mut heard_as_member: BTreeSet<String> = BTreeSet::new();
        let (mut opened, mut resolved) = (0, 0);
        let mut told: Vec<String> = Vec::new();
        let mut quick: BTreeSet<String> = BTreeSet::new(); // resolved within the wait
        let drive = |causes: &mut BTreeMap<String, CauseRecord>, notes: Vec<AlarmNotification>, now: i64, fail: bool,
                         own_raised: &mut BTreeSet<String>, heard_as_member: &mut BTreeSet<String>,
                         opened: &mut i32, resolved: &mut i32, told: &mut Vec<String>| {
            let failing: &[&str] = if fail { &["webhook"] } else { &[] };
            let (routed, sends) = pass(causes, notes, at(now), wait, failing);
            for n in routed.grouped {
                match n.event {
                    AlarmEvent::AlarmRaised => { own_raised.insert(n.environment.to_string()); }
                    AlarmEvent::AlarmResolved => {
                        prop_assert!(own_raised.contains(n.environment.as_str()), "a resolution as itself without its raise: {}", n.environment);
                    }
                    _ => {}
                }
            }
            for s in sends.iter().filter(|s| s.sink == "webhook" && !fail) {
                match s.note.event {
                    CauseEvent::CauseOpened => { prop_assert_eq!(*opened, *resolved, "opened twice"); *opened += 1; }
                    CauseEvent::CauseResolved => { *resolved += 1; prop_assert_eq!(*opened, *resolved, "resolved before opened"); }
                    _ => {}
                }
                heard_as_member.extend(s.note.members.iter().map(|m| m.to_string()));
                *told = s.note.members.iter().map(|m| m.to_string()).collect();
            }
            Ok(())
        };
        use proptest::prelude::*;
        for s in &steps {
            now += s.after_s;
            let mut notes = Vec::new();
            match s.raise {
                Some(true) if !open.contains_key(&s.env) => {
                    open.insert(s.env, (now, now));
                    notes.push(note(&names[s.env], AlarmEvent::AlarmRaised, origin(), now));
                }
                Some(false) => {
                    if let Some((raised, since)) = open.remove(&s.env) {
                        if now - raised < wait as i64 { quick.insert(names[s.env].clone()); }
                        notes.push(note(&names[s.env], AlarmEvent::AlarmResolved, origin(), since));
                    }
                }
                _ => {
                    for (e, (_, since)) in &open {
                        notes.push(note(&names[*e], AlarmEvent::AlarmFiring, origin(), *since));
                    }
                }
            }
            drive(&mut causes, notes, now, s.fail, &mut own_raised, &mut heard_as_member, &mut opened, &mut resolved, &mut told)?;
        }
        // Quiet: time passes (past the retry cap: what failed is due), every send lands.
        for _ in 0..2 {
            now += 3601;
            drive(&mut causes, vec![], now, false, &mut own_raised, &mut heard_as_member, &mut opened, &mut resolved, &mut told)?;
        }
        let still: BTreeSet<String> = open.keys().map(|e| names[*e].clone()).collect();
        if opened > resolved {
            prop_assert_eq!(told.iter().cloned().collect::<BTreeSet<_>>(), still.clone(), "told is who is open");
        }
        for e in &still {
            prop_assert!(own_raised.contains(e) || heard_as_member.contains(e), "{} open and never heard of", e);
        }
        // Everything resolves: the episode closes, and the record goes.
        for (e, (_, since)) in std::mem::take(&mut open) {
            now += 1;
            drive(&mut causes, vec![note(&names[e], AlarmEvent::AlarmResolved, origin(), since)], now, false,
                  &mut own_raised, &mut heard_as_member, &mut opened, &mut resolved, &mut told)?;
        }
        now += 3601;
        drive(&mut causes, vec![], now, false, &mut own_raised, &mut heard_as_member, &mut opened, &mut resolved, &mut told)?;
        prop_assert_eq!(opened, resolved, "every opening resolved");
        prop_assert!(causes.is_empty(), "{:?}", causes);
        let _ = quick;
    }
}

/// The stale watchdog runs between passes and sends only causes: a raise held elsewhere
/// must stay held for the next pass to send (it once released it there, and it was lost).
#[test]
fn the_stale_watchdog_leaves_a_held_raise_for_a_pass_to_send() {
    let mut causes = BTreeMap::new();
    pass(&mut causes, vec![note("a", AlarmEvent::AlarmRaised, None, 0)], at(0), 30, &[]);
    let policy = Policy::default();
    note_stale(&mut causes, &[(env("b"), policy)], at(40), Duration::from_secs(30));
    let a = &causes["environment:a"].members[0];
    assert!(a.held.is_some() && !a.released, "{a:?}");
    assert!(causes[STALE].grouped_at.is_none(), "the stale cause waits from its own opening");
    note_stale(&mut causes, &[(env("b"), Policy::default())], at(70), Duration::from_secs(30));
    assert!(causes[STALE].grouped_at.is_some());
    let (routed, _) = pass(&mut causes, vec![], at(71), 30, &[]);
    assert_eq!(routed.grouped.len(), 1, "the next pass sends it");
}
