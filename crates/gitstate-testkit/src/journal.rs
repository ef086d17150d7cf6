//! [`MemoryJournal`]: the engine's persistence in memory, for tests to read back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use gitstate_core::{EnvName, EnvState, Event, Journal, JournalError, Outbox, async_trait};

/// What the engine persisted: states merged by environment, events in order.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub states: Mutex<BTreeMap<EnvName, EnvState>>,
    pub events: Mutex<Vec<Event>>,
    pub outbox: Mutex<Outbox>,
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn checkpoint(&self, states: &[(EnvName, EnvState)]) -> Result<(), JournalError> {
        let mut m = self.states.lock().unwrap();
        for (n, s) in states {
            m.insert(n.clone(), s.clone());
        }
        Ok(())
    }

    async fn record(&self, events: &[Event]) -> Result<(), JournalError> {
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }

    async fn forget(&self, environments: &[EnvName]) -> Result<(), JournalError> {
        self.states.lock().unwrap().retain(|n, _| !environments.contains(n));
        Ok(())
    }

    async fn outbox(&self) -> Result<Outbox, JournalError> {
        Ok(self.outbox.lock().unwrap().clone())
    }

    async fn save_outbox(&self, outbox: &Outbox) -> Result<(), JournalError> {
        *self.outbox.lock().unwrap() = outbox.clone();
        Ok(())
    }
}
