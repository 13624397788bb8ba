//! The audit log: every state-changing admin action, append-only and hash-chained.
//!
//! Each record stores the SHA-256 of the previous record's hash and its own fields, so
//! editing or deleting any record (even with direct database access, past the append-only
//! triggers) breaks the chain from that point on, and [`verify`] names the first record
//! that no longer fits.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{from_micros, micros};

/// The hash the first record chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Position in the log.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who (token holder, or "block page" for anonymous requests).
    pub actor: String,
    /// Their role.
    pub role: String,
    /// What they did, e.g. "exception.create".
    pub action: String,
    /// What it was done to, e.g. "exception 4" or a domain.
    pub subject: String,
    /// Details as JSON (reason, expiry, groups...).
    pub detail: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

fn record_hash(
    prev: &str,
    ts_us: i64,
    actor: &str,
    role: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &ts_us.to_string(),
        actor,
        role,
        action,
        subject,
        detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Append a record; returns its id. Runs in a transaction so two writers cannot both
/// chain from the same predecessor.
pub fn append(
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
pub fn list(
    conn: &Connection,
    since: Option<jiff::Timestamp>,
    limit: usize,
) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare(
        "SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash FROM audit WHERE ts_us >= ?1 ORDER BY id LIMIT ?2",
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
        })
    })?;
    rows.collect()
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record fits; this many were checked.
    Intact(u64),
    /// The first record that does not fit, and why.
    Broken {
        /// Record id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Walk the whole log, recomputing every hash and link. Detects edited records (hash
/// mismatch), deleted records (a link to a hash that is not the predecessor's, or a gap in
/// ids) and a truncated head cannot be told from a shorter log unless the caller compares
/// the count or last hash with a copy kept elsewhere (printed by `audit verify`).
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare("SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash FROM audit ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_id = None;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let (ts, actor, role, action, subject, detail, prev_hash, hash): (
            i64,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        ) = (
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        );
        if let Some(want) = expected_id
            && id != want
        {
            return Ok(Verification::Broken {
                id,
                reason: format!("record {want} is missing (deleted)"),
            });
        }
        if prev_hash != prev {
            return Ok(Verification::Broken { id, reason: "does not link to the previous record (a record before it was deleted or changed)".into() });
        }
        if record_hash(&prev_hash, ts, &actor, &role, &action, &subject, &detail) != hash {
            return Ok(Verification::Broken {
                id,
                reason: "its contents do not match its hash (edited)".into(),
            });
        }
        prev = hash;
        expected_id = Some(id + 1);
        n += 1;
    }
    Ok(Verification::Intact(n))
}

/// The hash of the newest record (GENESIS if empty): keep a copy elsewhere to detect a
/// truncated log.
pub fn head(conn: &Connection) -> rusqlite::Result<String> {
    Ok(conn
        .query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("a.db")).unwrap();
        (dir, conn)
    }

    fn fill(conn: &mut Connection) {
        let t: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        for i in 0..5 {
            append(
                conn,
                t,
                "tech",
                "technician",
                "exception.create",
                &format!("exception {i}"),
                &serde_json::json!({"reason": "study"}),
            )
            .unwrap();
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_d, mut conn) = db();
        fill(&mut conn);
        assert_eq!(verify(&conn).unwrap(), Verification::Intact(5));
    }

    #[test]
    fn updates_and_deletes_are_refused_by_the_database() {
        let (_d, mut conn) = db();
        fill(&mut conn);
        assert!(
            conn.execute("UPDATE audit SET actor = 'x' WHERE id = 2", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM audit WHERE id = 2", []).is_err());
    }

    #[test]
    fn an_edited_record_is_found() {
        let (_d, mut conn) = db();
        fill(&mut conn);
        conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET detail = '{\"reason\":\"fun\"}' WHERE id = 3;").unwrap();
        assert!(matches!(
            verify(&conn).unwrap(),
            Verification::Broken { id: 3, .. }
        ));
    }

    #[test]
    fn a_deleted_record_is_found() {
        let (_d, mut conn) = db();
        fill(&mut conn);
        conn.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 2;")
            .unwrap();
        assert!(matches!(
            verify(&conn).unwrap(),
            Verification::Broken { id: 3, .. }
        ));
    }

    #[test]
    fn a_rewritten_chain_is_found_from_the_change_on() {
        let (_d, mut conn) = db();
        fill(&mut conn);
        // Edit record 4 and recompute its own hash: record 5 no longer links to it.
        conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
        let (ts, prev): (i64, String) = conn
            .query_row("SELECT ts_us, prev_hash FROM audit WHERE id = 4", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let forged = record_hash(
            &prev,
            ts,
            "tech",
            "technician",
            "exception.create",
            "exception 3",
            "{\"reason\":\"x\"}",
        );
        conn.execute(
            "UPDATE audit SET detail = '{\"reason\":\"x\"}', hash = ?1 WHERE id = 4",
            params![forged],
        )
        .unwrap();
        assert!(matches!(
            verify(&conn).unwrap(),
            Verification::Broken { id: 5, .. }
        ));
    }
}
