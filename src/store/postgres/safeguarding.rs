//! PostgreSQL: exceptions, unblock requests, site reports, incidents, the meta secrets and
//! report tables. The same statements as the SQLite module, with `$n` parameters; the row
//! types are SQLite's ([`crate::store::safeguarding`]).

use postgres::{Client, GenericClient, Row, SimpleQueryMessage};

use super::pg;
use crate::store::querylog::LogEvent;
use crate::store::safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, RecordedIncident,
    ReportDecision, ReportRow, RequestDecision, RequestRow,
};
use crate::store::{AlertStatus, StoreError, from_micros, micros};

/// Longest a report table may be (rows): a report is read by people.
const MAX_TABLE_ROWS: usize = 100_000;

fn json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_default()
}

fn groups(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn time(us: i64) -> String {
    from_micros(us).to_string()
}

/// A secret from `meta`, created on first use (32 random bytes); every instance gets the
/// one that was inserted first.
pub(super) fn secret(c: &mut Client, name: &str) -> Result<Vec<u8>, StoreError> {
    let key: [u8; 32] = rand::random();
    c.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&name, &key.as_slice()],
    )
    .map_err(pg)?;
    c.query_one("SELECT value FROM meta WHERE key = $1", &[&name])
        .map(|r| r.get(0))
        .map_err(pg)
}

pub(super) fn create_exception(
    c: &mut impl GenericClient,
    e: &NewException<'_>,
) -> Result<i64, StoreError> {
    c.query_one(
        "INSERT INTO exceptions (domain, groups, reason, requested_by, granted_by, created_us, expires_us, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[&e.domain, &json(e.groups), &e.reason, &e.requested_by, &e.granted_by, &micros(e.created), &micros(e.expires), &e.request_id],
    )
    .map(|r| r.get(0))
    .map_err(pg)
}

const EXCEPTION_COLUMNS: &str = "id, domain, groups, reason, requested_by, granted_by, created_us, expires_us, revoked_us, revoked_by, request_id";

fn exception_row(r: &Row, now: i64) -> ExceptionRow {
    let expires_us: i64 = r.get(7);
    let revoked_us: Option<i64> = r.get(8);
    let state = crate::store::row_state(revoked_us, Some(expires_us), now);
    ExceptionRow {
        id: r.get(0),
        domain: r.get(1),
        groups: groups(r.get(2)),
        reason: r.get(3),
        requested_by: r.get(4),
        granted_by: r.get(5),
        created: time(r.get(6)),
        expires: time(expires_us),
        revoked: revoked_us.map(time),
        revoked_by: r.get(9),
        request_id: r.get(10),
        state: state.to_owned(),
    }
}

pub(super) fn list_exceptions(
    c: &mut Client,
    now: jiff::Timestamp,
    active_only: bool,
) -> Result<Vec<ExceptionRow>, StoreError> {
    let now_us = micros(now);
    let rows = if active_only {
        c.query(
            &format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE revoked_us IS NULL AND expires_us > $1 ORDER BY id DESC"),
            &[&now_us],
        )
    } else {
        c.query(
            &format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions ORDER BY id DESC"),
            &[],
        )
    }
    .map_err(pg)?;
    Ok(rows.iter().map(|r| exception_row(r, now_us)).collect())
}

pub(super) fn get_exception(
    c: &mut Client,
    id: i64,
    now: jiff::Timestamp,
) -> Result<Option<ExceptionRow>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE id = $1"),
            &[&id],
        )
        .map_err(pg)?;
    Ok(row.map(|r| exception_row(&r, micros(now))))
}

pub(super) fn revoke_exception(
    c: &mut Client,
    id: i64,
    by: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE exceptions SET revoked_us = $1, revoked_by = $2 WHERE id = $3 AND revoked_us IS NULL AND expires_us > $1",
            &[&micros(now), &by, &id],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "exception {id} does not exist or is no longer active"
        )));
    }
    Ok(())
}

pub(super) fn create_request(c: &mut Client, r: &NewRequest<'_>) -> Result<i64, StoreError> {
    c.query_one(
        "INSERT INTO unblock_requests (created_us, domain, reason, requester, days, groups, category) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        &[&micros(r.created), &r.domain, &r.reason, &r.requester, &i64::from(r.days), &json(r.groups), &r.category],
    )
    .map(|r| r.get(0))
    .map_err(pg)
}

const REQUEST_COLUMNS: &str = "id, created_us, domain, reason, requester, days, groups, category, status, decided_by, decided_us, decision_reason, exception_id";

fn request_row(r: &Row) -> RequestRow {
    RequestRow {
        id: r.get(0),
        created: time(r.get(1)),
        domain: r.get(2),
        reason: r.get(3),
        requester: r.get(4),
        days: u32::try_from(r.get::<_, i64>(5)).unwrap_or(0),
        groups: groups(r.get(6)),
        category: r.get(7),
        status: r.get(8),
        decided_by: r.get(9),
        decided: r.get::<_, Option<i64>>(10).map(time),
        decision_reason: r.get(11),
        exception_id: r.get(12),
    }
}

pub(super) fn list_requests(
    c: &mut Client,
    status: Option<&str>,
) -> Result<Vec<RequestRow>, StoreError> {
    let rows = c
        .query(
            &format!("SELECT {REQUEST_COLUMNS} FROM unblock_requests WHERE $1::TEXT IS NULL OR status = $1 ORDER BY id DESC"),
            &[&status],
        )
        .map_err(pg)?;
    Ok(rows.iter().map(request_row).collect())
}

pub(super) fn get_request(c: &mut Client, id: i64) -> Result<Option<RequestRow>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {REQUEST_COLUMNS} FROM unblock_requests WHERE id = $1"),
            &[&id],
        )
        .map_err(pg)?;
    Ok(row.as_ref().map(request_row))
}

pub(super) fn decide_request(
    c: &mut impl GenericClient,
    id: i64,
    d: &RequestDecision<'_>,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE unblock_requests SET status = $1, decided_by = $2, decided_us = $3, decision_reason = $4, exception_id = $5 WHERE id = $6 AND status = 'pending'",
            &[&d.status, &d.by, &micros(d.now), &d.reason, &d.exception_id, &id],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "request {id} does not exist or was already decided"
        )));
    }
    Ok(())
}

/// Approve a request and create its exception in one transaction: both or neither.
pub(super) fn approve_request(
    c: &mut Client,
    id: i64,
    e: &NewException<'_>,
    d: &RequestDecision<'_>,
) -> Result<i64, StoreError> {
    let mut tx = c.transaction().map_err(pg)?;
    let eid = create_exception(&mut tx, e)?;
    let d = RequestDecision {
        exception_id: Some(eid),
        ..*d
    };
    // An error drops `tx`, which rolls back.
    decide_request(&mut tx, id, &d)?;
    tx.commit().map_err(pg)?;
    Ok(eid)
}

const REPORT_COLUMNS: &str = "id, created_us, url, domain, reporter, comment, status, decided_by, decided_us, decision_reason, category";

fn report_row(r: &Row) -> ReportRow {
    ReportRow {
        id: r.get(0),
        created: time(r.get(1)),
        url: r.get(2),
        domain: r.get(3),
        reporter: r.get(4),
        comment: r.get(5),
        status: r.get(6),
        decided_by: r.get(7),
        decided: r.get::<_, Option<i64>>(8).map(time),
        decision_reason: r.get(9),
        category: r.get(10),
    }
}

pub(super) fn create_report(c: &mut Client, r: &NewReport<'_>) -> Result<i64, StoreError> {
    c.query_one(
        "INSERT INTO site_reports (created_us, url, domain, reporter, comment) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[&micros(r.now), &r.url, &r.domain, &r.reporter, &r.comment],
    )
    .map(|r| r.get(0))
    .map_err(pg)
}

pub(super) fn list_reports(
    c: &mut Client,
    status: Option<&str>,
) -> Result<Vec<ReportRow>, StoreError> {
    let rows = c
        .query(
            &format!("SELECT {REPORT_COLUMNS} FROM site_reports WHERE $1::TEXT IS NULL OR status = $1 ORDER BY id DESC"),
            &[&status],
        )
        .map_err(pg)?;
    Ok(rows.iter().map(report_row).collect())
}

pub(super) fn get_report(c: &mut Client, id: i64) -> Result<Option<ReportRow>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {REPORT_COLUMNS} FROM site_reports WHERE id = $1"),
            &[&id],
        )
        .map_err(pg)?;
    Ok(row.as_ref().map(report_row))
}

pub(super) fn decide_report(
    c: &mut Client,
    id: i64,
    d: &ReportDecision<'_>,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE site_reports SET status = $1, decided_by = $2, decided_us = $3, decision_reason = $4, category = $5 WHERE id = $6 AND status = 'pending'",
            &[&d.status, &d.by, &micros(d.now), &d.reason, &d.category, &id],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "report {id} does not exist or was already decided"
        )));
    }
    Ok(())
}

/// Record a hit (see [`crate::store::Store::record_incident`]). One transaction holding an
/// advisory lock on the (client, name, category) key, so two resolvers sharing the
/// database never both open an incident for the same retrying device.
pub(super) fn record_incident(
    c: &mut Client,
    e: &LogEvent,
    theme: &str,
    window_us: i64,
) -> Result<RecordedIncident, StoreError> {
    let category = e.category.as_deref().unwrap_or_default();
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(10) || $2 || chr(10) || $3, 16))",
        &[&e.client, &e.name, &category],
    )
    .map_err(pg)?;
    let open = if window_us > 0 {
        tx.query_opt(
            "SELECT id, hits FROM incidents WHERE client = $1 AND name = $2 AND category = $3 AND ts_us > $4 AND ts_us <= $5 ORDER BY id DESC LIMIT 1",
            &[&e.client, &e.name, &category, &e.ts_us.saturating_sub(window_us), &e.ts_us],
        )
        .map_err(pg)?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
    } else {
        None
    };
    let recorded = match open {
        Some((id, hits)) => {
            tx.execute(
                "UPDATE incidents SET hits = hits + 1, last_us = GREATEST(COALESCE(last_us, ts_us), $1) WHERE id = $2",
                &[&e.ts_us, &id],
            )
            .map_err(pg)?;
            RecordedIncident {
                id,
                new: false,
                hits: hits + 1,
            }
        }
        None => {
            let id: i64 = tx
                .query_one(
                    r#"INSERT INTO incidents (ts_us, client, grp, device, mac, name, qtype, category, rule, hostname, "user", device_id, theme, hits, last_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $1) RETURNING id"#,
                    &[&e.ts_us, &e.client, &e.group, &e.device, &e.mac, &e.name, &e.qtype, &category, &e.rule, &e.hostname, &e.user, &e.device_id, &theme],
                )
                .map_err(pg)?
                .get(0);
            RecordedIncident {
                id,
                new: true,
                hits: 1,
            }
        }
    };
    tx.commit().map_err(pg)?;
    Ok(recorded)
}

pub(super) fn set_alert_status(
    c: &mut Client,
    id: i64,
    s: &AlertStatus<'_>,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE incidents SET alert_status = $1, alert_attempts = $2, alert_last_error = $3, delivered_us = COALESCE($4, delivered_us) WHERE id = $5",
        &[&s.status, &s.attempts, &s.error, &s.delivered_us, &id],
    )
    .map(drop)
    .map_err(pg)
}

pub(super) fn list_incidents(
    c: &mut Client,
    since: jiff::Timestamp,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<IncidentRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            r#"SELECT id, ts_us, client, grp, device, mac, name, qtype, category, rule, alert_status, alert_attempts, alert_last_error, hostname, "user", device_id, theme, hits, COALESCE(last_us, ts_us)
             FROM incidents WHERE ts_us >= $1 AND id < $2 ORDER BY id DESC LIMIT $3"#,
            &[&micros(since), &before.unwrap_or(i64::MAX), &limit],
        )
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| IncidentRow {
            id: r.get(0),
            time: time(r.get(1)),
            client: r.get(2),
            group: r.get(3),
            device: r.get(4),
            mac: r.get(5),
            name: r.get(6),
            qtype: r.get(7),
            category: r.get(8),
            rule: r.get(9),
            alert_status: r.get(10),
            alert_attempts: r.get(11),
            alert_last_error: r.get(12),
            hostname: r.get(13),
            user: r.get(14),
            device_id: r.get(15),
            theme: r.get(16),
            hits: r.get(17),
            last_seen: time(r.get(18)),
        })
        .collect())
}

/// A report query in the SQL both backends share, every value as text (NULL as "").
///
/// Run over the simple (text) protocol inside a read-only transaction, with `$1` written
/// in as a BIGINT literal (`'n'::BIGINT`, which also holds `i64::MIN`; `since` is our own integer, never input): the server then
/// renders every type itself, NUMERIC sums included, so no column type needs decoding
/// here and integers read exactly as SQLite prints them.
pub(super) fn table(c: &mut Client, sql: &str, since: i64) -> Result<Vec<Vec<String>>, StoreError> {
    let sql = sql.replace("$1", &format!("'{since}'::BIGINT"));
    let mut tx = c.build_transaction().read_only(true).start().map_err(pg)?;
    let mut out = Vec::new();
    for m in tx.simple_query(&sql).map_err(pg)? {
        if let SimpleQueryMessage::Row(row) = m {
            if out.len() >= MAX_TABLE_ROWS {
                return Err(StoreError::Invalid(format!(
                    "report query returned more than {MAX_TABLE_ROWS} rows"
                )));
            }
            out.push(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_owned())
                    .collect(),
            );
        }
    }
    tx.commit().map_err(pg)?;
    Ok(out)
}
