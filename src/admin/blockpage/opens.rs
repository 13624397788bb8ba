//! When a schedule will let this browser reach a site that is blocked now ("games sites
//! open at 12:00"). It asks the live policy itself, at each moment a schedule window of
//! the group opens or closes in the coming week, so the page can never promise what the
//! DNS server will not do. It owns no rules of its own.

use jiff::ToSpan;
use jiff::civil::Time;

use crate::policy::{Client, Decision, Policy};

/// How many days ahead the page looks: a weekly timetable repeats after that.
const DAYS_AHEAD: i64 = 7;

/// The first moment after `now` at which `policy` lets `client` reach `key` (reversed
/// labels) because a schedule of group `group` changed, in the group's zone; None when no
/// schedule opens it within a week.
pub fn next_open(
    policy: &Policy,
    client: &Client,
    key: &[u8],
    group: u16,
    now: jiff::Timestamp,
) -> Option<jiff::Zoned> {
    let (edges, zone) = policy.schedule_edges(group);
    if edges.is_empty() {
        return None;
    }
    let today = now.to_zoned(zone.clone()).date();
    for d in 0..DAYS_AHEAD {
        let Ok(date) = today.checked_add(d.days()) else {
            continue;
        };
        for &minute in &edges {
            let Ok(time) = Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0) else {
                continue;
            };
            let Ok(at) = date.to_datetime(time).to_zoned(zone.clone()) else {
                continue;
            };
            if at.timestamp() <= now {
                continue;
            }
            let decision = policy.decide(client, key, at.timestamp(), None).decision;
            if matches!(decision, Decision::Allow(_) | Decision::Rewrite { .. }) {
                return Some(at);
            }
        }
    }
    None
}
