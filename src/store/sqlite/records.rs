//! SQLite: the SQL of the query-log search, the checks log and the annual review.

use rusqlite::{Connection, Row, params, params_from_iter};

use crate::store::records::{
    CheckRow, NewCheck, NewReview, Param, Period, QueryRow, ReviewRow, SearchFilter, search_sql,
};
use crate::store::{StoreError, micros};

/// The checks log and annual review tables: append-only (a correction is a new entry).
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL,
    passed INTEGER NOT NULL,
    detail TEXT NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_ts ON checks(ts_us);
CREATE TRIGGER IF NOT EXISTS checks_no_update BEFORE UPDATE ON checks
    BEGIN SELECT RAISE(ABORT, 'the checks log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checks_no_delete BEFORE DELETE ON checks
    BEGIN SELECT RAISE(ABORT, 'the checks log is append-only'); END;
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    review_date TEXT NOT NULL,
    reviewers TEXT NOT NULL,
    decisions TEXT NOT NULL,
    next_due TEXT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'the annual review log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'the annual review log is append-only'); END;
"#;

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: "<database>".into(),
        source: e,
    }
}

fn value(p: &Param) -> rusqlite::types::Value {
    match p {
        Param::Int(i) => rusqlite::types::Value::Integer(*i),
        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

fn query_row(r: &Row<'_>) -> rusqlite::Result<QueryRow> {
    Ok(QueryRow {
        id: r.get(0)?,
        ts_us: r.get(1)?,
        client: r.get(2)?,
        group: r.get(3)?,
        device: r.get(4)?,
        mac: r.get(5)?,
        hostname: r.get(6)?,
        user: r.get(7)?,
        device_id: r.get(8)?,
        name: r.get(9)?,
        qtype: r.get(10)?,
        decision: r.get(11)?,
        category: r.get(12)?,
        rule: r.get(13)?,
        rcode: r.get(14)?,
        count: r.get(15)?,
    })
}

/// One page of the query log matching `f`, newest first, ids below `before`.
pub fn search(
    conn: &Connection,
    f: &SearchFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<QueryRow>, StoreError> {
    let (sql, params) = search_sql(f, before, limit);
    // `?N` is SQLite's explicitly numbered placeholder (the shared SQL writes `$N`).
    let sql = sql.replace('$', "?");
    let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(params_from_iter(params.iter().map(value)), query_row)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// Append a check; returns its id.
pub fn insert_check(conn: &Connection, c: &NewCheck<'_>) -> Result<i64, StoreError> {
    c.validate()?;
    conn.execute(
        "INSERT INTO checks (ts_us, who, what, target, source, passed, detail, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![micros(c.at), c.who, c.what, c.target, c.source, i64::from(c.passed), c.detail, c.action],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

/// Checks in `period`, newest first, at most `limit`.
pub fn list_checks(
    conn: &Connection,
    period: Period,
    limit: usize,
) -> Result<Vec<CheckRow>, StoreError> {
    let (from, to) = period.bounds();
    let limit = i64::try_from(limit.min(crate::store::records::MAX_LIST)).unwrap_or(0);
    let mut stmt = conn
        .prepare("SELECT id, ts_us, who, what, target, source, passed, detail, action FROM checks WHERE ts_us >= ?1 AND ts_us < ?2 ORDER BY id DESC LIMIT ?3")
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![from, to, limit], |r| {
            Ok(CheckRow {
                id: r.get(0)?,
                ts_us: r.get(1)?,
                who: r.get(2)?,
                what: r.get(3)?,
                target: r.get(4)?,
                source: r.get(5)?,
                passed: r.get::<_, i64>(6)? != 0,
                detail: r.get(7)?,
                action: r.get(8)?,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// Append an annual review; returns its id.
pub fn insert_review(conn: &Connection, r: &NewReview<'_>) -> Result<i64, StoreError> {
    r.validate()?;
    conn.execute(
        "INSERT INTO reviews (ts_us, review_date, reviewers, decisions, next_due, recorded_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![micros(r.at), r.date.to_string(), r.reviewers, r.decisions, r.next_due.to_string(), r.recorded_by],
    )
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

/// Reviews recorded in `period`, newest first, at most `limit`.
pub fn list_reviews(
    conn: &Connection,
    period: Period,
    limit: usize,
) -> Result<Vec<ReviewRow>, StoreError> {
    let (from, to) = period.bounds();
    let limit = i64::try_from(limit.min(crate::store::records::MAX_LIST)).unwrap_or(0);
    let mut stmt = conn
        .prepare("SELECT id, ts_us, review_date, reviewers, decisions, next_due, recorded_by FROM reviews WHERE ts_us >= ?1 AND ts_us < ?2 ORDER BY id DESC LIMIT ?3")
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![from, to, limit], |r| {
            Ok(ReviewRow {
                id: r.get(0)?,
                ts_us: r.get(1)?,
                date: r.get(2)?,
                reviewers: r.get(3)?,
                decisions: r.get(4)?,
                next_due: r.get(5)?,
                recorded_by: r.get(6)?,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}
