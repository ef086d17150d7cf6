//! Writing the environment records: each change appended to `state.log` and synced
//! before the call returns (so a crash never forgets an attempt), in-sync times written
//! lazily, and the log folded into a new `state.json` once it outgrows it.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::time::Instant;

use gitstate_core::{EnvName, EnvState, Outbox};

use super::{FileStore, IN_SYNC_WRITTEN_EVERY, Inner, LogFound, io, log};
use crate::store::StoreError;

impl FileStore {
    /// Merges `states` in: the environments that changed are appended to `state.log` and
    /// synced to disk before this returns. One whose only change is its `last_in_sync_at`
    /// is written at the latest [`IN_SYNC_WRITTEN_EVERY`] later (or by [`Self::flush`]).
    pub fn save(&self, states: &[(EnvName, EnvState)]) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let mut lines = Vec::new();
        let mut fresh = Vec::new();
        for (name, s) in states {
            match inner.file.environments.get(name) {
                Some(old) if old == s => continue,
                Some(old) if old.same_but_in_sync_time(s) => {
                    inner.unsaved.insert(name.clone());
                }
                _ => {
                    inner.unsaved.remove(name);
                    lines.push(log::Line::Env(Box::new(log::EnvLine {
                        name: name.clone(),
                        state: s.clone(),
                    })));
                }
            }
            match inner.file.environments.get_mut(name) {
                Some(kept) => *kept = s.clone(),
                None => fresh.push((name.clone(), s.clone())),
            }
        }
        if !fresh.is_empty() {
            // Many new keys at once (a first pass): built in bulk, the map's nodes are full
            // rather than half full as one insert after another in order leaves them.
            crate::store::merge_new(&mut inner.file.environments, fresh);
        }
        self.write(&mut inner, &lines)
    }

    /// Removes environments' states.
    pub fn forget(&self, names: &[EnvName]) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let mut lines = Vec::new();
        for name in names {
            inner.unsaved.remove(name);
            if inner.file.environments.remove(name).is_some() {
                lines.push(log::Line::Forget(name.clone()));
            }
        }
        self.write(&mut inner, &lines)
    }

    /// Replaces the outbox.
    pub(super) fn save_outbox(&self, outbox: &Outbox) -> Result<(), StoreError> {
        let mut inner = self.inner();
        if inner.file.outbox == *outbox {
            return Ok(());
        }
        inner.file.outbox = outbox.clone();
        self.write(&mut inner, &[log::Line::Outbox(outbox.clone())])
    }

    /// Writes everything known, the in-sync times too (a new snapshot when any is unsaved).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut inner = self.inner();
        if !inner.unsaved.is_empty() || inner.rewrite {
            self.compact(&mut inner)?;
        }
        Ok(())
    }

    /// Appends `lines` to the log (one write, synced), then folds the log into a new
    /// snapshot when it has grown past the snapshot, or when in-sync times have waited
    /// long enough.
    fn write(&self, inner: &mut Inner, lines: &[log::Line]) -> Result<(), StoreError> {
        if !lines.is_empty() {
            let path = Self::log_path(&self.dir);
            let bytes = log::encode(lines);
            let log = self.open_log(inner)?;
            log.write_all(&bytes).map_err(io(&path))?;
            log.sync_data().map_err(io(&path))?;
            inner.log_len += bytes.len() as u64;
        }
        let overgrown = inner.log_len > self.compact_above.max(inner.snapshot_len);
        let due = !inner.unsaved.is_empty() && inner.compacted_at.elapsed() >= IN_SYNC_WRITTEN_EVERY;
        if overgrown || due || inner.rewrite {
            self.compact(inner)?;
        }
        Ok(())
    }

    /// The log, opened for appending: the one found when it continues the snapshot (its
    /// torn tail cut off), else a new one.
    fn open_log<'a>(&self, inner: &'a mut Inner) -> Result<&'a mut File, StoreError> {
        if inner.log.is_none() {
            let path = Self::log_path(&self.dir);
            let (file, len) = match inner.found {
                LogFound::Continue { complete } => {
                    let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                    if f.metadata().map_err(io(&path))?.len() != complete {
                        f.set_len(complete).map_err(io(&path))?;
                        f.sync_data().map_err(io(&path))?;
                    }
                    (f, complete)
                }
                LogFound::Replace => {
                    let header = log::header(inner.file.generation);
                    crate::fs::write_atomic(&path, &header).map_err(io(&path))?;
                    (OpenOptions::new().write(true).open(&path).map_err(io(&path))?, header.len() as u64)
                }
            };
            let mut file = file;
            file.seek(std::io::SeekFrom::Start(len)).map_err(io(&path))?;
            inner.found = LogFound::Continue { complete: len };
            inner.log = Some(file);
            inner.log_len = len;
        }
        Ok(inner.log.as_mut().expect("opened above"))
    }

    /// Writes everything known as a new snapshot of the next generation, then starts an
    /// empty log continuing it. A crash between the two leaves the old log, which names
    /// the old generation and is then ignored: the new snapshot already holds it.
    pub(super) fn compact(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let path = Self::state_path(&self.dir);
        inner.file.generation += 1;
        let json = serde_json::to_vec_pretty(&inner.file).map(|mut j| {
            j.push(b'\n');
            j
        });
        let written = match json {
            Ok(json) => crate::fs::write_atomic(&path, &json).map(|()| json.len()).map_err(io(&path)),
            Err(e) => Err(StoreError::Corrupt { path: path.clone(), message: e.to_string() }),
        };
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                inner.file.generation -= 1;
                return Err(e);
            }
        };
        inner.snapshot_len = len as u64;
        inner.unsaved.clear();
        inner.rewrite = false;
        inner.compacted_at = Instant::now();
        inner.log = None;
        inner.found = LogFound::Replace;
        self.open_log(inner).map(|_| ())
    }
}
