//! The query log writer: a thread that drains the record stage's bounded channel and writes
//! events in batches (one SQLite transaction per batch, or JSON lines), applies
//! pseudonymisation, and deletes records past the retention period.
//!
//! It runs on its own OS thread because SQLite is synchronous; the DNS path only ever does a
//! non-blocking `try_send`. Pseudonyms are a keyed hash (HMAC-SHA256 with a key kept in the
//! database), so the same device keeps the same pseudonym for the safeguarding lead's
//! review while the address itself is not stored.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rusqlite::{Connection, params};
use sha2::Sha256;

use super::{StoreError, micros};
use crate::config::{QueryLogConfig, QueryLogFormat};
use crate::metrics::Metrics;
use crate::policy::clock::SharedClock;
use crate::record::LogEvent;
use crate::state::State;

/// What the writer thread is sent. Events are nearly all of the traffic, so they travel
/// unboxed: boxing would add an allocation per query for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// A query.
    Event(LogEvent),
    /// Run retention now (tests, admin).
    Retain,
    /// Write everything queued, then answer.
    Flush(SyncSender<()>),
}

/// Handle to the writer.
#[derive(Clone)]
pub struct QueryLog {
    tx: SyncSender<Msg>,
}

/// Largest batch per transaction.
const BATCH: usize = 2048;
/// How long events may sit unwritten.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(3600);

impl QueryLog {
    /// Offer an event without blocking; false if the queue is full (dropped).
    pub fn offer(&self, e: LogEvent) -> bool {
        self.tx.try_send(Msg::Event(e)).is_ok()
    }

    /// Ask for retention to run now.
    pub fn retain_now(&self) {
        let _ = self.tx.send(Msg::Retain);
    }

    /// Wait until everything queued so far is written.
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }
}

enum Sink {
    Sqlite(Connection),
    Jsonl(Box<dyn Write + Send>),
}

/// Start the writer thread for `cfg`, writing to the database at `db` (SQLite mode).
pub fn start(
    cfg: &QueryLogConfig,
    db: &std::path::Path,
    state: Arc<State>,
    clock: SharedClock,
) -> Result<(QueryLog, JoinHandle<()>), StoreError> {
    let (sink, key) = match cfg.format {
        QueryLogFormat::Sqlite => {
            let conn = super::open(db)?;
            let key =
                super::secret(&conn, "pseudonym_key").map_err(|source| StoreError::Sqlite {
                    path: db.to_owned(),
                    source,
                })?;
            (Sink::Sqlite(conn), key)
        }
        QueryLogFormat::Jsonl => {
            let conn = super::open(db)?;
            let key =
                super::secret(&conn, "pseudonym_key").map_err(|source| StoreError::Sqlite {
                    path: db.to_owned(),
                    source,
                })?;
            (
                Sink::Jsonl(
                    jsonl_writer(cfg.jsonl_path.as_ref())
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                ),
                key,
            )
        }
    };
    let (tx, rx) = sync_channel(cfg.queue);
    let metrics = state.metrics().clone();
    let writer = Writer {
        sink,
        key,
        state,
        clock,
        metrics,
        db: db.to_owned(),
    };
    let handle = std::thread::Builder::new()
        .name("querylog".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Invalid(format!("cannot start the query log thread: {e}")))?;
    Ok((QueryLog { tx }, handle))
}

fn jsonl_writer(path: Option<&PathBuf>) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(std::io::LineWriter::new(std::io::stdout())),
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
    })
}

struct Writer {
    sink: Sink,
    key: Vec<u8>,
    state: Arc<State>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    db: PathBuf,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<LogEvent> = Vec::with_capacity(BATCH);
        let mut last_retention = Instant::now();
        self.retain();
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(Msg::Event(e)) => {
                    batch.push(e);
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Event(e)) => batch.push(e),
                            Ok(other) => {
                                self.write(&mut batch);
                                self.control(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= BATCH {
                        self.write(&mut batch);
                    }
                }
                Ok(other) => {
                    self.write(&mut batch);
                    self.control(other);
                }
                Err(RecvTimeoutError::Timeout) => self.write(&mut batch),
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut batch);
                    return;
                }
            }
            if last_retention.elapsed() >= RETAIN_EVERY {
                self.retain();
                last_retention = Instant::now();
            }
        }
    }

    fn control(&mut self, m: Msg) {
        match m {
            Msg::Retain => self.retain(),
            Msg::Flush(ack) => {
                let _ = ack.send(());
            }
            Msg::Event(_) => {}
        }
    }

    fn write(&mut self, batch: &mut Vec<LogEvent>) {
        if batch.is_empty() {
            return;
        }
        let pseudo = self.state.load().config.querylog.pseudonymise.clone();
        for e in batch.iter_mut() {
            if pseudo.contains(&e.group) {
                e.client = pseudonym(&self.key, &e.client);
                e.mac = e.mac.as_deref().map(|m| pseudonym(&self.key, m));
            }
        }
        let n = batch.len() as u64;
        let result = match &mut self.sink {
            Sink::Sqlite(conn) => insert_batch(conn, batch).map_err(|e| e.to_string()),
            Sink::Jsonl(w) => write_jsonl(w.as_mut(), batch).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => self.metrics.querylog_written.inc_by(n),
            Err(e) => {
                self.metrics.querylog_dropped.inc_by(n);
                tracing::error!("query log write failed ({} events lost): {e}", n);
            }
        }
        batch.clear();
    }

    /// Delete query records older than the retention period. Incidents live in their own
    /// table and are not touched.
    fn retain(&mut self) {
        let Sink::Sqlite(conn) = &self.sink else {
            return;
        };
        let days = self.state.load().config.querylog.retention_days;
        let cutoff = micros(self.clock.now()) - i64::from(days) * 86_400_000_000;
        match conn.execute("DELETE FROM queries WHERE ts_us < ?1", params![cutoff]) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("query log retention: deleted {n} records older than {days} days")
            }
            Err(e) => tracing::error!("query log retention failed on {}: {e}", self.db.display()),
        }
    }
}

fn insert_batch(conn: &mut Connection, batch: &[LogEvent]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO queries (ts_us, client, grp, device, mac, name, qtype, decision, category, rule, rcode)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for e in batch {
            stmt.execute(params![
                e.ts_us, e.client, e.group, e.device, e.mac, e.name, e.qtype, e.decision,
                e.category, e.rule, e.rcode
            ])?;
        }
    }
    tx.commit()
}

fn write_jsonl(w: &mut dyn Write, batch: &[LogEvent]) -> std::io::Result<()> {
    for e in batch {
        serde_json::to_writer(&mut *w, e)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// A stable pseudonym for an address: "anon-" and 16 hex digits of HMAC-SHA256.
pub fn pseudonym(key: &[u8], value: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "anon".to_owned();
    };
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("anon-{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let a = pseudonym(b"key-one", "10.20.1.5");
        assert_eq!(a, pseudonym(b"key-one", "10.20.1.5"));
        assert_ne!(a, pseudonym(b"key-two", "10.20.1.5"));
        assert_ne!(a, pseudonym(b"key-one", "10.20.1.6"));
        assert!(a.starts_with("anon-") && a.len() == 21);
    }
}
