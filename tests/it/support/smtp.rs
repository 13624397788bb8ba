//! A small real SMTP server for tests, on 127.0.0.1:0: EHLO/HELO, STARTTLS (tokio-rustls
//! with a certificate from a CA the test makes with rcgen), AUTH PLAIN, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT. It keeps what it received, with whether the message came over TLS.
//! Bounded: lines of at most 4 KiB, messages of at most 1 MiB, 200 messages kept, 32
//! connections at once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const MAX_LINE: usize = 4096;
const MAX_MESSAGE: usize = 1 << 20;
const MAX_KEPT: usize = 200;
const MAX_CONNECTIONS: usize = 32;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM address.
    pub from: String,
    /// RCPT TO addresses.
    pub to: Vec<String>,
    /// The DATA, headers and body (dot-unstuffed).
    pub data: String,
    /// Whether STARTTLS was in force when it arrived.
    pub tls: bool,
    /// The AUTH PLAIN user, if the client authenticated.
    pub user: Option<String>,
}

impl Received {
    /// The body with quoted-printable soft line breaks joined and `=XX` decoded (lettre
    /// encodes long lines), for assertions on the text.
    pub fn text(&self) -> String {
        let decoded =
            quoted_printable::decode(self.data.as_bytes(), quoted_printable::ParseMode::Robust)
                .unwrap_or_else(|_| self.data.as_bytes().to_vec());
        String::from_utf8_lossy(&decoded).into_owned()
    }
}

/// The running sink.
pub struct Sink {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// Messages received, oldest first.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// MAIL FROM commands received outside TLS (a client sending in the clear).
    pub plain_mail_attempts: Arc<Mutex<usize>>,
    /// The CA certificate (PEM) clients must trust.
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// A sink offering STARTTLS when `offer_tls`.
    pub async fn start(offer_tls: bool) -> Sink {
        let (ca_pem, acceptor) = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let plain = Arc::new(Mutex::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let (r, p) = (received.clone(), plain.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let s = Session {
                    received: r.clone(),
                    plain: p.clone(),
                    offer_tls,
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), s.serve(tcp, acceptor)).await;
                    drop(permit);
                });
            }
        });
        Sink {
            addr,
            received,
            plain_mail_attempts: plain,
            ca_pem,
            task,
        }
    }

    /// Write the CA to `dir/name` for the config's `ca_file`.
    pub fn write_ca(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(name), &self.ca_pem).unwrap();
    }

    /// A copy of what has been received.
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Wait (up to `secs`) until at least `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        for _ in 0..secs * 20 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.messages()
    }

    /// Stop listening.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A CA and a certificate for 127.0.0.1 and localhost it signed.
fn tls() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "SMTP sink test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

struct Session {
    received: Arc<Mutex<Vec<Received>>>,
    plain: Arc<Mutex<usize>>,
    offer_tls: bool,
}

/// What a conversation on one stream ended with.
enum End {
    Closed,
    StartTls,
}

#[derive(Default)]
struct Envelope {
    from: String,
    to: Vec<String>,
    user: Option<String>,
}

impl Session {
    async fn serve(self, mut tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        if tcp
            .write_all(b"220 sink.test ESMTP test sink\r\n")
            .await
            .is_err()
        {
            return;
        }
        let mut reader = BufReader::new(tcp);
        match self.converse(&mut reader, false).await {
            End::Closed => {}
            End::StartTls => {
                let tcp = reader.into_inner();
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut reader = BufReader::new(tls);
                self.converse(&mut reader, true).await;
            }
        }
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut BufReader<S>,
        tls: bool,
    ) -> End {
        let mut env = Envelope::default();
        loop {
            let Some(line) = read_line(s).await else {
                return End::Closed;
            };
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                let mut r = String::from("250-sink.test\r\n");
                if self.offer_tls && !tls {
                    r.push_str("250-STARTTLS\r\n");
                }
                r.push_str("250-AUTH PLAIN\r\n250 8BITMIME\r\n");
                r
            } else if upper.starts_with("HELO") {
                "250 sink.test\r\n".into()
            } else if upper == "STARTTLS" && self.offer_tls && !tls {
                if s.write_all(b"220 go ahead\r\n").await.is_err() {
                    return End::Closed;
                }
                return End::StartTls;
            } else if upper.starts_with("AUTH PLAIN") {
                env.user = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|b| {
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
                    })
                    .and_then(|raw| {
                        let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                        parts
                            .get(1)
                            .map(|u| String::from_utf8_lossy(u).into_owned())
                    });
                "235 ok\r\n".into()
            } else if upper.starts_with("MAIL FROM:") {
                if !tls {
                    *self.plain.lock().unwrap() += 1;
                }
                env.from = line[10..].trim().trim_matches(['<', '>']).to_owned();
                env.to.clear();
                "250 ok\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                if env.to.len() < 100 {
                    env.to
                        .push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                }
                "250 ok\r\n".into()
            } else if upper == "DATA" {
                if s.write_all(b"354 end with .\r\n").await.is_err() {
                    return End::Closed;
                }
                let Some(data) = read_data(s).await else {
                    return End::Closed;
                };
                let mut kept = self.received.lock().unwrap();
                if kept.len() < MAX_KEPT {
                    kept.push(Received {
                        from: env.from.clone(),
                        to: env.to.clone(),
                        data,
                        tls,
                        user: env.user.clone(),
                    });
                }
                "250 queued\r\n".into()
            } else if upper == "RSET" || upper == "NOOP" {
                "250 ok\r\n".into()
            } else if upper == "QUIT" {
                let _ = s.write_all(b"221 bye\r\n").await;
                return End::Closed;
            } else {
                "502 not implemented\r\n".into()
            };
            if s.write_all(reply.as_bytes()).await.is_err() {
                return End::Closed;
            }
        }
    }
}

/// One CRLF line without its end, at most [`MAX_LINE`] bytes.
async fn read_line<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<String> {
    let mut buf = Vec::new();
    let n = (&mut *s)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .ok()?;
    if n == 0 || !buf.ends_with(b"\n") {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    Some(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// DATA up to the lone ".", dot-unstuffed, at most [`MAX_MESSAGE`] bytes.
async fn read_data<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<String> {
    let mut out = String::new();
    loop {
        let line = read_line(s).await?;
        if line == "." {
            return Some(out);
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if out.len() + line.len() > MAX_MESSAGE {
            return None;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
}
