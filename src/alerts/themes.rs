//! Themes: which blocked categories are a safeguarding concern, and how the DSL hears of
//! them (at once, in the daily digest, or not at all).
//!
//! A theme is a name ("self-harm"), a delivery and a list of categories (list categories,
//! `service:NAME`, `service-group:NAME`, and `bypass` for the resolver's own bypass
//! detection). Built-in themes cover the concerns of the DfE standards and Smoothwall's
//! defaults; `[alerts.themes.NAME]` changes their delivery or categories, or adds a theme.
//!
//! Defaults, and why:
//! - `self-harm` (self-harm, suicide) and `illegal` (every category whose verdict is
//!   illegal: CSAM, terrorism) are **instant**: a child at risk cannot wait for a digest.
//! - `extremism` (extremism, radicalisation, hate, agressif) is **digest**: the Prevent duty
//!   asks the DSL to know, and these lists catch news and history sites too.
//! - `sexual` (adult, porn, mixed_adult, lingerie), `weapons`, `drugs`, `gambling` and
//!   `bypass` (doh, vpn, proxy, the vpn service group, bypass detection) are **off**: the
//!   blocks happen (the filter stops the site), but these are high-volume hits (ads,
//!   sponsors, browsers looking up DoH servers on their own) that would bury the alerts
//!   that matter. A school turns each on with one line.
//!
//! Illegal-category hits are always incidents (the DfE rule): the `illegal` theme may be
//! instant or digest, never off, and an illegal category may not be put in another theme.
//! Built-in defaults name categories a school's lists may not have: those never match.
//! Categories a config names itself must exist (checked against the bundle by [`check`]).
//!
//! The lookup runs on the DNS path only for blocked queries: one map lookup by category
//! name, no allocation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{CategoryConfig, Problem, Verdict};
use crate::lists::bundle::Bundle;

/// The pseudo-category of the resolver's own bypass detection (record stage).
pub const BYPASS: &str = "bypass";
/// The theme of illegal-category hits.
pub const ILLEGAL: &str = "illegal";

/// How a theme's incidents reach the DSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// An alert per incident, at once.
    Instant,
    /// Listed in the daily digest.
    Digest,
    /// No incident.
    Off,
}

impl Delivery {
    /// From the config word.
    pub fn parse(s: &str) -> Option<Delivery> {
        match s {
            "instant" => Some(Delivery::Instant),
            "digest" => Some(Delivery::Digest),
            "off" => Some(Delivery::Off),
            _ => None,
        }
    }

    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Instant => "instant",
            Delivery::Digest => "digest",
            Delivery::Off => "off",
        }
    }
}

/// A theme before its categories are resolved.
#[derive(Debug, Clone)]
pub struct Theme {
    /// Name.
    pub name: String,
    /// Delivery.
    pub delivery: Delivery,
    /// Category references as written.
    pub categories: Vec<String>,
    /// The categories came from the config file (so each must exist).
    pub configured: bool,
}

impl Theme {
    /// An empty theme.
    pub fn new(name: &str, delivery: Delivery) -> Theme {
        Theme {
            name: name.to_owned(),
            delivery,
            categories: Vec::new(),
            configured: false,
        }
    }

    fn builtin(name: &str, delivery: Delivery, categories: &[&str]) -> Theme {
        Theme {
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            ..Theme::new(name, delivery)
        }
    }
}

/// The built-in themes (see the module documentation for the choice of defaults).
pub fn builtin() -> Vec<Theme> {
    use Delivery::*;
    vec![
        Theme::builtin("self-harm", Instant, &["self-harm", "suicide", "selfharm"]),
        Theme::builtin(ILLEGAL, Instant, &[]),
        Theme::builtin(
            "extremism",
            Digest,
            &[
                "extremism",
                "radicalisation",
                "radicalization",
                "hate",
                "agressif",
            ],
        ),
        Theme::builtin("sexual", Off, &["adult", "porn", "mixed_adult", "lingerie"]),
        Theme::builtin("weapons", Off, &["weapons", "dangerous_material"]),
        Theme::builtin("drugs", Off, &["drugs", "drogue"]),
        Theme::builtin(
            "gambling",
            Off,
            &["gambling", "arjel", "service-group:gambling"],
        ),
        Theme::builtin(
            "bypass",
            Off,
            &[
                BYPASS,
                "doh",
                "vpn",
                "proxy",
                "residential-proxies",
                "service-group:vpn",
            ],
        ),
    ]
}

/// A theme name: 1-32 lowercase letters, digits, hyphens.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One resolved theme.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ThemeInfo {
    /// Name.
    pub name: String,
    /// Delivery.
    pub delivery: Delivery,
    /// The bundle categories it covers (services expanded).
    pub categories: Vec<String>,
}

/// The resolved themes: what makes an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Themes {
    /// Every theme, built-in ones first.
    pub list: Vec<ThemeInfo>,
    /// Category → theme index (every theme, off ones included).
    by_category: BTreeMap<String, usize>,
    /// Index of the illegal theme.
    illegal: usize,
    /// One incident per (client, name, category) per window.
    pub window: Duration,
    /// Categories the config named itself (key, name): each must be in the bundle.
    strict: Vec<(String, String)>,
}

impl Default for Themes {
    fn default() -> Self {
        resolve(
            builtin(),
            10,
            &BTreeMap::new(),
            &crate::services::ServicesConfig::default(),
            &mut Vec::new(),
        )
    }
}

impl Themes {
    /// The theme of a blocked query's category, if its delivery is not off. `illegal` is
    /// the policy's own word (the category's verdict), which always wins.
    pub fn of(&self, category: &str, illegal: bool) -> Option<&ThemeInfo> {
        let i = if illegal {
            self.illegal
        } else {
            *self.by_category.get(category)?
        };
        self.list.get(i).filter(|t| t.delivery != Delivery::Off)
    }

    /// A theme by name.
    pub fn get(&self, name: &str) -> Option<&ThemeInfo> {
        self.list.iter().find(|t| t.name == name)
    }
}

/// Expand service references, claim each category for one theme (configured themes
/// first, so a school's own theme takes a category from a built-in one), and report
/// conflicts. `window_mins` is the incident window.
pub fn resolve(
    themes: Vec<Theme>,
    window_mins: u64,
    categories: &BTreeMap<String, CategoryConfig>,
    services: &crate::services::ServicesConfig,
    problems: &mut Vec<Problem>,
) -> Themes {
    let illegal_cats: Vec<String> = categories
        .iter()
        .filter(|(_, c)| c.verdict == Verdict::Illegal)
        .map(|(n, _)| n.clone())
        .collect();
    let mut by_category: BTreeMap<String, usize> = BTreeMap::new();
    let mut strict = Vec::new();
    let mut list: Vec<ThemeInfo> = themes
        .iter()
        .map(|t| ThemeInfo {
            name: t.name.clone(),
            delivery: t.delivery,
            categories: Vec::new(),
        })
        .collect();
    let illegal = themes.iter().position(|t| t.name == ILLEGAL).unwrap_or(0);
    if themes
        .get(illegal)
        .is_some_and(|t| t.delivery == Delivery::Off)
    {
        problems.push(Problem::new(
            "alerts.themes.illegal.delivery",
            "illegal-category hits are always incidents: \"instant\" or \"digest\", not \"off\"",
        ));
    }
    let order = themes
        .iter()
        .enumerate()
        .filter(|(_, t)| t.configured)
        .chain(themes.iter().enumerate().filter(|(_, t)| !t.configured));
    for (ti, t) in order {
        let key = format!("alerts.themes.{}.categories", t.name);
        for (ci, written) in t.categories.iter().enumerate() {
            let ckey = format!("{key}[{ci}]");
            let names = match services.catalogue.expand(written) {
                Ok(Some(members)) => members.iter().map(|s| s.category()).collect(),
                Ok(None) => vec![written.clone()],
                Err(_) if !t.configured => continue,
                Err(m) => {
                    problems.push(Problem::new(&ckey, m));
                    continue;
                }
            };
            let group_ref = written.starts_with(crate::services::GROUP_PREFIX);
            for name in names {
                if illegal_cats.contains(&name) && ti != illegal {
                    if t.configured {
                        problems.push(Problem::new(&ckey, format!("{name:?} is an illegal category: its hits are always incidents of the theme \"illegal\"")));
                    }
                    continue;
                }
                match by_category.get(&name) {
                    Some(&other) if other != ti => {
                        if t.configured {
                            problems.push(Problem::new(
                                &ckey,
                                format!(
                                    "{name:?} is already in theme {:?}: a category belongs to one theme",
                                    list[other].name
                                ),
                            ));
                        }
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                if t.configured && !group_ref {
                    strict.push((ckey.clone(), name.clone()));
                }
                by_category.insert(name.clone(), ti);
                list[ti].categories.push(name);
            }
        }
    }
    if let Some(t) = list.get_mut(illegal) {
        for c in &illegal_cats {
            if !t.categories.contains(c) {
                t.categories.push(c.clone());
            }
        }
    }
    Themes {
        list,
        by_category,
        illegal,
        window: Duration::from_secs(window_mins.max(1) * 60),
        strict,
    }
}

/// Every category a config named in a theme must be in the compiled lists (or be the
/// bypass detection): a misspelt category would silently never alert.
pub fn check(themes: &Themes, bundle: &Bundle) -> Vec<Problem> {
    themes
        .strict
        .iter()
        .filter(|(_, name)| name != BYPASS && bundle.category_id(name).is_none())
        .map(|(key, name)| {
            let why = if name.starts_with(crate::services::SERVICE_PREFIX) {
                "is not in the bundle: no group blocks this service, so it can never be hit"
                    .to_owned()
            } else {
                format!(
                    "unknown category (known: {}, bypass)",
                    bundle.categories().join(", ")
                )
            };
            Problem::new(key, format!("{name:?} {why}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(illegal: &[&str]) -> BTreeMap<String, CategoryConfig> {
        illegal
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    CategoryConfig {
                        verdict: Verdict::Illegal,
                        description: String::new(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn defaults_alert_self_harm_and_illegal_at_once_and_leave_adult_off() {
        let t = resolve(
            builtin(),
            10,
            &cats(&["iwf"]),
            &Default::default(),
            &mut Vec::new(),
        );
        assert_eq!(t.of("suicide", false).unwrap().delivery, Delivery::Instant);
        assert_eq!(t.of("iwf", true).unwrap().name, "illegal");
        assert_eq!(t.of("extremism", false).unwrap().delivery, Delivery::Digest);
        assert!(t.of("adult", false).is_none());
        assert!(t.of("games", false).is_none());
    }

    #[test]
    fn a_configured_theme_takes_a_category_and_conflicts_are_named() {
        let mut list = builtin();
        let mut mine = Theme::new("porn-alerts", Delivery::Instant);
        mine.categories = vec!["adult".into()];
        mine.configured = true;
        list.push(mine.clone());
        let mut second = mine.clone();
        second.name = "again".into();
        list.push(second);
        let mut problems = Vec::new();
        let t = resolve(list, 10, &cats(&[]), &Default::default(), &mut problems);
        assert_eq!(t.of("adult", false).unwrap().name, "porn-alerts");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "alerts.themes.again.categories[0]");
    }

    #[test]
    fn illegal_can_be_neither_off_nor_moved() {
        let mut list = builtin();
        list[1].delivery = Delivery::Off;
        list[0].categories = vec!["iwf".into()];
        list[0].configured = true;
        let mut problems = Vec::new();
        resolve(
            list,
            10,
            &cats(&["iwf"]),
            &Default::default(),
            &mut problems,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alerts.themes.illegal.delivery",
                "alerts.themes.self-harm.categories[0]"
            ]
        );
    }
}
