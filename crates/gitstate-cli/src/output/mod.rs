//! What people and programs read: tables ([`table`]), the check report ([`report`]), the
//! status document ([`status`]),
//! a progress line on stderr ([`progress`]), colour rules and error chains.

pub mod fleet;
pub mod html;
pub mod progress;
pub mod report;
pub mod status;
pub mod table;

use std::io::Write;

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

/// `println!` for a command's output, through [`emit`]: a reader that went away (`| head`)
/// is not a panic. Evaluates to the write's `io::Result`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::emit(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use say;

/// Writes a command's output to stdout through a buffer of `capacity` bytes as `write`
/// produces it; a reader that went away is not an error, as for [`emit`].
pub fn emit_with(
    capacity: usize,
    write: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(capacity, std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it: `"` and `\\`, the
/// short forms `\\b \\t \\n \\f \\r`, other control characters as `\\u00xx`, everything
/// else as it is.
pub fn write_json_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..0x20 => b"",
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.write_all(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])?;
        } else {
            out.write_all(short)?;
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

/// [`emit`]s `doc` as pretty JSON and a newline.
///
/// Streamed through a 64 KiB buffer, not built whole first: a listing of thousands of
/// environments is written as it is serialised.
pub fn emit_json(doc: &impl Serialize) -> anyhow::Result<()> {
    Ok(emit_with(64 * 1024, |out| {
        serde_json::to_writer_pretty(&mut *out, doc)?;
        out.write_all(b"\n")
    })?)
}

/// Colour on stdout as anstream decides it: on a terminal only, never with `NO_COLOR`
/// (no-color.org) or `TERM=dumb`, always with `CLICOLOR_FORCE`.
pub fn color_enabled_stdout() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// As [`color_enabled_stdout`], for stderr.
pub fn color_enabled_stderr() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
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

    fn wrap(&self, style: anstyle::Style, s: &str) -> String {
        if self.on { format!("{}{s}{}", style.render(), style.render_reset()) } else { s.to_owned() }
    }

    /// `s` in green: in sync, triggered, resolved.
    pub fn good(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Green.on_default(), s)
    }
    /// `s` in yellow: drift being worked on.
    pub fn warn(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Yellow.on_default(), s)
    }
    /// `s` in red: alarms, failures, errors.
    pub fn bad(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Red.on_default(), s)
    }
    /// `s` in bold: headlines.
    pub fn bold(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().bold(), s)
    }
    /// `s` dimmed: what matters less.
    pub fn dim(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().dimmed(), s)
    }
}
