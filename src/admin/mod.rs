//! Admin HTTP API (axum) on its own listener: health, metrics, reload, temporary unblocks,
//! unblock requests, site reports, incidents and the audit log.
//!
//! Keep it on loopback or the management network. Every route but `/healthz` and
//! `/metrics` needs `Authorization: Bearer TOKEN`, where the SHA-256 of TOKEN is listed in
//! `[[admin.token]]` with a role (viewer < technician < dsl); tokens are never stored in
//! clear. Tokens are read from the live snapshot, so adding or revoking one takes a
//! reload, not a restart. Every state-changing call writes an audit record naming the
//! token holder.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /healthz`, `GET /metrics` | none | liveness, Prometheus text |
//! | `POST /reload` | technician | reload config and lists |
//! | `GET /exceptions[?all=true]`, `GET /exceptions/{id}` | viewer | temporary unblocks |
//! | `POST /exceptions` | technician | grant one (reason and expiry required) |
//! | `POST /exceptions/{id}/revoke` | technician | end one early |
//! | `GET /requests[?status=]`, `POST /requests` | viewer / any | unblock requests |
//! | `POST /requests/{id}/approve`, `/decline` | technician | decide (approve → exception) |
//! | `GET /reports[?status=]`, `POST /reports` | viewer / any | "should be blocked" reports |
//! | `POST /reports/{id}/approve`, `/dismiss` | technician | approve → local list + reload |
//! | `GET /incidents[?since=&limit=&before=]` | dsl | illegal-category incidents, newest first, one page at a time (see below) |
//! | `GET /audit`, `GET /audit/verify` | dsl | the audit log and its hash-chain check |
//! | `GET /explain?client=&name=` | viewer | why a name is (not) blocked |
//! | `GET /sessions[?limit=]` | technician | users signed in by RADIUS accounting (personal data) |
//! | `POST /devices`, `GET /devices[/{id}]`, `POST /devices/{id}/revoke`, `GET /devices/{id}/profile?kind=` | technician | enrolled devices and their profiles (see [`devices`]) |
//!
//! `GET /incidents` answers at most `limit` rows (default 100, at most 1000), newest first.
//! For the next page pass `before=` the smallest `id` of this page; when a page is full the
//! response carries that id in the `X-Next-Before` header.
//!
//! Anonymous `POST /requests` and `POST /reports` (no token) are accepted only from
//! addresses in a configured network, at most `[http] submissions_per_hour` per address;
//! an anonymous request applies to the caller's own group only. Free-text fields are
//! bounded (names 100 characters, reasons and comments 1,000, URLs 2,048) and control
//! characters are refused.

pub mod auth;
pub mod blockpage;
pub mod devices;
pub mod http;
mod limits;
mod routes;
pub mod school;
mod sessions;
pub mod sync;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::pipeline::Pipeline;
use crate::store::{self, Store, StoreError, audit};

pub use limits::Submissions;
/// The explanation behind `GET /explain`, for the console's explain form.
pub use routes::{ExplainQuery, explain_value};
/// The decisions the JSON API and the console share (one code path, one audit record).
pub use routes::{
    approve_report_as, approve_request_as, decline_request_as, dismiss_report_as,
    revoke_exception_as,
};

/// Storage calls waiting for or running on a blocking thread at once, from all handlers:
/// more wait (asynchronously) for a turn, so a flood of form posts cannot fill tokio's
/// blocking pool.
const DB_CALLS_IN_FLIGHT: usize = 4;

/// Shared state of the admin and block-page handlers.
#[derive(Clone)]
pub struct Admin {
    /// The pipeline (state, clock, reload).
    pub pipeline: Arc<Pipeline>,
    /// The admin API's own store connection. Only ever used on a blocking thread (see
    /// [`Admin::with_db`]): SQLite may wait up to its busy timeout for a lock, PostgreSQL
    /// for the network, and the async worker threads also answer DNS.
    db: Arc<Mutex<Box<dyn Store>>>,
    /// Turns for storage calls.
    db_turns: Arc<Semaphore>,
    /// Key of the block page's CSRF tokens (random per start).
    pub(crate) csrf_key: Arc<[u8; 32]>,
    /// Anonymous submissions per client address.
    pub(crate) submissions: Arc<Submissions>,
    /// The audit chain's key and published head.
    pub chain: Arc<audit::Chain>,
    /// The web console's browser sessions and sign-in failure counts.
    pub console: Arc<crate::console::auth::Sessions>,
}

impl Admin {
    /// Open the store for the admin API. Blocks (connects, reads): call it from a
    /// blocking thread, or through [`Admin::open`].
    pub fn new(pipeline: Arc<Pipeline>) -> Result<Self, StoreError> {
        let state = pipeline.state().clone();
        let chain = audit::Chain::open(&state.load().config.audit, Some(state.metrics().clone()))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut db = store::open(&state.load().config)?;
        load_enrolments(&state, db.as_mut())?;
        chain.announce(db.as_mut())?;
        Ok(Self {
            pipeline,
            db: Arc::new(Mutex::new(db)),
            db_turns: Arc::new(Semaphore::new(DB_CALLS_IN_FLIGHT)),
            csrf_key: Arc::new(rand::random()),
            submissions: Arc::new(Submissions::default()),
            chain: Arc::new(chain),
            console: Arc::default(),
        })
    }

    /// [`Admin::new`] on a blocking thread.
    pub async fn open(pipeline: Arc<Pipeline>) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::new(pipeline))
            .await
            .map_err(|e| StoreError::Invalid(format!("opening the store failed: {e}")))?
    }

    /// Now, by the pipeline's clock (tests move it).
    pub fn now(&self) -> jiff::Timestamp {
        self.pipeline.clock().now()
    }

    /// Run `f` with the database connection on a blocking thread, at most
    /// [`DB_CALLS_IN_FLIGHT`] at once; the calling task waits without holding a worker.
    pub async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> T {
        // The semaphore is never closed, so acquiring only waits.
        let turn = self.db_turns.clone().acquire_owned().await;
        let db = self.db.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
            f(db.as_mut())
        })
        .await;
        match joined {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Append an audit record for a state change.
    pub async fn audit(
        &self,
        actor: &str,
        role: Role,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        self.audit_as(actor, role_name(role), action, subject, detail)
            .await
    }

    /// Append an audit record naming the role in words ("none" for anonymous callers).
    pub async fn audit_as(
        &self,
        actor: &str,
        role: &'static str,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let now = self.now();
        let (actor, action, subject) = (actor.to_owned(), action.to_owned(), subject.to_owned());
        let chain = self.chain.clone();
        self.with_db(move |c| chain.append(c, now, &actor, role, &action, &subject, &detail))
            .await
    }

    /// Re-read the exceptions in force and swap them into the policy.
    pub async fn refresh_exceptions(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let live = self.with_db(move |c| c.live_exceptions(now)).await?;
        let n = live.len();
        if self.pipeline.state().load().policy.exceptions() != live.as_slice() {
            self.pipeline.state().set_exceptions(live);
        }
        Ok(n)
    }

    /// The policy group of a client address, or None if it is in no configured network.
    pub fn group_of(&self, ip: std::net::IpAddr) -> Option<String> {
        let snap = self.pipeline.state().load();
        let policy = &snap.policy;
        let g = policy.group_of(ip)?;
        policy.groups().get(g as usize).map(|g| g.name.clone())
    }
}

/// Put the store's enrolled devices into the live index (with the config's), and start
/// the ChromeOS identifier index with the configured salt unless it already has it (the
/// user directory, when there is one, rebuilds it with its users).
fn load_enrolments(state: &crate::state::State, db: &mut dyn Store) -> Result<(), StoreError> {
    let n = devices::rebuild_from_store(state, db)?;
    let snap = state.load();
    let salt = snap.config.enrolment.chromeos_salt.as_deref();
    let identities = state.identities();
    if identities.chrome.load().salt() != salt {
        identities.rebuild_chrome(salt, std::iter::empty::<&str>());
    }
    tracing::info!(
        "{n} devices enrolled through the admin API, {} in the config",
        snap.config.enrolled_devices.len()
    );
    Ok(())
}

/// The lower-case role name used in the audit log.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Technician => "technician",
        Role::Dsl => "dsl",
    }
}

/// Serve a router on `addr` with the `[http]` limits and client addresses available to
/// handlers.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    admin: &Admin,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let (limits, metrics) = {
        let state = admin.pipeline.state();
        (state.load().config.http, state.metrics().clone())
    };
    http::serve(addr, app, limits, metrics, shutdown).await
}

/// The admin routes.
pub fn router(admin: Admin) -> Router {
    use routes::*;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload))
        .route("/explain", get(explain))
        .route("/exceptions", get(list_exceptions).post(create_exception))
        .route("/exceptions/{id}", get(get_exception))
        .route("/exceptions/{id}/revoke", post(revoke_exception))
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/approve", post(approve_request))
        .route("/requests/{id}/decline", post(decline_request))
        .route("/reports", get(list_reports).post(create_report))
        .route("/reports/{id}/approve", post(approve_report))
        .route("/reports/{id}/dismiss", post(dismiss_report))
        .route("/incidents", get(list_incidents))
        .route("/audit", get(list_audit))
        .route("/audit/verify", get(verify_audit))
        .route("/sessions", get(sessions::list_sessions))
        .route(
            "/devices",
            get(devices::list_devices).post(devices::enrol_device),
        )
        .route("/devices/{id}", get(devices::get_device))
        .route("/devices/{id}/revoke", post(devices::revoke_device))
        .route("/devices/{id}/profile", get(devices::device_profile))
        .with_state(admin)
}
