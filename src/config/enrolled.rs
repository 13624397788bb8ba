//! `[[enrolled_device]]`: devices enrolled in the config file rather than through the admin
//! API (a sample device, or a fleet a school manages as code). Each gets an ID it sends
//! over DoT (first SNI label) or DoH (`/dns-query/{id}`), and the group its queries are
//! decided in wherever the device is. This file only reads and checks the entries; the
//! index the encrypted listeners consult is [`crate::identity::DeviceIndex`].

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{GroupConfig, Problem};
use crate::identity::EnrolledDevice;

/// Longest device name or owner kept (they are shown in logs and tables).
pub const MAX_NAME_LEN: usize = 128;

/// `[[enrolled_device]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrolledDevice {
    /// The ID the device sends: one DNS label (letters, digits, hyphens; at most 63).
    pub id: String,
    /// The device's name, e.g. "ks2-ipad-14".
    pub name: String,
    /// Who it belongs to. Default "school".
    #[serde(default = "default_owner")]
    pub owner: String,
    /// The group its queries are decided in.
    pub group: String,
    /// When the enrolment ends: an RFC 3339 time or a date (midnight UTC). Default: never.
    pub expires: Option<String>,
}

fn default_owner() -> String {
    "school".into()
}

/// Check `[[enrolled_device]]` entries: IDs usable as a DNS label and a URL path segment,
/// unique; the group configured; names bounded.
pub(super) fn enrolled(
    raw: Vec<RawEnrolledDevice>,
    groups: &BTreeMap<String, GroupConfig>,
    p: &mut Vec<Problem>,
) -> Vec<EnrolledDevice> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let key = format!("enrolled_device[{i}]");
        let before = p.len();
        if let Err(e) = check_id(&d.id) {
            p.push(Problem::new(format!("{key}.id"), e));
        } else if !seen.insert(d.id.to_ascii_lowercase()) {
            p.push(Problem::new(
                format!("{key}.id"),
                "this ID is enrolled twice",
            ));
        }
        if !groups.contains_key(&d.group) {
            let msg = format!("no [group.{}] is defined", d.group);
            p.push(Problem::new(format!("{key}.group"), msg));
        }
        for (field, v) in [("name", &d.name), ("owner", &d.owner)] {
            if v.is_empty() || v.len() > MAX_NAME_LEN {
                let msg = format!("must be 1 to {MAX_NAME_LEN} bytes");
                p.push(Problem::new(format!("{key}.{field}"), msg));
            }
        }
        let expires = d.expires.as_deref().and_then(|e| match parse_expiry(e) {
            Ok(t) => Some(t),
            Err(msg) => {
                p.push(Problem::new(format!("{key}.expires"), msg));
                None
            }
        });
        if p.len() == before {
            out.push(EnrolledDevice {
                id: d.id.to_ascii_lowercase().into(),
                name: d.name.into(),
                owner: d.owner.into(),
                group: d.group.into(),
                expires,
            });
        }
    }
    out
}

/// An ID is one DNS label (it is the first label of the DoT server name) and so also a
/// safe URL path segment: 1–63 letters, digits and inner hyphens. Compared lower-cased.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_chars = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if id.is_empty() || id.len() > 63 || !ok_chars || id.starts_with('-') || id.ends_with('-') {
        return Err(format!(
            "{id:?} is not a device ID: 1 to 63 letters, digits or inner hyphens (one DNS label)"
        ));
    }
    Ok(())
}

/// Unix seconds from an RFC 3339 time or a plain date (midnight UTC).
fn parse_expiry(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_second());
    }
    let date: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a date (2027-07-31)"))?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_dns_labels() {
        assert!(check_id("sample-pupil-device").is_ok());
        assert!(check_id("k3x9q2").is_ok());
        for bad in ["", "-a", "a-", "a.b", "a/b", "é", &"a".repeat(64)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_takes_a_time_or_a_date() {
        assert_eq!(parse_expiry("1970-01-02"), Ok(86_400));
        assert_eq!(parse_expiry("1970-01-01T00:01:00Z"), Ok(60));
        assert!(parse_expiry("next tuesday").is_err());
    }
}
