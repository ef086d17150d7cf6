//! Panics turned into words: a probe, a pass or a task that panics is reported with this
//! message (bounded, control characters escaped) instead of taking the process down.

use std::any::Any;

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`), at most
/// 200 characters, control characters escaped.
pub fn message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a panic without a message"
    };
    let mut out: String = crate::text::escape_control(text).chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_of_both_kinds_and_none() {
        let p = std::panic::catch_unwind(|| panic!("byte index 3 is not a char boundary")).unwrap_err();
        assert_eq!(super::message(p.as_ref()), "byte index 3 is not a char boundary");
        let p = std::panic::catch_unwind(|| panic!("{}\u{1b}[2J", 42)).unwrap_err();
        assert_eq!(super::message(p.as_ref()), "42\\u{1b}[2J");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(super::message(p.as_ref()), "a panic without a message");
    }
}
