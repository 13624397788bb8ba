//! `[services]`: where the service catalogue is, and the check of every `service:NAME` and
//! `service-group:NAME` the config names (groups' `block` and `approved`, schedules'
//! `allow` and `block`, devices' `allow`), each problem naming its key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{DeviceConfig, GroupConfig, ListsConfig, Problem};
use crate::lists::bundle::MAX_CATEGORIES;
use crate::lists::parse::Format;
use crate::services::{Catalogue, DEFAULT_DIR, GROUP_PREFIX, SERVICE_PREFIX, ServicesConfig, Used};

/// `[services]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    /// The catalogue folder, relative to the config file (default: the packaged
    /// catalogue, /usr/share/chaperone/services).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

pub(super) fn services(
    raw: RawServices,
    base: &Path,
    groups: &BTreeMap<String, GroupConfig>,
    devices: &[DeviceConfig],
    lists: &ListsConfig,
    problems: &mut Vec<Problem>,
) -> ServicesConfig {
    let refs = references(groups, devices);
    let named = refs.iter().any(|(_, n)| is_service_ref(n));
    let explicit = raw.dir.is_some();
    let dir = raw
        .dir
        .map_or_else(|| PathBuf::from(DEFAULT_DIR), |d| base.join(d));
    let catalogue = if explicit || named || dir.is_dir() {
        match Catalogue::load(&dir) {
            Ok(c) => c,
            Err(ps) => {
                let key = if explicit {
                    "services.dir"
                } else {
                    "services.dir (default)"
                };
                problems.extend(ps.into_iter().map(|p| Problem::new(key, p.to_string())));
                return ServicesConfig {
                    dir,
                    ..Default::default()
                };
            }
        }
    } else {
        Catalogue::empty(&dir)
    };
    let mut used: Vec<Used> = Vec::new();
    let mut seen = BTreeSet::new();
    for (key, name) in &refs {
        match catalogue.expand(name) {
            Ok(Some(members)) => {
                for s in members {
                    if seen.insert(s.name.clone()) {
                        used.push(Used {
                            name: s.name.clone(),
                            key: key.clone(),
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(message) => problems.push(Problem::new(key, message)),
        }
    }
    check_cap(&used, lists, problems);
    ServicesConfig {
        dir,
        catalogue: Arc::new(catalogue),
        used,
    }
}

fn is_service_ref(name: &str) -> bool {
    name.starts_with(SERVICE_PREFIX) || name.starts_with(GROUP_PREFIX)
}

/// Every category name the config uses, with its key, in a stable order.
fn references(
    groups: &BTreeMap<String, GroupConfig>,
    devices: &[DeviceConfig],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |key: String, names: &[String]| {
        for (i, n) in names.iter().enumerate() {
            out.push((format!("{key}[{i}]"), n.clone()));
        }
    };
    for (name, g) in groups {
        add(format!("group.{name}.block"), &g.block);
        add(format!("group.{name}.approved"), &g.approved);
        for (i, s) in g.schedules.iter().enumerate() {
            add(format!("group.{name}.schedule[{i}].allow"), &s.allow);
            add(format!("group.{name}.schedule[{i}].block"), &s.block);
        }
    }
    for (i, d) in devices.iter().enumerate() {
        add(format!("device[{i}].allow"), &d.allow);
    }
    out
}

/// Each named service is a bundle category: say which key pushes the bundle past its
/// category limit, counting the categories the configured list files name (a UT1 folder
/// without `only` is counted when it is compiled).
fn check_cap(used: &[Used], lists: &ListsConfig, problems: &mut Vec<Problem>) {
    let mut list_categories: BTreeSet<&str> = BTreeSet::new();
    for s in &lists.sources {
        match (&s.category, s.format) {
            (_, Format::Ut1) => list_categories.extend(s.only.iter().map(String::as_str)),
            (Some(c), _) => {
                list_categories.insert(c.as_str());
            }
            (None, _) => {}
        }
    }
    let room = MAX_CATEGORIES.saturating_sub(list_categories.len());
    if let Some(over) = used.get(room) {
        problems.push(Problem::new(
            &over.key,
            format!(
                "service {:?} would be category {} of the bundle, which holds at most {MAX_CATEGORIES} ({} from lists, {} services named): name fewer services or groups",
                over.name,
                list_categories.len() + room + 1,
                list_categories.len(),
                used.len()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn config(block: &str, sources: usize) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lists/services");
        let mut text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"192.0.2.53\"]\n[services]\ndir = {:?}\n[[network]]\ncidrs = [\"10.0.0.0/8\"]\ngroup = \"pupils\"\n[group.pupils]\nblock = [{block}]\n",
            dir.display().to_string()
        );
        for i in 0..sources {
            text.push_str(&format!(
                "[[lists.source]]\ncategory = \"list{i}\"\npath = \"list{i}.txt\"\n"
            ));
        }
        text
    }

    #[test]
    fn named_services_and_group_members_are_used_once_each_with_their_first_key() {
        let text = config(
            r#""service:roblox", "service-group:games", "service:tiktok""#,
            2,
        );
        let c = Config::from_str(Path::new("/tmp/services.toml"), &text).unwrap();
        let used = &c.services.used;
        assert_eq!(used[0].name, "roblox");
        assert_eq!(used[0].key, "group.pupils.block[0]");
        assert_eq!(used.iter().filter(|u| u.name == "roblox").count(), 1);
        let steam = used.iter().find(|u| u.name == "steam").unwrap();
        assert_eq!(steam.key, "group.pupils.block[1]");
        assert_eq!(used.last().unwrap().name, "tiktok");
        let categories = c.services.categories();
        assert_eq!(categories.len(), used.len());
        assert!(
            categories
                .iter()
                .any(|(c, _, d)| c == "service:tiktok" && d.contains(&"tiktok.com".to_owned()))
        );
    }

    #[test]
    fn the_key_that_passes_the_bundle_category_limit_is_named() {
        let every_group = crate::services::GROUPS
            .iter()
            .map(|(g, _)| format!("\"service-group:{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let err = Config::from_str(Path::new("/tmp/services.toml"), &config(&every_group, 40))
            .unwrap_err()
            .to_string();
        assert!(err.contains("group.pupils.block["), "{err}");
        assert!(err.contains("would be category 129 of the bundle"), "{err}");
    }

    #[test]
    fn a_config_naming_no_service_needs_no_catalogue() {
        let text = config("\"list0\"", 1).replace("[services]\n", "[unused]\n");
        let text = text.replace(
            &text[text.find("[unused]").unwrap()..text.find("[[network]]").unwrap()],
            "",
        );
        let c = Config::from_str(Path::new("/tmp/services.toml"), &text).unwrap();
        assert!(c.services.used.is_empty());
        let missing = config("\"service:tiktok\"", 0).replace("lists/services", "no-such-folder");
        let err = Config::from_str(Path::new("/tmp/services.toml"), &missing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("services.dir: ") && err.contains("cannot read the catalogue"),
            "{err}"
        );
    }
}
