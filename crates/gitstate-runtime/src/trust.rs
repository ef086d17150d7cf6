//! SPEC §18's policy: before an environment is passed, the move to its expected commit is
//! judged — every commit `last_trusted..new` brings under `require = "all"`, the new
//! commit alone under `"tip"` or when nothing before it was trusted — with
//! [`gitstate_trust::Trust`], and the verdict goes to the pure decision as a
//! [`TrustGate`]: under `block` an untrusted commit is never deployed (phase and alarm
//! `untrusted`); under `alarm` it is deployed and the alarm raised. A commit not judged
//! yet is not deployed (fail closed).

use std::sync::Arc;

use gitstate_core::{CommitId, ExpectedState, TrustGate, TrustRecord};
use gitstate_trust::{Require, Trust};
use jiff::Timestamp;

/// The most commits one move may bring and still be verified.
pub const MAX_MOVE: usize = 10_000;

/// `[source.trust]`: whose signatures count, over which commits, and what an untrusted
/// commit does.
#[derive(Clone)]
#[non_exhaustive]
pub struct TrustPolicy {
    /// The keys, and the verdicts reached with them.
    pub trust: Arc<Trust>,
    /// Every commit of a move, or its tip.
    pub require: Require,
    /// `on_untrusted = "block"` (the default): never deploy it; `false`: alarm, deploy.
    pub block: bool,
}

impl TrustPolicy {
    /// A policy over `trust`.
    pub fn new(trust: Arc<Trust>, require: Require, block: bool) -> Self {
        Self { trust, require, block }
    }

    /// The verdict on a move to `to` from the last trusted commit `from`.
    pub async fn judge(
        &self,
        source: &dyn ExpectedState,
        from: Option<CommitId>,
        to: CommitId,
        now: Timestamp,
    ) -> TrustGate {
        // Judged before: the same commit again is the same verdict.
        let from = from.filter(|f| *f != to);
        let tip_only = from.is_none() || self.require == Require::Tip;
        let commits = match source.signed_commits(from.as_ref().filter(|_| !tip_only), &to, MAX_MOVE).await {
            Ok(c) => c,
            Err(e) => {
                let mut record = TrustRecord::new(to, false);
                record.reason =
                    Some(format!("its signatures cannot be read: {}", gitstate_core::error_chain(&e)));
                return TrustGate::new(to, false, self.block, record);
            }
        };
        let require = if tip_only { Require::Tip } else { self.require };
        let judged = self.trust.verify_move(&commits, require, now);
        match judged.offending {
            None => {
                let mut record = TrustRecord::new(to, true);
                record.signer = judged.tip.signer;
                record.key = judged.tip.key;
                record.tip_only = from.is_none();
                TrustGate::new(to, true, self.block, record)
            }
            Some(bad) => {
                let (commit, v) = *bad;
                let mut record = TrustRecord::new(to, false);
                let why = v.reason.map_or("untrusted", |r| r.as_str());
                record.reason = Some(format!(
                    "commit {} is {why}{}",
                    commit.map_or_else(|| "?".to_owned(), |c| c.short(12).to_string()),
                    v.detail.map(|d| format!(": {d}")).unwrap_or_default()
                ));
                record.key = v.key;
                record.tip_only = from.is_none();
                TrustGate::new(to, false, self.block, record)
            }
        }
    }
}

/// The gate of a commit not judged yet: nothing is deployed until it is.
pub(crate) fn not_judged(block: bool) -> TrustGate {
    let none =
        CommitId::parse(&"0".repeat(40)).unwrap_or_else(|_| unreachable!("forty zeros are a commit id"));
    TrustGate::new(none, false, block, TrustRecord::new(none, false))
}
