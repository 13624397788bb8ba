//! The app/service catalogue: `lists/services/*.toml`, one file per service a school thinks
//! in ("TikTok", "Roblox", "ChatGPT"), each a short description, its groups (social, games,
//! ai...), a source note and its domains (each matched with its subdomains).
//!
//! A config names a service like a category: `service:tiktok`, or a whole group,
//! `service-group:games`, which stands for each of its members. Each service a config
//! names becomes one bundle category called `service:NAME`, compiled from the catalogue
//! alongside the configured lists, so blocking, schedules, nominated devices, metrics and
//! the query log treat it exactly like a list category. Only the services a config names
//! are compiled: a bundle holds at most 128 categories.
//!
//! This module owns the catalogue (reading, checking, looking up) and what the config's
//! `service:` / `service-group:` names mean; it does not decide anything (that is `policy`)
//! and never reads the network.

mod file;
pub mod show;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use file::{MAX_DOMAINS, MAX_FILE_BYTES, check_name};

/// Prefix of a service in category lists: `service:tiktok`.
pub const SERVICE_PREFIX: &str = "service:";
/// Prefix of a service group in category lists: `service-group:games`.
pub const GROUP_PREFIX: &str = "service-group:";
/// Where the Debian package installs the catalogue; `[services] dir` when unset.
pub const DEFAULT_DIR: &str = "/usr/share/chaperone/services";
/// Most files a catalogue folder may hold.
pub const MAX_SERVICES: usize = 1000;

/// The groups a service may be in, with what each means.
pub const GROUPS: &[(&str, &str)] = &[
    ("social", "social networks and sharing"),
    ("messaging", "chat and messaging apps"),
    ("video", "video sharing and streaming"),
    ("music", "music and podcast streaming"),
    ("games", "gaming platforms, launchers and browser games"),
    ("ai", "AI chatbots and companions"),
    ("chat", "anonymous and random chat with strangers"),
    ("vpn", "VPN, proxy and other filter-bypass apps"),
    ("gambling", "betting, casino, lottery and skin gambling"),
    ("dating", "dating apps (18+)"),
    ("shopping", "online shops and marketplaces"),
];

/// One service, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// Short name used in configs (`service:NAME`).
    pub name: String,
    /// Human name.
    pub title: String,
    /// What it is, in a sentence.
    pub description: String,
    /// Its groups (each in [`GROUPS`]).
    pub groups: Vec<String>,
    /// Where its domains come from.
    pub source: String,
    /// Normalised domains, each matched with its subdomains.
    pub domains: Vec<String>,
    /// The file it was read from.
    pub file: PathBuf,
}

impl Service {
    /// Its bundle category name, `service:NAME`.
    pub fn category(&self) -> String {
        format!("{SERVICE_PREFIX}{}", self.name)
    }
}

/// One problem with a catalogue file: the file, the key in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The file (or the folder, for a problem with the folder itself).
    pub file: PathBuf,
    /// Key in the file (`domains[2]`), or where (`line 4`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
    }
}

/// Every service of a catalogue folder, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// The folder read.
    pub dir: PathBuf,
    services: BTreeMap<String, Service>,
}

impl Catalogue {
    /// Read and check every `*.toml` file in `dir` (other files, such as a README, are
    /// skipped). All problems are reported together; nothing is returned unless all is well.
    pub fn load(dir: &Path) -> Result<Catalogue, Vec<FileProblem>> {
        let folder_problem = |message: String| FileProblem {
            file: dir.to_owned(),
            key: "folder".to_owned(),
            message,
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| vec![folder_problem(format!("cannot read the catalogue: {e}"))])?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        if files.len() > MAX_SERVICES {
            return Err(vec![folder_problem(format!(
                "{} service files, at most {MAX_SERVICES}",
                files.len()
            ))]);
        }
        let mut catalogue = Catalogue {
            dir: dir.to_owned(),
            services: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        for path in files {
            match read_file(&path) {
                Ok(s) => catalogue.insert(s, &mut problems),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(problems)
        }
    }

    /// An empty catalogue of `dir` (a folder absent and not needed).
    pub fn empty(dir: &Path) -> Catalogue {
        Catalogue {
            dir: dir.to_owned(),
            services: BTreeMap::new(),
        }
    }

    /// Build from services already checked (tests, and files read elsewhere).
    pub fn from_services(
        services: impl IntoIterator<Item = Service>,
    ) -> Result<Catalogue, Vec<FileProblem>> {
        let mut catalogue = Catalogue::default();
        let mut problems = Vec::new();
        for s in services {
            catalogue.insert(s, &mut problems);
        }
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(problems)
        }
    }

    fn insert(&mut self, s: Service, problems: &mut Vec<FileProblem>) {
        if let Some(prev) = self.services.get(&s.name) {
            problems.push(FileProblem {
                file: s.file.clone(),
                key: "name".to_owned(),
                message: format!(
                    "service {:?} is already defined in {}",
                    s.name,
                    prev.file.display()
                ),
            });
            return;
        }
        self.services.insert(s.name.clone(), s);
    }

    /// A service by name.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// Every service, by name.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// How many services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No services at all.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The services in `group`, by name.
    pub fn members<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .values()
            .filter(move |s| s.groups.iter().any(|g| g == group))
    }

    /// The domains of a `service:NAME` exception subject, if it names a known service.
    pub fn domains_of(&self, subject: &str) -> Option<&[String]> {
        let name = subject.strip_prefix(SERVICE_PREFIX)?;
        self.get(name).map(|s| s.domains.as_slice())
    }

    /// Check a `service:NAME` or `service-group:NAME` reference; `Ok(None)` for a plain
    /// category name, else the services it stands for.
    pub fn expand<'a>(&'a self, reference: &str) -> Result<Option<Vec<&'a Service>>, String> {
        if let Some(name) = reference.strip_prefix(SERVICE_PREFIX) {
            return match self.get(name) {
                Some(s) => Ok(Some(vec![s])),
                None => Err(self.unknown_service(name)),
            };
        }
        if let Some(group) = reference.strip_prefix(GROUP_PREFIX) {
            if !GROUPS.iter().any(|(g, _)| *g == group) {
                return Err(format!(
                    "unknown service group {group:?}{} (groups: {})",
                    suggest(group, GROUPS.iter().map(|(g, _)| *g)),
                    GROUPS
                        .iter()
                        .map(|(g, _)| *g)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let members: Vec<&Service> = self
                .services
                .values()
                .filter(|s| s.groups.iter().any(|g| g == group))
                .collect();
            if members.is_empty() {
                return Err(format!(
                    "service group {group:?} has no services in the catalogue {}",
                    self.dir.display()
                ));
            }
            return Ok(Some(members));
        }
        Ok(None)
    }

    pub(crate) fn unknown_service(&self, name: &str) -> String {
        if self.is_empty() {
            return format!(
                "unknown service {name:?}: the service catalogue {} is empty or missing (set [services] dir)",
                self.dir.display()
            );
        }
        format!(
            "unknown service {name:?}{} (`chaperone services` lists them)",
            suggest(name, self.services.keys().map(String::as_str))
        )
    }
}

fn read_file(path: &Path) -> Result<Service, Vec<FileProblem>> {
    let problem = |key: String, message: String| FileProblem {
        file: path.to_owned(),
        key,
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| vec![problem("file".into(), format!("cannot read: {e}"))])?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(vec![problem(
            "file".into(),
            format!("{len} bytes, at most {MAX_FILE_BYTES}"),
        )]);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![problem("file".into(), format!("cannot read: {e}"))])?;
    let mut service = file::parse(&text).map_err(|ps| {
        ps.into_iter()
            .map(|(k, m)| problem(k, m))
            .collect::<Vec<_>>()
    })?;
    service.file = path.to_owned();
    Ok(service)
}

/// ` (did you mean "x"?)` for the closest known name within two edits, else nothing.
pub fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Levenshtein distance on bytes (names are short ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `[services]`, resolved: the catalogue and the services the policy names.
#[derive(Debug, Clone, Default)]
pub struct ServicesConfig {
    /// The catalogue folder.
    pub dir: PathBuf,
    /// The catalogue read from it (empty if the default folder is absent and no service
    /// is named).
    pub catalogue: Arc<Catalogue>,
    /// Services the config names, directly or through a group, each with the key of its
    /// first mention: each becomes the bundle category `service:NAME`.
    pub used: Vec<Used>,
}

/// A service the config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// Service name.
    pub name: String,
    /// Key of its first mention, e.g. `group.pupils.block[6]`.
    pub key: String,
}

impl ServicesConfig {
    /// The bundle categories to compile: (`service:NAME`, its file, its domains).
    pub fn categories(&self) -> Vec<(String, PathBuf, Vec<String>)> {
        self.used
            .iter()
            .filter_map(|u| self.catalogue.get(&u.name))
            .map(|s| (s.category(), s.file.clone(), s.domains.clone()))
            .collect()
    }

    /// The bundle categories a category-list entry stands for: itself, or for a
    /// `service-group:` each member's `service:NAME`.
    pub fn expand_name(&self, name: &str) -> Vec<String> {
        match name.strip_prefix(GROUP_PREFIX) {
            Some(group) => self
                .catalogue
                .members(group)
                .map(Service::category)
                .collect(),
            None => vec![name.to_owned()],
        }
    }
}

#[cfg(test)]
mod tests;
