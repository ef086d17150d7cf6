//! Alarms within a pass of [`reconcile()`](super::reconcile): raised at most once per kind
//! while open (deduplicated here: [`Pass::raise`] opens one only when none of its kind is
//! open), resolved exactly once, re-notified at most every `renotify` (invariant 4).

use crate::alarm::{AlarmChange, AlarmKind, Resolution};
use crate::state::{OpenAlarm, after};

use super::{Action, Pass};

impl Pass<'_> {
    pub(super) fn raise(&mut self, kind: AlarmKind) {
        if self.s.alarm(kind).is_some() {
            return;
        }
        self.s.alarms.push(OpenAlarm {
            kind,
            since: self.now,
            last_notified_at: Some(self.now),
            cause: None,
        });
        let expected = *self.expected;
        self.actions.push(Action::Alarm { change: AlarmChange::Raised, kind, since: self.now, expected });
    }

    pub(super) fn resolve(&mut self, kind: AlarmKind, why: Resolution) {
        if let Some(i) = self.s.alarms.iter().position(|a| a.kind == kind) {
            let alarm = self.s.alarms.remove(i);
            // Called before a new expected commit is recorded, this is still the old one.
            let expected = self.s.expected.as_ref().map_or(*self.expected, |e| e.commit);
            let change = AlarmChange::Resolved(why);
            self.actions.push(Action::Alarm { change, kind, since: alarm.since, expected });
        }
    }

    /// Invariant 4: an open alarm is re-notified at most every `renotify` (never when zero).
    pub(super) fn renotify(&mut self) {
        let every = self.policy.renotify;
        if every.is_zero() {
            return;
        }
        let now = self.now;
        let mut wake = Vec::new();
        for alarm in &mut self.s.alarms {
            if alarm.since == now {
                wake.push(after(now, every));
                continue;
            }
            let due = alarm.last_notified_at.map_or(now, |t| after(t, every));
            if now >= due {
                alarm.last_notified_at = Some(now);
                self.actions.push(Action::Alarm {
                    change: AlarmChange::Repeated,
                    kind: alarm.kind,
                    since: alarm.since,
                    expected: *self.expected,
                });
                wake.push(after(now, every));
            } else {
                wake.push(due);
            }
        }
        for w in wake {
            self.wake_at(w);
        }
    }
}
