//! SQLite: the SQL of the audit chain, as functions on a connection.

use rusqlite::{Connection, OptionalExtension, params};

#[cfg(test)]
use crate::store::audit::record_hash;
use crate::store::audit::{Appended, AuditRecord, GENESIS, Head, Sealed, Stored};
use crate::store::{from_micros, micros};

/// SQLite: [`Store::audit_append`] in an immediate transaction.
pub(crate) fn append_sqlite(
    conn: &mut Connection,
    seal: &mut dyn FnMut(&Head) -> Sealed,
) -> rusqlite::Result<Appended> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let before = current_head(&tx)?;
    let r = seal(&before);
    let [actor, role, action, subject, detail] = &r.fields;
    tx.execute(
        "INSERT INTO audit (ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
        params![r.ts_us, actor, role, action, subject, detail, r.prev_hash, r.hash],
    )?;
    let id = tx.last_insert_rowid();
    let after = current_head(&tx)?;
    tx.commit()?;
    Ok(Appended { id, before, after })
}

/// Count, newest hash and first keyed id, from the database.
pub(crate) fn current_head(conn: &Connection) -> rusqlite::Result<Head> {
    let records: i64 = conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
    let keyed_from: Option<i64> =
        conn.query_row("SELECT MIN(id) FROM audit WHERE keyed = 1", [], |r| {
            r.get(0)
        })?;
    Ok(Head {
        records: records as u64,
        head: head(conn)?,
        keyed_from,
    })
}

/// Append an unkeyed (schema 1) record, as versions before the keyed chain did. Only for
/// tests of old logs.
#[cfg(test)]
pub(crate) fn append_unkeyed(
    conn: &mut Connection,
    at: jiff::Timestamp,
    actor: &str,
    role: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let prev: String = tx
        .query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let ts = micros(at);
    let detail = detail.to_string();
    let hash = record_hash(&prev, ts, actor, role, action, subject, &detail);
    tx.execute(
        "INSERT INTO audit (ts_us, actor, role, action, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![ts, actor, role, action, subject, detail, prev, hash],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Records, oldest first, optionally only those at or after `since`.
pub(crate) fn list(
    conn: &Connection,
    since: Option<jiff::Timestamp>,
    limit: usize,
) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare(
        "SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed FROM audit WHERE ts_us >= ?1 ORDER BY id LIMIT ?2",
    )?;
    let since = since.map_or(i64::MIN, micros);
    let rows = stmt.query_map(params![since, limit as i64], |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at: from_micros(r.get(1)?).to_string(),
            actor: r.get(2)?,
            role: r.get(3)?,
            action: r.get(4)?,
            subject: r.get(5)?,
            detail: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
            keyed: r.get::<_, i64>(9)? != 0,
        })
    })?;
    rows.collect()
}

/// SQLite: [`Store::audit_walk`].
pub(crate) fn walk_sqlite(
    conn: &Connection,
    visit: &mut dyn FnMut(Stored) -> std::ops::ControlFlow<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed FROM audit ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let row = Stored {
            id: r.get(0)?,
            ts_us: r.get(1)?,
            fields: [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
            keyed: r.get::<_, i64>(9)? != 0,
        };
        if visit(row).is_break() {
            break;
        }
    }
    Ok(())
}

/// The hash of the newest record (GENESIS if empty): keep a copy elsewhere to detect a
/// truncated log.
pub(crate) fn head(conn: &Connection) -> rusqlite::Result<String> {
    Ok(conn
        .query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned()))
}
