//! Freeze windows (SPEC §9, like Argo CD's sync windows): `[[policy.windows]]` with a
//! 5-field cron `schedule`, a `duration` and an IANA `timezone`. Inside one, nothing is
//! remediated and no attempt is consumed; the environment is looked at again when it
//! ends. Schedules are read by `jiff-cron` and placed in time with jiff's time zones, so a
//! daylight-saving change is handled as they define it; a window's `duration` is absolute
//! time from its start.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// One window.
#[derive(Debug, Clone)]
pub struct FreezeWindow {
    /// The schedule as configured (5 fields).
    pub schedule: String,
    cron: jiff_cron::Schedule,
    /// How long each window lasts.
    pub duration: Duration,
    /// The time zone the schedule is read in.
    pub timezone: String,
    tz: TimeZone,
}

/// Standard cron counts the days of the week 0–6 from Sunday (7 is Sunday too);
/// jiff-cron counts 1–7 from Sunday. Numbers in the day-of-week field (not steps) are
/// moved over; names (`MON`–`SUN`) need nothing.
fn weekday_field(field: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let mut after_slash = false;
    let flush = |digits: &mut String, out: &mut String, step: bool| {
        if digits.is_empty() {
            return;
        }
        match (step, digits.parse::<u32>()) {
            (false, Ok(n)) => out.push_str(&((n % 7) + 1).to_string()),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out, after_slash);
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut digits, &mut out, after_slash);
    out
}

impl FreezeWindow {
    /// A window from its configuration; the error says what is wrong.
    pub fn new(schedule: &str, duration: Duration, timezone: &str) -> Result<Self, String> {
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "schedule {schedule:?}: give 5 cron fields (minute hour day-of-month month day-of-week), e.g. \"0 18 * * FRI\""
            ));
        }
        let quartz =
            format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], weekday_field(fields[4]));
        let cron =
            quartz.parse::<jiff_cron::Schedule>().map_err(|e| format!("schedule {schedule:?}: {e}"))?;
        let tz = TimeZone::get(timezone).map_err(|e| format!("timezone {timezone:?}: {e}"))?;
        if duration.is_zero() {
            return Err("duration must be more than 0s".into());
        }
        Ok(Self { schedule: schedule.to_owned(), cron, duration, timezone: timezone.to_owned(), tz })
    }

    fn end_of(&self, start: Timestamp) -> Timestamp {
        jiff::SignedDuration::try_from(self.duration)
            .ok()
            .and_then(|d| start.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    }

    /// The windows that overlap `[from, …)`: (start, end) from the first start after
    /// `from - duration`, in order. The schedule is matched against local wall-clock
    /// times, and each match is placed in time as jiff's `compatible` disambiguation (RFC
    /// 5545, Temporal) does: a time that happens twice (the hour repeated when clocks fall
    /// back) is its first occurrence, once; a time that does not exist (the hour skipped
    /// when clocks spring forward) is moved forward by the length of the gap (02:30 on a
    /// night that jumps 02:00 → 03:00 is 03:30), so a window is never silently dropped.
    fn windows_from(&self, from: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let back = jiff::SignedDuration::try_from(self.duration).unwrap_or(jiff::SignedDuration::MAX);
        // Local wall-clock time from three hours before `from - duration` (more than any
        // offset change), walked as if it were UTC so that the schedule sees every local
        // time exactly once.
        let since = from.checked_sub(back).unwrap_or(Timestamp::MIN);
        let since = since.checked_sub(jiff::SignedDuration::from_hours(3)).unwrap_or(since);
        let civil = self
            .tz
            .to_datetime(since)
            .to_zoned(TimeZone::UTC)
            .unwrap_or_else(|_| since.to_zoned(TimeZone::UTC));
        self.cron
            .after(civil)
            .filter_map(|z| self.tz.to_ambiguous_zoned(z.datetime()).compatible().ok())
            .map(|z| z.timestamp())
            .map(|s| (s, self.end_of(s)))
            .skip_while(move |(_, end)| *end <= from)
    }

    /// When the window open at `now` ends (the latest end, should windows overlap).
    pub fn active_until(&self, now: Timestamp) -> Option<Timestamp> {
        // `windows_from` yields only windows not over at `now` (ends rise with starts).
        self.windows_from(now).take_while(|(start, _)| *start <= now).take(10_000).map(|(_, end)| end).max()
    }

    /// The window open now, or else the next one: its start and end.
    pub fn next(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        self.windows_from(now).next()
    }
}

/// When the freeze in force at `now` ends, if any window is open.
pub fn frozen_until(windows: &[FreezeWindow], now: Timestamp) -> Option<Timestamp> {
    windows.iter().filter_map(|w| w.active_until(now)).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_weekend_freeze_in_berlin() {
        // Friday 18:00 to Monday 08:00, Berlin time (CET in winter: UTC+1).
        let w = FreezeWindow::new("0 18 * * FRI", Duration::from_secs(62 * 3600), "Europe/Berlin").unwrap();
        // 2026-11-27 is a Friday.
        assert_eq!(w.active_until(at("2026-11-27T16:59:00Z")), None);
        assert_eq!(w.active_until(at("2026-11-27T17:00:00Z")), Some(at("2026-11-30T07:00:00Z")));
        assert_eq!(w.active_until(at("2026-11-29T12:00:00Z")), Some(at("2026-11-30T07:00:00Z")));
        assert_eq!(w.active_until(at("2026-11-30T07:00:00Z")), None);
        assert_eq!(
            w.next(at("2026-11-25T12:00:00Z")),
            Some((at("2026-11-27T17:00:00Z"), at("2026-11-30T07:00:00Z")))
        );
        // The same with the weekday as a standard cron number (5 = Friday).
        let n = FreezeWindow::new("0 18 * * 5", Duration::from_secs(3600), "Europe/Berlin").unwrap();
        assert_eq!(n.next(at("2026-11-25T12:00:00Z")).unwrap().0, at("2026-11-27T17:00:00Z"));
        let sunday = FreezeWindow::new("0 12 * * 0", Duration::from_secs(3600), "UTC").unwrap();
        assert_eq!(sunday.next(at("2026-11-25T12:00:00Z")).unwrap().0, at("2026-11-29T12:00:00Z"));
    }

    /// Daylight saving, decided: on the night Berlin falls back (2026-10-25, 03:00 CEST →
    /// 02:00 CET) 02:30 happens twice and a window at 02:30 starts once, at the first
    /// (00:30 UTC), lasting an hour of absolute time; on the night it springs forward
    /// (2026-03-29, 02:00 → 03:00) 02:30 does not exist and the window starts at 03:30
    /// CEST (01:30 UTC), moved forward by the gap, rather than not at all.
    #[test]
    fn daylight_saving_changes() {
        let w = FreezeWindow::new("30 2 * * *", Duration::from_secs(3600), "Europe/Berlin").unwrap();
        let (start, end) = w.next(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(start, at("2026-10-25T00:30:00Z"), "the first 02:30");
        assert_eq!(end, at("2026-10-25T01:30:00Z"), "an hour of absolute time");
        let (after, _) = w.next(end).unwrap();
        assert_eq!(
            after,
            at("2026-10-26T01:30:00Z"),
            "not again at the second 02:30, next at the next night's"
        );
        assert_eq!(w.active_until(at("2026-10-25T01:45:00Z")), None, "the repeated 02:30 opens no window");
        let (start, end) = w.next(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(start, at("2026-03-29T01:30:00Z"), "02:30 skipped: 03:30 CEST");
        assert_eq!(end, at("2026-03-29T02:30:00Z"));
        assert_eq!(w.active_until(at("2026-03-29T02:00:00Z")), Some(at("2026-03-29T02:30:00Z")));
        // Nights without a change are untouched: 02:30 CEST is 00:30 UTC in summer.
        assert_eq!(w.next(at("2026-07-01T12:00:00Z")).unwrap().0, at("2026-07-02T00:30:00Z"));
    }

    #[test]
    fn bad_windows_say_why() {
        assert!(
            FreezeWindow::new("0 18 * *", Duration::from_secs(60), "UTC")
                .unwrap_err()
                .contains("5 cron fields")
        );
        assert!(FreezeWindow::new("0 25 * * *", Duration::from_secs(60), "UTC").is_err());
        assert!(
            FreezeWindow::new("0 18 * * FRI", Duration::from_secs(60), "Mars/Olympus")
                .unwrap_err()
                .contains("Mars")
        );
        assert_eq!(weekday_field("1-5"), "2-6");
        assert_eq!(weekday_field("*/2"), "*/2");
        assert_eq!(weekday_field("0,6"), "1,7");
    }
}
