//! [`Requeues`]: when to look at each environment again, one timer per environment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gitstate_core::EnvName;
use tokio::time::Instant;

/// When to look at each environment again: at most one time per environment, the earliest
/// asked for (as kube-runtime's scheduler keeps one entry per object), so an environment
/// whose every pass asks to be looked at in four hours has one timer, not one per pass.
#[derive(Default)]
pub(super) struct Requeues {
    by_time: BTreeMap<Instant, BTreeSet<EnvName>>,
    by_env: HashMap<EnvName, Instant>,
}

impl Requeues {
    pub(super) fn schedule(&mut self, env: EnvName, at: Instant) {
        match self.by_env.get(&env) {
            Some(&known) if known <= at => return,
            Some(&known) => {
                if let Some(set) = self.by_time.get_mut(&known) {
                    set.remove(&env);
                    if set.is_empty() {
                        self.by_time.remove(&known);
                    }
                }
            }
            None => {}
        }
        self.by_time.entry(at).or_default().insert(env.clone());
        self.by_env.insert(env, at);
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.by_time.keys().next().copied()
    }

    /// The environments due by `now`, no longer scheduled.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<EnvName> {
        let mut out = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() > now {
                break;
            }
            out.extend(entry.remove());
        }
        for e in &out {
            self.by_env.remove(e);
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_env.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn n(s: &str) -> EnvName {
        EnvName::new(s).unwrap()
    }

    #[test]
    fn requeues_deduplicate_and_keep_the_earliest() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Requeues::default();
        for s in [50, 40, 60, 40] {
            r.schedule(n("a"), at(s));
        }
        r.schedule(n("b"), at(45));
        assert_eq!((r.len(), r.next()), (2, Some(at(40))));
        assert_eq!(r.take_due(at(44)), [n("a")]);
        assert_eq!(r.take_due(at(44)), Vec::<EnvName>::new());
        r.schedule(n("a"), at(100));
        assert_eq!(r.take_due(at(1000)), [n("b"), n("a")]);
        assert_eq!(r.len(), 0);
    }
}
