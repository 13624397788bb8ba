//! Times a person types (`chaperone explain --at`), read in the school's time zone: a
//! technician asking "what happens at Monday lunchtime?" thinks in school time, not UTC.
//! It owns parsing only; deciding stays in [`crate::policy`].
//!
//! Accepted forms (see [`FORMS`]):
//! - RFC 3339 with an offset: `2026-12-01T12:30:00Z`, `2026-12-01T12:30:00+01:00`;
//! - a local date and time in the school time zone: `2026-12-01T12:30`, `2026-12-01 12:30`
//!   (seconds optional);
//! - a weekday and time: `mon 12:30`, `Monday 12:30` — the next time it is that weekday
//!   and time in school, today if it is still to come;
//! - a time alone: `12:30` — today in school (earlier or later).

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The accepted forms, for error messages and help.
pub const FORMS: &str = "RFC 3339 (2026-12-01T12:30:00Z), a school-time date and time (2026-12-01T12:30 or \"2026-12-01 12:30\"), a weekday and time (\"mon 12:30\": the next Monday at 12:30 school time) or a time today (12:30)";

/// Why a time could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {input:?} as a time: use {FORMS}")]
pub struct BadTime {
    input: String,
}

/// Read `input` as an instant; local forms are in `tz`, relative forms count from `now`.
pub fn parse(input: &str, tz: &TimeZone, now: Timestamp) -> Result<Timestamp, BadTime> {
    let s = input.trim();
    let bad = || BadTime {
        input: input.to_owned(),
    };
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return in_school(dt, tz).ok_or_else(bad);
    }
    if let Ok(t) = s.parse::<Time>() {
        let today = now.to_zoned(tz.clone()).date();
        return in_school(today.to_datetime(t), tz).ok_or_else(bad);
    }
    let (day, time) = s.split_once(char::is_whitespace).ok_or_else(bad)?;
    let weekday = weekday(day).ok_or_else(bad)?;
    let time: Time = time.trim().parse().map_err(|_| bad())?;
    next_weekday_at(weekday, time, tz, now).ok_or_else(bad)
}

/// A school-time wall clock reading as an instant (the earlier one in a DST overlap, the
/// later side of a DST gap, as jiff's default "compatible" rule).
fn in_school(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// The first instant at or after `now` that is `weekday` at `time` in school.
fn next_weekday_at(
    weekday: Weekday,
    time: Time,
    tz: &TimeZone,
    now: Timestamp,
) -> Option<Timestamp> {
    let today: Date = now.to_zoned(tz.clone()).date();
    (0..=7i64)
        .filter_map(|d| today.checked_add(d.days()).ok())
        .filter(|d| d.weekday() == weekday)
        .filter_map(|d| in_school(d.to_datetime(time), tz))
        .find(|t| *t >= now)
}

fn weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    let days = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    days.iter()
        .find(|(name, _)| s == *name || s == name[..3])
        .map(|&(_, w)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    /// Wednesday 2 December 2026 10:00 GMT.
    fn now() -> Timestamp {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn at(s: &str) -> String {
        parse(s, &london(), now()).unwrap().to_string()
    }

    #[test]
    fn every_form_reads_in_school_time() {
        assert_eq!(at("2026-12-01T12:30:00Z"), "2026-12-01T12:30:00Z");
        assert_eq!(at("2026-07-01T12:30:00+01:00"), "2026-07-01T11:30:00Z");
        // Summer: school time is BST, an hour ahead of UTC.
        assert_eq!(at("2026-07-01T12:30"), "2026-07-01T11:30:00Z");
        assert_eq!(at("2026-07-01 12:30"), "2026-07-01T11:30:00Z");
        assert_eq!(at("2026-12-01 12:30:15"), "2026-12-01T12:30:15Z");
        // Next Monday (Wednesday now), and today's Wednesday if still to come.
        assert_eq!(at("mon 12:30"), "2026-12-07T12:30:00Z");
        assert_eq!(at("Monday 12:30"), "2026-12-07T12:30:00Z");
        assert_eq!(at("wed 12:30"), "2026-12-02T12:30:00Z");
        assert_eq!(at("wed 09:00"), "2026-12-09T09:00:00Z");
        assert_eq!(at("12:30"), "2026-12-02T12:30:00Z");
    }

    #[test]
    fn a_bad_time_lists_the_accepted_forms() {
        for s in [
            "tomorrow",
            "mon",
            "funday 12:30",
            "2026-13-01 12:30",
            "mon 25:00",
        ] {
            let e = parse(s, &london(), now()).unwrap_err().to_string();
            assert!(
                e.contains("RFC 3339") && e.contains("mon 12:30"),
                "{s}: {e}"
            );
        }
    }
}
