//! What an operator asks of a running loop (SPEC §20): one [`Operator`] carries out the
//! CLI's controls and actions — suspend, resume, retry (§9), roll back, veto, unveto,
//! adopt (§15) — against the loop's own store and source, for whoever a listener
//! authenticated. The dashboard's buttons call [`Operator::act`]; so can any program
//! linking the runtime (a chat bot, a deploy tool's UI). Each request is recorded like its
//! CLI twin, with [`Actor`] `by` and `via`, and the loop is asked to read what operators
//! said at once.
//!
//! ```no_run
//! # async fn demo(controller: &gitstate_runtime::Controller) {
//! use gitstate_runtime::actions::Actor;
//! use gitstate_runtime::operate::{Action, Request};
//!
//! let operator = controller.operator();
//! let request = Request::new(Action::Suspend { until: None }, "production", "INC-42: paging storm");
//! let who = Actor { by: "ada", via: "dashboard" };
//! match operator.act(&request, who, jiff::Timestamp::now()).await {
//!     Ok(done) => println!("{}", done.message),
//!     Err(e) => eprintln!("refused: {e}"),
//! }
//! # }
//! ```

use std::sync::Arc;

use gitstate_core::{CommitId, EnvName, ExpectedState};
use jiff::Timestamp;

use crate::actions::{self, ActionError, Actor};
use crate::controller::Trigger;
use crate::controls;
use crate::store::Store;
use crate::trust::TrustPolicy;
use crate::view::View;

/// Longest reason accepted, in characters.
pub const MAX_REASON: usize = 200;

/// One thing an operator can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Still probed and reported, never acted on, until `until` or a resume.
    Suspend {
        /// When it ends by itself.
        until: Option<Timestamp>,
    },
    /// Ends a suspension.
    Resume,
    /// A fresh set of remediation attempts.
    Retry,
    /// The ref moved back to `to` (or the last verified commit), the commit it left vetoed.
    Rollback {
        /// The commit to go to (a full id or an abbreviation the source resolves).
        to: Option<String>,
    },
    /// The commit `sha` is not deployed here while the ref points at it.
    Veto {
        /// The commit (a full id or an abbreviation).
        sha: String,
    },
    /// Lifts the veto of `sha`.
    Unveto {
        /// The commit (a full id or an abbreviation).
        sha: String,
    },
    /// The ref moved to what every instance runs (a hotfix), as the last pass saw them.
    Adopt,
}

impl Action {
    /// Its name, as the CLI's command and the dashboard's path say it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Suspend { .. } => "suspend",
            Action::Resume => "resume",
            Action::Retry => "retry",
            Action::Rollback { .. } => "rollback",
            Action::Veto { .. } => "veto",
            Action::Unveto { .. } => "unveto",
            Action::Adopt => "adopt",
        }
    }
}

/// An action on one environment, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// What.
    pub action: Action,
    /// On which environment (by name).
    pub environment: String,
    /// Why: required, one line, at most [`MAX_REASON`] characters (control characters are
    /// removed).
    pub reason: String,
}

impl Request {
    /// `action` on `environment`, because of `reason`.
    pub fn new(action: Action, environment: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { action, environment: environment.into(), reason: reason.into() }
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Done {
    /// The environment.
    pub environment: EnvName,
    /// What happened, as the CLI says it.
    pub message: String,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperateError {
    /// No such environment in the loop.
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
    /// A field is wrong (an empty or long reason, a revision that names no single commit).
    #[error("{0}")]
    Invalid(String),
    /// Refused as the CLI refuses it: the ref moved, nothing to roll back to, not vetoed,
    /// instances that disagree, an untrusted target.
    #[error("{0}")]
    Refused(String),
    /// The state could not be written, or the source not read.
    #[error("{0}")]
    Failed(String),
}

impl From<ActionError> for OperateError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Refused(why) => OperateError::Refused(why),
            other => OperateError::Failed(gitstate_core::error_chain(&other)),
        }
    }
}

impl From<crate::store::StoreError> for OperateError {
    fn from(e: crate::store::StoreError) -> Self {
        OperateError::Failed(gitstate_core::error_chain(&e))
    }
}

/// Carries out operators' requests against a loop's store and source. Cheap to clone;
/// made by [`crate::Controller::operator`].
#[derive(Clone)]
pub struct Operator {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) source: Arc<dyn ExpectedState>,
    pub(crate) view: Arc<View>,
    pub(crate) trust: Option<TrustPolicy>,
    pub(crate) trigger: Trigger,
}

impl Operator {
    /// Whether `environment` is one of the loop's.
    pub fn knows(&self, environment: &str) -> bool {
        self.environment(environment).is_some()
    }

    fn environment(&self, name: &str) -> Option<EnvName> {
        let name = EnvName::new(name).ok()?;
        let known = self.view.with_reports(|r| r.contains_key(&name))
            || gitstate_core::Fleet::environments(&*self.view).iter().any(|(n, _)| *n == name);
        known.then_some(name)
    }

    /// The environment's full ref name: the last pass's, else its record's.
    fn reference(&self, env: &EnvName) -> Option<String> {
        self.view.with_reports(|r| r.get(env).map(|r| r.reference.clone())).or_else(|| {
            self.store.environments_among(std::slice::from_ref(env)).remove(env).and_then(|s| s.reference)
        })
    }

    /// The commit a revision names: 7 to 40 hexadecimal digits naming exactly one commit.
    async fn commit(&self, rev: &str) -> Result<CommitId, OperateError> {
        let rev = rev.trim();
        if !(7..=40).contains(&rev.len()) || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OperateError::Invalid(format!(
                "{:?} is not a commit id (7 to 40 hexadecimal digits)",
                gitstate_core::escape_control(rev)
            )));
        }
        let rev = rev.to_ascii_lowercase();
        match self.source.rev_parse(&rev).await {
            // A ref named like a hash is not what was asked for.
            Ok(c) if c.to_string().starts_with(&rev) => Ok(c),
            Ok(_) => Err(OperateError::Invalid(format!("{rev} names a ref, not a commit"))),
            Err(e) => Err(OperateError::Invalid(format!("{rev}: {}", gitstate_core::error_chain(&e)))),
        }
    }

    /// Carries out `request` for `actor` at `now`, recorded like the CLI's command with
    /// `actor`'s `by` and `via`; then asks the loop to read what operators said.
    pub async fn act(
        &self,
        request: &Request,
        actor: Actor<'_>,
        now: Timestamp,
    ) -> Result<Done, OperateError> {
        let env = self
            .environment(&request.environment)
            .ok_or_else(|| OperateError::UnknownEnvironment(request.environment.clone()))?;
        let reason = reason(&request.reason)?;
        let reason = Some(reason.as_str());
        let names = std::slice::from_ref(&env);
        let message = match &request.action {
            Action::Suspend { until } => {
                if until.is_some_and(|u| u <= now) {
                    return Err(OperateError::Invalid("until is in the past".into()));
                }
                controls::suspend(&*self.store, names, actor, reason, *until, now).await?;
                "suspended; still probed and reported, not acted on".to_owned()
            }
            Action::Resume => {
                controls::resume(&*self.store, names, actor, reason, now).await?;
                "resumed".to_owned()
            }
            Action::Retry => {
                controls::retry(&*self.store, names, actor, reason, now).await?;
                "a fresh set of attempts; the next pass may remediate at once".to_owned()
            }
            Action::Veto { sha } => {
                let sha = self.commit(sha).await?;
                actions::veto(&*self.store, &env, sha, actor, reason, now).await?;
                format!("{} vetoed; it is not deployed here while the ref points at it", sha.short(12))
            }
            Action::Unveto { sha } => {
                let sha = self.commit(sha).await?;
                actions::unveto(&*self.store, &env, sha, actor, reason, now).await?;
                format!("{} no longer vetoed", sha.short(12))
            }
            Action::Rollback { to } => {
                let to = match to.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                    Some(rev) => Some(self.commit(rev).await?),
                    None => None,
                };
                let reference = self
                    .reference(&env)
                    .ok_or_else(|| OperateError::Refused(format!("{env} has not been read yet")))?;
                let done = actions::rollback(
                    &*self.source,
                    &*self.store,
                    &env,
                    &reference,
                    to,
                    actor,
                    reason,
                    self.trust.as_ref(),
                    now,
                )
                .await?;
                format!(
                    "{reference} rolled back from {} to {}; {} is vetoed here",
                    done.from.short(12),
                    done.to.short(12),
                    done.from.short(12)
                )
            }
            Action::Adopt => {
                let report = self
                    .view
                    .with_reports(|r| r.get(&env).cloned())
                    .ok_or_else(|| OperateError::Refused(format!("{env} has not been probed yet")))?;
                let done = actions::adopt(
                    &*self.source,
                    &*self.store,
                    &env,
                    &report,
                    actor,
                    reason,
                    self.trust.as_ref(),
                    now,
                )
                .await?;
                format!(
                    "{} moved from {} to {}, the commit every instance runs",
                    report.reference,
                    done.from.short(12),
                    done.to.short(12)
                )
            }
        };
        tracing::info!(environment = %env, action = request.action.name(), by = actor.by, via = actor.via, "operator action");
        // The loop reads operators' overrides and the refs at its next poll: now.
        self.trigger.poke();
        Ok(Done { environment: env, message })
    }
}

/// A reason as recorded: required, one line, control characters removed, at most
/// [`MAX_REASON`] characters.
fn reason(text: &str) -> Result<String, OperateError> {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() {
        return Err(OperateError::Invalid("a reason is required".into()));
    }
    if clean.chars().count() > MAX_REASON {
        return Err(OperateError::Invalid(format!("the reason is longer than {MAX_REASON} characters")));
    }
    Ok(clean.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_clean_line_of_at_most_200_characters() {
        assert_eq!(reason(" INC-42:\nrollback\u{7} ").unwrap(), "INC-42:rollback");
        assert!(matches!(reason(" \n\t"), Err(OperateError::Invalid(_))));
        assert!(reason(&"é".repeat(200)).is_ok());
        assert!(matches!(reason(&"é".repeat(201)), Err(OperateError::Invalid(_))));
    }
}
