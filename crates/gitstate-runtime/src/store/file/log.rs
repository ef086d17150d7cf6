//! `state.log`: what changed since `state.json` was written, one JSON object a line, so
//! that a pass writes what changed rather than the whole state.
//!
//! The first line names the snapshot the log continues (`{"log":{"schema":1,
//! "generation":N}}`, N = `state.json`'s `generation`); every later line is one change:
//! `{"env":{"name":…,"state":{…}}}` (an environment's whole state), `{"forget":"name"}`,
//! or `{"outbox":{…}}`. A line counts once its newline is on disk: a torn last line (a
//! crash mid-append, never acknowledged) is ignored when read and cut off before the next
//! append; a complete line that is not a change is corruption, named by file and line.

use gitstate_core::{EnvName, EnvState, Outbox, StateFile};
use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Line {
    /// The first line: which snapshot this log continues.
    Log(Header),
    /// An environment's whole state, replacing what was known.
    Env(Box<EnvLine>),
    /// An environment removed.
    Forget(EnvName),
    /// The whole outbox, replacing what was known.
    Outbox(Outbox),
}

/// The log's first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Header {
    pub schema: u32,
    pub generation: u64,
}

/// An environment's state in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvLine {
    pub name: EnvName,
    pub state: EnvState,
}

/// What reading a log found.
#[derive(Debug, PartialEq)]
pub(super) enum Read {
    /// No log, or nothing complete in it: the snapshot is the whole state.
    Missing,
    /// The changes, in order, and the length of the complete lines (what follows is torn).
    Changes { lines: Vec<Line>, complete: u64 },
}

/// Reads the log's bytes. `Err((line, message))` names the first complete line that is
/// not what it should be (1-based).
pub(super) fn parse(bytes: &[u8]) -> Result<Read, (usize, String)> {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { return Ok(Read::Missing) };
    let mut lines = Vec::new();
    for (i, raw) in bytes[..end].split(|b| *b == b'\n').enumerate() {
        let line: Line = serde_json::from_slice(raw).map_err(|e| (i + 1, e.to_string()))?;
        match (&line, i) {
            (Line::Log(h), 0) if h.schema != StateFile::SCHEMA => {
                return Err((1, format!("unknown schema {}", h.schema)));
            }
            (Line::Log(_), 0) => {}
            (_, 0) => return Err((1, "the first line is not the log's header".into())),
            (Line::Log(_), _) => return Err((i + 1, "a second header".into())),
            _ => {}
        }
        lines.push(line);
    }
    Ok(Read::Changes { lines, complete: end as u64 + 1 })
}

/// The generation a parsed log continues.
pub(super) fn generation(lines: &[Line]) -> Option<u64> {
    match lines.first() {
        Some(Line::Log(h)) => Some(h.generation),
        _ => None,
    }
}

/// Applies the changes (the header excepted) to `state`.
pub(super) fn apply(state: &mut StateFile, lines: Vec<Line>) {
    for line in lines {
        match line {
            Line::Log(_) => {}
            Line::Env(e) => {
                let EnvLine { name, state: s } = *e;
                state.environments.insert(name, s);
            }
            Line::Forget(name) => {
                state.environments.remove(&name);
            }
            Line::Outbox(o) => state.outbox = o,
        }
    }
}

/// The lines' bytes, each ended by a newline.
pub(super) fn encode(lines: &[Line]) -> Vec<u8> {
    let mut buf = Vec::new();
    for line in lines {
        // A line is made of names, numbers, strings and timestamps: it always serialises.
        if serde_json::to_writer(&mut buf, line).is_ok() {
            buf.push(b'\n');
        }
    }
    buf
}

/// The first line of a log continuing the snapshot of `generation`.
pub(super) fn header(generation: u64) -> Vec<u8> {
    encode(&[Line::Log(Header { schema: StateFile::SCHEMA, generation })])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, failures: u32) -> Line {
        Line::Env(Box::new(EnvLine {
            name: EnvName::new(name).unwrap(),
            state: EnvState { consecutive_probe_failures: failures, ..EnvState::default() },
        }))
    }

    #[test]
    fn a_torn_last_line_is_not_a_change_and_a_broken_one_is_named() {
        let mut bytes = header(3);
        bytes.extend(encode(&[env("a", 1), env("b", 2)]));
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(br#"{"env":{"name":"c","sta"#);
        let Ok(Read::Changes { lines, complete }) = parse(&bytes) else { panic!() };
        assert_eq!((lines.len(), complete, generation(&lines)), (3, whole, Some(3)));
        bytes.extend_from_slice(b"\n");
        assert_eq!(parse(&bytes).unwrap_err().0, 4);
        assert_eq!(parse(&encode(&[env("a", 1)])).unwrap_err().0, 1, "no header");
        assert_eq!(parse(b"{\"log\":{\"sch").unwrap(), Read::Missing);
    }

    proptest::proptest! {
        /// Any bytes: no panic; a change list, nothing, or the number of a complete line.
        #[test]
        fn arbitrary_bytes_are_changes_or_a_named_line(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let lines = bytes.iter().filter(|b| **b == b'\n').count();
            match parse(&bytes) {
                Ok(Read::Changes { complete, .. }) => proptest::prop_assert!(complete as usize <= bytes.len()),
                Ok(_) => {}
                Err((n, _)) => proptest::prop_assert!(n >= 1 && n <= lines),
            }
        }

        /// Whatever is appended after a valid log and then torn, the complete lines before
        /// it are read as they were written.
        #[test]
        fn a_valid_log_reads_back_whatever_torn_tail_follows(
            failures in proptest::collection::vec(0u32..5, 0..8),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
        ) {
            let written: Vec<Line> = failures.iter().enumerate().map(|(i, f)| env(&format!("e{i}"), *f)).collect();
            let mut bytes = header(7);
            bytes.extend(encode(&written));
            let tail: Vec<u8> = tail.into_iter().filter(|b| *b != b'\n').collect();
            bytes.extend(&tail);
            let Ok(Read::Changes { lines, .. }) = parse(&bytes) else { panic!("{bytes:?}") };
            proptest::prop_assert_eq!(&lines[1..], &written[..]);
        }
    }
}
