//! PostgreSQL: the query log. `queries` is partitioned by range of `ts_us`, one partition
//! per UTC day (`queries_YYYY_MM_DD`), created on demand before a batch needs it; batches
//! go in with `COPY ... FROM STDIN (FORMAT binary)`; retention drops whole partitions.
//!
//! The size cap (`max_rows`) reads the id range (`MAX(id) - MIN(id) + 1`, one index probe
//! per partition) instead of counting rows. Ids come from one sequence with a cache per
//! session, so the range can only overstate the count (ids a session reserved but did not
//! use): the table stays under `max_rows`, sometimes a little further under.

use postgres::Client;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::{Days, pg};
use crate::store::StoreError;
use crate::store::querylog::LogEvent;

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;
/// Serialises partition creation and dropping across instances ("chaperone partitions").
const PARTITION_LOCK: i64 = 0x6368_6170_5f70_6172;
/// Days remembered as existing; past this the set starts afresh (it is only a cache).
const MAX_KNOWN_DAYS: usize = 4096;
/// Rows deleted per statement when trimming inside a partition.
const DELETE_CHUNK: i64 = 50_000;

const COPY: &str = r#"COPY queries (ts_us, client, grp, device, mac, name, qtype, decision, category, rule, rcode, hostname, "user", device_id, count) FROM STDIN (FORMAT binary)"#;

/// What the writer keeps between batches.
#[derive(Default)]
pub(crate) struct LogState {
    /// UTC days whose partition is known to exist.
    days: Days,
}

/// A day's partition name, `queries_YYYY_MM_DD`.
fn partition_name(day: i64) -> String {
    match jiff::Timestamp::from_second(day * 86_400) {
        Ok(t) => format!("queries_{}", t.strftime("%Y_%m_%d")),
        Err(_) => format!("queries_d{}", day.unsigned_abs()),
    }
}

/// The day of a partition from its name.
fn partition_day(name: &str) -> Option<i64> {
    let date: jiff::civil::Date = name
        .strip_prefix("queries_")?
        .replace('_', "-")
        .parse()
        .ok()?;
    let t = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(t.as_second().div_euclid(86_400))
}

/// The day partitions of `queries`, oldest first.
fn partitions(c: &mut Client) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = c
        .query(
            "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'queries'::regclass",
            &[],
        )
        .map_err(pg)?;
    let mut out: Vec<(i64, String)> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            partition_day(&name).map(|d| (d, name))
        })
        .collect();
    out.sort();
    Ok(out)
}

impl LogState {
    /// Forget which partitions exist (after a reconnect, or a failed write: another
    /// instance may have dropped one).
    pub(crate) fn forget_partitions(&mut self) {
        self.days.clear();
    }

    /// Create the partitions `batch` needs that are not known to exist.
    fn ensure_partitions(&mut self, c: &mut Client, batch: &[LogEvent]) -> Result<(), StoreError> {
        let mut missing: Days = batch
            .iter()
            .map(|e| e.ts_us.div_euclid(DAY_US))
            .filter(|d| !self.days.contains(d))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = c.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .map_err(pg)?;
        for &day in &missing {
            let (lo, hi) = (day * DAY_US, (day + 1) * DAY_US);
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF queries FOR VALUES FROM ({lo}) TO ({hi})",
                partition_name(day)
            ))
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)?;
        if self.days.len() + missing.len() > MAX_KNOWN_DAYS {
            self.days.clear();
        }
        self.days.append(&mut missing);
        Ok(())
    }

    /// Write a batch with binary COPY, creating its days' partitions first. A failure
    /// forgets the known partitions, so a retry re-creates any dropped meanwhile.
    pub(crate) fn insert(&mut self, c: &mut Client, batch: &[LogEvent]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let result = self
            .ensure_partitions(c, batch)
            .and_then(|()| copy(c, batch));
        if result.is_err() {
            self.forget_partitions();
        }
        result
    }

    /// Keep at most `max_rows` records: drop the oldest partitions wholly below the cut,
    /// then delete the oldest rows of the partition it falls in. Returns how many went.
    pub(crate) fn trim(&mut self, c: &mut Client, max_rows: u64) -> Result<u64, StoreError> {
        let row = c
            .query_one(
                "SELECT (SELECT MIN(id) FROM queries), (SELECT MAX(id) FROM queries)",
                &[],
            )
            .map_err(pg)?;
        let (Some(lo), Some(hi)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(0);
        };
        let keep_from = hi.saturating_sub(i64::try_from(max_rows).unwrap_or(i64::MAX)) + 1;
        if keep_from <= lo {
            return Ok(0);
        }
        let mut gone = 0;
        for (day, name) in partitions(c)? {
            let max: Option<i64> = c
                .query_one(&format!("SELECT MAX(id) FROM \"{name}\""), &[])
                .map_err(pg)?
                .get(0);
            if max.is_some_and(|m| m >= keep_from) {
                break;
            }
            gone += self.drop_partition(c, day, &name)?;
        }
        loop {
            let n = c
                .execute(
                    "DELETE FROM queries WHERE id IN (SELECT id FROM queries WHERE id < $1 LIMIT $2)",
                    &[&keep_from, &DELETE_CHUNK],
                )
                .map_err(pg)?;
            gone += n;
            if n < DELETE_CHUNK as u64 {
                break;
            }
        }
        Ok(gone)
    }

    /// Retention: drop every partition wholly older than `cutoff`, delete the older rows
    /// of the one that straddles it, and the refused-query counts before it. Returns how
    /// many query records went.
    pub(crate) fn expire(&mut self, c: &mut Client, cutoff: i64) -> Result<u64, StoreError> {
        let mut gone = 0;
        for (day, name) in partitions(c)? {
            if (day + 1) * DAY_US > cutoff {
                break;
            }
            gone += self.drop_partition(c, day, &name)?;
        }
        gone += c
            .execute("DELETE FROM queries WHERE ts_us < $1", &[&cutoff])
            .map_err(pg)?;
        c.execute("DELETE FROM refused_queries WHERE ts_us < $1", &[&cutoff])
            .map_err(pg)?;
        Ok(gone)
    }

    /// Drop one day's partition; returns the rows it held.
    fn drop_partition(&mut self, c: &mut Client, day: i64, name: &str) -> Result<u64, StoreError> {
        let mut tx = c.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .map_err(pg)?;
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("\"{name}\"")],
            )
            .map_err(pg)?
            .get(0);
        if !exists {
            self.days.remove(&day);
            return Ok(0);
        }
        let rows: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM \"{name}\""), &[])
            .map_err(pg)?
            .get(0);
        tx.batch_execute(&format!("DROP TABLE \"{name}\""))
            .map_err(pg)?;
        tx.commit().map_err(pg)?;
        self.days.remove(&day);
        Ok(u64::try_from(rows).unwrap_or(0))
    }
}

/// One binary COPY of the batch.
fn copy(c: &mut Client, batch: &[LogEvent]) -> Result<(), StoreError> {
    const TYPES: [Type; 15] = [
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
    ];
    let sink = c.copy_in(COPY).map_err(pg)?;
    let mut w = BinaryCopyInWriter::new(sink, &TYPES);
    for e in batch {
        let count = i32::try_from(e.count).unwrap_or(i32::MAX);
        let row: [&(dyn ToSql + Sync); 15] = [
            &e.ts_us,
            &e.client,
            &e.group,
            &e.device,
            &e.mac,
            &e.name,
            &e.qtype,
            &e.decision,
            &e.category,
            &e.rule,
            &e.rcode,
            &e.hostname,
            &e.user,
            &e.device_id,
            &count,
        ];
        w.write(&row).map_err(pg)?;
    }
    w.finish().map_err(pg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_are_utc_days_and_read_back() {
        let day = jiff::Timestamp::from_second(1_795_392_000)
            .unwrap()
            .as_second()
            / 86_400;
        assert_eq!(partition_name(day), "queries_2026_11_23");
        assert_eq!(partition_day("queries_2026_11_23"), Some(day));
        assert_eq!(partition_day("queries_ts"), None);
    }
}
