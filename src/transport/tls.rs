//! TLS for the encrypted listeners (DoT, DoH): the certificate and key read from PEM files,
//! swapped whole when the files change, and the rustls server configs built on them; and
//! the device ID a DoT client names in its SNI.
//!
//! It owns no listener and decides nothing: a bad new certificate keeps the one in force
//! (logged and counted), and the SNI is only read, never judged: whether an ID is known is
//! [`crate::identity::Identities::resolve`]'s business.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Why a certificate or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("{}: no usable PEM certificate: {reason}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("{}: no usable PEM private key: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls cannot use it.
    #[error("{}: the key does not fit the certificate: {reason}", path.display())]
    Mismatch {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The crypto provider of every TLS listener: ring, as hickory's own TLS uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a certificate chain and its private key from PEM files and check that they fit.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsFileError> {
    let cert_err = |reason: String| TlsFileError::Cert {
        path: cert.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsFileError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsFileError::Mismatch {
        path: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The certificate in force, replaced whole by [`watch`] (a handshake in progress keeps the
/// one it started with).
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// A store holding `key`.
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(key),
        })
    }

    /// Put `key` in force for new handshakes.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server config serving the store's certificate, offering `alpn` (most preferred
/// first).
pub fn server_config(store: Arc<CertStore>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    // The ring provider supports every default protocol version, so this cannot fail; fall
    // back to the process default rather than panic if it ever did.
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap_or_else(|_| rustls::ServerConfig::builder());
    let mut config = builder.with_no_client_auth().with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The device ID in a DoT client's server name: the first label when the name is
/// `{id}.{server_name}` (compared without case), else empty (no ID, so refused).
pub fn sni_id<'a>(sni: Option<&'a str>, server_name: &str) -> &'a str {
    let Some(sni) = sni else { return "" };
    let sni = sni.strip_suffix('.').unwrap_or(sni);
    let Some((first, rest)) = sni.split_once('.') else {
        return "";
    };
    if rest.eq_ignore_ascii_case(server_name.trim_end_matches('.')) {
        first
    } else {
        ""
    }
}

/// Label values of `transport` in the encrypted listeners' metrics.
pub const TRANSPORTS: [&str; 2] = ["dot", "doh"];

/// The encrypted listeners' counters (bounded labels: never an ID or an address).
#[derive(Clone)]
pub struct EncryptedMetrics {
    /// `chaperone_encrypted_queries_total{transport="dot|doh"}`: queries received.
    pub queries: IntCounterVec,
    /// `chaperone_encrypted_refused_total{transport="dot|doh"}`: refused before the
    /// pipeline because the credential named no known device.
    pub refused: IntCounterVec,
    /// `chaperone_tls_cert_reload_total{result="ok|error"}`.
    pub reloads: IntCounterVec,
}

impl EncryptedMetrics {
    /// The counters, every series at zero, registered on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let m = Self {
            queries: vec(
                "chaperone_encrypted_queries_total",
                "DNS queries received over DoT and DoH.",
                "transport",
            )?,
            refused: vec(
                "chaperone_encrypted_refused_total",
                "Encrypted queries refused before the pipeline: no device ID, or one unknown, revoked or expired (DoT REFUSED, DoH 403).",
                "transport",
            )?,
            reloads: vec(
                "chaperone_tls_cert_reload_total",
                "Reloads of the [tls] certificate and key after their files changed, by result; an error keeps the certificate in force.",
                "result",
            )?,
        };
        registry.register(Box::new(m.queries.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.reloads.clone()))?;
        for t in TRANSPORTS {
            m.queries.with_label_values(&[t]);
            m.refused.with_label_values(&[t]);
        }
        for r in ["ok", "error"] {
            m.reloads.with_label_values(&[r]);
        }
        Ok(m)
    }
}

/// Where the certificate and key come from, read from the live config at each poll (None:
/// TLS no longer configured: keep what is in force).
pub type FilesFn = Arc<dyn Fn() -> Option<(PathBuf, PathBuf, Duration)> + Send + Sync>;

/// Poll the certificate and key files' modification times and sizes; when either changes
/// from `loaded` (their [`stamp`] taken before the certificate in force was read), load
/// both and, if they fit, put them in force. A bad pair keeps the old certificate.
pub fn watch(
    store: Arc<CertStore>,
    files: FilesFn,
    loaded: Stamp,
    metrics: EncryptedMetrics,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut seen = Some(loaded);
        loop {
            let every = files().map_or(Duration::from_secs(5), |(_, _, d)| d);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let Some((cert, key, _)) = files() else {
                continue;
            };
            let now = stamp(&cert, &key);
            if seen.as_ref() == Some(&now) {
                continue;
            }
            seen = Some(now);
            let loaded = {
                let (c, k) = (cert.clone(), key.clone());
                tokio::task::spawn_blocking(move || load_certified_key(&c, &k)).await
            };
            match loaded {
                Ok(Ok(k)) => {
                    store.replace(k);
                    metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!("TLS certificate reloaded from {}", cert.display());
                }
                Ok(Err(e)) => {
                    metrics.reloads.with_label_values(&["error"]).inc();
                    tracing::error!("TLS certificate not reloaded (the old one stays): {e}");
                }
                Err(e) => tracing::error!("TLS certificate reload task failed: {e}"),
            }
        }
    });
}

/// What identifies a version of the two files: modification times and sizes (None where a
/// file cannot be read, so its reappearance counts as a change).
pub type Stamp = [Option<(SystemTime, u64)>; 2];

/// The [`Stamp`] of the two files now.
pub fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [one(cert), one(key)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_first_label_only_under_the_server_name() {
        let n = "dns.example-school.org.uk";
        assert_eq!(sni_id(Some("k3x9.dns.example-school.org.uk"), n), "k3x9");
        assert_eq!(sni_id(Some("K3X9.DNS.Example-School.org.uk."), n), "K3X9");
        assert_eq!(sni_id(Some("dns.example-school.org.uk"), n), "");
        assert_eq!(sni_id(Some("a.b.dns.example-school.org.uk"), n), "");
        assert_eq!(sni_id(Some("k3x9.evil.test"), n), "");
        assert_eq!(sni_id(None, n), "");
    }
}
