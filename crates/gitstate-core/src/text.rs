//! Text from outside (what a target reports, an error it caused, a commit subject) made
//! safe for a terminal: control characters are escaped, so a target answering
//! `"\u001b[2J"` cannot clear the operator's screen. JSON output needs none of this (its
//! encoder escapes them); every human-readable output goes through [`escape_control`].

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1, and the bidirectional overrides that
/// reorder what a terminal shows) written as `\u{..}`; borrowed when there is none.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::escape_control;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(escape_control("plain é 🚀"), "plain é 🚀");
        assert_eq!(
            escape_control("\u{1b}[2J\r\n\t\u{7f}\u{9b}"),
            "\\u{1b}[2J\\u{d}\\u{a}\\u{9}\\u{7f}\\u{9b}"
        );
        assert_eq!(escape_control("a\u{202e}b"), "a\\u{202e}b");
    }

    proptest! {
        #[test]
        fn arbitrary_text_leaves_no_control_character(s in "\\PC*|.*|[\\x00-\\x1f\\x7f-\\u{9f}]*") {
            let e = escape_control(&s);
            prop_assert!(!e.chars().any(|c| c.is_control()));
        }
    }
}
