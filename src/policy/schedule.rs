//! Time windows that change what a group blocks ("games allowed 12:00–13:00 on weekdays").
//!
//! Windows are evaluated in the school's own time zone (jiff, with the system tz database),
//! so the clocks going forward or back moves the window with the school day rather than
//! with UTC. A window whose end is earlier than its start runs past midnight into the next
//! day ("out of school hours" 16:00–08:00).

use crate::lists::bundle::Mask;

/// A resolved schedule window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Label from the config.
    pub name: String,
    /// Bit i = opens on weekday i (0 = Monday).
    pub days: u8,
    /// Opening time, minutes after local midnight.
    pub from_min: u16,
    /// Closing time, minutes after local midnight (exclusive).
    pub to_min: u16,
    /// Categories allowed while open.
    pub allow: Mask,
    /// Categories blocked while open.
    pub block: Mask,
}

impl Window {
    /// Is the window open at this local time?
    pub fn is_open(&self, local: &jiff::Zoned) -> bool {
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let opens_on = |d: u8| self.days & (1 << d) != 0;
        if self.from_min < self.to_min {
            opens_on(day) && (self.from_min..self.to_min).contains(&minute)
        } else {
            let yesterday = (day + 6) % 7;
            (opens_on(day) && minute >= self.from_min)
                || (opens_on(yesterday) && minute < self.to_min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Zoned {
        format!("{s}[Europe/London]").parse().unwrap()
    }

    #[test]
    fn lunchtime_weekdays() {
        let w = Window {
            name: "lunch".into(),
            days: 0b11111,
            from_min: 720,
            to_min: 780,
            allow: 1,
            block: 0,
        };
        assert!(w.is_open(&at("2026-11-23T12:30")), "Monday 12:30");
        assert!(!w.is_open(&at("2026-11-23T13:00")), "end is exclusive");
        assert!(!w.is_open(&at("2026-11-23T11:59")));
        assert!(!w.is_open(&at("2026-11-22T12:30")), "Sunday");
    }

    #[test]
    fn overnight_window_crosses_midnight() {
        // Opens Friday 16:00, so Saturday 07:00 is still inside; Monday 07:00 is not
        // (Sunday is not an opening day).
        let w = Window {
            name: "ooh".into(),
            days: 0b10000,
            from_min: 960,
            to_min: 480,
            allow: 1,
            block: 0,
        };
        assert!(w.is_open(&at("2026-11-27T17:00")));
        assert!(w.is_open(&at("2026-11-28T07:00")));
        assert!(!w.is_open(&at("2026-11-28T08:00")));
        assert!(!w.is_open(&at("2026-11-30T07:00")));
    }

    #[test]
    fn follows_local_time_across_dst() {
        let w = Window {
            name: "lunch".into(),
            days: 0b1111111,
            from_min: 720,
            to_min: 780,
            allow: 1,
            block: 0,
        };
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        // 12:30 UTC is 12:30 local in winter (GMT) but 13:30 in summer (BST).
        let winter: jiff::Timestamp = "2026-03-28T12:30:00Z".parse().unwrap();
        let summer: jiff::Timestamp = "2026-03-29T12:30:00Z".parse().unwrap();
        assert!(w.is_open(&winter.to_zoned(tz.clone())));
        assert!(!w.is_open(&summer.to_zoned(tz)));
    }
}
