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
//! | `GET /incidents[?since=]` | dsl | illegal-category incidents |
//! | `GET /audit`, `GET /audit/verify` | dsl | the audit log and its hash-chain check |
//! | `GET /explain?client=&name=` | viewer | why a name is (not) blocked |

pub mod auth;
pub mod blockpage;
mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::pipeline::Pipeline;
use crate::store::{self, StoreError, audit, safeguarding};

/// Shared state of the admin and block-page handlers.
#[derive(Clone)]
pub struct Admin {
    /// The pipeline (state, clock, reload).
    pub pipeline: Arc<Pipeline>,
    /// The admin connection to the storage database.
    pub db: Arc<Mutex<Connection>>,
    /// The audit chain's key and published head.
    pub chain: Arc<audit::Chain>,
}

impl Admin {
    /// Open the database for the admin API.
    pub fn new(pipeline: Arc<Pipeline>, db_path: &std::path::Path) -> Result<Self, StoreError> {
        let state = pipeline.state().clone();
        let chain = audit::Chain::open(&state.load().config.audit, Some(state.metrics().clone()))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let conn = store::open(db_path)?;
        chain.announce(&conn).map_err(|source| StoreError::Sqlite {
            path: db_path.to_owned(),
            source,
        })?;
        Ok(Self {
            pipeline,
            db: Arc::new(Mutex::new(conn)),
            chain: Arc::new(chain),
        })
    }

    /// Now, by the pipeline's clock (tests move it).
    pub fn now(&self) -> jiff::Timestamp {
        self.pipeline.clock().now()
    }

    /// Run `f` with the database connection.
    pub fn with_db<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Append an audit record for a state change.
    pub fn audit(
        &self,
        actor: &str,
        role: Role,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let now = self.now();
        self.with_db(|c| {
            self.chain
                .append(c, now, actor, role_name(role), action, subject, &detail)
        })
        .map_err(|source| StoreError::Sqlite {
            path: "<audit>".into(),
            source,
        })
    }

    /// Re-read the exceptions in force and swap them into the policy.
    pub fn refresh_exceptions(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let live = self.with_db(|c| safeguarding::live_exceptions(c, now))?;
        let n = live.len();
        if self.pipeline.state().load().policy.exceptions() != live.as_slice() {
            self.pipeline.state().set_exceptions(live);
        }
        Ok(n)
    }
}

/// The lower-case role name used in the audit log.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Technician => "technician",
        Role::Dsl => "dsl",
    }
}

/// Bind and serve the admin API until `shutdown`; returns the bound address.
pub async fn start(
    addr: SocketAddr,
    admin: Admin,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    serve(addr, router(admin), shutdown).await
}

/// Serve a router on `addr` with client addresses available to handlers.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = served.await {
            tracing::error!("HTTP listener on {bound} stopped: {e}");
        }
    });
    Ok(bound)
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
        .with_state(admin)
}
