//! What a school-scoped admin token may see and change.
//!
//! A token with `school = "ID"` acts for one `[[school]]`: it sees incidents, exceptions
//! and unblock requests whose groups all belong to that school, grants exceptions only for
//! those groups (an exception naming no group means "all of this school's groups", never
//! every group of the trust), and may not unblock a name in a trust-wide baseline
//! category. Everything trust-wide (site reports, which change the shared lists; the audit
//! log; enrolled devices) needs a trust token. Rows are filtered here, in Rust, so the
//! rule is the same whichever storage backend holds them; a row the caller may not see is
//! answered 404, exactly as a row that does not exist, so ids do not leak other schools'
//! activity.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::http::StatusCode;
use axum::response::Response;

use super::auth::{Caller, error};
use crate::config::Config;
use crate::state::Snapshot;

/// The reach of the caller's token.
#[derive(Debug, Clone)]
pub struct Scope {
    /// None: trust-wide. Some: the school's id and groups.
    school: Option<(String, Vec<String>)>,
}

impl Scope {
    /// The scope of `caller` under `config`. A token naming a school that a reload has
    /// since removed sees nothing (an empty group list), never everything.
    pub fn of(caller: &Caller, config: &Config) -> Scope {
        let school = caller.school.as_ref().map(|id| {
            let groups = config
                .schools
                .get(id)
                .map(|s| s.groups.clone())
                .unwrap_or_default();
            (id.clone(), groups)
        });
        Scope { school }
    }

    /// A trust-wide token?
    pub fn is_trust(&self) -> bool {
        self.school.is_none()
    }

    /// Is `group` one of the caller's?
    pub fn owns_group(&self, group: &str) -> bool {
        match &self.school {
            None => true,
            Some((_, groups)) => groups.iter().any(|g| g == group),
        }
    }

    /// Does a row applying to `groups` belong to the caller? An empty list means every
    /// group of the trust: only a trust token owns that.
    pub fn owns_groups(&self, groups: &[String]) -> bool {
        match &self.school {
            None => true,
            Some(_) => !groups.is_empty() && groups.iter().all(|g| self.owns_group(g)),
        }
    }

    /// The groups an exception granted by the caller applies to: as asked for a trust
    /// token; for a school token, its own groups only, "none named" meaning all of them.
    pub fn grant_groups(&self, asked: &[String]) -> Result<Vec<String>, Response> {
        match &self.school {
            None => Ok(asked.to_vec()),
            // A school with no groups (never after a checked load) grants nothing: an
            // empty list would mean every group of the trust.
            Some((id, mine)) if mine.is_empty() => Err(error(
                StatusCode::FORBIDDEN,
                &format!("school {id:?} has no groups"),
            )),
            Some((_, mine)) if asked.is_empty() => Ok(mine.clone()),
            Some((id, _)) => match asked.iter().find(|g| !self.owns_group(g)) {
                Some(g) => Err(error(
                    StatusCode::FORBIDDEN,
                    &format!("groups: {g:?} is not a group of school {id:?}"),
                )),
                None => Ok(asked.to_vec()),
            },
        }
    }

    /// Ok for a trust token; 403 for a school token.
    pub fn require_trust(&self, what: &str) -> Result<(), Response> {
        match &self.school {
            None => Ok(()),
            Some((id, _)) => Err(error(
                StatusCode::FORBIDDEN,
                &format!("{what} is trust-wide: a token of school {id:?} may not do this"),
            )),
        }
    }

    /// 404 unless the row applying to `groups` is the caller's.
    pub fn visible(&self, groups: &[String], what: &str, id: i64) -> Result<(), Response> {
        if self.owns_groups(groups) {
            Ok(())
        } else {
            Err(error(StatusCode::NOT_FOUND, &format!("no {what} {id}")))
        }
    }

    /// A school token may not unblock a name listed in a trust-wide baseline category
    /// (`[trust] block`); a trust token may.
    pub fn check_baseline(&self, snap: &Snapshot, subject: &str) -> Result<(), Response> {
        if self.is_trust() || snap.config.schools.baseline.is_empty() {
            return Ok(());
        }
        let domains: Vec<String> = match snap.policy.services().domains_of(subject) {
            Some(ds) => ds.iter().map(|d| d.to_string()).collect(),
            None => vec![subject.to_owned()],
        };
        let bundle = snap.policy.bundle();
        for d in &domains {
            let listed = bundle
                .verdicts(&bundle.lookup(&crate::lists::key::reverse_key(d)))
                .masks;
            let hit = listed.block | listed.nodata;
            let found = (0..bundle.categories().len() as u16)
                .filter(|&c| hit & (1 << c) != 0)
                .map(|c| snap.policy.category_name(c))
                .find(|c| snap.config.schools.in_baseline(c));
            if let Some(cat) = found {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{d} is in {cat:?}, blocked trust-wide ([trust] block): only a trust token may unblock it"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the block page says about the school of a client's group: its name, who to ask
/// and its own text (HTML, escaped with `esc`), and the time zone its clock is shown in.
/// Nothing for a group in no school, so a config without `[[school]]` shows today's page.
pub fn block_page_section(
    config: &Config,
    group: &str,
    esc: impl Fn(&str) -> String,
) -> (String, jiff::tz::TimeZone) {
    let Some(s) = config.schools.of_group(group) else {
        return (String::new(), config.server.timezone.clone());
    };
    let mut html = format!(
        "<h2>Your school</h2><p class=\"school\"><strong>{}</strong></p>",
        esc(&s.name)
    );
    if !s.contact.is_empty() {
        html.push_str(&format!(
            "<p class=\"contact\">Who to ask: {}</p>",
            esc(&s.contact)
        ));
    }
    if let Some(t) = s.block_page_text.as_deref().filter(|t| !t.is_empty()) {
        html.push_str(&format!("<p class=\"school-text\">{}</p>", esc(t)));
    }
    (html, s.timezone.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let text = r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["192.0.2.53"]
[[network]]
cidrs = ["10.1.0.0/16"]
group = "oak-pupils"
[group.oak-pupils]
[group.oak-staff]
[group.elm-pupils]
[[school]]
id = "oak"
name = "Oak"
groups = ["oak-pupils", "oak-staff"]
[[school]]
id = "elm"
name = "Elm"
groups = ["elm-pupils"]
"#;
        Config::from_str(Path::new("/tmp/scope.toml"), text).unwrap()
    }

    fn caller(school: Option<&str>) -> Caller {
        Caller {
            who: Some(("t".into(), crate::config::Role::Technician)),
            school: school.map(str::to_owned),
        }
    }

    fn v(gs: &[&str]) -> Vec<String> {
        gs.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn a_school_token_owns_only_rows_wholly_in_its_groups() {
        let c = config();
        let oak = Scope::of(&caller(Some("oak")), &c);
        assert!(oak.owns_groups(&v(&["oak-pupils"])));
        assert!(oak.owns_groups(&v(&["oak-pupils", "oak-staff"])));
        assert!(!oak.owns_groups(&v(&["oak-pupils", "elm-pupils"])));
        assert!(!oak.owns_groups(&[]), "every group is the trust's");
        let trust = Scope::of(&caller(None), &c);
        assert!(trust.owns_groups(&[]) && trust.owns_groups(&v(&["elm-pupils"])));
    }

    #[test]
    fn grants_stay_inside_the_school() {
        let c = config();
        let oak = Scope::of(&caller(Some("oak")), &c);
        assert_eq!(
            oak.grant_groups(&[]).unwrap(),
            v(&["oak-pupils", "oak-staff"])
        );
        assert_eq!(
            oak.grant_groups(&v(&["oak-staff"])).unwrap(),
            v(&["oak-staff"])
        );
        assert_eq!(
            oak.grant_groups(&v(&["elm-pupils"])).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        let gone = Scope::of(&caller(Some("ash")), &c);
        assert!(gone.grant_groups(&[]).is_err(), "never every group");
        assert!(!gone.owns_groups(&v(&["oak-pupils"])));
        assert!(
            Scope::of(&caller(None), &c)
                .grant_groups(&[])
                .unwrap()
                .is_empty()
        );
    }
}
