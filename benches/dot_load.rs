//! A DoT load client that sends an SNI: Debian's dnsperf cannot, so against Chaperone (which
//! reads the device ID from the SNI) its DoT mode only measures refusals. This one opens
//! `connections` TLS connections to `server` with the given server name, keeps `window`
//! queries in flight on each (RFC 7766 pipelining, answers matched by ID), and prints the
//! answers per second over `seconds`, and the response codes seen. The certificate is not
//! checked (see [`AnyCert`]).
//!
//! Loopback only; bounded by time. Used by `benches/encrypted.sh`:
//!
//!     cargo bench --bench dot_load -- ADDR SNI NAME_SUFFIX SECONDS CONNECTIONS WINDOW

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// A query for `name` type A with `id`, EDNS-less, RD set.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

struct Args {
    server: SocketAddr,
    sni: String,
    prefix: String,
    seconds: u64,
    connections: usize,
    window: usize,
}

fn args() -> Option<Args> {
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    Some(Args {
        server: a.first()?.parse().ok()?,
        sni: a.get(1)?.clone(),
        prefix: a.get(2)?.clone(),
        seconds: a.get(3)?.parse().ok()?,
        connections: a.get(4)?.parse().ok()?,
        window: a.get(5)?.parse().ok()?,
    })
}

/// Accepts the server's certificate without checking it: the sample certificate is
/// self-signed with CA:TRUE, which webpki refuses as an end entity (kdig and browsers
/// configured with it as their CA accept it). Signatures are still verified, so the
/// handshake costs what a real client's does. Loopback benchmarking only.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One connection: send `window` queries, then one more per answer, until `until`.
async fn run(
    a: Arc<Args>,
    tls: TlsConnector,
    until: Instant,
    answers: Arc<AtomicU64>,
    codes: Arc<std::sync::Mutex<BTreeMap<u8, u64>>>,
) {
    let tcp = match tokio::net::TcpStream::connect(a.server).await {
        Ok(t) => t,
        Err(e) => return eprintln!("connect {}: {e}", a.server),
    };
    tcp.set_nodelay(true).ok();
    let name = ServerName::try_from(a.sni.clone()).expect("a server name");
    let stream = tls.connect(name, tcp).await.expect("TLS handshake");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut next: u16 = 0;
    let mut batch = Vec::new();
    for _ in 0..a.window {
        batch.extend(query(next, &format!("www{}.{}", next % 100 + 1, a.prefix)));
        next = next.wrapping_add(1);
    }
    wr.write_all(&batch).await.expect("write");
    let mut local: BTreeMap<u8, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 65535];
    while Instant::now() < until {
        let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), rd.read_u16()).await else {
            break;
        };
        if rd.read_exact(&mut buf[..usize::from(len)]).await.is_err() || len < 4 {
            break;
        }
        *local.entry(buf[3] & 0x0f).or_default() += 1;
        answers.fetch_add(1, Ordering::Relaxed);
        let q = query(next, &format!("www{}.{}", next % 100 + 1, a.prefix));
        next = next.wrapping_add(1);
        if wr.write_all(&q).await.is_err() {
            break;
        }
    }
    let mut all = codes.lock().unwrap_or_else(|p| p.into_inner());
    for (k, v) in local {
        *all.entry(k).or_default() += v;
    }
}

fn main() {
    let Some(a) = args() else {
        eprintln!("usage: dot_load ADDR SNI NAME_SUFFIX SECONDS CONNECTIONS WINDOW");
        return;
    };
    assert!(a.server.ip().is_loopback(), "load goes to loopback only");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let a = Arc::new(a);
    let answers = Arc::new(AtomicU64::new(0));
    let codes = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    rt.block_on(async {
        let tls = connector();
        let tasks: Vec<_> = (0..a.connections)
            .map(|_| {
                tokio::spawn(run(
                    a.clone(),
                    tls.clone(),
                    until,
                    answers.clone(),
                    codes.clone(),
                ))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let n = answers.load(Ordering::Relaxed);
    let codes = codes.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "answers per second: {:.0} ({n} in {secs:.1} s), rcodes {codes:?}",
        n as f64 / secs
    );
}
