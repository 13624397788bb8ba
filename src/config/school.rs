//! `[[school]]` and `[trust]`: many schools in one deployment.
//!
//! A trust (or local authority) runs one Chaperone for several schools. Each school owns
//! some policy groups (and, through them, the networks and devices of those groups), has
//! its own time zone for schedules, its own name and contact on the block page, and admin
//! tokens scoped to it. `[trust] block` is a baseline every group of every school blocks:
//! a school may tighten it but never loosen it, and a config that tries is refused here,
//! naming the key. A config without `[[school]]` is one implicit school, as before.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{DeviceConfig, GroupConfig, Problem};

/// Most `[[school]]` sections: every school owns at least one group, and groups are
/// bits of a `u128`, so more could never be valid.
pub const MAX_SCHOOLS: usize = super::MAX_GROUPS;
/// Longest school id (it is a metrics label and part of URLs).
pub const MAX_ID: usize = 32;
/// Longest name, contact or block page text.
const MAX_TEXT: usize = 1000;
/// The `school` label of metrics for groups in no school.
pub const NO_SCHOOL: &str = "none";

/// `[[school]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchool {
    /// Short slug: lowercase letters, digits and '-' (the metrics label and report key).
    pub id: String,
    /// The school's name, shown on the block page and in reports.
    pub name: String,
    /// IANA time zone of the school's schedules. Default: `[server] timezone`.
    pub timezone: Option<String>,
    /// The policy groups that belong to the school (each to at most one school).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Who to ask about a block, shown on the block page (e.g. "IT office, room 12").
    #[serde(default)]
    pub contact: String,
    /// Extra text shown on the block page to this school's clients.
    pub block_page_text: Option<String>,
}

/// `[trust]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    /// Categories every group of every school blocks (the illegal categories always are).
    #[serde(default)]
    pub block: Vec<String>,
}

/// One `[[school]]`, checked.
#[derive(Debug, Clone)]
pub struct SchoolConfig {
    /// Slug.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Time zone of its groups' schedules.
    pub timezone: jiff::tz::TimeZone,
    /// Its groups.
    pub groups: Vec<String>,
    /// Block page contact.
    pub contact: String,
    /// Block page text.
    pub block_page_text: Option<String>,
}

/// `[[school]]` and `[trust]`, checked.
#[derive(Debug, Clone, Default)]
pub struct Schools {
    /// The schools, in config order.
    pub schools: Vec<SchoolConfig>,
    /// `[trust] block`: the trust-wide baseline.
    pub baseline: Vec<String>,
}

impl Schools {
    /// The school with this id.
    pub fn get(&self, id: &str) -> Option<&SchoolConfig> {
        self.schools.iter().find(|s| s.id == id)
    }

    /// The school a group belongs to, if any.
    pub fn of_group(&self, group: &str) -> Option<&SchoolConfig> {
        self.schools
            .iter()
            .find(|s| s.groups.iter().any(|g| g == group))
    }

    /// The metrics label of a group's school ([`NO_SCHOOL`] if it is in none).
    pub fn label_of_group(&self, group: &str) -> &str {
        self.of_group(group).map_or(NO_SCHOOL, |s| s.id.as_str())
    }

    /// Is `category` in the trust-wide baseline?
    pub fn in_baseline(&self, category: &str) -> bool {
        self.baseline.iter().any(|c| c == category)
    }
}

/// A valid school id: 1..=32 of `a-z`, `0-9`, `-`, not starting with '-', not "none".
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id != NO_SCHOOL
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Check `[[school]]` against the groups, and `[trust]`.
pub(super) fn schools(
    raw: Vec<RawSchool>,
    trust: RawTrust,
    default_tz: &jiff::tz::TimeZone,
    groups: &BTreeMap<String, GroupConfig>,
    problems: &mut Vec<Problem>,
) -> Schools {
    if raw.len() > MAX_SCHOOLS {
        problems.push(Problem::new(
            "school",
            format!(
                "{} schools, but at most {MAX_SCHOOLS} are supported",
                raw.len()
            ),
        ));
    }
    let mut ids = BTreeSet::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let schools = raw
        .into_iter()
        .enumerate()
        .map(|(i, s)| school(i, s, default_tz, groups, &mut ids, &mut owner, problems))
        .collect();
    for (j, c) in trust.block.iter().enumerate() {
        if c.is_empty() {
            problems.push(Problem::new(
                format!("trust.block[{j}]"),
                "empty category name",
            ));
        }
    }
    Schools {
        schools,
        baseline: trust.block,
    }
}

fn school(
    i: usize,
    s: RawSchool,
    default_tz: &jiff::tz::TimeZone,
    groups: &BTreeMap<String, GroupConfig>,
    ids: &mut BTreeSet<String>,
    owner: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> SchoolConfig {
    let key = format!("school[{i}]");
    let mut add = |k: &str, m: String| problems.push(Problem::new(format!("{key}.{k}"), m));
    if !valid_id(&s.id) {
        add(
            "id",
            format!(
                "{:?} is not a school id: 1 to {MAX_ID} of a-z, 0-9 and '-' (not \"{NO_SCHOOL}\")",
                s.id
            ),
        );
    } else if !ids.insert(s.id.clone()) {
        add("id", format!("{:?} is used by another [[school]]", s.id));
    }
    for (k, v) in [("name", Some(&s.name)), ("contact", Some(&s.contact))]
        .into_iter()
        .chain([("block_page_text", s.block_page_text.as_ref())])
    {
        if v.is_some_and(|v| v.len() > MAX_TEXT) {
            add(k, format!("at most {MAX_TEXT} bytes"));
        }
    }
    if s.name.trim().is_empty() {
        add("name", "is required (shown on the block page)".into());
    }
    if s.groups.is_empty() {
        add("groups", "a school needs at least one group".into());
    }
    for (j, g) in s.groups.iter().enumerate() {
        if !groups.contains_key(g) {
            add(
                &format!("groups[{j}]"),
                format!("no [group.{g}] is defined"),
            );
        } else if let Some(prev) = owner.insert(g.clone(), s.id.clone()) {
            add(
                &format!("groups[{j}]"),
                format!("group {g:?} already belongs to school {prev:?}"),
            );
        }
    }
    let timezone = match &s.timezone {
        None => default_tz.clone(),
        Some(tz) => jiff::tz::TimeZone::get(tz).unwrap_or_else(|e| {
            add("timezone", format!("unknown time zone {tz:?}: {e}"));
            default_tz.clone()
        }),
    };
    SchoolConfig {
        id: s.id,
        name: s.name,
        timezone,
        groups: s.groups,
        contact: s.contact,
        block_page_text: s.block_page_text,
    }
}

/// The baseline can be tightened, never loosened: no group may allow, approve or schedule
/// open a baseline category, and no device may allow one. Then every group blocks the
/// baseline (added to its `block`, so the policy needs no new rule).
pub(super) fn apply_baseline(
    schools: &Schools,
    groups: &mut BTreeMap<String, GroupConfig>,
    devices: &[DeviceConfig],
    problems: &mut Vec<Problem>,
) {
    if schools.baseline.is_empty() {
        return;
    }
    let mut refuse = |key: String, c: &str| {
        problems.push(Problem::new(
            key,
            format!("{c:?} is blocked trust-wide ([trust] block) and cannot be opened by a school"),
        ));
    };
    for (name, g) in groups.iter() {
        for (j, c) in g.approved.iter().enumerate() {
            if schools.in_baseline(c) {
                refuse(format!("group.{name}.approved[{j}]"), c);
            }
        }
        for (i, s) in g.schedules.iter().enumerate() {
            for (j, c) in s.allow.iter().enumerate() {
                if schools.in_baseline(c) {
                    refuse(format!("group.{name}.schedule[{i}].allow[{j}]"), c);
                }
            }
        }
    }
    for (i, d) in devices.iter().enumerate() {
        for (j, c) in d.allow.iter().enumerate() {
            if schools.in_baseline(c) {
                refuse(format!("device[{i}].allow[{j}]"), c);
            }
        }
    }
    for g in groups.values_mut() {
        for c in &schools.baseline {
            if !g.block.contains(c) {
                g.block.push(c.clone());
            }
        }
    }
}

/// Token `school` references must name a `[[school]]`.
pub(super) fn check_token_schools(
    schools: &Schools,
    tokens: &[super::TokenConfig],
    problems: &mut Vec<Problem>,
) {
    for (i, t) in tokens.iter().enumerate() {
        if let Some(id) = &t.school
            && schools.get(id).is_none()
        {
            problems.push(Problem::new(
                format!("admin.token[{i}].school"),
                format!("no [[school]] has id {id:?}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"
[upstream]
servers = ["192.0.2.53"]
[[network]]
cidrs = ["10.1.0.0/16"]
group = "a-pupils"
[[network]]
cidrs = ["10.2.0.0/16"]
group = "b-pupils"
[group.a-pupils]
[group.b-pupils]
[group.trust-staff]
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_str(Path::new("/tmp/schools.toml"), &format!("{BASE}{extra}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn schools_own_groups_and_time_zones() {
        let c = load(
            r#"
[[school]]
id = "oak"
name = "Oak Primary"
timezone = "Asia/Tokyo"
groups = ["a-pupils"]
contact = "Mr Smith, IT office"
[[school]]
id = "elm"
name = "Elm Academy"
groups = ["b-pupils"]
"#,
        )
        .unwrap();
        assert_eq!(c.schools.of_group("a-pupils").unwrap().name, "Oak Primary");
        assert_eq!(c.schools.label_of_group("b-pupils"), "elm");
        assert_eq!(c.schools.label_of_group("trust-staff"), NO_SCHOOL);
        assert_eq!(
            c.schools.get("oak").unwrap().timezone.iana_name(),
            Some("Asia/Tokyo")
        );
        assert_eq!(
            c.schools.get("elm").unwrap().timezone.iana_name(),
            Some("Europe/London"),
            "the server's zone by default"
        );
    }

    #[test]
    fn bad_schools_name_their_keys() {
        let e = load(
            r#"
[[school]]
id = "Oak School"
name = ""
timezone = "Mars/Olympus"
groups = ["a-pupils", "nope"]
[[school]]
id = "elm"
name = "Elm"
groups = ["a-pupils"]
[[school]]
id = "elm"
name = "Elm again"
groups = []
[admin]
listen = "127.0.0.1:0"
[[admin.token]]
name = "x"
role = "technician"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
school = "ash"
"#,
        )
        .unwrap_err();
        for key in [
            "school[0].id",
            "school[0].name",
            "school[0].timezone",
            "school[0].groups[1]",
            "school[1].groups[0]: group \"a-pupils\" already belongs to school",
            "school[2].id",
            "school[2].groups",
            "admin.token[0].school",
        ] {
            assert!(e.contains(key), "{key} not in {e}");
        }
    }

    #[test]
    fn the_baseline_cannot_be_loosened() {
        let text = BASE.replace(
            "[group.a-pupils]\n",
            r#"[group.a-pupils]
allow_only = true
approved = ["education", "adult"]
[[group.a-pupils.schedule]]
name = "lunch"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["games", "gambling"]
"#,
        ) + r#"
[trust]
block = ["gambling", "adult"]
[[device]]
name = "library"
clients = ["10.1.9.9"]
allow = ["gambling"]
"#;
        let e = Config::from_str(Path::new("/tmp/s.toml"), &text)
            .unwrap_err()
            .to_string();
        for key in [
            "group.a-pupils.approved[1]: \"adult\" is blocked trust-wide ([trust] block) and cannot be opened by a school",
            "group.a-pupils.schedule[0].allow[1]: \"gambling\" is blocked trust-wide",
            "device[0].allow[0]: \"gambling\"",
        ] {
            assert!(e.contains(key), "{key} not in {e}");
        }
        let c = load("[trust]\nblock = [\"gambling\"]\n").unwrap();
        for g in c.groups.values() {
            assert!(
                g.block.contains(&"gambling".to_owned()),
                "every group blocks it"
            );
        }
    }

    #[test]
    fn ids() {
        assert!(valid_id("oak-primary-2"));
        for bad in ["", "none", "-x", "Oak", "a b", &"x".repeat(33)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
