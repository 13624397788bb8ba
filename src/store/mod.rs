//! Storage: the query log, incidents, exceptions, unblock requests, site reports,
//! enrolled devices and the audit log, behind one [`Store`] trait with two backends:
//!
//! - [`sqlite`]: one SQLite file (rusqlite, bundled: nothing to install), the default for
//!   a single school. Each user of the database opens its own connection (WAL mode), so
//!   the query log writer, the admin API and the alert sender never wait on one another's
//!   locks for long.
//! - [`postgres`]: one PostgreSQL database shared by several resolvers and schools
//!   (`[storage] url`); changes are announced with NOTIFY so every instance applies them
//!   within a second.
//!
//! The row types and the logic above SQL (the audit chain's hashing and verification,
//! pseudonyms) live in the topic modules and are the same for both.

pub mod audit;
pub mod devices;
pub mod postgres;
pub mod querylog;
pub mod records;
pub mod safeguarding;
pub mod sqlite;

use std::path::PathBuf;

use crate::config::Config;
use crate::identity::StoredEnrolment;
use crate::policy::Exception;
use audit::{AuditRecord, Head};
use devices::{DeviceRow, NewDevice};
use querylog::LogEvent;
use safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, ReportDecision, ReportRow,
    RequestDecision, RequestRow,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite said no.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// PostgreSQL said no, or could not be reached.
    #[error("PostgreSQL {target}: {source}")]
    Postgres {
        /// Host and database (no password).
        target: String,
        /// Cause.
        source: ::postgres::Error,
    },
    /// A request that cannot be carried out (unknown id, bad state).
    #[error("{0}")]
    Invalid(String),
}

/// What changed, announced to every instance sharing the store (PostgreSQL NOTIFY on
/// channel [`CHANGES_CHANNEL`]) so each re-reads it within a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Exceptions granted, revoked or approved from a request.
    Exceptions,
    /// Devices enrolled or revoked.
    Devices,
    /// A list entry added (an approved site report): reload the lists.
    Lists,
}

impl Change {
    /// The NOTIFY payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Exceptions => "exceptions",
            Change::Devices => "devices",
            Change::Lists => "lists",
        }
    }

    /// Back from a NOTIFY payload.
    pub fn parse(s: &str) -> Option<Change> {
        [Change::Exceptions, Change::Devices, Change::Lists]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// The PostgreSQL channel changes are announced on.
pub const CHANGES_CHANNEL: &str = "chaperone_changes";

/// A delivery attempt's outcome, stored on the incident.
#[derive(Debug, Clone, Copy)]
pub struct AlertStatus<'a> {
    /// pending, retrying, delivered, failed, dropped.
    pub status: &'a str,
    /// Attempts so far.
    pub attempts: i64,
    /// The last error, if the attempt failed.
    pub error: Option<&'a str>,
    /// When it was delivered (µs), if it was.
    pub delivered_us: Option<i64>,
}

/// Everything Chaperone stores, behind one interface with two implementations: SQLite
/// ([`sqlite::Sqlite`], the embedded default for one school) and PostgreSQL
/// ([`postgres::Postgres`], shared by several resolvers and schools).
///
/// Synchronous on purpose: every caller already runs on a blocking thread (the query log
/// writer's own thread, `spawn_blocking` in the admin API and the alert sender), SQLite
/// is synchronous, and the DNS path never calls it. Each user opens its own store with
/// [`open`], as each used to open its own connection.
pub trait Store: Send {
    /// "sqlite" or "postgres", for logs, `/healthz` and metrics.
    fn backend(&self) -> &'static str;

    /// A secret kept in the store (created on first use, 32 random bytes), e.g. the
    /// pseudonym key. Every instance sharing the store gets the same one.
    fn secret(&mut self, name: &str) -> Result<Vec<u8>, StoreError>;

    // --- query log ---

    /// Write a batch of query records (already pseudonymised) in one transaction.
    fn insert_queries(&mut self, batch: &[LogEvent]) -> Result<(), StoreError>;
    /// Delete the oldest query records beyond `max_rows`; returns how many went.
    fn trim_queries(&mut self, max_rows: u64) -> Result<u64, StoreError>;
    /// Delete query records and refused-query counts older than `cutoff_us`; returns how
    /// many query records went.
    fn expire_queries(&mut self, cutoff_us: i64) -> Result<u64, StoreError>;
    /// Store the number of refused queries counted up to `ts_us`.
    fn insert_refused(&mut self, ts_us: i64, count: u64) -> Result<(), StoreError>;

    // --- incidents ---

    /// Record an illegal-category incident without deduplication; returns its id.
    fn insert_incident(&mut self, e: &LogEvent) -> Result<i64, StoreError> {
        self.record_incident(e, "illegal", 0).map(|r| r.id)
    }
    /// Record a hit under `theme`: if an incident of the same (client, name, category)
    /// was opened less than `window_us` before `e.ts_us`, count the hit on it (hits + 1,
    /// last seen); else open a new incident. Atomic against other writers.
    fn record_incident(
        &mut self,
        e: &LogEvent,
        theme: &str,
        window_us: i64,
    ) -> Result<safeguarding::RecordedIncident, StoreError>;
    /// Record an alert delivery attempt on an incident.
    fn set_alert_status(&mut self, id: i64, s: &AlertStatus<'_>) -> Result<(), StoreError>;
    /// One page of incidents since `since`, newest first, ids below `before`.
    fn list_incidents(
        &mut self,
        since: jiff::Timestamp,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StoreError>;
    /// Acknowledge an incident with a note (the DSL has dealt with it); `Invalid` if there
    /// is no such incident or it was already acknowledged.
    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// The acknowledgements of the incidents in `ids` (those that have one).
    fn incident_acks(&mut self, ids: &[i64]) -> Result<Vec<safeguarding::IncidentAck>, StoreError>;

    // --- exceptions ---

    /// Insert an exception; returns its id.
    fn create_exception(&mut self, e: &NewException<'_>) -> Result<i64, StoreError>;
    /// Exceptions, newest first; only those in force at `now` when `active_only`.
    fn list_exceptions(
        &mut self,
        now: jiff::Timestamp,
        active_only: bool,
    ) -> Result<Vec<ExceptionRow>, StoreError>;
    /// One exception.
    fn get_exception(
        &mut self,
        id: i64,
        now: jiff::Timestamp,
    ) -> Result<Option<ExceptionRow>, StoreError>;
    /// Revoke an exception in force; error if there is none.
    fn revoke_exception(
        &mut self,
        id: i64,
        by: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// The exceptions in force at `now`, as the policy takes them.
    fn live_exceptions(&mut self, now: jiff::Timestamp) -> Result<Vec<Exception>, StoreError> {
        Ok(self
            .list_exceptions(now, true)?
            .into_iter()
            .map(safeguarding::ExceptionRow::into_exception)
            .collect())
    }

    // --- unblock requests ---

    /// Insert a request; returns its id.
    fn create_request(&mut self, r: &NewRequest<'_>) -> Result<i64, StoreError>;
    /// Requests, newest first, optionally by status.
    fn list_requests(&mut self, status: Option<&str>) -> Result<Vec<RequestRow>, StoreError>;
    /// One request.
    fn get_request(&mut self, id: i64) -> Result<Option<RequestRow>, StoreError>;
    /// Decide a pending request; error if it is not pending.
    fn decide_request(&mut self, id: i64, d: &RequestDecision<'_>) -> Result<(), StoreError>;
    /// Approve a pending request and create its exception, both or neither (one
    /// transaction); `d.exception_id` is replaced by the new exception's id, returned.
    fn approve_request(
        &mut self,
        id: i64,
        e: &NewException<'_>,
        d: &RequestDecision<'_>,
    ) -> Result<i64, StoreError>;

    // --- site reports ---

    /// Insert a site report; returns its id.
    fn create_report(&mut self, r: &NewReport<'_>) -> Result<i64, StoreError>;
    /// Reports, newest first, optionally by status.
    fn list_reports(&mut self, status: Option<&str>) -> Result<Vec<ReportRow>, StoreError>;
    /// One report.
    fn get_report(&mut self, id: i64) -> Result<Option<ReportRow>, StoreError>;
    /// Decide a pending report; error if it is not pending.
    fn decide_report(&mut self, id: i64, d: &ReportDecision<'_>) -> Result<(), StoreError>;

    // --- enrolled devices ---

    /// Enrol a device under a fresh ID (not `taken` elsewhere); returns the ID.
    fn enrol_device(
        &mut self,
        d: &NewDevice<'_>,
        taken: &dyn Fn(&str) -> bool,
    ) -> Result<String, StoreError>;
    /// Every enrolment, newest first.
    fn list_devices(&mut self, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError>;
    /// One enrolment.
    fn get_device(
        &mut self,
        id: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<DeviceRow>, StoreError>;
    /// Revoke an enrolment; error if none or already revoked.
    fn revoke_device(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// Enrolments not revoked, for the live index.
    fn live_devices(&mut self) -> Result<Vec<StoredEnrolment>, StoreError>;

    // --- audit log ---

    /// Append one record to the chain, serialised against every other writer (SQLite:
    /// an immediate transaction; PostgreSQL: an advisory lock held by the transaction).
    /// `seal` is called inside, with the head before the append, and returns the record
    /// to insert (its `prev_hash` is that head's hash). Ids are consecutive.
    fn audit_append(
        &mut self,
        seal: &mut dyn FnMut(&Head) -> audit::Sealed,
    ) -> Result<audit::Appended, StoreError>;
    /// Count, newest hash and first keyed id.
    fn audit_head(&mut self) -> Result<Head, StoreError>;
    /// Records, oldest first, at or after `since`, at most `limit`.
    fn audit_list(
        &mut self,
        since: Option<jiff::Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
    /// Every record in id order, handed to `visit` until it breaks.
    fn audit_walk(
        &mut self,
        visit: &mut dyn FnMut(audit::Stored) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError>;

    // --- reports for governors and the DSL ---

    /// Run a read-only report query written in the SQL both backends share (one
    /// parameter, `$1`, bound to `since_us`; integers, text and NULL columns); every
    /// value as text, NULL as "".
    fn table(&mut self, sql: &str, since_us: i64) -> Result<Vec<Vec<String>>, StoreError>;

    // --- instances ---

    /// Tell every other instance sharing the store that `change` happened (PostgreSQL
    /// NOTIFY; nothing for SQLite, which one instance owns).
    fn announce(&mut self, change: Change) -> Result<(), StoreError>;

    // --- the DSL's records: query-log search, checks log, annual review ---

    /// One page of the query log matching `filter`, newest first (by id), ids below
    /// `before`, at most `limit` rows (capped at [`records::CSV_CHUNK`]). Pseudonyms are
    /// returned as stored.
    fn search_queries(
        &mut self,
        filter: &records::SearchFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<records::QueryRow>, StoreError>;
    /// Append a filtering check to the checks log; returns its id.
    fn insert_check(&mut self, check: &records::NewCheck<'_>) -> Result<i64, StoreError>;
    /// Checks done in `period`, newest first, at most `limit` (capped at
    /// [`records::MAX_LIST`]).
    fn list_checks(
        &mut self,
        period: records::Period,
        limit: usize,
    ) -> Result<Vec<records::CheckRow>, StoreError>;
    /// Append an annual review; returns its id.
    fn insert_review(&mut self, review: &records::NewReview<'_>) -> Result<i64, StoreError>;
    /// Reviews recorded in `period`, newest first, at most `limit` (capped).
    fn list_reviews(
        &mut self,
        period: records::Period,
        limit: usize,
    ) -> Result<Vec<records::ReviewRow>, StoreError>;
}

/// Open the configured store: PostgreSQL when `[storage] url` is set, else the SQLite
/// file (created or upgraded). Connects on a blocking thread only: the PostgreSQL client
/// runs its own event loop.
pub fn open(cfg: &Config) -> Result<Box<dyn Store>, StoreError> {
    match &cfg.postgres {
        Some(pg) => Ok(Box::new(postgres::Postgres::connect(pg)?)),
        None => Ok(Box::new(sqlite::Sqlite::open(&cfg.storage_path)?)),
    }
}

/// "revoked", "expired" or "active" at `now` (µs): the state shown for an exception or an
/// enrolment, the same on every backend. `expires_us` None never expires.
pub fn row_state(revoked_us: Option<i64>, expires_us: Option<i64>, now: i64) -> &'static str {
    match (revoked_us, expires_us) {
        (Some(_), _) => "revoked",
        (None, Some(e)) if e <= now => "expired",
        _ => "active",
    }
}

/// Microseconds since the Unix epoch.
pub fn micros(t: jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

/// Back from microseconds.
pub fn from_micros(us: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
