//! The query log writer: a thread that drains the record stage's bounded channel and writes
//! events in batches (one SQLite transaction per batch, or JSON lines), applies
//! pseudonymisation, and deletes records past the retention period.
//!
//! It runs on its own OS thread because SQLite is synchronous; the DNS path only ever does a
//! non-blocking `try_send`. Pseudonyms are a keyed hash (HMAC-SHA256 with a key kept in the
//! database), so the same device keeps the same pseudonym for the safeguarding lead's
//! review while the address itself is not stored.
//!
//! Batches are written when they are full or when their oldest event has waited
//! [`FLUSH_EVERY`], whichever comes first, so a steady trickle of queries is on disk within
//! half a second, and a burst costs one transaction per [`BATCH`] events.
//!
//! Retention applies to whatever holds query records:
//! - the `queries` table, always (also in JSON lines mode, so records written before a
//!   switch to JSON lines still expire);
//! - a JSON lines *file*, which is rotated at midnight UTC (by the events' own time) to
//!   `FILE.YYYY-MM-DD`; a rotated day is deleted once its last possible record is older
//!   than `retention_days`. JSON lines on standard output belong to whoever collects them.
//!
//! Incidents live in their own table and are never deleted by retention.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
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
pub const BATCH: usize = 2048;
/// Longest an event waits in a partial batch before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(3600);
/// While queries flow, how often the writer looks at the queue (at 100 000 queries/s that
/// is 1000 events a look: the queue's default 65 536 slots leave ample room).
const POLL: Duration = Duration::from_millis(10);
/// After this long without events the writer parks until the next one.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// Longest park while idle, so hourly retention still runs on an idle server.
const RETAIN_CHECK: Duration = Duration::from_secs(60);
/// Rows deleted per statement, so one retention pass never holds the write lock long.
const DELETE_CHUNK: usize = 20_000;
/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

impl QueryLog {
    /// Offer an event without blocking; false if the queue is full (dropped).
    pub fn offer(&self, e: LogEvent) -> bool {
        self.tx.try_send(Msg::Event(e)).is_ok()
    }

    /// Ask for retention to run now. Waits for room in the queue: not for the DNS path.
    pub fn retain_now(&self) {
        let _ = self.tx.send(Msg::Retain);
    }

    /// Wait (up to 10 s) until everything queued so far is written. Not for the DNS path.
    pub fn flush(&self) {
        let (ack, done) = sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// A JSON lines destination.
struct Jsonl {
    out: Box<dyn Write + Send>,
    /// The file, when not standard output (rotated and expired by day).
    file: Option<PathBuf>,
    /// UTC day number (days since 1970-01-01) of the events in the current file.
    day: Option<i64>,
}

/// Start the writer thread for `cfg`. The database at `db` holds the pseudonym key and, in
/// SQLite mode, the records.
pub fn start(
    cfg: &QueryLogConfig,
    db: &Path,
    state: Arc<State>,
    clock: SharedClock,
) -> Result<(QueryLog, JoinHandle<()>), StoreError> {
    let conn = super::open(db)?;
    let key = super::secret(&conn, "pseudonym_key").map_err(|source| StoreError::Sqlite {
        path: db.to_owned(),
        source,
    })?;
    let jsonl = match cfg.format {
        QueryLogFormat::Sqlite => None,
        QueryLogFormat::Jsonl => Some(Jsonl::open(cfg.jsonl_path.clone()).map_err(|e| {
            StoreError::Invalid(format!(
                "cannot open the query log {}: {e}",
                cfg.jsonl_path.as_deref().map_or_else(
                    || "(standard output)".to_owned(),
                    |p| p.display().to_string()
                )
            ))
        })?),
    };
    let (tx, rx) = sync_channel(cfg.queue);
    let metrics = state.metrics().clone();
    let writer = Writer {
        conn,
        jsonl,
        key,
        pseudonyms: Pseudonyms::default(),
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

impl Jsonl {
    fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let Some(path) = file else {
            return Ok(Self {
                out: Box::new(std::io::LineWriter::new(std::io::stdout())),
                file: None,
                day: None,
            });
        };
        let day = first_event_day(&path);
        Ok(Self {
            out: Box::new(append(&path)?),
            file: Some(path),
            day,
        })
    }

    /// Write a batch, rotating the file whenever an event belongs to a later UTC day than
    /// the file's.
    fn write(&mut self, batch: &[LogEvent]) -> std::io::Result<()> {
        for e in batch {
            let day = e.ts_us.div_euclid(DAY_US);
            match self.day {
                Some(d) if self.file.is_some() && day > d => self.rotate(day)?,
                None => self.day = Some(day),
                _ => {}
            }
            serde_json::to_writer(&mut self.out, e)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }

    /// Close the current file as `FILE.YYYY-MM-DD` (of its events' day) and start a new one
    /// for events of `day`.
    fn rotate(&mut self, day: i64) -> std::io::Result<()> {
        let (Some(path), Some(old)) = (self.file.clone(), self.day) else {
            return Ok(());
        };
        self.out.flush()?;
        let base = rotated_name(&path, old);
        let mut target = base.clone();
        let mut n = 1;
        while target.exists() {
            target = PathBuf::from(format!("{}.{n}", base.display()));
            n += 1;
        }
        std::fs::rename(&path, &target)?;
        self.out = Box::new(append(&path)?);
        self.day = Some(day);
        Ok(())
    }

    /// Rotate a file whose day has ended (a quiet server writes nothing to trigger it), then
    /// delete rotated days wholly older than `cutoff_us`. Returns how many files went.
    fn expire(&mut self, now_us: i64, cutoff_us: i64) -> std::io::Result<usize> {
        let Some(path) = self.file.clone() else {
            return Ok(0);
        };
        let today = now_us.div_euclid(DAY_US);
        if self.day.is_some_and(|d| d < today) {
            self.rotate(today)?;
        }
        let cutoff_day = cutoff_us.div_euclid(DAY_US);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let Some(stem) = path.file_name().and_then(|f| f.to_str()) else {
            return Ok(0);
        };
        let prefix = format!("{stem}.");
        let mut deleted = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(day) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.get(..10))
                .and_then(|d| d.parse::<jiff::civil::Date>().ok())
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp().as_microsecond().div_euclid(DAY_US))
            else {
                continue;
            };
            // A day's file holds records up to the end of that day: it goes once that end
            // is at or before the cutoff.
            if day < cutoff_day {
                std::fs::remove_file(entry.path())?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

fn append(path: &Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    ))
}

/// `FILE.YYYY-MM-DD` for a UTC day number.
fn rotated_name(path: &Path, day: i64) -> PathBuf {
    let date = jiff::Timestamp::from_second(day * 86_400).map_or_else(
        |_| format!("day{day}"),
        |t| t.strftime("%Y-%m-%d").to_string(),
    );
    PathBuf::from(format!("{}.{date}", path.display()))
}

/// The UTC day of the first event in an existing JSON lines file (None if empty or absent).
fn first_event_day(path: &Path) -> Option<i64> {
    let f = std::fs::File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).ok()?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    Some(v.get("ts_us")?.as_i64()?.div_euclid(DAY_US))
}

struct Writer {
    /// The storage database: pseudonym key, the `queries` table (written in SQLite mode,
    /// expired in both).
    conn: Connection,
    /// JSON lines mode.
    jsonl: Option<Jsonl>,
    key: Vec<u8>,
    /// Pseudonyms already computed (a school has thousands of devices, not millions).
    pseudonyms: Pseudonyms,
    state: Arc<State>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    db: PathBuf,
}

/// A bounded memo of pseudonyms: one HMAC per device rather than one per query.
#[derive(Default)]
struct Pseudonyms(std::collections::HashMap<String, String>);

impl Pseudonyms {
    /// Entries kept before the memo starts afresh.
    const MAX: usize = 65_536;

    fn get(&mut self, key: &[u8], value: &str) -> String {
        if let Some(p) = self.0.get(value) {
            return p.clone();
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        let p = pseudonym(key, value);
        self.0.insert(value.to_owned(), p.clone());
        p
    }
}

impl Writer {
    /// The writer loop. While queries flow it polls the queue every [`POLL`] instead of
    /// sleeping in `recv`: a receiver parked in `recv` must be woken by a system call on
    /// each send, which would put a futex wake and a context switch on the DNS path for
    /// every query. Only after [`IDLE_AFTER`] without events does it park (and the next
    /// query wakes it once).
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<LogEvent> = Vec::with_capacity(BATCH);
        // When the oldest event of the current batch arrived.
        let mut since: Option<Instant> = None;
        let mut last_event = Instant::now();
        let mut last_retention = Instant::now();
        self.retain();
        loop {
            let mut control = None;
            let mut disconnected = false;
            let mut drained = false;
            while batch.len() < BATCH && control.is_none() {
                match rx.try_recv() {
                    Ok(Msg::Event(e)) => {
                        since.get_or_insert_with(Instant::now);
                        batch.push(e);
                    }
                    Ok(other) => control = Some(other),
                    Err(TryRecvError::Empty) => {
                        drained = true;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let busy = !batch.is_empty() || control.is_some();
            let due = since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
            if control.is_some() || due || batch.len() >= BATCH || disconnected {
                self.write(&mut batch);
                since = None;
            }
            if disconnected {
                return;
            }
            match control {
                Some(Msg::Retain) => self.retain(),
                Some(Msg::Flush(ack)) => {
                    let _ = ack.send(());
                }
                Some(Msg::Event(_)) | None => {}
            }
            if last_retention.elapsed() >= RETAIN_EVERY {
                self.retain();
                last_retention = Instant::now();
            }
            if busy {
                last_event = Instant::now();
            }
            if !drained {
                // More is queued: keep going without a pause.
                continue;
            }
            if last_event.elapsed() < IDLE_AFTER {
                std::thread::sleep(POLL);
                continue;
            }
            // Idle: park until something arrives (or a partial batch falls due).
            let wait = since.map_or(RETAIN_CHECK, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
            match rx.recv_timeout(wait) {
                Ok(Msg::Event(e)) => {
                    since.get_or_insert_with(Instant::now);
                    batch.push(e);
                    last_event = Instant::now();
                }
                Ok(other) => {
                    self.write(&mut batch);
                    since = None;
                    last_event = Instant::now();
                    match other {
                        Msg::Retain => self.retain(),
                        Msg::Flush(ack) => {
                            let _ = ack.send(());
                        }
                        Msg::Event(_) => {}
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut batch);
                    return;
                }
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<LogEvent>) {
        if batch.is_empty() {
            return;
        }
        let snap = self.state.load();
        let pseudo = &snap.config.querylog.pseudonymise;
        if !pseudo.is_empty() {
            for e in batch.iter_mut() {
                if pseudo.contains(&e.group) {
                    e.client = self.pseudonyms.get(&self.key, &e.client);
                    if let Some(mac) = &e.mac {
                        e.mac = Some(self.pseudonyms.get(&self.key, mac));
                    }
                }
            }
        }
        drop(snap);
        let n = batch.len() as u64;
        let result = match &mut self.jsonl {
            None => insert_batch(&mut self.conn, batch).map_err(|e| e.to_string()),
            Some(j) => j.write(batch).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => self.metrics.querylog_written.inc_by(n),
            Err(e) => {
                self.metrics.querylog_dropped.inc_by(n);
                tracing::error!("query log write failed ({n} events lost): {e}");
            }
        }
        batch.clear();
    }

    /// Delete query records older than the retention period: rows of the `queries` table,
    /// and whole days of a rotated JSON lines file. Incidents are not touched.
    fn retain(&mut self) {
        let days = self.state.load().config.querylog.retention_days;
        let now = micros(self.clock.now());
        let cutoff = now - i64::from(days) * DAY_US;
        let mut total = 0;
        loop {
            match self.conn.execute(
                "DELETE FROM queries WHERE id IN (SELECT id FROM queries WHERE ts_us < ?1 LIMIT ?2)",
                params![cutoff, DELETE_CHUNK as i64],
            ) {
                Ok(n) => {
                    total += n;
                    if n < DELETE_CHUNK {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!("query log retention failed on {}: {e}", self.db.display());
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!("query log retention: deleted {total} records older than {days} days");
        }
        if let Some(j) = &mut self.jsonl {
            match j.expire(now, cutoff) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "query log retention: deleted {n} JSON lines files older than {days} days"
                ),
                Err(e) => tracing::error!("query log retention of JSON lines files failed: {e}"),
            }
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

    #[test]
    fn the_memo_gives_the_same_pseudonyms() {
        let mut memo = Pseudonyms::default();
        for round in 0..2 {
            for i in 0..10 {
                let ip = format!("10.20.1.{i}");
                assert_eq!(memo.get(b"k", &ip), pseudonym(b"k", &ip), "round {round}");
            }
        }
        assert_eq!(memo.0.len(), 10);
    }

    #[test]
    fn rotated_files_are_named_by_utc_day() {
        let day = jiff::Timestamp::from_second(1_795_392_000)
            .unwrap()
            .as_microsecond()
            / DAY_US;
        assert_eq!(
            rotated_name(Path::new("/var/log/q.jsonl"), day),
            PathBuf::from("/var/log/q.jsonl.2026-11-23")
        );
    }
}
