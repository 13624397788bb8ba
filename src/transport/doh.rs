//! DNS over HTTPS (RFC 8484): GET with `?dns=` (base64url) and POST of
//! `application/dns-message`, on `/dns-query` and `/dns-query/{id}`, over HTTP/2 or
//! HTTP/1.1 (ALPN), each query answered through the same request handler as every other
//! listener ([`Handler::answer_admitted`]) with the path after `/dns-query/` as its
//! credential.
//!
//! Bounds, as for DNS over TCP ([`super::tcp`]): connections capped in total and per client
//! with the same registry logic (oldest idle closed first), at most [`MAX_STREAMS`]
//! requests at once per HTTP/2 connection, a body of at most 65,535 bytes (413 beyond), the
//! TLS handshake, request head and body each within the idle timeout, and a connection with
//! no request for that long closed.
//!
//! It decides nothing: a credential that names no known device gets 403 before the body is
//! read (the handler says whether it is known), and everything else is the pipeline's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request as DnsRequest, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{BACKOFF_MIN, next_connection};
use super::handler::Handler;
use super::tcp::{Busy, ConnGuard, Registry, TcpLimits};
use super::wire;
use crate::identity::Credential;

/// Requests answered at once on one HTTP/2 connection.
pub const MAX_STREAMS: u32 = 100;
/// Largest DNS message in a request (RFC 8484 §6: the DNS wire format's own limit).
pub const MAX_MESSAGE: usize = 65_535;
/// The media type of a DNS message.
const DNS_MESSAGE: &str = "application/dns-message";
/// Shortest DNS message (a header).
const HEADER: usize = 12;

/// base64url as RFC 8484 §4.1 has it (no padding), also accepting padding that some
/// clients add anyway.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone)]
struct Ctx {
    registry: Arc<Registry>,
    handler: Arc<Handler>,
    acceptor: tokio_rustls::TlsAcceptor,
    tracker: TaskTracker,
}

/// Serve DoH on `listeners` until `shutdown`, with `tls` (which should offer ALPN `h2`
/// and `http/1.1`); the tracker finishes when every connection is done.
pub fn spawn(
    listeners: Vec<TcpListener>,
    handler: Arc<Handler>,
    limits: TcpLimits,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    let ctx = Ctx {
        registry: Arc::new(Registry::new(limits)),
        handler,
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        tracker: tracker.clone(),
    };
    for l in listeners {
        tracker.spawn(accept_loop(l, ctx.clone(), shutdown.clone()));
    }
    tracker.close();
    tracker
}

async fn accept_loop(listener: TcpListener, ctx: Ctx, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let what = "DoH accept (raise the open files limit or lower server.tcp_max_connections)";
    while let Some((stream, peer)) = next_connection(&listener, &mut backoff, &shutdown, what).await
    {
        let Some(conn) = ctx.registry.admit(peer.ip(), &shutdown) else {
            tracing::debug!(client = %peer.ip(), "DoH connection refused: limit reached, none idle");
            continue;
        };
        let _ = stream.set_nodelay(true);
        ctx.tracker.spawn(serve(stream, peer, conn, ctx.clone()));
    }
}

/// One connection: handshake, then HTTP until the client closes, the connection is evicted
/// or shut down (gracefully: requests in flight are answered), or it is idle too long.
async fn serve(stream: TcpStream, peer: SocketAddr, conn: ConnGuard, ctx: Ctx) {
    let idle = ctx.registry.limits.idle_timeout;
    let state = conn.0.clone();
    let handshake = tokio::select! {
        h = tokio::time::timeout(idle, ctx.acceptor.accept(super::QuickAck(stream))) => h,
        _ = state.close.cancelled() => return,
    };
    let Ok(Ok(tls)) = handshake else {
        tracing::debug!(client = %peer.ip(), "DoH handshake failed or timed out");
        return;
    };
    let epoch = ctx.registry.epoch;
    let handler = ctx.handler.clone();
    let st = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let busy = Busy::new(st.clone());
        st.touch(epoch);
        async move {
            let response = respond(&handler, req, peer, idle).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(MAX_MESSAGE * 2);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let served = http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(served);
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            _ = state.close.cancelled() => {
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(idle, served.as_mut()).await;
                break;
            }
            _ = tokio::time::sleep(idle) => {
                if state.idle() && state.quiet_for(epoch) >= idle {
                    served.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(idle, served.as_mut()).await;
                    break;
                }
            }
        }
    }
    drop(conn);
}

/// The HTTP answer to one request.
async fn respond(
    handler: &Handler,
    req: Request<Incoming>,
    peer: SocketAddr,
    timeout: Duration,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let id = match parts.uri.path().strip_prefix("/dns-query") {
        Some("") => "",
        Some(rest) => match rest.strip_prefix('/') {
            Some(id) => id,
            None => return reject(StatusCode::NOT_FOUND, body, timeout).await,
        },
        None => return reject(StatusCode::NOT_FOUND, body, timeout).await,
    };
    if parts.method != Method::GET && parts.method != Method::POST {
        let mut r = reject(StatusCode::METHOD_NOT_ALLOWED, body, timeout).await;
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    }
    let Some(named) = handler.admit(Credential::Path(id), "doh") else {
        return reject(StatusCode::FORBIDDEN, body, timeout).await;
    };
    let message = match tokio::time::timeout(timeout, read_message(&parts, body)).await {
        Ok(Ok(m)) => m,
        Ok(Err(code)) => return status(code),
        Err(_) => return status(StatusCode::REQUEST_TIMEOUT),
    };
    let Ok(request) = DnsRequest::from_bytes(message, peer, Protocol::Https) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let out = DohResponder::default();
    handler
        .answer_admitted(
            &request,
            out.clone(),
            true,
            Credential::Admitted(&named),
            Some(&named.device.id),
        )
        .await;
    match out.take() {
        Some(bytes) => dns_response(bytes),
        // Nothing written: the query was over its rate limit.
        None => status(StatusCode::TOO_MANY_REQUESTS),
    }
}

/// An error answer, after reading (and dropping) what the client is still sending, up to
/// [`DRAIN`] bytes: answering mid-upload resets the stream, which some clients (curl 7.88)
/// report as a transport error instead of showing the status.
async fn reject(code: StatusCode, body: Incoming, timeout: Duration) -> Response<Full<Bytes>> {
    let _ = tokio::time::timeout(timeout, read_body(body, 0)).await;
    status(code)
}

/// Most bytes read from a request body, kept or not.
const DRAIN: usize = 4 * MAX_MESSAGE;

/// A request body, if at most `keep` bytes (else 413 once up to [`DRAIN`] bytes are read).
/// Reading stops as soon as the body's announced length has arrived: some clients (dnsperf)
/// send END_STREAM in a later packet, and waiting for it costs a delayed-ACK round (~40 ms)
/// per query.
async fn read_body(mut body: Incoming, keep: usize) -> Result<Vec<u8>, StatusCode> {
    let announced = hyper::body::Body::size_hint(&body)
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| StatusCode::BAD_REQUEST)?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= keep {
                kept.extend_from_slice(&data);
            } else if total > DRAIN {
                break;
            }
            if announced.is_some_and(|n| total >= n) {
                break;
            }
        }
    }
    if total > keep {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(kept)
}

/// The DNS query in a GET's `dns` parameter or a POST's body; the HTTP status to answer
/// when there is none usable.
async fn read_message(parts: &Parts, body: Incoming) -> Result<Vec<u8>, StatusCode> {
    let message = if parts.method == Method::GET {
        // A GET has no body: not waiting for its end (some clients send END_STREAM late).
        drop(body);
        let param = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("dns="))
            .ok_or(StatusCode::BAD_REQUEST)?;
        BASE64URL
            .decode(param)
            .map_err(|_| StatusCode::BAD_REQUEST)?
    } else {
        let media = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case(DNS_MESSAGE)) {
            let _ = read_body(body, 0).await;
            return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        read_body(body, MAX_MESSAGE).await?
    };
    // A DNS query: a whole header, QR clear, within the wire format's size.
    if message.len() < HEADER || message.len() > MAX_MESSAGE || message[2] & 0x80 != 0 {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(message)
}

/// 200 with the DNS answer, cacheable for as long as its shortest TTL (RFC 8484 §5.1).
fn dns_response(bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = wire::ttl_fields(&bytes)
        .and_then(|ttls| ttls.iter().map(|(_, ttl)| *ttl).min())
        .unwrap_or(0);
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(CACHE_CONTROL, v);
    }
    r
}

/// An empty answer with `code`.
fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// Keeps the handler's response, encoded, for the HTTP answer.
#[derive(Clone, Default)]
struct DohResponder(Arc<Mutex<Option<Vec<u8>>>>);

impl DohResponder {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for DohResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::with_capacity(512);
        let info = {
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(u16::MAX);
            response.destructive_emit(&mut encoder)?
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_is_read_with_or_without_padding() {
        assert_eq!(BASE64URL.decode("AAABAA").unwrap(), [0, 0, 1, 0]);
        assert_eq!(BASE64URL.decode("AAABAA==").unwrap(), [0, 0, 1, 0]);
        assert!(BASE64URL.decode("AA+/").is_err(), "standard alphabet");
    }
}
