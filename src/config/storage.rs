//! `[storage]`: where Chaperone keeps its own data. A SQLite file by default (one school,
//! nothing to run); a PostgreSQL database when `url` is set, shared by every resolver of a
//! trust so they agree on exceptions, incidents and the audit log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Problem;

/// `[storage]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// SQLite database file. Default: beside the config file, named after it (`.db`).
    pub path: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: `postgres://USER@HOST:PORT/DATABASE` (or the
    /// key=value form). A password in the URL is refused: use `password_file` or
    /// `password_env`, which keep it out of the config file.
    pub url: Option<String>,
    /// File holding the PostgreSQL password (first line), relative to the config file.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// "disable" (default), "require" (TLS, certificate checked against `ca_file` or the
    /// system roots) for PostgreSQL.
    pub tls: Option<PgTls>,
    /// CA certificate (PEM) the server's certificate must chain to, for `tls = "require"`.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout, ms (default 3000).
    pub connect_timeout_ms: Option<u64>,
    /// Full re-read of exceptions and devices, seconds (default 30): the safety net
    /// behind change notifications.
    pub resync_secs: Option<u64>,
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PgTls {
    /// Plain TCP or a unix socket (a database on the same host or a private network).
    #[default]
    Disable,
    /// TLS with the server's certificate verified.
    Require,
}

/// `[storage]` with `url`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The URL as written (no password in it).
    pub url: String,
    /// The password, read at load from the file or the environment.
    pub password: Option<String>,
    /// TLS.
    pub tls: PgTls,
    /// CA certificate for TLS.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Full resync interval.
    pub resync: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("resync", &self.resync)
            .finish()
    }
}

/// Check `[storage]`'s PostgreSQL keys; None (SQLite) without `url`.
pub(super) fn postgres(
    raw: &RawStorage,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<PostgresConfig> {
    let Some(url) = raw.url.clone() else {
        for (key, set) in [
            ("password_file", raw.password_file.is_some()),
            ("password_env", raw.password_env.is_some()),
            ("tls", raw.tls.is_some()),
            ("ca_file", raw.ca_file.is_some()),
        ] {
            if set {
                problems.push(Problem::new(
                    format!("storage.{key}"),
                    "only used with storage.url (PostgreSQL)",
                ));
            }
        }
        return None;
    };
    if let Err(m) = check_url(&url) {
        problems.push(Problem::new("storage.url", m));
        return None;
    }
    let password = password(raw, base, problems);
    Some(PostgresConfig {
        url,
        password,
        tls: raw.tls.unwrap_or_default(),
        ca_file: raw.ca_file.as_ref().map(|p| base.join(p)),
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms.unwrap_or(3000).max(100)),
        resync: Duration::from_secs(raw.resync_secs.unwrap_or(30).clamp(1, 3600)),
    })
}

/// A URL the driver accepts, without a password in it.
fn check_url(url: &str) -> Result<(), String> {
    let parsed: ::postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    if parsed.get_password().is_some() {
        return Err(
            "holds a password: move it to storage.password_file or storage.password_env".into(),
        );
    }
    if parsed.get_dbname().is_none() {
        return Err("names no database (postgres://USER@HOST:PORT/DATABASE)".into());
    }
    Ok(())
}

fn password(raw: &RawStorage, base: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                "storage.password_env",
                "give storage.password_file or storage.password_env, not both",
            ));
            None
        }
        (Some(file), None) => {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.lines().next().unwrap_or_default().to_owned()),
                Err(e) => {
                    problems.push(Problem::new(
                        "storage.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    None
                }
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) => Some(v),
            Err(_) => {
                problems.push(Problem::new(
                    "storage.password_env",
                    format!("the environment variable {var} is not set"),
                ));
                None
            }
        },
        (None, None) => None,
    }
}
