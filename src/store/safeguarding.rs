//! Safeguarding records: temporary unblocks (exceptions), unblock requests, site reports
//! and incidents. Plain SQL over one connection; the admin API wraps each state change with
//! an audit record in the same call.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::querylog::LogEvent;
use super::{AlertStatus, StoreError, from_micros, micros};
use crate::policy::Exception;

/// A temporary unblock as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptionRow {
    /// Id.
    pub id: i64,
    /// Domain (and its subdomains).
    pub domain: String,
    /// Groups (empty = all).
    pub groups: Vec<String>,
    /// Why (required).
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Who granted it.
    pub granted_by: String,
    /// When granted (RFC 3339).
    pub created: String,
    /// When it ends (RFC 3339).
    pub expires: String,
    /// When revoked, if it was.
    pub revoked: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// The unblock request it came from, if any.
    pub request_id: Option<i64>,
    /// "active", "expired" or "revoked" at the time of reading.
    pub state: String,
}

/// Fields of a new exception.
#[derive(Debug, Clone)]
pub struct NewException<'a> {
    /// Normalised domain.
    pub domain: &'a str,
    /// Groups (empty = all).
    pub groups: &'a [String],
    /// Reason.
    pub reason: &'a str,
    /// Requester.
    pub requested_by: &'a str,
    /// Granter.
    pub granted_by: &'a str,
    /// Now.
    pub created: jiff::Timestamp,
    /// Expiry.
    pub expires: jiff::Timestamp,
    /// Originating request.
    pub request_id: Option<i64>,
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: "<database>".into(),
        source: e,
    }
}

/// Insert an exception; returns its id.
pub fn create_exception(conn: &Connection, e: &NewException<'_>) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO exceptions (domain, groups, reason, requested_by, granted_by, created_us, expires_us, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![e.domain, serde_json::to_string(e.groups).unwrap_or_default(), e.reason, e.requested_by, e.granted_by, micros(e.created), micros(e.expires), e.request_id],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

fn exception_row(r: &Row<'_>, now: i64) -> rusqlite::Result<ExceptionRow> {
    let expires_us: i64 = r.get(7)?;
    let revoked_us: Option<i64> = r.get(8)?;
    let state = match revoked_us {
        Some(_) => "revoked",
        None if expires_us <= now => "expired",
        None => "active",
    };
    Ok(ExceptionRow {
        id: r.get(0)?,
        domain: r.get(1)?,
        groups: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        granted_by: r.get(5)?,
        created: from_micros(r.get(6)?).to_string(),
        expires: from_micros(expires_us).to_string(),
        revoked: revoked_us.map(|u| from_micros(u).to_string()),
        revoked_by: r.get(9)?,
        request_id: r.get(10)?,
        state: state.to_owned(),
    })
}

const EXCEPTION_COLUMNS: &str = "id, domain, groups, reason, requested_by, granted_by, created_us, expires_us, revoked_us, revoked_by, request_id";

/// All exceptions (newest first), or only those in force at `now`.
pub fn list_exceptions(
    conn: &Connection,
    now: jiff::Timestamp,
    active_only: bool,
) -> Result<Vec<ExceptionRow>, StoreError> {
    let filter = if active_only {
        "WHERE revoked_us IS NULL AND expires_us > ?1"
    } else {
        "WHERE ?1 = ?1"
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {EXCEPTION_COLUMNS} FROM exceptions {filter} ORDER BY id DESC"
        ))
        .map_err(sql_err)?;
    let now_us = micros(now);
    let rows = stmt
        .query_map(params![now_us], |r| exception_row(r, now_us))
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// One exception.
pub fn get_exception(
    conn: &Connection,
    id: i64,
    now: jiff::Timestamp,
) -> Result<Option<ExceptionRow>, StoreError> {
    let now_us = micros(now);
    conn.query_row(
        &format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE id = ?1"),
        params![id],
        |r| exception_row(r, now_us),
    )
    .optional()
    .map_err(sql_err)
}

/// Revoke an exception; error if it does not exist or is not active.
pub fn revoke_exception(
    conn: &Connection,
    id: i64,
    by: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE exceptions SET revoked_us = ?1, revoked_by = ?2 WHERE id = ?3 AND revoked_us IS NULL AND expires_us > ?1",
            params![micros(now), by, id],
        )
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "exception {id} does not exist or is no longer active"
        )));
    }
    Ok(())
}

impl ExceptionRow {
    /// As the policy takes it.
    pub fn into_exception(self) -> Exception {
        Exception {
            id: self.id,
            domain: self.domain,
            groups: self.groups,
            expires: self.expires.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }
}

/// The exceptions in force, from the SQLite database at `path`, opened read-only, for tools beside a
/// running server (`chaperone explain`): the same rows the server loads, never a write, and
/// none if the server has not created the database yet.
pub fn live_exceptions_at(
    path: &std::path::Path,
    now: jiff::Timestamp,
) -> Result<Vec<Exception>, StoreError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
    Ok(list_exceptions(&conn, now, true)?
        .into_iter()
        .map(ExceptionRow::into_exception)
        .collect())
}

/// An unblock request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRow {
    /// Id.
    pub id: i64,
    /// When made.
    pub created: String,
    /// Domain asked for.
    pub domain: String,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub requester: String,
    /// For how many days.
    pub days: u32,
    /// Groups it would apply to.
    pub groups: Vec<String>,
    /// Category that blocked it, when known.
    pub category: Option<String>,
    /// pending, approved, declined.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided: Option<String>,
    /// Why.
    pub decision_reason: Option<String>,
    /// The exception an approval created.
    pub exception_id: Option<i64>,
}

/// Fields of a new unblock request.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// Normalised domain.
    pub domain: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub requester: &'a str,
    /// Days.
    pub days: u32,
    /// Groups.
    pub groups: &'a [String],
    /// Category.
    pub category: Option<&'a str>,
    /// When.
    pub created: jiff::Timestamp,
}

/// A decision on a pending unblock request.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecision<'a> {
    /// "approved" or "declined".
    pub status: &'a str,
    /// Who decided.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// When.
    pub now: jiff::Timestamp,
    /// The exception an approval created.
    pub exception_id: Option<i64>,
}

/// Insert a request; returns its id.
pub fn create_request(conn: &Connection, r: &NewRequest<'_>) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO unblock_requests (created_us, domain, reason, requester, days, groups, category) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![micros(r.created), r.domain, r.reason, r.requester, r.days, serde_json::to_string(r.groups).unwrap_or_default(), r.category],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

const REQUEST_COLUMNS: &str = "id, created_us, domain, reason, requester, days, groups, category, status, decided_by, decided_us, decision_reason, exception_id";

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        created: from_micros(r.get(1)?).to_string(),
        domain: r.get(2)?,
        reason: r.get(3)?,
        requester: r.get(4)?,
        days: r.get(5)?,
        groups: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
        category: r.get(7)?,
        status: r.get(8)?,
        decided_by: r.get(9)?,
        decided: r
            .get::<_, Option<i64>>(10)?
            .map(|u| from_micros(u).to_string()),
        decision_reason: r.get(11)?,
        exception_id: r.get(12)?,
    })
}

/// Requests, newest first, optionally by status.
pub fn list_requests(
    conn: &Connection,
    status: Option<&str>,
) -> Result<Vec<RequestRow>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {REQUEST_COLUMNS} FROM unblock_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![status], request_row)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// One request.
pub fn get_request(conn: &Connection, id: i64) -> Result<Option<RequestRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {REQUEST_COLUMNS} FROM unblock_requests WHERE id = ?1"),
        params![id],
        request_row,
    )
    .optional()
    .map_err(sql_err)
}

/// Record a decision on a pending request.
pub fn decide_request(
    conn: &Connection,
    id: i64,
    d: &RequestDecision<'_>,
) -> Result<(), StoreError> {
    let RequestDecision {
        status,
        by,
        reason,
        now,
        exception_id,
    } = *d;
    let n = conn
        .execute(
            "UPDATE unblock_requests SET status = ?1, decided_by = ?2, decided_us = ?3, decision_reason = ?4, exception_id = ?5 WHERE id = ?6 AND status = 'pending'",
            params![status, by, micros(now), reason, exception_id, id],
        )
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "request {id} does not exist or was already decided"
        )));
    }
    Ok(())
}

/// A "this site should be blocked" report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRow {
    /// Id.
    pub id: i64,
    /// When.
    pub created: String,
    /// URL as reported.
    pub url: String,
    /// Its domain.
    pub domain: String,
    /// Who reported it.
    pub reporter: String,
    /// What they saw.
    pub comment: String,
    /// pending, approved, dismissed.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided: Option<String>,
    /// Why.
    pub decision_reason: Option<String>,
    /// The local category it was added to.
    pub category: Option<String>,
}

const REPORT_COLUMNS: &str = "id, created_us, url, domain, reporter, comment, status, decided_by, decided_us, decision_reason, category";

fn report_row(r: &Row<'_>) -> rusqlite::Result<ReportRow> {
    Ok(ReportRow {
        id: r.get(0)?,
        created: from_micros(r.get(1)?).to_string(),
        url: r.get(2)?,
        domain: r.get(3)?,
        reporter: r.get(4)?,
        comment: r.get(5)?,
        status: r.get(6)?,
        decided_by: r.get(7)?,
        decided: r
            .get::<_, Option<i64>>(8)?
            .map(|u| from_micros(u).to_string()),
        decision_reason: r.get(9)?,
        category: r.get(10)?,
    })
}

/// Fields of a new site report.
#[derive(Debug, Clone, Copy)]
pub struct NewReport<'a> {
    /// URL as reported.
    pub url: &'a str,
    /// Its domain.
    pub domain: &'a str,
    /// Who reported it.
    pub reporter: &'a str,
    /// What they saw.
    pub comment: &'a str,
    /// When.
    pub now: jiff::Timestamp,
}

/// A decision on a pending site report.
#[derive(Debug, Clone, Copy)]
pub struct ReportDecision<'a> {
    /// "approved" or "dismissed".
    pub status: &'a str,
    /// Who decided.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The category it was added to, when approved.
    pub category: Option<&'a str>,
    /// When.
    pub now: jiff::Timestamp,
}

/// Insert a site report; returns its id.
pub fn create_report(conn: &Connection, r: &NewReport<'_>) -> Result<i64, StoreError> {
    let NewReport {
        url,
        domain,
        reporter,
        comment,
        now,
    } = *r;
    conn.execute(
        "INSERT INTO site_reports (created_us, url, domain, reporter, comment) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![micros(now), url, domain, reporter, comment],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

/// Reports, newest first, optionally by status.
pub fn list_reports(conn: &Connection, status: Option<&str>) -> Result<Vec<ReportRow>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {REPORT_COLUMNS} FROM site_reports WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![status], report_row)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// One report.
pub fn get_report(conn: &Connection, id: i64) -> Result<Option<ReportRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {REPORT_COLUMNS} FROM site_reports WHERE id = ?1"),
        params![id],
        report_row,
    )
    .optional()
    .map_err(sql_err)
}

/// Record a decision on a pending report.
pub fn decide_report(conn: &Connection, id: i64, d: &ReportDecision<'_>) -> Result<(), StoreError> {
    let ReportDecision {
        status,
        by,
        reason,
        category,
        now,
    } = *d;
    let n = conn
        .execute(
            "UPDATE site_reports SET status = ?1, decided_by = ?2, decided_us = ?3, decision_reason = ?4, category = ?5 WHERE id = ?6 AND status = 'pending'",
            params![status, by, micros(now), reason, category, id],
        )
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "report {id} does not exist or was already decided"
        )));
    }
    Ok(())
}

/// An incident.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentRow {
    /// Id.
    pub id: i64,
    /// When.
    pub time: String,
    /// Client.
    pub client: String,
    /// Group.
    pub group: String,
    /// Device.
    pub device: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// Device name: its enrolment's, or the DHCP lease's host name.
    pub hostname: Option<String>,
    /// The individual (RADIUS user, ChromeOS user), when known.
    pub user: Option<String>,
    /// The enrolled device's ID, when the query came over DoT/DoH with one.
    pub device_id: Option<String>,
    /// Name queried.
    pub name: String,
    /// Type.
    pub qtype: String,
    /// Category.
    pub category: String,
    /// Matching rule.
    pub rule: Option<String>,
    /// pending, retrying, delivered, failed, dropped (not sent: too many in flight).
    pub alert_status: String,
    /// Delivery attempts.
    pub alert_attempts: i64,
    /// Last delivery error.
    pub alert_last_error: Option<String>,
}

/// One page of incidents since `since`, newest first: at most `limit` rows, with ids
/// below `before` when given (the cursor for the next page is the last row's id).
pub fn list_incidents(
    conn: &Connection,
    since: jiff::Timestamp,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<IncidentRow>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, ts_us, client, grp, device, mac, name, qtype, category, rule, alert_status, alert_attempts, alert_last_error, hostname, user, device_id
             FROM incidents WHERE ts_us >= ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )
        .map_err(sql_err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(
            params![micros(since), before.unwrap_or(i64::MAX), limit],
            |r| {
                Ok(IncidentRow {
                    id: r.get(0)?,
                    time: from_micros(r.get(1)?).to_string(),
                    client: r.get(2)?,
                    group: r.get(3)?,
                    device: r.get(4)?,
                    mac: r.get(5)?,
                    name: r.get(6)?,
                    qtype: r.get(7)?,
                    category: r.get(8)?,
                    rule: r.get(9)?,
                    alert_status: r.get(10)?,
                    alert_attempts: r.get(11)?,
                    alert_last_error: r.get(12)?,
                    hostname: r.get(13)?,
                    user: r.get(14)?,
                    device_id: r.get(15)?,
                })
            },
        )
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// Record an incident; returns its id.
pub fn insert_incident(conn: &Connection, e: &LogEvent) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO incidents (ts_us, client, grp, device, mac, name, qtype, category, rule, hostname, user, device_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![e.ts_us, e.client, e.group, e.device, e.mac, e.name, e.qtype, e.category.as_deref().unwrap_or_default(), e.rule, e.hostname, e.user, e.device_id],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

/// Record an alert delivery attempt.
pub fn set_alert_status(conn: &Connection, id: i64, s: &AlertStatus<'_>) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE incidents SET alert_status = ?1, alert_attempts = ?2, alert_last_error = ?3, delivered_us = COALESCE(?4, delivered_us) WHERE id = ?5",
        params![s.status, s.attempts, s.error, s.delivered_us, id],
    )
    .map_err(sql_err)?;
    Ok(())
}
