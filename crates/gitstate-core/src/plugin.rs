//! The plugin traits a downstream team implements: [`ExpectedState`] (where the expected
//! commit comes from), [`ActualStateProbe`] (what runs), [`Remediator`] (re-trigger a
//! deploy), [`AlarmSink`] (tell people), and [`Journal`] (where the engine persists state
//! and events). All are `Send + Sync`, dyn-compatible and storable as `Arc<dyn Trait>`.
//!
//! ```
//! use std::time::Duration;
//! use gitstate_core::{ActualStateProbe, ProbeContext, ProbeFailure, Reading, ReportedCommit};
//!
//! struct Fixed(&'static str);
//!
//! #[async_trait::async_trait]
//! impl ActualStateProbe for Fixed {
//!     fn name(&self) -> &str { "fixed" }
//!     async fn observe(&self, _cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure> {
//!         let result = ReportedCommit::parse(self.0).map_err(|e| ProbeFailure::invalid(e.to_string()));
//!         Ok(vec![Reading { instance: "fixed".into(), result, elapsed: Duration::ZERO }])
//!     }
//! }
//! let probe: std::sync::Arc<dyn ActualStateProbe> = std::sync::Arc::new(Fixed("0123456"));
//! assert_eq!(probe.name(), "fixed");
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::alarm::{AlarmNotification, CauseNotification};
use crate::commit::{CommitId, ReportedCommit};
use crate::error::{ExpectedError, JournalError, SinkError};
use crate::event::Event;
use crate::name::EnvName;
use crate::observation::{CommitInfo, ProbeFailure, Reading, Related, Relation};
use crate::state::{EnvState, Outbox};

/// A ref resolved to the commit it points at (tags peeled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// The full ref name, e.g. `refs/heads/environments/production`.
    pub reference: String,
    /// The commit.
    pub commit: CommitId,
}

/// Where expected commits come from (Git, in [`crate::git`]).
#[async_trait]
pub trait ExpectedState: Send + Sync {
    /// A short name for logs (`git`).
    fn name(&self) -> &str;

    /// Resolves refs (full or short names, as git resolves them) to commits. The outer
    /// error is the source failing as a whole; an inner one is one ref (e.g. not found).
    async fn resolve(&self, refs: &[String]) -> Result<Vec<Result<Expected, ExpectedError>>, ExpectedError>;

    /// Relates each reported commit to `expected`.
    async fn relate(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
    ) -> Result<Vec<Relation>, ExpectedError>;

    /// Lists every ref under `prefix` (for `[[discover]]`), sorted by name.
    async fn list(&self, prefix: &str) -> Result<Vec<Expected>, ExpectedError>;

    /// Relates each reported commit to `expected` and names the commits at stake (SPEC
    /// §11) — the newest `max` of each side, from the same walk that counts them. The
    /// default names none: [`ExpectedState::relate`] only.
    async fn relate_commits(
        &self,
        expected: &CommitId,
        reported: &[ReportedCommit],
        max: usize,
    ) -> Result<Vec<Related>, ExpectedError> {
        let _ = max;
        Ok(self.relate(expected, reported).await?.into_iter().map(Related::from).collect())
    }

    /// Who wrote each commit, what and when — the ones the source can read, in any order.
    /// The engine asks once per pass for every commit any instance names. The default
    /// describes none.
    async fn describe(&self, commits: &[CommitId]) -> Result<Vec<CommitInfo>, ExpectedError> {
        let _ = commits;
        Ok(Vec::new())
    }

    /// The commits `to` brings over `from`, newest first — `git rev-list from..to`, every
    /// commit a merge brings included; `to` alone without `from` — each with its
    /// signature and the bytes it signs (SPEC §18). At most `max`: past that, an error
    /// saying so (a move too large to verify is not trusted). The default cannot read
    /// signatures: an error.
    async fn signed_commits(
        &self,
        from: Option<&CommitId>,
        to: &CommitId,
        max: usize,
    ) -> Result<Vec<crate::signed::SignedCommit>, ExpectedError> {
        let _ = (from, to, max);
        Err(ExpectedError::History {
            repo: self.name().to_owned(),
            message: "this expected-state source cannot read commit signatures".into(),
        })
    }

    /// When each `expected.reference` moved to its `expected.commit`, in the order asked:
    /// the time of its latest reflog entry that set that commit, when the source keeps a
    /// reflog (`None` otherwise). The engine asks once a pass, for the environments whose
    /// expected commit is new to it (all of them on a first pass); the convergence lag is
    /// measured from this time instead of the pass that first saw the commit.
    async fn moved_at(&self, expected: &[Expected]) -> Vec<Option<jiff::Timestamp>> {
        vec![None; expected.len()]
    }

    /// Where `reference` has pointed, oldest first: each move's commit and time, from
    /// the ref's reflog when the source keeps one (SPEC §16: DORA's history from before
    /// gitstate ran). The default, and a remote's, is empty: a mirror's log holds fetch
    /// times, not when the ref moved.
    async fn ref_history(&self, reference: &str) -> Vec<(CommitId, jiff::Timestamp)> {
        let _ = reference;
        Vec::new()
    }

    /// A push (a webhook) says `refs` moved, before they are read again: whatever the
    /// source keeps of an earlier listing is stale now. Default: nothing kept.
    fn pushed(&self, refs: &[String]) {
        let _ = refs;
    }

    /// After a push: a source keeping a local copy of a remote may bring it up to date
    /// now, while the refs are read again, so that relating the pushed commits does not
    /// wait for a fetch of its own (SPEC §19). Not waited for; errors are the source's to
    /// log. Default: nothing.
    async fn prefetch(&self) {}

    /// The commit `rev` names (SPEC §16 `where REV`): the default takes a full commit id,
    /// or a ref or tag [`ExpectedState::resolve`] finds; Git takes whatever `git
    /// rev-parse` takes.
    async fn rev_parse(&self, rev: &str) -> Result<CommitId, ExpectedError> {
        if let Ok(c) = CommitId::parse(rev) {
            return Ok(c);
        }
        match self.resolve(&[rev.to_owned()]).await?.into_iter().next() {
            Some(r) => Ok(r?.commit),
            None => Err(ExpectedError::BadRefName(rev.to_owned())),
        }
    }

    /// Moves `reference` from `from` to `to` — a compare-and-swap: nothing moves when the
    /// ref no longer points at `from` — leaving `message` in its reflog (SPEC §15: rollback
    /// and adopt; Git stays the record of what runs and why). The default refuses: a
    /// source that is not Git cannot be moved.
    async fn move_ref(
        &self,
        reference: &str,
        from: &CommitId,
        to: &CommitId,
        message: &str,
    ) -> Result<(), ExpectedError> {
        let _ = (from, to, message);
        Err(ExpectedError::Refused {
            reference: reference.to_owned(),
            message: format!("the {} source cannot move refs", self.name()),
        })
    }
}

/// What a probe is asked about.
#[derive(Debug, Clone, Copy)]
pub struct ProbeContext<'a> {
    /// The environment.
    pub environment: &'a EnvName,
    /// The target's name.
    pub target: &'a str,
    /// The commit the environment should run.
    pub expected: &'a CommitId,
}

/// Reads the commit each instance of one target runs.
#[async_trait]
pub trait ActualStateProbe: Send + Sync {
    /// The probe kind, shown in reports and metric labels (`http`, `aws`, …).
    fn name(&self) -> &str;

    /// Reads every instance. `Err` is the target failing as a whole (an API error: no
    /// instances). The engine bounds each call by the target's [`crate::TargetSpec`]
    /// timeout (30 s by default) and catches a panic; either makes the target
    /// `unreachable`. A probe that knows better bounds its own time and says why.
    async fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure>;

    /// Where this probe's answers come from, when its instance ids do not say: alarms of
    /// environments whose probes fail at the same origin share one cause (SPEC §17). The
    /// default, `None`, lets an instance id that is an `http(s)` URL name its
    /// `host:port`; the AWS probe says `aws:<region>`.
    fn origin(&self) -> Option<String> {
        None
    }
}

/// What a remediator is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemediationRequest {
    /// The environment.
    pub environment: EnvName,
    /// Its ref.
    pub reference: String,
    /// The commit to deploy.
    pub expected: CommitId,
    /// 1-based attempt within the incident.
    pub attempt: u32,
    /// `(target, instance id)` of every instance not in sync.
    pub drifted: Vec<(String, String)>,
}

/// What a remediation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediationOutcome {
    /// The deploy was triggered (exit 0, 2xx).
    pub ok: bool,
    /// One line for people.
    pub detail: String,
    /// The exit code, for commands.
    pub exit_code: Option<i32>,
    /// The end of the output.
    pub output_tail: Option<String>,
}

/// Re-triggers a deployment. Failure to trigger is an outcome, not an error: it counts as
/// an attempt. Must bound its own time (a hung deploy is killed and reported failed).
#[async_trait]
pub trait Remediator: Send + Sync {
    /// A short name (`command`, `webhook`, …).
    fn name(&self) -> &str;
    /// Triggers the deploy.
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome;
}

/// Delivers alarm notifications (Alertmanager, a webhook, a chat).
#[async_trait]
pub trait AlarmSink: Send + Sync {
    /// A short name, used in metrics and to retry undelivered notifications.
    fn name(&self) -> &str;
    /// Delivers one notification. Must bound its own time.
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError>;

    /// How it wants alarms that share a cause (SPEC §17). The default,
    /// [`Grouping::PerAlarm`], is every alarm's own notifications and no
    /// [`Self::notify_cause`].
    fn grouping(&self) -> Grouping {
        Grouping::PerAlarm
    }

    /// Delivers one notification of a cause (sinks whose [`Self::grouping`] is not
    /// `PerAlarm`). Must bound its own time.
    async fn notify_cause(&self, n: &CauseNotification) -> Result<(), SinkError> {
        let _ = n;
        Ok(())
    }
}

/// How a sink is told of alarms that share a cause (SPEC §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Grouping {
    /// Every alarm's own notifications; causes are not sent.
    PerAlarm,
    /// One notification per cause shared by two environments or more (opened, changed,
    /// resolved) instead of its members' own (a webhook, a chat); an alarm whose cause
    /// is its environment's own is sent as itself.
    PerCause,
    /// Every alarm's own notifications (each naming its cause) and the cause's too
    /// (Alertmanager, which folds them by the `cause` label).
    Both,
}

/// Where the engine persists. `checkpoint` runs before any remediation starts, so a crash
/// never forgets an attempt; `record` appends to the audit trail.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Stores the given environments' states (merging them into what is stored).
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError>;
    /// Appends events.
    async fn record(&self, events: &[Event]) -> Result<(), JournalError>;
    /// Forgets the given environments' states (they were removed from the configuration).
    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError>;
    /// The notifications kept for a later pass, as last stored (empty when none).
    async fn outbox(&self) -> Result<Outbox, JournalError>;
    /// Stores the outbox (replacing what was stored).
    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError>;
}

macro_rules! forward {
    ($trait:ident { $(fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)* } $(async { $(fn $am:ident(&self $(, $aa:ident: $at:ty)*) -> $ar:ty;)* })?) => {
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for Arc<T> {
            $(fn $m(&self $(, $a: $t)*) -> $r { (**self).$m($($a),*) })*
            $($(async fn $am(&self $(, $aa: $at)*) -> $ar { (**self).$am($($aa),*).await })*)?
        }
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for Box<T> {
            $(fn $m(&self $(, $a: $t)*) -> $r { (**self).$m($($a),*) })*
            $($(async fn $am(&self $(, $aa: $at)*) -> $ar { (**self).$am($($aa),*).await })*)?
        }
    };
}

forward!(ActualStateProbe { fn name(&self) -> &str; fn origin(&self) -> Option<String>; } async {
    fn observe(&self, cx: &ProbeContext<'_>) -> Result<Vec<Reading>, ProbeFailure>;
});
forward!(Remediator { fn name(&self) -> &str; } async {
    fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome;
});
forward!(AlarmSink { fn name(&self) -> &str; fn grouping(&self) -> Grouping; } async {
    fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError>;
    fn notify_cause(&self, n: &CauseNotification) -> Result<(), SinkError>;
});

/// Compile-time check that every plugin trait stays dyn-compatible and thread-safe.
const _: () = {
    fn assert_dyn<T: ?Sized + Send + Sync>() {}
    let _ = assert_dyn::<dyn ExpectedState>;
    let _ = assert_dyn::<dyn ActualStateProbe>;
    let _ = assert_dyn::<dyn Remediator>;
    let _ = assert_dyn::<dyn AlarmSink>;
    let _ = assert_dyn::<dyn Journal>;
};
