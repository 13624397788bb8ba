//! Users → policy groups: the `[users.rules]` of the config and the CSV a school exports
//! from its MIS or directory (`username,group,year`), as one [`UserDirectory`] held in
//! [`crate::identity::Identities::users`] and swapped whole.
//!
//! Which rule decides, first match wins (documented in the README):
//! 1. an exact `[users.rules]` name (the technician's override),
//! 2. a CSV row,
//! 3. the longest `*SUFFIX` rule that the name ends with,
//! 4. none: the address's network decides.
//!
//! Names compare case-insensitively (they are stored in lower case). The CSV is re-read
//! when it changes and the directory rebuilt when the config is reloaded; a CSV with any
//! bad row is refused whole, logged with `file:line` and counted, and the last good one
//! kept (its rows for groups no longer configured are dropped). This module owns reading
//! and matching; it must not decide policy (the session's group is only a name) and does
//! no network I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::{GroupConfig, UsersConfig};
use crate::state::State;

/// Most users read from the CSV.
pub const MAX_USERS: usize = 200_000;
/// Largest CSV read, bytes (a large trust's export is a few MB).
pub const MAX_CSV_BYTES: u64 = 32 * 1024 * 1024;
/// Longest user name kept, bytes (a RADIUS attribute's limit).
pub const MAX_USER_NAME: usize = 253;
/// Most problems reported for one bad CSV.
const MAX_REPORTED: usize = 20;
/// How often the CSV's size and time stamp and the config generation are looked at.
const POLL: Duration = Duration::from_secs(1);

/// What the CSV says about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The group (a configured group name).
    pub group: Arc<str>,
    /// The `year` column (e.g. "Y7"), if given.
    pub year: Option<Arc<str>>,
}

/// The CSV's rows by lower-case user name.
pub type CsvUsers = HashMap<Box<str>, Listed>;

/// Who is in which group: exact rules, CSV rows and suffix rules.
#[derive(Debug, Default)]
pub struct UserDirectory {
    exact: HashMap<Box<str>, Arc<str>>,
    listed: Arc<CsvUsers>,
    /// Longest first.
    suffixes: Vec<(Box<str>, Arc<str>)>,
}

impl UserDirectory {
    /// The directory of `config`'s rules and the CSV rows `listed`.
    pub fn new(config: &UsersConfig, listed: Arc<CsvUsers>) -> Self {
        let exact = config
            .exact
            .iter()
            .map(|(u, g)| (u.as_str().into(), Arc::from(g.as_str())))
            .collect();
        let suffixes = config
            .suffixes
            .iter()
            .map(|(s, g)| (s.as_str().into(), Arc::from(g.as_str())))
            .collect();
        Self {
            exact,
            listed,
            suffixes,
        }
    }

    /// The group of `user` (exact rule > CSV > longest suffix), if any rule names one.
    pub fn group_of(&self, user: &str) -> Option<Arc<str>> {
        let lower = user.to_lowercase();
        if let Some(g) = self.exact.get(lower.as_str()) {
            return Some(g.clone());
        }
        if let Some(l) = self.listed.get(lower.as_str()) {
            return Some(l.group.clone());
        }
        self.suffixes
            .iter()
            .find(|(s, _)| lower.ends_with(&**s))
            .map(|(_, g)| g.clone())
    }

    /// What the CSV says about `user`, if it lists them.
    pub fn listed(&self, user: &str) -> Option<&Listed> {
        self.listed.get(user.to_lowercase().as_str())
    }

    /// Every user name known by name (exact rules and CSV rows), in lower case, each once;
    /// for matching identifiers that carry a hashed user name (ChromeOS `${USER_EMAIL}`).
    pub fn known_users(&self) -> impl Iterator<Item = &str> {
        self.exact.keys().map(|u| &**u).chain(
            self.listed
                .keys()
                .filter(|u| !self.exact.contains_key(&**u))
                .map(|u| &**u),
        )
    }

    /// Number of users known by name.
    pub fn len(&self) -> usize {
        self.known_users().count()
    }

    /// Whether no user is known by name.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.listed.is_empty()
    }
}

/// Why a CSV was refused (the last good one is kept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// Missing or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Larger than [`MAX_CSV_BYTES`].
    #[error("{} is {size} bytes, more than the {MAX_CSV_BYTES} read from a users CSV", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Bad rows, each `file:line: problem`.
    #[error("{}", problems.join("\n"))]
    Invalid {
        /// The problems (at most 20).
        problems: Vec<String>,
    },
}

/// Read and check a users CSV against the configured groups.
pub fn read_csv(path: &Path, groups: &BTreeMap<String, GroupConfig>) -> Result<CsvUsers, CsvError> {
    let read_err = |source| CsvError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_CSV_BYTES {
        return Err(CsvError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    parse_csv(&bytes, &path.display().to_string(), groups)
}

/// Parse CSV bytes named `file` in messages. A UTF-8 byte order mark (Excel's "CSV UTF-8")
/// is skipped; lines starting with `#` are comments.
pub fn parse_csv(
    bytes: &[u8],
    file: &str,
    groups: &BTreeMap<String, GroupConfig>,
) -> Result<CsvUsers, CsvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let interned: HashMap<&str, Arc<str>> = groups
        .keys()
        .map(|g| (g.as_str(), Arc::from(g.as_str())))
        .collect();
    let mut out = CsvUsers::new();
    let mut first_line: HashMap<Box<str>, u64> = HashMap::new();
    let mut problems = Vec::new();
    let mut header_seen = false;
    for record in reader.records() {
        if problems.len() >= MAX_REPORTED {
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!("{file}:{line}: {e}"));
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let at = |m: String| format!("{file}:{line}: {m}");
        if !header_seen {
            header_seen = true;
            if let Err(m) = check_header(&record) {
                problems.push(at(m));
                break;
            }
            continue;
        }
        match row(&record, &interned) {
            Err(m) => problems.push(at(m)),
            Ok((user, _)) if out.len() >= MAX_USERS && !out.contains_key(&user) => {
                problems.push(at(format!("more than {MAX_USERS} users")));
                break;
            }
            Ok((user, listed)) => {
                if let Some(first) = first_line.get(&user) {
                    problems.push(at(format!(
                        "{user} is listed again (first on line {first})"
                    )));
                    continue;
                }
                first_line.insert(user.clone(), line);
                out.insert(user, listed);
            }
        }
    }
    if !header_seen {
        problems.push(format!(
            "{file}:1: empty: the first line must be username,group,year"
        ));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(CsvError::Invalid { problems })
    }
}

fn check_header(record: &csv::StringRecord) -> Result<(), String> {
    let names: Vec<String> = record.iter().map(str::to_lowercase).collect();
    let ok = matches!(
        names.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["username", "group"] | ["username", "group", "year"]
    );
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the first line must be the header username,group,year (year optional), not {:?}",
            record.iter().collect::<Vec<_>>().join(",")
        ))
    }
}

fn row(
    record: &csv::StringRecord,
    groups: &HashMap<&str, Arc<str>>,
) -> Result<(Box<str>, Listed), String> {
    if !(2..=3).contains(&record.len()) {
        return Err(format!(
            "{} fields; a row is username,group[,year]",
            record.len()
        ));
    }
    let user = record.get(0).unwrap_or_default();
    if user.is_empty() || user.len() > MAX_USER_NAME || user.chars().any(char::is_control) {
        return Err(format!(
            "the user name must be 1 to {MAX_USER_NAME} bytes without control characters"
        ));
    }
    let group_name = record.get(1).unwrap_or_default();
    let Some(group) = groups.get(group_name) else {
        return Err(format!(
            "group {group_name:?} is not a configured [group.NAME]"
        ));
    };
    let year = record.get(2).filter(|y| !y.is_empty()).map(|y| {
        Arc::from(
            y.chars()
                .filter(|c| !c.is_control())
                .take(32)
                .collect::<String>(),
        )
    });
    Ok((
        user.to_lowercase().into(),
        Listed {
            group: group.clone(),
            year,
        },
    ))
}

/// `chaperone_users_*` metrics.
#[derive(Clone)]
pub struct UsersMetrics {
    /// Reads of the users CSV by result.
    pub reloads: IntCounterVec,
    /// Users known by name (exact rules and CSV rows).
    pub known: IntGauge,
}

impl UsersMetrics {
    /// Register on `registry` (once per registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "chaperone_users_reload_total",
                "Reads of the users CSV ([users] csv) by result; a failure keeps the last good file.",
            ),
            &["result"],
        )?;
        let known = IntGauge::new(
            "chaperone_users_known",
            "Users known by name, from [users.rules] and the users CSV.",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(known.clone()))?;
        for r in ["success", "failure"] {
            reloads.with_label_values(&[r]);
        }
        Ok(Self { reloads, known })
    }
}

/// Called with each new directory (the RADIUS sessions take their groups from it).
pub type OnChange = Arc<dyn Fn(&UserDirectory) + Send + Sync>;

/// The CSV in force and what it was read from.
struct Source {
    path: Option<PathBuf>,
    stamp: Option<(u64, SystemTime)>,
    generation: u64,
    listed: Arc<CsvUsers>,
}

/// Keeps [`crate::identity::Identities::users`] current: reads now (before serving),
/// then follows the CSV and config reloads until `shutdown`.
pub async fn start(
    state: &Arc<State>,
    metrics: Option<UsersMetrics>,
    on_change: OnChange,
    shutdown: CancellationToken,
) {
    let mut source = Source {
        path: None,
        stamp: None,
        generation: 0,
        listed: Arc::default(),
    };
    source = refresh_blocking(state.clone(), source, metrics.clone(), on_change.clone()).await;
    let live = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(state) = Weak::upgrade(&live) else {
                return;
            };
            if changed(&state, &source) {
                source = refresh_blocking(state, source, metrics.clone(), on_change.clone()).await;
            }
        }
    });
}

fn stamp(path: Option<&Path>) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path?).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn changed(state: &State, source: &Source) -> bool {
    let snap = state.load();
    snap.generation != source.generation
        || snap.config.users.csv != source.path
        || stamp(source.path.as_deref()) != source.stamp
}

async fn refresh_blocking(
    state: Arc<State>,
    source: Source,
    metrics: Option<UsersMetrics>,
    on_change: OnChange,
) -> Source {
    let fallback = Source {
        path: source.path.clone(),
        stamp: source.stamp,
        generation: source.generation,
        listed: source.listed.clone(),
    };
    tokio::task::spawn_blocking(move || refresh(&state, source, metrics.as_ref(), &on_change))
        .await
        .unwrap_or(fallback)
}

/// Re-read the CSV (if configured) and swap in a directory built on the config in force.
fn refresh(
    state: &State,
    mut source: Source,
    metrics: Option<&UsersMetrics>,
    on_change: &OnChange,
) -> Source {
    let (config, generation) = {
        let snap = state.load();
        (snap.config.clone(), snap.generation)
    };
    let path = config.users.csv.clone();
    source.stamp = stamp(path.as_deref());
    source.generation = generation;
    match &path {
        None => source.listed = Arc::default(),
        Some(p) => match read_csv(p, &config.groups) {
            Ok(listed) => {
                tracing::info!("users CSV {}: {} users", p.display(), listed.len());
                source.listed = Arc::new(listed);
                if let Some(m) = metrics {
                    m.reloads.with_label_values(&["success"]).inc();
                }
            }
            Err(e) => {
                tracing::error!("users CSV refused, keeping the last good one:\n{e}");
                if let Some(m) = metrics {
                    m.reloads.with_label_values(&["failure"]).inc();
                }
                let kept: CsvUsers = source
                    .listed
                    .iter()
                    .filter(|(_, l)| config.groups.contains_key(&*l.group))
                    .map(|(u, l)| (u.clone(), l.clone()))
                    .collect();
                source.listed = Arc::new(kept);
            }
        },
    }
    source.path = path;
    let dir = UserDirectory::new(&config.users, source.listed.clone());
    if let Some(m) = metrics {
        m.known.set(dir.len() as i64);
    }
    on_change(&dir);
    // ChromeOS templated paths carry SHA-256(salt + user): hash the directory's users
    // with the salt in force, so a new CSV or a new salt applies together.
    let salt = config.enrolment.chromeos_salt.as_deref();
    state.identities().rebuild_chrome(salt, dir.known_users());
    state.identities().users.store(Arc::new(dir));
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> BTreeMap<String, GroupConfig> {
        crate::config::Config::from_str(
            Path::new("/tmp/x.toml"),
            "[server]\nlisten=[\"127.0.0.1:0\"]\n[upstream]\nservers=[\"127.0.0.1:53\"]\n[[network]]\ncidrs=[\"10.0.0.0/8\"]\ngroup=\"pupils\"\n[group.pupils]\n[group.staff]\n",
        )
        .unwrap()
        .groups
    }

    #[test]
    fn exact_rules_beat_the_csv_which_beats_suffixes() {
        let config = UsersConfig {
            csv: None,
            exact: [("head@school.org".to_owned(), "staff".to_owned())].into(),
            suffixes: vec![
                ("@pupils.school.org".to_owned(), "pupils".to_owned()),
                ("school.org".to_owned(), "staff".to_owned()),
            ],
        };
        let csv = parse_csv(
            b"\xEF\xBB\xBFUsername,Group,Year\n# a comment\nta.jones@pupils.school.org,staff,\nhead@school.org,pupils,\nj.smith@pupils.school.org,pupils,Y7\n",
            "users.csv",
            &groups(),
        )
        .unwrap();
        let dir = UserDirectory::new(&config, Arc::new(csv));
        let g = |u: &str| dir.group_of(u).map(|g| g.to_string());
        assert_eq!(
            g("HEAD@school.org").as_deref(),
            Some("staff"),
            "exact > CSV"
        );
        assert_eq!(
            g("ta.jones@pupils.school.org").as_deref(),
            Some("staff"),
            "CSV > suffix"
        );
        assert_eq!(
            g("x@pupils.school.org").as_deref(),
            Some("pupils"),
            "longest suffix"
        );
        assert_eq!(g("x@school.org").as_deref(), Some("staff"));
        assert_eq!(g("x@elsewhere.org"), None);
        assert_eq!(
            dir.listed("J.Smith@pupils.school.org")
                .and_then(|l| l.year.as_deref()),
            Some("Y7")
        );
        let mut known: Vec<&str> = dir.known_users().collect();
        known.sort();
        assert_eq!(
            known,
            [
                "head@school.org",
                "j.smith@pupils.school.org",
                "ta.jones@pupils.school.org"
            ]
        );
    }

    #[test]
    fn csv_errors_name_the_file_and_line() {
        let err = |text: &str| match parse_csv(text.as_bytes(), "users.csv", &groups()) {
            Err(CsvError::Invalid { problems }) => problems.join("\n"),
            other => panic!("{other:?}"),
        };
        assert!(err("user,group\n").starts_with("users.csv:1: the first line"));
        assert!(err("").contains("users.csv:1: empty"));
        let e = err("username,group\na,pupils\nb,pupil\n,staff\nA,staff\nc,staff,Y7,extra\n");
        assert!(
            e.contains("users.csv:3: group \"pupil\" is not a configured"),
            "{e}"
        );
        assert!(e.contains("users.csv:4: the user name"), "{e}");
        assert!(
            e.contains("users.csv:5: a is listed again (first on line 2)"),
            "{e}"
        );
        assert!(e.contains("users.csv:6: 4 fields"), "{e}");
        assert!(parse_csv(b"username,group\n\na,pupils\n", "f", &groups()).is_ok());
    }
}
