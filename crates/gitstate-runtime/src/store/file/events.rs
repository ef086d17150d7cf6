//! `events.jsonl`: the append-only audit trail, rotated by size, read from its tail with
//! torn and foreign lines skipped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use gitstate_core::Event;

use super::{FileStore, RECENT, io};
use crate::store::StoreError;

/// How `events.jsonl` is rotated: past `max_bytes` it becomes `events.jsonl.1` (the older
/// ones shift to `.2`, …) and `keep` old files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size past which the current file is rotated (`[state] events_max_bytes`).
    pub max_bytes: u64,
    /// Old files kept (`[state] events_keep`); 0 keeps none.
    pub keep: u32,
}

impl Rotation {
    /// The smallest `events_max_bytes` accepted.
    pub const MIN_BYTES: u64 = 4096;
}

impl Default for Rotation {
    /// 64 MiB, 5 old files.
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, keep: 5 }
    }
}

impl FileStore {
    /// The latest `n` events written (oldest first), without reading the file again.
    pub fn recent_events(&self, n: usize) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().skip(recent.len().saturating_sub(n)).cloned().collect()
    }

    /// The last `limit` events of `events.jsonl` (oldest first), read from its last MiB
    /// only. A line that is not an event — a torn last line after a crash mid-append, the
    /// partial first line of that tail, one a person mangled — is skipped, never an error.
    pub fn events(dir: &Path, limit: usize) -> Result<Vec<Event>, StoreError> {
        const TAIL: u64 = 1024 * 1024;
        let path = dir.join("events.jsonl");
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        let len = file.metadata().map_err(io(&path))?.len();
        file.seek(std::io::SeekFrom::Start(len.saturating_sub(TAIL))).map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        Ok(parse_events(&bytes, limit))
    }

    /// Rotates `events.jsonl` as `rotation` says (the default: 64 MiB, 5 old files).
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// Appends events to `events.jsonl`, one JSON object a line, rotating it first when it
    /// has grown past its size. A torn last line (a crash mid-append) is ended first, so
    /// that it never swallows the next event.
    pub fn append(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let _serial = self.inner();
        let path = self.dir.join("events.jsonl");
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&path)(e)),
        };
        let len = if len >= self.rotation.max_bytes { self.rotate(&path)? } else { len };
        let mut buf = Vec::new();
        if len > 0 && !ends_with_newline(&path).map_err(io(&path))? {
            buf.push(b'\n');
        }
        for e in events {
            // An event always serialises: it is made of strings, numbers and timestamps.
            if let Ok(line) = serde_json::to_string(e) {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
        let mut f =
            OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(io(&path))?;
        f.write_all(&buf).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.extend(events.iter().cloned());
        let over = recent.len().saturating_sub(RECENT);
        recent.drain(..over);
        Ok(())
    }

    /// Shifts `events.jsonl` to `events.jsonl.1` (and `.1` to `.2`, …), dropping the oldest
    /// beyond `keep`; the current file starts empty (length 0 returned).
    fn rotate(&self, path: &Path) -> Result<u64, StoreError> {
        let old = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        if self.rotation.keep == 0 {
            std::fs::remove_file(path).map_err(io(path))?;
            return Ok(0);
        }
        for n in (1..self.rotation.keep).rev() {
            match std::fs::rename(old(n), old(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&old(n))(e)),
                _ => {}
            }
        }
        std::fs::rename(path, old(1)).map_err(io(path))?;
        Ok(0)
    }
}

/// The events in `bytes`, one JSON object a line, the last `limit`; other lines skipped.
pub(super) fn parse_events(bytes: &[u8], limit: usize) -> Vec<Event> {
    let mut out: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(e) = serde_json::from_slice::<Event>(line) {
            if out.len() == limit {
                out.pop_front();
            }
            if limit > 0 {
                out.push_back(e);
            }
        }
    }
    out.into()
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    f.seek(std::io::SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}
