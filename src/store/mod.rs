//! Storage: one SQLite database (rusqlite, bundled: nothing to install) for the query log,
//! incidents, exceptions, unblock requests, site reports and the audit log.
//!
//! Each user of the database opens its own connection (WAL mode), so the query log writer,
//! the admin API and the alert sender never wait on one another's locks for long. The
//! schema is created or upgraded on open; the audit table refuses UPDATE and DELETE by
//! trigger, and its records are hash-chained (see [`audit`]).

pub mod audit;
pub mod querylog;
pub mod safeguarding;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite said no.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// A request that cannot be carried out (unknown id, bad state).
    #[error("{0}")]
    Invalid(String),
}

/// Schema version this build writes.
/// 2: `audit.keyed` (HMAC-keyed records), `refused_queries`.
const SCHEMA_VERSION: i32 = 2;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    client TEXT NOT NULL,
    grp TEXT NOT NULL,
    device TEXT,
    mac TEXT,
    name TEXT NOT NULL,
    qtype TEXT NOT NULL,
    decision TEXT NOT NULL,
    category TEXT,
    rule TEXT,
    rcode TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_ts ON queries(ts_us);
CREATE TABLE IF NOT EXISTS refused_queries (ts_us INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    client TEXT NOT NULL,
    grp TEXT NOT NULL,
    device TEXT,
    mac TEXT,
    name TEXT NOT NULL,
    qtype TEXT NOT NULL,
    category TEXT NOT NULL,
    rule TEXT,
    alert_status TEXT NOT NULL DEFAULT 'pending',
    alert_attempts INTEGER NOT NULL DEFAULT 0,
    alert_last_error TEXT,
    delivered_us INTEGER
);
CREATE INDEX IF NOT EXISTS incidents_ts ON incidents(ts_us);
CREATE TABLE IF NOT EXISTS exceptions (
    id INTEGER PRIMARY KEY,
    domain TEXT NOT NULL,
    groups TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    revoked_us INTEGER,
    revoked_by TEXT,
    request_id INTEGER
);
CREATE TABLE IF NOT EXISTS unblock_requests (
    id INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL,
    domain TEXT NOT NULL,
    reason TEXT NOT NULL,
    requester TEXT NOT NULL,
    days INTEGER NOT NULL,
    groups TEXT NOT NULL,
    category TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    decided_by TEXT,
    decided_us INTEGER,
    decision_reason TEXT,
    exception_id INTEGER
);
CREATE TABLE IF NOT EXISTS site_reports (
    id INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL,
    url TEXT NOT NULL,
    domain TEXT NOT NULL,
    reporter TEXT NOT NULL,
    comment TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    decided_by TEXT,
    decided_us INTEGER,
    decision_reason TEXT,
    category TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    keyed INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// Open (creating or upgrading) the database at `path`.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    upgrade(&conn).map_err(err)?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version < SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
    }
    Ok(conn)
}

/// Bring a schema-1 database up to date: its audit records stay unkeyed (`keyed = 0`)
/// and still verify; new ones are keyed.
fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let has_keyed: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('audit') WHERE name = 'keyed'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_keyed {
        conn.execute_batch("ALTER TABLE audit ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0")?;
    }
    add_identity_columns(conn)
}

/// Who asked, beyond the address, in query records and incidents: the device name
/// (`hostname`: enrolment or DHCP lease), the individual (`user`: RADIUS, ChromeOS) and
/// the enrolled device ID (`device_id`). Added by `ALTER TABLE` on every open (when
/// missing) rather than in `SCHEMA`, so databases written before them gain the columns
/// and new ones get them the same way.
fn add_identity_columns(conn: &Connection) -> rusqlite::Result<()> {
    for table in ["queries", "incidents"] {
        for column in ["hostname", "user", "device_id"] {
            let has: bool = conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                params![table, column],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
            }
        }
    }
    Ok(())
}

/// A secret kept in the database's meta table, created on first use (32 random bytes).
/// Used as the key for pseudonymising client addresses, so the same client maps to the
/// same pseudonym across restarts without the key ever being in the config file.
pub fn secret(conn: &Connection, name: &str) -> Result<Vec<u8>, rusqlite::Error> {
    if let Some(v) = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![name],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?
    {
        return Ok(v);
    }
    let key: [u8; 32] = rand::random();
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
        params![name, key.to_vec()],
    )?;
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        params![name],
        |r| r.get(0),
    )
}

/// Microseconds since the Unix epoch.
pub fn micros(t: jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

/// Back from microseconds.
pub fn from_micros(us: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
