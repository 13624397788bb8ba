//! `[radius]` (the RADIUS accounting listener and the NASes it trusts) and `[users]` (which
//! policy group a user name is in): the raw TOML shapes, their checked forms, and the
//! checks, each problem naming its key (`radius.client[1].secret_file`,
//! `users.rules."*@pupils.example-school.org.uk"`).
//!
//! Shared secrets are read here, at load, so a missing or empty `secret_file` is a config
//! error and a reload picks up a changed secret. The listener is `crate::radius`; the user
//! directory and its CSV are `crate::users`. This file only reads and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{GroupConfig, Problem, parse_cidr};

/// Longest shared secret accepted, bytes (FreeRADIUS's own limit is lower in practice).
pub const MAX_SECRET: usize = 256;
/// Largest `secret_file` read, bytes.
const MAX_SECRET_FILE: u64 = 4096;
/// Most `[[radius.client]]` entries (each packet is matched against all of them).
pub const MAX_RADIUS_CLIENTS: usize = 4096;
/// Most `[users.rules]` entries.
pub const MAX_USER_RULES: usize = 10_000;
/// Default of `radius.session_ttl_secs`.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(4 * 3600);

/// `[radius]`: a RADIUS accounting (RFC 2866) listener, fed by the school's Wi-Fi
/// controller, switches or RADIUS server, so queries from an address can be decided by
/// the signed-in user's group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRadius {
    /// UDP addresses to receive Accounting-Requests on (usually port 1813). Required.
    pub listen: Vec<SocketAddr>,
    /// Seconds a session is kept after its last Start or Interim-Update when the NAS sent
    /// no Acct-Interim-Interval (with one, twice the interval). Default 14400 (4 hours).
    pub session_ttl_secs: Option<u64>,
    /// The NASes (access points, controllers, switches, RADIUS proxies) allowed to send
    /// accounting, each with its shared secret. Packets from any other address are
    /// dropped and counted.
    #[serde(default)]
    pub client: Vec<RawRadiusClient>,
}

/// `[[radius.client]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRadiusClient {
    /// The NAS's address or network (CIDR). The longest match wins.
    pub address: String,
    /// The shared secret. Give this or `secret_file`.
    pub secret: Option<String>,
    /// A file holding the shared secret (one line; relative to the config file), so the
    /// secret can be kept out of the main config.
    pub secret_file: Option<PathBuf>,
    /// A label for logs. Default: the address.
    pub name: Option<String>,
}

/// `[users]`: which policy group a user name (RADIUS User-Name) is in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsers {
    /// A CSV exported from the MIS or directory: `username,group,year` with that header
    /// (`year` optional). Watched and reloaded; a bad file keeps the last good one.
    pub csv: Option<PathBuf>,
    /// `"NAME" = "GROUP"` (an exact user name) or `"*SUFFIX" = "GROUP"` (every user name
    /// ending in SUFFIX, e.g. `"*@pupils.example-school.org.uk"`). Case-insensitive.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
}

/// `[radius]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusConfig {
    /// UDP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Session lifetime without an interim interval.
    pub session_ttl: Duration,
    /// Trusted NASes.
    pub clients: Vec<RadiusClient>,
}

impl RadiusConfig {
    /// The NAS entry for a packet's source address (longest prefix wins).
    pub fn client_for(&self, ip: std::net::IpAddr) -> Option<&RadiusClient> {
        let ip = ip.to_canonical();
        self.clients
            .iter()
            .filter(|c| c.net.contains(&ip))
            .max_by_key(|c| c.net.prefix_len())
    }
}

/// One trusted NAS. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RadiusClient {
    /// Label for logs.
    pub name: String,
    /// Address or network.
    pub net: IpNet,
    /// Shared secret.
    pub secret: Arc<[u8]>,
}

impl fmt::Debug for RadiusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RadiusClient")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `[users]`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersConfig {
    /// The CSV export, if any.
    pub csv: Option<PathBuf>,
    /// Exact user names (lower case) → group.
    pub exact: BTreeMap<String, String>,
    /// Suffixes (lower case, without the `*`) → group.
    pub suffixes: Vec<(String, String)>,
}

/// Check `[radius]`.
pub(super) fn radius(r: RawRadius, base: &Path, p: &mut Vec<Problem>) -> RadiusConfig {
    if r.listen.is_empty() {
        p.push(Problem::new(
            "radius.listen",
            "give at least one address, e.g. [\"0.0.0.0:1813\"]",
        ));
    }
    if r.client.is_empty() {
        p.push(Problem::new(
            "radius.client",
            "no [[radius.client]]: every accounting packet would be dropped",
        ));
    }
    if r.client.len() > MAX_RADIUS_CLIENTS {
        p.push(Problem::new(
            "radius.client",
            format!("at most {MAX_RADIUS_CLIENTS} clients (use networks)"),
        ));
    }
    let session_ttl = match r.session_ttl_secs {
        None => DEFAULT_SESSION_TTL,
        Some(s) if (60..=7 * 86_400).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            p.push(Problem::new(
                "radius.session_ttl_secs",
                "must be between 60 and 604800 (a week)",
            ));
            DEFAULT_SESSION_TTL
        }
    };
    let clients = r
        .client
        .into_iter()
        .enumerate()
        .filter_map(|(j, c)| client(j, c, base, p))
        .collect();
    RadiusConfig {
        listen: r.listen,
        session_ttl,
        clients,
    }
}

fn client(j: usize, c: RawRadiusClient, base: &Path, p: &mut Vec<Problem>) -> Option<RadiusClient> {
    let key = format!("radius.client[{j}]");
    let net = match parse_cidr(&c.address) {
        Ok(n) => Some(n),
        Err(e) => {
            p.push(Problem::new(format!("{key}.address"), e));
            None
        }
    };
    let secret = match (c.secret, c.secret_file) {
        (Some(s), None) => check_secret(format!("{key}.secret"), s.into_bytes(), p),
        (None, Some(f)) => read_secret(&key, &base.join(f), p),
        _ => {
            p.push(Problem::new(
                key.clone(),
                "give exactly one of `secret` and `secret_file`",
            ));
            None
        }
    };
    Some(RadiusClient {
        name: c.name.unwrap_or_else(|| c.address.clone()),
        net: net?,
        secret: secret?.into(),
    })
}

/// The first line of a secret file, bounded.
fn read_secret(key: &str, path: &Path, p: &mut Vec<Problem>) -> Option<Vec<u8>> {
    let key = format!("{key}.secret_file");
    let fail = |p: &mut Vec<Problem>, m: String| {
        p.push(Problem::new(
            key.clone(),
            format!("{}: {m}", path.display()),
        ));
        None
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_SECRET_FILE => {
            return fail(p, format!("larger than {MAX_SECRET_FILE} bytes"));
        }
        Ok(_) => {}
        Err(e) => return fail(p, e.to_string()),
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return fail(p, e.to_string()),
    };
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
    check_secret(key.clone(), line, p)
}

fn check_secret(key: String, s: Vec<u8>, p: &mut Vec<Problem>) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > MAX_SECRET {
        p.push(Problem::new(
            key,
            format!("a shared secret is 1 to {MAX_SECRET} bytes"),
        ));
        return None;
    }
    Some(s)
}

/// Check `[users]`: every rule names a configured group.
pub(super) fn users(
    u: RawUsers,
    groups: &BTreeMap<String, GroupConfig>,
    base: &Path,
    p: &mut Vec<Problem>,
) -> UsersConfig {
    if u.rules.len() > MAX_USER_RULES {
        p.push(Problem::new(
            "users.rules",
            format!("at most {MAX_USER_RULES} rules (use users.csv)"),
        ));
    }
    let mut exact = BTreeMap::new();
    let mut suffixes = Vec::new();
    let mut seen = BTreeSet::new();
    for (pattern, group) in u.rules {
        let key = format!("users.rules.{pattern:?}");
        if !groups.contains_key(&group) {
            p.push(Problem::new(
                &key,
                format!("group {group:?} is not a configured [group.NAME]"),
            ));
            continue;
        }
        let lower = pattern.to_lowercase();
        if !seen.insert(lower.clone()) {
            p.push(Problem::new(
                &key,
                "listed twice (names are case-insensitive)",
            ));
            continue;
        }
        match lower.strip_prefix('*') {
            Some("") => p.push(Problem::new(&key, "\"*\" alone would match every user")),
            Some(s) if s.contains('*') => p.push(Problem::new(&key, "only a leading * is allowed")),
            Some(s) => suffixes.push((s.to_owned(), group)),
            None if lower.trim().is_empty() || lower.contains('*') => p.push(Problem::new(
                &key,
                "a user name, or *SUFFIX such as \"*@pupils.example-school.org.uk\"",
            )),
            None => {
                exact.insert(lower, group);
            }
        }
    }
    // Longest suffix first: the most specific rule wins.
    suffixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    UsersConfig {
        csv: u.csv.map(|c| base.join(c)),
        exact,
        suffixes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> BTreeMap<String, GroupConfig> {
        let g = crate::config::Config::from_str(
            Path::new("/tmp/x.toml"),
            "[server]\nlisten=[\"127.0.0.1:0\"]\n[upstream]\nservers=[\"127.0.0.1:53\"]\n[[network]]\ncidrs=[\"10.0.0.0/8\"]\ngroup=\"pupils\"\n[group.pupils]\n[group.staff]\n",
        )
        .unwrap()
        .groups;
        assert_eq!(g.len(), 2);
        g
    }

    #[test]
    fn rules_are_checked_against_groups_and_sorted() {
        let mut p = Vec::new();
        let raw = RawUsers {
            csv: None,
            rules: [
                ("*@pupils.example.org", "pupils"),
                ("*.example.org", "staff"),
                ("Head@Example.org", "staff"),
                ("*@x.org", "nobody"),
                ("head@example.org", "pupils"),
                ("*", "staff"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
        };
        let u = users(raw, &groups(), Path::new("/"), &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"users.rules.\"*@x.org\""), "{p:?}");
        assert!(keys.contains(&"users.rules.\"*\""), "{p:?}");
        assert!(
            p.iter().any(|p| p.message.contains("listed twice")),
            "{p:?}"
        );
        assert_eq!(u.suffixes[0].0, "@pupils.example.org");
        assert_eq!(u.exact.len(), 1);
    }

    #[test]
    fn a_client_needs_exactly_one_secret_and_a_secret_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "from-file\r\nignored\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let c = |address: &str, secret: Option<&str>, file: Option<&str>| RawRadiusClient {
            address: address.into(),
            secret: secret.map(Into::into),
            secret_file: file.map(Into::into),
            name: None,
        };
        let mut p = Vec::new();
        let r = radius(
            RawRadius {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                session_ttl_secs: None,
                client: vec![
                    c("10.0.0.0/24", Some("s1"), None),
                    c("10.0.0.7", None, Some("s")),
                    c("10.0.1.0/24", Some("a"), Some("s")),
                    c("10.0.2.0/24", None, Some("empty")),
                    c("10.0.3.0/24", None, Some("missing")),
                    c("10.0.4.1/24", Some("x"), None),
                ],
            },
            dir.path(),
            &mut p,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "radius.client[2]",
                "radius.client[3].secret_file",
                "radius.client[4].secret_file",
                "radius.client[5].address"
            ],
            "{p:?}"
        );
        let nas = r.client_for("10.0.0.7".parse().unwrap()).unwrap();
        assert_eq!(&*nas.secret, b"from-file", "longest prefix, first line");
        let other = r.client_for("::ffff:10.0.0.8".parse().unwrap()).unwrap();
        assert_eq!(&*other.secret, b"s1");
        assert!(r.client_for("10.9.0.1".parse().unwrap()).is_none());
        assert!(!format!("{nas:?}").contains("from-file"), "secret redacted");
    }
}
