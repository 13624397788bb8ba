//! PostgreSQL: the audit chain. Appends from every instance are serialised by a
//! transaction-scoped advisory lock, so the chain stays one chain: each append reads the
//! head, seals the record against it and inserts it with id = previous id + 1 while no
//! other writer can. Ids come from the chain, not a sequence (a sequence's gaps after a
//! rollback would read as deleted records).

use std::ops::ControlFlow;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient};

use super::pg;
use crate::store::audit::{Appended, AuditRecord, GENESIS, Head, Sealed, Stored};
use crate::store::{StoreError, from_micros, micros};

/// The advisory lock every audit append holds ("chaperone audit").
pub const AUDIT_LOCK: i64 = 0x6368_6170_5f61_7564;

pub(super) fn append(
    c: &mut Client,
    seal: &mut dyn FnMut(&Head) -> Sealed,
) -> Result<Appended, StoreError> {
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
        .map_err(pg)?;
    let before = head(&mut tx)?;
    let r = seal(&before);
    let [actor, role, action, subject, detail] = &r.fields;
    let id: i64 = tx.query_one(
        "INSERT INTO audit (id, ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM audit), $1, $2, $3, $4, $5, $6, $7, $8, 1) RETURNING id",
        &[&r.ts_us, actor, role, action, subject, detail, &r.prev_hash, &r.hash],
    )
    .map_err(pg)?
    .get(0);
    let after = Head {
        records: before.records + 1,
        head: r.hash.clone(),
        keyed_from: before.keyed_from.or(Some(id)),
    };
    tx.commit().map_err(pg)?;
    Ok(Appended { id, before, after })
}

/// Count, newest hash and first keyed id.
pub(super) fn head(c: &mut impl GenericClient) -> Result<Head, StoreError> {
    let row = c
        .query_one(
            "SELECT (SELECT COUNT(*) FROM audit), (SELECT hash FROM audit ORDER BY id DESC LIMIT 1), (SELECT MIN(id) FROM audit WHERE keyed = 1)",
            &[],
        )
        .map_err(pg)?;
    Ok(Head {
        records: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
        head: row
            .get::<_, Option<String>>(1)
            .unwrap_or_else(|| GENESIS.to_owned()),
        keyed_from: row.get(2),
    })
}

pub(super) fn list(
    c: &mut Client,
    since: Option<jiff::Timestamp>,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let since = since.map_or(i64::MIN, micros);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed FROM audit WHERE ts_us >= $1 ORDER BY id LIMIT $2",
            &[&since, &limit],
        )
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| AuditRecord {
            id: r.get(0),
            at: from_micros(r.get(1)).to_string(),
            actor: r.get(2),
            role: r.get(3),
            action: r.get(4),
            subject: r.get(5),
            detail: r.get(6),
            prev_hash: r.get(7),
            hash: r.get(8),
            keyed: r.get::<_, i64>(9) != 0,
        })
        .collect())
}

/// Every record in id order, streamed (the driver reads rows as they arrive), until
/// `visit` breaks.
pub(super) fn walk(
    c: &mut Client,
    visit: &mut dyn FnMut(Stored) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let mut rows = c
        .query_raw(
            "SELECT id, ts_us, actor, role, action, subject, detail, prev_hash, hash, keyed FROM audit ORDER BY id",
            std::iter::empty::<i64>(),
        )
        .map_err(pg)?;
    while let Some(r) = rows.next().map_err(pg)? {
        let row = Stored {
            id: r.get(0),
            ts_us: r.get(1),
            fields: [r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)],
            prev_hash: r.get(7),
            hash: r.get(8),
            keyed: r.get::<_, i64>(9) != 0,
        };
        if visit(row).is_break() {
            break;
        }
    }
    Ok(())
}
