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
//! In database mode a batch's identical queries (same client and identity, name, type,
//! outcome and rule, in the same second) are folded into one row with a `count`
//! ([`fold_repeats`]): one row per query made the insert most of the log's cost. Reports
//! add up `count`; JSON lines keep one line per query.
//!
//! Retention applies to whatever holds query records:
//! - the `queries` table, always (also in JSON lines mode, so records written before a
//!   switch to JSON lines still expire);
//! - a JSON lines *file*, which is rotated at midnight UTC (by the events' own time) to
//!   `FILE.YYYY-MM-DD`; a rotated day is deleted once its last possible record is older
//!   than `retention_days`. JSON lines on standard output belong to whoever collects them.
//!
//! Incidents live in their own table and are never deleted by retention.
//!
//! The log is capped by size as well as age, oldest first: the `queries` table holds at
//! most `querylog.max_rows` records (checked after every batch, by the id range, which costs
//! two index look-ups), and a JSON lines file is rotated once it passes
//! `max_bytes / max_files`, keeping at most `max_files` files and `max_bytes` in all.
//! Refused queries are not logged one by one; the writer stores their number per minute
//! in `refused_queries` (expired like the query records).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rusqlite::{Connection, params};
use sha2::Sha256;

use super::{Store, StoreError, micros};
use crate::config::{QueryLogConfig, QueryLogFormat};
use crate::metrics::Metrics;
use crate::policy::clock::SharedClock;
use crate::state::State;

/// An owned query log record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEvent {
    /// Unix time, microseconds.
    pub ts_us: i64,
    /// Client address.
    pub client: String,
    /// Policy group ("none" if refused).
    pub group: String,
    /// Nominated device, if matched.
    pub device: Option<String>,
    /// Client MAC: sent by a trusted relay, or from the device's DHCP lease.
    pub mac: Option<String>,
    /// Device name: the enrolled device's, else the DHCP lease's host name.
    pub hostname: Option<String>,
    /// The individual, where known (RADIUS user, ChromeOS templated user).
    pub user: Option<String>,
    /// The enrolled device's ID (DoT/DoH), if the query came with one.
    pub device_id: Option<String>,
    /// Query name.
    pub name: String,
    /// Query type.
    pub qtype: String,
    /// allowed, blocked, rewritten, refused, servfail.
    pub decision: String,
    /// Blocking category, if blocked.
    pub category: Option<String>,
    /// The rule that decided (listed name, allow entry, exception id...).
    pub rule: Option<String>,
    /// Response code.
    pub rcode: String,
    /// Whether this is an illegal-category hit.
    pub incident: bool,
    /// How many identical queries this record stands for: 1 from the DNS path; more once
    /// the writer has folded repeats (see [`fold_repeats`]). Not in JSON lines, which keep
    /// one line per query.
    #[serde(skip)]
    pub count: u32,
}

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
    /// Refused queries since the writer last stored their total.
    refused: Arc<AtomicU64>,
}

/// Largest batch per transaction. Large, so repeats of a popular name from one client in
/// the same second mostly fall in one batch and fold into one row (at 50 000 queries/s a
/// batch is a third of a second).
pub const BATCH: usize = 16_384;
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
/// First and longest pause between retries of a batch the database refused.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Most events held while the database is away (the held batch plus what arrives while
/// retrying); beyond it they are dropped and counted.
const HELD_MAX: usize = 2 * BATCH;
/// How often the number of refused queries is stored.
const REFUSED_EVERY: Duration = Duration::from_secs(60);

impl QueryLog {
    /// Offer an event without blocking; false if the queue is full (dropped).
    pub fn offer(&self, e: LogEvent) -> bool {
        self.tx.try_send(Msg::Event(e)).is_ok()
    }

    /// Count a refused query (stored as a per-minute total, not as a record).
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
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

/// The size cap of a JSON lines file and its rotated copies.
#[derive(Debug, Clone, Copy)]
struct SizeCap {
    max_bytes: u64,
    max_files: u32,
}

impl SizeCap {
    fn of(cfg: &QueryLogConfig) -> Self {
        Self {
            max_bytes: cfg.max_bytes,
            max_files: cfg.max_files,
        }
    }

    /// The current file is rotated once it holds more than this.
    fn per_file(self) -> u64 {
        self.max_bytes / u64::from(self.max_files.max(1))
    }
}

/// Start the writer thread for `cfg`. `store` (the writer's own connection) holds the
/// pseudonym key and, in database mode, the records.
pub fn start(
    mut store: Box<dyn Store>,
    cfg: &QueryLogConfig,
    state: Arc<State>,
    clock: SharedClock,
) -> Result<(QueryLog, JoinHandle<()>), StoreError> {
    // PostgreSQL: the key is read on the writer's own thread (this runs in async code,
    // where the PostgreSQL client must not block, and the server may be down at start:
    // then it is read again before a batch needs it). SQLite: read here, as before.
    let key = match store.backend() {
        "postgres" => None,
        _ => Some(store.secret("pseudonym_key")?),
    };
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
    let refused = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        refused: refused.clone(),
        refused_since: Instant::now(),
        store,
        jsonl,
        key,
        pseudonyms: Pseudonyms::default(),
        held: None,
        backoff: RETRY_MIN,
        state,
        clock,
        metrics,
    };
    let handle = std::thread::Builder::new()
        .name("querylog".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Invalid(format!("cannot start the query log thread: {e}")))?;
    Ok((QueryLog { tx, refused }, handle))
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

    /// Rotate the current file if it passed its share of the cap, then delete the oldest
    /// rotated files until at most `max_files` files and `max_bytes` remain. Returns the
    /// number of files deleted.
    fn cap(&mut self, cap: SizeCap) -> std::io::Result<usize> {
        let (Some(path), Some(day)) = (self.file.clone(), self.day) else {
            return Ok(0);
        };
        let mut current = std::fs::metadata(&path).map_or(0, |m| m.len());
        if current > cap.per_file() {
            self.rotate(day)?;
            current = 0;
        }
        let mut rotated = rotated_files(&path)?;
        // Oldest first: by day, then by the rotation number within the day.
        rotated.sort_by_key(|r| (r.day, r.seq));
        let mut total = current + rotated.iter().map(|r| r.bytes).sum::<u64>();
        let mut files = rotated.len() + 1;
        let mut deleted = 0;
        for r in rotated {
            if files <= cap.max_files as usize && total <= cap.max_bytes {
                break;
            }
            std::fs::remove_file(&r.path)?;
            total -= r.bytes;
            files -= 1;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Close the current file as `FILE.YYYY-MM-DD` (of its events' day) and start a new one
    /// for events of `day`.
    fn rotate(&mut self, day: i64) -> std::io::Result<()> {
        let (Some(path), Some(old)) = (self.file.clone(), self.day) else {
            return Ok(());
        };
        self.out.flush()?;
        let base = rotated_name(&path, old);
        // Number after every copy of that day still present (the size cap may have deleted
        // the first ones), so a newer copy never sorts before an older one.
        let mut target = base.clone();
        let day_name = base
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let mut n = rotated_files(&path)?
            .iter()
            .filter(|r| {
                r.path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(day_name))
            })
            .map(|r| r.seq + 1)
            .max()
            .unwrap_or(0);
        if n > 0 {
            target = PathBuf::from(format!("{}.{n}", base.display()));
        }
        while target.exists() {
            n += 1;
            target = PathBuf::from(format!("{}.{n}", base.display()));
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

/// A rotated JSON lines file: `FILE.YYYY-MM-DD` or `FILE.YYYY-MM-DD.N`.
struct Rotated {
    path: PathBuf,
    day: jiff::civil::Date,
    seq: u32,
    bytes: u64,
}

/// The rotated copies of `path` in its folder.
fn rotated_files(path: &Path) -> std::io::Result<Vec<Rotated>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(stem) = path.file_name().and_then(|f| f.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{stem}.");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(day) = rest
            .get(..10)
            .and_then(|d| d.parse::<jiff::civil::Date>().ok())
        else {
            continue;
        };
        let seq = match rest.get(10..) {
            Some("") | None => 0,
            Some(s) => match s.strip_prefix('.').and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => continue,
            },
        };
        let bytes = entry.metadata().map_or(0, |m| m.len());
        out.push(Rotated {
            path: entry.path(),
            day,
            seq,
            bytes,
        });
    }
    Ok(out)
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

/// What a retry of the held batch came to.
enum Hold {
    /// Written (or nothing was held): carry on draining.
    Written,
    /// Still failing: retry again before draining.
    Waiting,
    /// The server is shutting down.
    Disconnected,
}

struct Writer {
    /// The store: pseudonym key, the query records (written in database mode, expired in
    /// both).
    store: Box<dyn Store>,
    /// JSON lines mode.
    jsonl: Option<Jsonl>,
    /// The pseudonym key (None until PostgreSQL could be read).
    key: Option<Vec<u8>>,
    /// A batch the database refused (PostgreSQL down): retried until written, while the
    /// queue is left to fill so the DNS path drops (and counts) new events instead.
    held: Option<Vec<LogEvent>>,
    /// Pause before the next retry of `held`.
    backoff: Duration,
    /// Pseudonyms already computed (a school has thousands of devices, not millions).
    pseudonyms: Pseudonyms,
    state: Arc<State>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// Refused queries counted by the recorder, not yet stored.
    refused: Arc<AtomicU64>,
    /// When their total was last stored.
    refused_since: Instant,
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
        if self.key.is_none() {
            match self.store.secret("pseudonym_key") {
                Ok(k) => self.key = Some(k),
                Err(e) => tracing::warn!("query log: pseudonym key not read yet: {e}"),
            }
        }
        self.retain();
        loop {
            if self.held.is_some() {
                match self.retry_held(&rx) {
                    Hold::Written => {}
                    Hold::Waiting => continue,
                    Hold::Disconnected => return,
                }
            }
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
                    self.store_refused();
                    let _ = ack.send(());
                }
                Some(Msg::Event(_)) | None => {}
            }
            if last_retention.elapsed() >= RETAIN_EVERY {
                self.retain();
                last_retention = Instant::now();
            }
            if self.refused_since.elapsed() >= REFUSED_EVERY {
                self.store_refused();
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
                            self.store_refused();
                            let _ = ack.send(());
                        }
                        Msg::Event(_) => {}
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.refused_since.elapsed() >= REFUSED_EVERY {
                        self.store_refused();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut batch);
                    return;
                }
            }
        }
    }

    /// Retry the held batch after a pause. While the database stays away, take at most one
    /// message from the queue per retry (so a shutdown or a flush is still seen, and the
    /// queue otherwise fills and the DNS path drops).
    fn retry_held(&mut self, rx: &Receiver<Msg>) -> Hold {
        std::thread::sleep(self.backoff);
        let Some(mut held) = self.held.take() else {
            return Hold::Written;
        };
        let n = held.len() as u64;
        match self.store.insert_queries(&held) {
            Ok(()) => {
                tracing::info!("query log: database back, {n} held events written");
                self.metrics.querylog_written.inc_by(n);
                self.backoff = RETRY_MIN;
                return Hold::Written;
            }
            Err(e) => tracing::debug!("query log: still cannot write: {e}"),
        }
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        let outcome = match rx.try_recv() {
            Ok(Msg::Event(mut e)) => {
                if held.len() < HELD_MAX {
                    self.pseudonymise(std::slice::from_mut(&mut e));
                    held.push(e);
                } else {
                    self.metrics.querylog_dropped.inc();
                }
                Hold::Waiting
            }
            Ok(Msg::Flush(ack)) => {
                let _ = ack.send(());
                Hold::Waiting
            }
            Ok(Msg::Retain) | Err(TryRecvError::Empty) => Hold::Waiting,
            Err(TryRecvError::Disconnected) => {
                self.metrics.querylog_dropped.inc_by(held.len() as u64);
                tracing::error!(
                    "query log: stopping with {} events not written (database unreachable)",
                    held.len()
                );
                return Hold::Disconnected;
            }
        };
        self.held = Some(held);
        outcome
    }

    /// Pseudonymise the clients of groups configured for it.
    fn pseudonymise(&mut self, batch: &mut [LogEvent]) {
        let snap = self.state.load();
        let pseudo = &snap.config.querylog.pseudonymise;
        if pseudo.is_empty() {
            return;
        }
        if self.key.is_none() {
            self.key = self.store.secret("pseudonym_key").ok();
        }
        // Without the key nothing identifying may be stored: blank it (only while the
        // database is unreachable at start, when the batch cannot be written anyway).
        let key = self.key.clone();
        for e in batch.iter_mut() {
            if pseudo.contains(&e.group) {
                let Some(key) = key.as_deref() else {
                    e.client = "anon".to_owned();
                    e.mac = None;
                    e.hostname = None;
                    e.user = None;
                    e.device_id = None;
                    continue;
                };
                e.client = self.pseudonyms.get(key, &e.client);
                if let Some(mac) = &e.mac {
                    e.mac = Some(self.pseudonyms.get(key, mac));
                }
                // A device name identifies a pupil as well as the address does.
                for field in [&mut e.hostname, &mut e.user, &mut e.device_id] {
                    if let Some(v) = field.as_deref() {
                        *field = Some(self.pseudonyms.get(key, v));
                    }
                }
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<LogEvent>) {
        if batch.is_empty() {
            return;
        }
        self.pseudonymise(batch);
        let snap = self.state.load();
        let max_rows = snap.config.querylog.max_rows;
        let cap = SizeCap::of(&snap.config.querylog);
        drop(snap);
        let n = batch.len() as u64;
        if self.jsonl.is_none() {
            fold_repeats(batch);
        }
        let result = match &mut self.jsonl {
            None => self.store.insert_queries(batch).map_err(|e| e.to_string()),
            Some(j) => j.write(batch).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                self.cap(max_rows, cap);
                self.metrics.querylog_written.inc_by(n);
            }
            Err(e) if self.jsonl.is_none() && self.store.backend() == "postgres" => {
                // Keep it and retry (PostgreSQL away): see `retry_held`.
                tracing::error!("query log write failed, holding {n} events and retrying: {e}");
                self.held = Some(std::mem::replace(batch, Vec::with_capacity(BATCH)));
                return;
            }
            Err(e) => {
                self.cap(max_rows, cap);
                self.metrics.querylog_dropped.inc_by(n);
                tracing::error!("query log write failed ({n} events lost): {e}");
            }
        }
        batch.clear();
    }

    /// Keep the log under its size cap, oldest first: rows of the `queries` table beyond
    /// `max_rows`, JSON lines files beyond `max_bytes` / `max_files`. Incidents have their
    /// own table and are never touched.
    fn cap(&mut self, max_rows: u64, cap: SizeCap) {
        match self.store.trim_queries(max_rows) {
            Ok(0) => {}
            Ok(n) => {
                self.metrics.querylog_trimmed.inc_by(n);
                tracing::debug!("query log cap: deleted {n} oldest records (max_rows {max_rows})");
            }
            Err(e) => tracing::error!("query log cap failed: {e}"),
        }
        if let Some(j) = &mut self.jsonl {
            match j.cap(cap) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "query log cap: deleted {n} oldest JSON lines files (max_bytes {}, max_files {})",
                    cap.max_bytes,
                    cap.max_files
                ),
                Err(e) => tracing::error!("query log cap of JSON lines files failed: {e}"),
            }
        }
    }

    /// Store the number of refused queries counted since the last call, if any.
    fn store_refused(&mut self) {
        self.refused_since = Instant::now();
        let n = self.refused.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let now = micros(self.clock.now());
        if let Err(e) = self.store.insert_refused(now, n) {
            tracing::error!("cannot store the refused query count: {e}");
        }
    }

    /// Delete query records older than the retention period: rows of the `queries` table,
    /// and whole days of a rotated JSON lines file. Incidents are not touched.
    fn retain(&mut self) {
        let days = self.state.load().config.querylog.retention_days;
        let now = micros(self.clock.now());
        let cutoff = now - i64::from(days) * DAY_US;
        match self.store.expire_queries(cutoff) {
            Ok(0) => {}
            Ok(total) => tracing::info!(
                "query log retention: deleted {total} records older than {days} days"
            ),
            Err(e) => tracing::error!("query log retention failed: {e}"),
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

/// Delete the oldest rows of `queries` beyond `max_rows`, in chunks. The table only ever
/// loses its oldest rows (retention, this cap), so its ids are one contiguous range and
/// `MAX(id) - MIN(id) + 1` is its row count, found with two index look-ups instead of a
/// scan. Each aggregate is its own subquery: SQLite answers `MIN` or `MAX` from the index
/// only when it is the query's single aggregate, and `SELECT MIN(id), MAX(id)` scanned the
/// whole table on every batch (`minmaxStep` was 5 % of a DoT benchmark's profile).
pub(crate) fn trim_rows(conn: &Connection, max_rows: u64) -> rusqlite::Result<u64> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT (SELECT MIN(id) FROM queries), (SELECT MAX(id) FROM queries)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    let keep_from = hi.saturating_sub(i64::try_from(max_rows).unwrap_or(i64::MAX)) + 1;
    if keep_from <= lo {
        return Ok(0);
    }
    let mut deleted = 0u64;
    let mut from = lo;
    while from < keep_from {
        let to = (from + DELETE_CHUNK as i64).min(keep_from);
        deleted += conn.execute(
            "DELETE FROM queries WHERE id >= ?1 AND id < ?2",
            params![from, to],
        )? as u64;
        from = to;
    }
    Ok(deleted)
}

/// SQLite: delete query records and refused-query counts older than `cutoff`, in chunks
/// so one pass never holds the write lock long.
pub(crate) fn expire_rows(conn: &Connection, cutoff: i64) -> rusqlite::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = conn.execute(
            "DELETE FROM queries WHERE id IN (SELECT id FROM queries WHERE ts_us < ?1 LIMIT ?2)",
            params![cutoff, DELETE_CHUNK as i64],
        )?;
        total += n as u64;
        if n < DELETE_CHUNK {
            break;
        }
    }
    conn.execute(
        "DELETE FROM refused_queries WHERE ts_us < ?1",
        params![cutoff],
    )?;
    Ok(total)
}

/// The identity of a query record apart from its time within the second: what makes two
/// records "the same query again".
#[derive(PartialEq, Eq, Hash)]
struct RepeatKey<'a> {
    second: i64,
    client: &'a str,
    group: &'a str,
    device: Option<&'a str>,
    mac: Option<&'a str>,
    hostname: Option<&'a str>,
    user: Option<&'a str>,
    device_id: Option<&'a str>,
    name: &'a str,
    qtype: &'a str,
    decision: &'a str,
    category: Option<&'a str>,
    rule: Option<&'a str>,
    rcode: &'a str,
    incident: bool,
}

impl<'a> RepeatKey<'a> {
    fn of(e: &'a LogEvent) -> Self {
        Self {
            second: e.ts_us.div_euclid(1_000_000),
            client: &e.client,
            group: &e.group,
            device: e.device.as_deref(),
            mac: e.mac.as_deref(),
            hostname: e.hostname.as_deref(),
            user: e.user.as_deref(),
            device_id: e.device_id.as_deref(),
            name: &e.name,
            qtype: &e.qtype,
            decision: &e.decision,
            category: e.category.as_deref(),
            rule: e.rule.as_deref(),
            rcode: &e.rcode,
            incident: e.incident,
        }
    }
}

/// Fold identical queries of a batch (same client and identity, name, type, outcome and
/// rule, in the same second) into the first one, adding up their `count`s; order is kept.
///
/// Why: one row per query made the SQLite insert most of the log's cost, while a browser
/// or an app asks for the same name many times a second. Every field a search or report
/// reads stays exact; only the sub-second times of the repeats go (the row keeps the
/// first one's), and reports add up `count` instead of counting rows.
pub fn fold_repeats(batch: &mut Vec<LogEvent>) {
    if batch.len() < 2 {
        return;
    }
    // Index of each key's first record in the folded batch, and counts to add to it.
    let mut first: rustc_hash::FxHashMap<RepeatKey<'_>, usize> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut keep = vec![true; batch.len()];
    let mut extra = vec![0u32; batch.len()];
    for (i, e) in batch.iter().enumerate() {
        match first.entry(RepeatKey::of(e)) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let j = *o.get();
                extra[j] = extra[j].saturating_add(e.count.max(1));
                keep[i] = false;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }
    drop(first);
    let mut i = 0;
    batch.retain_mut(|e| {
        let k = keep[i];
        e.count = e.count.max(1).saturating_add(extra[i]);
        i += 1;
        k
    });
}

pub(crate) fn insert_batch(conn: &mut Connection, batch: &[LogEvent]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        // Prepared once per batch (16 384 events): rusqlite's statement cache is a feature
        // this build leaves out, and one prepare per batch costs nothing measurable.
        let mut stmt = tx.prepare(
            "INSERT INTO queries (ts_us, client, grp, device, mac, name, qtype, decision, category, rule, rcode, hostname, user, device_id, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for e in batch {
            stmt.execute(params![
                e.ts_us,
                e.client,
                e.group,
                e.device,
                e.mac,
                e.name,
                e.qtype,
                e.decision,
                e.category,
                e.rule,
                e.rcode,
                e.hostname,
                e.user,
                e.device_id,
                e.count.max(1)
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
