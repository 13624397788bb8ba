//! The SQLite backend: one file, created or upgraded on open. The SQL of each topic is
//! in this module's files (`safeguarding`, `devices`, `audit`; the query log's in
//! `store::querylog`) as functions on a connection; this file holds the schema and the
//! [`Store`] implementation over them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub mod acks;
pub mod audit;
pub mod devices;
pub mod records;
pub mod safeguarding;

use super::audit::{Appended, AuditRecord, Head, Sealed, Stored};
use super::devices::{DeviceRow, NewDevice};
use super::querylog::{self, LogEvent};
use super::safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, ReportDecision, ReportRow,
    RequestDecision, RequestRow,
};
use super::{AlertStatus, Change, Store, StoreError};
use crate::identity::StoredEnrolment;

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
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
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
    conn.execute_batch(devices::SCHEMA).map_err(err)?;
    conn.execute_batch(acks::SCHEMA).map_err(err)?;
    conn.execute_batch(records::SCHEMA).map_err(err)?;
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
    add_identity_columns(conn)?;
    add_incident_window_columns(conn)?;
    add_query_count_column(conn)
}

/// Issue 17: `queries.count`, the number of identical queries a row stands for (the
/// writer folds repeats from the same client, for the same name, type and outcome, in the
/// same second into one row). Rows written before it count once.
fn add_query_count_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('queries') WHERE name = 'count'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE queries ADD COLUMN count INTEGER NOT NULL DEFAULT 1")?;
    }
    Ok(())
}

/// The incident window (issue 16): each incident's alert theme, its hit count and when
/// it was last hit, plus the index the window's look-up uses. Added on open when missing,
/// like the identity columns.
fn add_incident_window_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (column, decl) in [
        ("theme", "TEXT"),
        ("hits", "INTEGER NOT NULL DEFAULT 1"),
        ("last_us", "INTEGER"),
    ] {
        let has: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('incidents') WHERE name = ?1",
            params![column],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE incidents ADD COLUMN {column} {decl}"))?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS incidents_window ON incidents(client, name, category, ts_us)",
    )
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
fn secret(conn: &Connection, name: &str) -> Result<Vec<u8>, rusqlite::Error> {
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

/// The SQLite store: one connection to the database file.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Open (creating or upgrading) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connect(path)?,
            path: path.to_owned(),
        })
    }

    /// The connection, for tests and tools that read the file directly.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

impl Store for Sqlite {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn secret(&mut self, name: &str) -> Result<Vec<u8>, StoreError> {
        secret(&self.conn, name).map_err(|e| self.err(e))
    }

    fn insert_queries(&mut self, batch: &[LogEvent]) -> Result<(), StoreError> {
        querylog::insert_batch(&mut self.conn, batch).map_err(|e| self.err(e))
    }

    fn trim_queries(&mut self, max_rows: u64) -> Result<u64, StoreError> {
        querylog::trim_rows(&self.conn, max_rows).map_err(|e| self.err(e))
    }

    fn expire_queries(&mut self, cutoff_us: i64) -> Result<u64, StoreError> {
        querylog::expire_rows(&self.conn, cutoff_us).map_err(|e| self.err(e))
    }

    fn insert_refused(&mut self, ts_us: i64, count: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO refused_queries (ts_us, count) VALUES (?1, ?2)",
                params![ts_us, i64::try_from(count).unwrap_or(i64::MAX)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn record_incident(
        &mut self,
        e: &LogEvent,
        theme: &str,
        window_us: i64,
    ) -> Result<super::safeguarding::RecordedIncident, StoreError> {
        safeguarding::record_incident(&self.conn, e, theme, window_us)
    }

    fn set_alert_status(&mut self, id: i64, s: &AlertStatus<'_>) -> Result<(), StoreError> {
        safeguarding::set_alert_status(&self.conn, id, s)
    }

    fn list_incidents(
        &mut self,
        since: jiff::Timestamp,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        safeguarding::list_incidents(&self.conn, since, before, limit)
    }

    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        acks::ack_incident(&self.conn, id, by, note, at)
    }

    fn incident_acks(
        &mut self,
        ids: &[i64],
    ) -> Result<Vec<super::safeguarding::IncidentAck>, StoreError> {
        acks::incident_acks(&self.conn, ids)
    }

    fn create_exception(&mut self, e: &NewException<'_>) -> Result<i64, StoreError> {
        safeguarding::create_exception(&self.conn, e)
    }

    fn list_exceptions(
        &mut self,
        now: jiff::Timestamp,
        active_only: bool,
    ) -> Result<Vec<ExceptionRow>, StoreError> {
        safeguarding::list_exceptions(&self.conn, now, active_only)
    }

    fn get_exception(
        &mut self,
        id: i64,
        now: jiff::Timestamp,
    ) -> Result<Option<ExceptionRow>, StoreError> {
        safeguarding::get_exception(&self.conn, id, now)
    }

    fn revoke_exception(
        &mut self,
        id: i64,
        by: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        safeguarding::revoke_exception(&self.conn, id, by, now)
    }

    fn create_request(&mut self, r: &NewRequest<'_>) -> Result<i64, StoreError> {
        safeguarding::create_request(&self.conn, r)
    }

    fn list_requests(&mut self, status: Option<&str>) -> Result<Vec<RequestRow>, StoreError> {
        safeguarding::list_requests(&self.conn, status)
    }

    fn get_request(&mut self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        safeguarding::get_request(&self.conn, id)
    }

    fn decide_request(&mut self, id: i64, d: &RequestDecision<'_>) -> Result<(), StoreError> {
        safeguarding::decide_request(&self.conn, id, d)
    }

    fn approve_request(
        &mut self,
        id: i64,
        e: &NewException<'_>,
        d: &RequestDecision<'_>,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let eid = safeguarding::create_exception(&tx, e)?;
        let d = RequestDecision {
            exception_id: Some(eid),
            ..*d
        };
        safeguarding::decide_request(&tx, id, &d)?;
        tx.commit().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        Ok(eid)
    }

    fn create_report(&mut self, r: &NewReport<'_>) -> Result<i64, StoreError> {
        safeguarding::create_report(&self.conn, r)
    }

    fn list_reports(&mut self, status: Option<&str>) -> Result<Vec<ReportRow>, StoreError> {
        safeguarding::list_reports(&self.conn, status)
    }

    fn get_report(&mut self, id: i64) -> Result<Option<ReportRow>, StoreError> {
        safeguarding::get_report(&self.conn, id)
    }

    fn decide_report(&mut self, id: i64, d: &ReportDecision<'_>) -> Result<(), StoreError> {
        safeguarding::decide_report(&self.conn, id, d)
    }

    fn enrol_device(
        &mut self,
        d: &NewDevice<'_>,
        taken: &dyn Fn(&str) -> bool,
    ) -> Result<String, StoreError> {
        devices::enrol(&mut self.conn, d, taken)
    }

    fn list_devices(&mut self, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError> {
        devices::list(&self.conn, now)
    }

    fn get_device(
        &mut self,
        id: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<DeviceRow>, StoreError> {
        devices::get(&self.conn, id, now)
    }

    fn revoke_device(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        devices::revoke(&self.conn, id, by, reason, now)
    }

    fn live_devices(&mut self) -> Result<Vec<StoredEnrolment>, StoreError> {
        devices::live(&self.conn)
    }

    fn audit_append(
        &mut self,
        seal: &mut dyn FnMut(&Head) -> Sealed,
    ) -> Result<Appended, StoreError> {
        audit::append_sqlite(&mut self.conn, seal).map_err(|e| self.err(e))
    }

    fn audit_head(&mut self) -> Result<Head, StoreError> {
        audit::current_head(&self.conn).map_err(|e| self.err(e))
    }

    fn audit_list(
        &mut self,
        since: Option<jiff::Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        audit::list(&self.conn, since, limit).map_err(|e| self.err(e))
    }

    fn audit_walk(
        &mut self,
        visit: &mut dyn FnMut(Stored) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        audit::walk_sqlite(&self.conn, visit).map_err(|e| self.err(e))
    }

    fn table(&mut self, sql: &str, since_us: i64) -> Result<Vec<Vec<String>>, StoreError> {
        table(&self.conn, sql, since_us).map_err(|e| self.err(e))
    }

    fn announce(&mut self, _change: Change) -> Result<(), StoreError> {
        Ok(())
    }

    fn search_queries(
        &mut self,
        filter: &crate::store::records::SearchFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::store::records::QueryRow>, StoreError> {
        records::search(&self.conn, filter, before, limit)
    }

    fn insert_check(
        &mut self,
        check: &crate::store::records::NewCheck<'_>,
    ) -> Result<i64, StoreError> {
        records::insert_check(&self.conn, check)
    }

    fn list_checks(
        &mut self,
        period: crate::store::records::Period,
        limit: usize,
    ) -> Result<Vec<crate::store::records::CheckRow>, StoreError> {
        records::list_checks(&self.conn, period, limit)
    }

    fn insert_review(
        &mut self,
        review: &crate::store::records::NewReview<'_>,
    ) -> Result<i64, StoreError> {
        records::insert_review(&self.conn, review)
    }

    fn list_reviews(
        &mut self,
        period: crate::store::records::Period,
        limit: usize,
    ) -> Result<Vec<crate::store::records::ReviewRow>, StoreError> {
        records::list_reviews(&self.conn, period, limit)
    }
}

/// Run a report query; every value as text.
fn table(conn: &Connection, sql: &str, since: i64) -> rusqlite::Result<Vec<Vec<String>>> {
    use rusqlite::types::Value;
    let mut stmt = conn.prepare(sql)?;
    let cols = stmt.column_count();
    let rows = stmt.query_map(params![since], |r| {
        (0..cols)
            .map(|i| {
                Ok(match r.get::<_, Value>(i)? {
                    Value::Null => String::new(),
                    Value::Integer(i) => i.to_string(),
                    Value::Real(f) => f.to_string(),
                    Value::Text(t) => t,
                    Value::Blob(_) => "<blob>".to_owned(),
                })
            })
            .collect()
    })?;
    rows.collect()
}
