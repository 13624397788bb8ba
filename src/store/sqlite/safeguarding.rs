//! SQLite: the SQL of exceptions, unblock requests, site reports and incidents, as
//! functions on a connection ([`super::Sqlite`] implements the trait with them).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::policy::Exception;
use crate::store::querylog::LogEvent;
use crate::store::safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, RecordedIncident,
    ReportDecision, ReportRow, RequestDecision, RequestRow,
};
use crate::store::{AlertStatus, StoreError, from_micros, micros};

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
    let state = crate::store::row_state(revoked_us, Some(expires_us), now);
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
            "SELECT id, ts_us, client, grp, device, mac, name, qtype, category, rule, alert_status, alert_attempts, alert_last_error, hostname, user, device_id, theme, hits, COALESCE(last_us, ts_us)
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
                    theme: r.get(16)?,
                    hits: r.get(17)?,
                    last_seen: from_micros(r.get(18)?).to_string(),
                })
            },
        )
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// Record a hit: counted on the open incident of the same (client, name, category) when
/// one was opened within `window_us`, else a new incident. One immediate transaction, so
/// the look-up and the write cannot interleave with another writer's.
pub fn record_incident(
    conn: &Connection,
    e: &LogEvent,
    theme: &str,
    window_us: i64,
) -> Result<RecordedIncident, StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    let category = e.category.as_deref().unwrap_or_default();
    let open: Option<(i64, i64)> = if window_us > 0 {
        tx.query_row(
            "SELECT id, hits FROM incidents WHERE client = ?1 AND name = ?2 AND category = ?3 AND ts_us > ?4 AND ts_us <= ?5 ORDER BY id DESC LIMIT 1",
            params![e.client, e.name, category, e.ts_us.saturating_sub(window_us), e.ts_us],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql_err)?
    } else {
        None
    };
    let recorded = match open {
        Some((id, hits)) => {
            tx.execute(
                "UPDATE incidents SET hits = hits + 1, last_us = MAX(COALESCE(last_us, ts_us), ?1) WHERE id = ?2",
                params![e.ts_us, id],
            )
            .map_err(sql_err)?;
            RecordedIncident {
                id,
                new: false,
                hits: hits + 1,
            }
        }
        None => {
            tx.execute(
                "INSERT INTO incidents (ts_us, client, grp, device, mac, name, qtype, category, rule, hostname, user, device_id, theme, hits, last_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1, ?1)",
                params![e.ts_us, e.client, e.group, e.device, e.mac, e.name, e.qtype, category, e.rule, e.hostname, e.user, e.device_id, theme],
            )
            .map_err(sql_err)?;
            RecordedIncident {
                id: tx.last_insert_rowid(),
                new: true,
                hits: 1,
            }
        }
    };
    tx.commit().map_err(sql_err)?;
    Ok(recorded)
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
