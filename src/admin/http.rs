//! The HTTP listener of the block page and the admin API: accept, limit, hand to axum.
//!
//! `axum::serve` has no connection limits and no timeouts, and spins on `EMFILE`; every
//! pupil device can reach the block page, so this loop bounds what one client (and all
//! clients) can hold:
//! - a global cap of open connections per listener (a semaphore: past it, accepting
//!   waits, so the kernel backlog absorbs the excess instead of our file descriptors);
//! - a cap per client address (past it a new connection is closed at once), so one device
//!   cannot take the global cap from everyone else;
//! - a header-read timeout that also closes idle keep-alive connections, and a timeout on
//!   reading the body and answering;
//! - a body size limit;
//! - on `EMFILE`/`ENFILE` (and other resource errors) the loop backs off
//!   ([`crate::transport::accept::next_connection`], shared with DNS over TCP).
//!
//! It must not know about routes: it serves whatever [`Router`] it is given.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::transport::accept::{BACKOFF_MIN, next_connection};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::metrics::Metrics;

/// Longest sleep after a resource error on accept.
/// Time given to open connections to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Open connections per client address, for one listener. Entries exist only while a
/// connection is open, so the map never holds more than the global cap.
#[derive(Default)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection counted against its client; uncounts on drop.
struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Bind `addr` and serve `app` with `limits` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    limits: HttpConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = app
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| answer_within(limits.request_timeout, req, next),
        ));
    tokio::spawn(accept_loop(listener, app, limits, metrics, shutdown));
    Ok(bound)
}

/// Read the body and answer within `limit`, else 408 (the connection is then closed).
async fn answer_within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(axum::http::header::CONNECTION, "close")],
            "request took too long\n",
        )
            .into_response(),
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: HttpConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let global = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(PerClient::default());
    let mut backoff = BACKOFF_MIN;
    let what = "HTTP accept (raise the open-files limit or lower http.max_connections)";
    loop {
        let permit = tokio::select! {
            p = global.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let Some((stream, peer)) = next_connection(&listener, &mut backoff, &shutdown, what).await
        else {
            return;
        };
        let ip = peer.ip().to_canonical();
        let Some(slot) = per_client.enter(ip, limits.max_connections_per_client) else {
            metrics
                .http_rejected
                .with_label_values(&["per_client_connections"])
                .inc();
            drop(stream);
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            (permit, slot),
            shutdown.clone(),
        ));
    }
}

/// Serve one connection (HTTP/1.1) until it closes, times out or the server stops.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpConfig,
    _held: (OwnedSemaphorePermit, ClientSlot),
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(16 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("HTTP connection from {peer}: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_counted_and_released() {
        let table = Arc::new(PerClient::default());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let a = table.enter(ip, 2).expect("first");
        let b = table.enter(ip, 2).expect("second");
        assert!(table.enter(ip, 2).is_none(), "third is over the cap");
        assert!(table.enter("10.1.2.4".parse().unwrap(), 2).is_some());
        drop(a);
        let c = table.enter(ip, 2).expect("a slot came free");
        drop((b, c));
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}
