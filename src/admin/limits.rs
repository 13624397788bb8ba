//! Bounds on what anonymous callers can store: a per-address submission budget and limits
//! on every free-text field. Anonymous forms are the one way a pupil device writes to the
//! school's disk, so each has a size and a rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest person's name (requester, reporter).
pub const MAX_NAME: usize = 100;
/// Longest reason or comment.
pub const MAX_TEXT: usize = 1_000;
/// Longest reported URL.
pub const MAX_URL: usize = 2_048;
/// Longest category name.
pub const MAX_CATEGORY: usize = 64;

/// Client addresses remembered at once; when full, expired windows are dropped first and
/// a new address beyond that is refused (failing closed keeps the table bounded).
const MAX_TRACKED: usize = 4_096;
/// The budget's window.
const WINDOW: Duration = Duration::from_secs(3_600);

/// Anonymous submissions per client address in a fixed one-hour window.
#[derive(Default)]
pub struct Submissions {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Submissions {
    /// Count one submission from `ip`; false if its budget of `per_hour` is spent.
    pub fn allow(&self, ip: IpAddr, per_hour: u32) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if seen.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= per_hour {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// A free-text field, trimmed, checked against `max` characters and free of control
/// characters (line breaks and tabs only where `multiline`: a CR/LF in a name could forge
/// lines in a list file or a log). `Err` names the field.
pub fn text<'a>(
    field: &str,
    value: &'a str,
    max: usize,
    required: bool,
    multiline: bool,
) -> Result<&'a str, String> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(format!("{field}: required"));
    }
    if v.chars().count() > max {
        return Err(format!("{field}: at most {max} characters"));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if v.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(format!("{field}: control characters are not allowed"));
    }
    Ok(v)
}

/// `s` with every control character (CR, LF, tab, ...) replaced by a space: for anything
/// written into a line-oriented file.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_per_address() {
        let s = Submissions::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(s.allow(a, 2) && s.allow(a, 2));
        assert!(!s.allow(a, 2));
        assert!(s.allow(b, 2));
    }

    #[test]
    fn fields() {
        assert!(text("requester", &"x".repeat(101), MAX_NAME, true, false).is_err());
        assert!(text("requester", "Ann\r\nevil", MAX_NAME, true, false).is_err());
        assert!(text("reason", "two\nlines", MAX_TEXT, true, true).is_ok());
        assert!(text("reason", "  ", MAX_TEXT, true, true).is_err());
        assert_eq!(one_line("a\r\nb"), "a  b");
    }
}
