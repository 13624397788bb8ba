//! `[tls]`, `[dot]` and `[doh]`: the encrypted listeners (DNS over TLS and over HTTPS)
//! and the certificate they serve, as written and as checked.
//!
//! The certificate and key are read and checked here at load, so a config naming a missing
//! or mismatched pair is refused with the key named; the listeners read them again (and
//! again whenever the files change) in [`crate::transport::tls`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Problem;
use crate::transport::tls::{TlsFileError, load_certified_key};

/// Default of `tls.reload_poll_secs`.
pub const DEFAULT_TLS_POLL: Duration = Duration::from_secs(5);

/// `[tls]`: the certificate and key of the encrypted listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain (leaf first), relative to the config file. It should cover
    /// `server_name` and `*.server_name` (device IDs are the first label on DoT).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    pub key: PathBuf,
    /// The name devices use, e.g. "dns.example-school.org.uk": a DoT client asking for
    /// `{id}.{server_name}` (SNI) sends the device ID `id`.
    pub server_name: String,
    /// How often the two files are checked for changes, seconds. Default 5.
    #[serde(default)]
    pub reload_poll_secs: Option<u64>,
}

/// `[dot]` or `[doh]`: where an encrypted listener listens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryptedListener {
    /// Addresses (port 853 for DoT, 443 for DoH in production). Restart-only.
    pub listen: Vec<SocketAddr>,
}

/// `[tls]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
    /// The name devices use, lower case, without a trailing dot.
    pub server_name: String,
    /// Interval of the change check on the two files.
    pub reload_poll: Duration,
}

/// The encrypted listeners, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptedConfig {
    /// `[tls]` (required when either listener is on).
    pub tls: Option<TlsConfig>,
    /// `dot.listen` (empty: off).
    pub dot_listen: Vec<SocketAddr>,
    /// `doh.listen` (empty: off).
    pub doh_listen: Vec<SocketAddr>,
}

/// Check `[tls]`, `[dot]` and `[doh]`, reading the certificate and key to make sure they
/// fit.
pub(super) fn encrypted(
    tls: Option<RawTls>,
    dot: Option<RawEncryptedListener>,
    doh: Option<RawEncryptedListener>,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> EncryptedConfig {
    let dot_listen = dot.map(|d| d.listen).unwrap_or_default();
    let doh_listen = doh.map(|d| d.listen).unwrap_or_default();
    let tls = tls.and_then(|t| resolve_tls(t, base, problems));
    if tls.is_none() {
        for (key, on) in [("dot.listen", &dot_listen), ("doh.listen", &doh_listen)] {
            if !on.is_empty() {
                problems.push(Problem::new(
                    key,
                    "needs [tls] with a valid cert, key and server_name",
                ));
            }
        }
    }
    EncryptedConfig {
        tls,
        dot_listen,
        doh_listen,
    }
}

fn resolve_tls(t: RawTls, base: &Path, problems: &mut Vec<Problem>) -> Option<TlsConfig> {
    let cert = base.join(&t.cert);
    let key = base.join(&t.key);
    let before = problems.len();
    let server_name = t.server_name.trim_end_matches('.').to_ascii_lowercase();
    if let Err(e) = check_server_name(&server_name) {
        problems.push(Problem::new("tls.server_name", e));
    }
    let reload_poll = match t.reload_poll_secs {
        Some(0) => {
            problems.push(Problem::new("tls.reload_poll_secs", "must be at least 1"));
            DEFAULT_TLS_POLL
        }
        Some(s) => Duration::from_secs(s.min(86_400)),
        None => DEFAULT_TLS_POLL,
    };
    match load_certified_key(&cert, &key) {
        Ok(_) => {}
        Err(e @ TlsFileError::Cert { .. }) => {
            problems.push(Problem::new("tls.cert", e.to_string()))
        }
        Err(e) => problems.push(Problem::new("tls.key", e.to_string())),
    }
    (problems.len() == before).then_some(TlsConfig {
        cert,
        key,
        server_name,
        reload_poll,
    })
}

/// A host name of at least two labels of letters, digits and hyphens.
fn check_server_name(name: &str) -> Result<(), String> {
    let labels: Vec<&str> = name.split('.').collect();
    let good = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || labels.len() < 2 || !labels.iter().all(good) {
        return Err(format!(
            "{name:?} is not a host name such as \"dns.example-school.org.uk\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_host_names() {
        assert!(check_server_name("dns.example-school.org.uk").is_ok());
        for bad in [
            "",
            "dns",
            "*.dns.example.org",
            "dns..example.org",
            "-a.example.org",
        ] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }
}
