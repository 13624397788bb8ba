//! The PostgreSQL backend (issue 15): one database shared by every resolver of a trust.
//!
//! This module owns the connection (connect, migrate, reconnect) and dispatches the
//! [`Store`] calls to the topic files: [`querylog`] (COPY into day partitions, retention
//! by dropping partitions), [`audit`] (appends serialised by an advisory lock),
//! [`safeguarding`], [`devices`], and [`listen`] (LISTEN/NOTIFY on its own connection).
//!
//! Resilience: the connection is made with `connect_timeout`, TCP keepalives and a
//! statement timeout, so a dead or hung server turns into an error rather than a stuck
//! thread. [`Postgres::connect`] does not fail when the server is down: it logs the error
//! and returns a store that connects on first use, so a resolver still starts and answers
//! DNS while PostgreSQL is away (its callers already handle a failing store call). After
//! an error that closed the connection, the next call connects afresh; an ordinary SQL
//! error keeps the connection.

mod acks;
mod audit;
mod devices;
mod listen;
mod querylog;
mod records;
mod safeguarding;
mod schema;
mod tls;

pub use listen::listen;

use std::collections::BTreeSet;
use std::time::Duration;

use postgres::Client;

use super::audit::{AuditRecord, Head};
use super::devices::{DeviceRow, NewDevice};
use super::querylog::LogEvent;
use super::safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, ReportDecision, ReportRow,
    RequestDecision, RequestRow,
};
use super::{AlertStatus, Change, Store, StoreError};
use crate::config::storage::{PgTls, PostgresConfig};
use crate::identity::StoredEnrolment;

/// Longest any one statement may run before the server cancels it: a hung query must not
/// hold the query log writer or an admin request forever.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive idle time: a server that vanished without closing is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// The PostgreSQL store: one connection (made lazily, replaced when it breaks).
pub struct Postgres {
    cfg: PostgresConfig,
    /// Host, port and database, for errors (never the password).
    target: String,
    client: Option<Client>,
    /// Query log state kept between batches (partitions known to exist, trim counter).
    log: querylog::LogState,
}

/// The synchronous client closes its connection by blocking on its own runtime, which
/// panics on a thread that drives async tasks: the server drops its stores there at
/// shutdown (the alert task, the admin state). Closed on a short-lived thread instead.
impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return drop(client);
        }
        // If the thread cannot start, the connection leaks (the server closes it) rather
        // than panicking here.
        let client = std::mem::ManuallyDrop::new(client);
        let closing = std::thread::Builder::new()
            .name("pg-close".into())
            .spawn(move || drop(std::mem::ManuallyDrop::into_inner(client)));
        if let Err(e) = closing {
            tracing::debug!("closing a PostgreSQL connection: {e}");
        }
    }
}

/// A PostgreSQL error without its target yet; [`Postgres::run`] fills it in.
pub(crate) fn pg(source: postgres::Error) -> StoreError {
    StoreError::Postgres {
        target: String::new(),
        source,
    }
}

impl Postgres {
    /// A store for `cfg`: connected and migrated now if the server answers, else (logged)
    /// connecting on first use.
    pub fn connect(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        let mut store = Self::lazy(cfg);
        match store.client() {
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}; will connect again on first use"),
        }
        Ok(store)
    }

    /// Connected and migrated, or the error (for tools and tests that want to know now).
    pub fn connect_now(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        let mut store = Self::lazy(cfg);
        store.client()?;
        Ok(store)
    }

    /// A store that has not connected yet.
    pub fn lazy(cfg: &PostgresConfig) -> Self {
        Self {
            target: target(&cfg.url),
            cfg: cfg.clone(),
            client: None,
            log: querylog::LogState::default(),
        }
    }

    /// The live connection, connecting (and migrating) if there is none.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let mut client = open_client(&self.cfg).map_err(|e| self.fill(e))?;
            schema::migrate(&mut client).map_err(|e| self.fill(pg(e)))?;
            // Another instance may have dropped partitions meanwhile.
            self.log.forget_partitions();
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Invalid("no PostgreSQL connection".into()))
    }

    /// Run `f` on the connection; on an error that closed it, drop it so the next call
    /// reconnects.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &mut querylog::LogState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.client()?;
        let Some(client) = self.client.as_mut() else {
            return Err(StoreError::Invalid("no PostgreSQL connection".into()));
        };
        let result = f(client, &mut self.log);
        if result.is_err() && client.is_closed() {
            self.client = None;
        }
        result.map_err(|e| self.fill(e))
    }

    fn fill(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Postgres { target, source } if target.is_empty() => StoreError::Postgres {
                target: self.target.clone(),
                source,
            },
            other => other,
        }
    }

    /// The connection, for tests and tools (connecting if needed).
    pub fn connection(&mut self) -> Result<&mut Client, StoreError> {
        self.client()
    }
}

/// "host:port/database" of a URL, for messages.
fn target(url: &str) -> String {
    let Ok(cfg) = url.parse::<postgres::Config>() else {
        return "(unparsable URL)".into();
    };
    let host = match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or("?"))
}

/// The driver's configuration for `cfg`: timeouts, keepalives, password.
pub(crate) fn client_config(cfg: &PostgresConfig) -> Result<postgres::Config, StoreError> {
    let mut c: postgres::Config = cfg
        .url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("storage.url: {e}")))?;
    if let Some(p) = &cfg.password {
        c.password(p);
    }
    if c.get_application_name().is_none() {
        c.application_name("chaperone");
    }
    c.connect_timeout(cfg.connect_timeout)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .tcp_user_timeout(cfg.connect_timeout.max(Duration::from_secs(10)) * 3)
        .options(&format!(
            "-c statement_timeout={}",
            STATEMENT_TIMEOUT.as_millis()
        ));
    Ok(c)
}

/// Open a connection as configured (TLS or not).
pub(crate) fn open_client(cfg: &PostgresConfig) -> Result<Client, StoreError> {
    let c = client_config(cfg)?;
    match cfg.tls {
        PgTls::Disable => c.connect(postgres::NoTls).map_err(pg),
        PgTls::Require => c.connect(tls::connector(cfg)?).map_err(pg),
    }
}

impl Store for Postgres {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn secret(&mut self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.run(|c, _| safeguarding::secret(c, name))
    }
    fn insert_queries(&mut self, batch: &[LogEvent]) -> Result<(), StoreError> {
        self.run(|c, log| log.insert(c, batch))
    }
    fn trim_queries(&mut self, max_rows: u64) -> Result<u64, StoreError> {
        self.run(|c, log| log.trim(c, max_rows))
    }
    fn expire_queries(&mut self, cutoff_us: i64) -> Result<u64, StoreError> {
        self.run(|c, log| log.expire(c, cutoff_us))
    }
    fn insert_refused(&mut self, ts_us: i64, count: u64) -> Result<(), StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.run(|c, _| {
            c.execute(
                "INSERT INTO refused_queries (ts_us, count) VALUES ($1, $2)",
                &[&ts_us, &count],
            )
            .map(drop)
            .map_err(pg)
        })
    }
    fn record_incident(
        &mut self,
        e: &LogEvent,
        theme: &str,
        window_us: i64,
    ) -> Result<super::safeguarding::RecordedIncident, StoreError> {
        self.run(|c, _| safeguarding::record_incident(c, e, theme, window_us))
    }
    fn set_alert_status(&mut self, id: i64, s: &AlertStatus<'_>) -> Result<(), StoreError> {
        self.run(|c, _| safeguarding::set_alert_status(c, id, s))
    }
    fn list_incidents(
        &mut self,
        since: jiff::Timestamp,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        self.run(|c, _| safeguarding::list_incidents(c, since, before, limit))
    }
    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.run(|c, _| acks::ack_incident(c, id, by, note, at))
    }
    fn incident_acks(
        &mut self,
        ids: &[i64],
    ) -> Result<Vec<crate::store::safeguarding::IncidentAck>, StoreError> {
        self.run(|c, _| acks::incident_acks(c, ids))
    }
    fn create_exception(&mut self, e: &NewException<'_>) -> Result<i64, StoreError> {
        self.run(|c, _| safeguarding::create_exception(c, e))
    }
    fn list_exceptions(
        &mut self,
        now: jiff::Timestamp,
        active_only: bool,
    ) -> Result<Vec<ExceptionRow>, StoreError> {
        self.run(|c, _| safeguarding::list_exceptions(c, now, active_only))
    }
    fn get_exception(
        &mut self,
        id: i64,
        now: jiff::Timestamp,
    ) -> Result<Option<ExceptionRow>, StoreError> {
        self.run(|c, _| safeguarding::get_exception(c, id, now))
    }
    fn revoke_exception(
        &mut self,
        id: i64,
        by: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.run(|c, _| safeguarding::revoke_exception(c, id, by, now))
    }
    fn create_request(&mut self, r: &NewRequest<'_>) -> Result<i64, StoreError> {
        self.run(|c, _| safeguarding::create_request(c, r))
    }
    fn list_requests(&mut self, status: Option<&str>) -> Result<Vec<RequestRow>, StoreError> {
        self.run(|c, _| safeguarding::list_requests(c, status))
    }
    fn get_request(&mut self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        self.run(|c, _| safeguarding::get_request(c, id))
    }
    fn decide_request(&mut self, id: i64, d: &RequestDecision<'_>) -> Result<(), StoreError> {
        self.run(|c, _| safeguarding::decide_request(c, id, d))
    }
    fn approve_request(
        &mut self,
        id: i64,
        e: &NewException<'_>,
        d: &RequestDecision<'_>,
    ) -> Result<i64, StoreError> {
        self.run(|c, _| safeguarding::approve_request(c, id, e, d))
    }
    fn create_report(&mut self, r: &NewReport<'_>) -> Result<i64, StoreError> {
        self.run(|c, _| safeguarding::create_report(c, r))
    }
    fn list_reports(&mut self, status: Option<&str>) -> Result<Vec<ReportRow>, StoreError> {
        self.run(|c, _| safeguarding::list_reports(c, status))
    }
    fn get_report(&mut self, id: i64) -> Result<Option<ReportRow>, StoreError> {
        self.run(|c, _| safeguarding::get_report(c, id))
    }
    fn decide_report(&mut self, id: i64, d: &ReportDecision<'_>) -> Result<(), StoreError> {
        self.run(|c, _| safeguarding::decide_report(c, id, d))
    }
    fn enrol_device(
        &mut self,
        d: &NewDevice<'_>,
        taken: &dyn Fn(&str) -> bool,
    ) -> Result<String, StoreError> {
        self.run(|c, _| devices::enrol(c, d, taken))
    }
    fn list_devices(&mut self, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError> {
        self.run(|c, _| devices::list(c, now))
    }
    fn get_device(
        &mut self,
        id: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<DeviceRow>, StoreError> {
        self.run(|c, _| devices::get(c, id, now))
    }
    fn revoke_device(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.run(|c, _| devices::revoke(c, id, by, reason, now))
    }
    fn live_devices(&mut self) -> Result<Vec<StoredEnrolment>, StoreError> {
        self.run(|c, _| devices::live(c))
    }
    fn audit_append(
        &mut self,
        seal: &mut dyn FnMut(&Head) -> super::audit::Sealed,
    ) -> Result<super::audit::Appended, StoreError> {
        self.run(|c, _| audit::append(c, seal))
    }
    fn audit_head(&mut self) -> Result<Head, StoreError> {
        self.run(|c, _| audit::head(c))
    }
    fn audit_list(
        &mut self,
        since: Option<jiff::Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.run(|c, _| audit::list(c, since, limit))
    }
    fn audit_walk(
        &mut self,
        visit: &mut dyn FnMut(super::audit::Stored) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.run(|c, _| audit::walk(c, visit))
    }
    fn table(&mut self, sql: &str, since_us: i64) -> Result<Vec<Vec<String>>, StoreError> {
        self.run(|c, _| safeguarding::table(c, sql, since_us))
    }
    fn announce(&mut self, change: Change) -> Result<(), StoreError> {
        self.run(|c, _| {
            c.execute(
                "SELECT pg_notify($1, $2)",
                &[&super::CHANGES_CHANNEL, &change.as_str()],
            )
            .map(drop)
            .map_err(pg)
        })
    }
    fn search_queries(
        &mut self,
        filter: &crate::store::records::SearchFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::store::records::QueryRow>, StoreError> {
        self.run(|c, _| records::search(c, filter, before, limit))
    }
    fn insert_check(
        &mut self,
        check: &crate::store::records::NewCheck<'_>,
    ) -> Result<i64, StoreError> {
        self.run(|c, _| records::insert_check(c, check))
    }
    fn list_checks(
        &mut self,
        period: crate::store::records::Period,
        limit: usize,
    ) -> Result<Vec<crate::store::records::CheckRow>, StoreError> {
        self.run(|c, _| records::list_checks(c, period, limit))
    }
    fn insert_review(
        &mut self,
        review: &crate::store::records::NewReview<'_>,
    ) -> Result<i64, StoreError> {
        self.run(|c, _| records::insert_review(c, review))
    }
    fn list_reviews(
        &mut self,
        period: crate::store::records::Period,
        limit: usize,
    ) -> Result<Vec<crate::store::records::ReviewRow>, StoreError> {
        self.run(|c, _| records::list_reviews(c, period, limit))
    }
}

/// Days (UTC day numbers) as a bounded set.
pub(crate) type Days = BTreeSet<i64>;
