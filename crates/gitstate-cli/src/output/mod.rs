//! What people and programs read: tables ([`table`]), the check report ([`report`]), the
//! status document ([`status`]),
//! a progress line on stderr ([`progress`]), colour rules and error chains.

pub mod progress;
pub mod report;
pub mod status;
pub mod table;

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Writes a command's output to stdout in one go. A reader that went away (`| head`) is not
/// an error: the command still exits with the code its result deserves.
pub fn emit(text: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// [`emit`]s `doc` as pretty JSON and a newline.
pub fn emit_json(doc: &impl Serialize) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(doc)?;
    json.push(b'\n');
    Ok(emit(&json)?)
}

/// Colour is used only on a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn color_enabled_stdout() -> bool {
    no_color_unset() && std::io::stdout().is_terminal()
}

/// As [`color_enabled_stdout`], for stderr.
pub fn color_enabled_stderr() -> bool {
    no_color_unset() && std::io::stderr().is_terminal()
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error and its causes on one line.
pub fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    // Errors carry what remotes and targets sent: nothing of it reaches a terminal raw.
    gitstate_core::escape_control(&parts.join(": ")).into_owned()
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Styling on or off.
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }

    /// `s` in green: in sync, triggered, resolved.
    pub fn good(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    /// `s` in yellow: drift being worked on.
    pub fn warn(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    /// `s` in red: alarms, failures, errors.
    pub fn bad(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    /// `s` in bold: headlines.
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    /// `s` dimmed: what matters less.
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}
