//! Domain names as list keys: normalisation (case, trailing dot, IDN to punycode,
//! validation) and the reversed-label form the FST is keyed by.
//!
//! Reversing labels (`ads.example.com` → `com.example.ads`) makes every parent domain a
//! byte prefix of its children that ends at a `.`, which is what lets one FST walk find
//! every listed ancestor of a query name. The compiler and the server must build keys the
//! same way, so both use this module.

use std::net::IpAddr;

/// Why a name could not be used as a list entry or query key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing left after trimming.
    #[error("empty name")]
    Empty,
    /// An empty label (`a..b`, or a leading dot).
    #[error("empty label")]
    EmptyLabel,
    /// A label over 63 bytes.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A name over 253 bytes.
    #[error("name longer than 253 bytes")]
    NameTooLong,
    /// A character that cannot appear in a host name.
    #[error("invalid character {0:?}")]
    BadChar(char),
    /// An IP address where a name was expected.
    #[error("IP address, not a domain name")]
    IpAddress,
    /// IDNA conversion failed.
    #[error("invalid internationalised name: {0}")]
    Idna(String),
}

/// Normalise a domain as written in a list or config: trim, strip one trailing dot,
/// lowercase, IDN → punycode, validate (labels of 1–63 letters, digits, hyphens and
/// underscores; at most 253 bytes). IP addresses are rejected.
///
/// ```
/// use chaperone::lists::key::normalize_domain;
/// assert_eq!(normalize_domain("WWW.Example.COM.").unwrap(), "www.example.com");
/// assert_eq!(normalize_domain("bücher.example").unwrap(), "xn--bcher-kva.example");
/// assert!(normalize_domain("10.0.0.1").is_err());
/// ```
pub fn normalize_domain(input: &str) -> Result<String, KeyError> {
    let s = input.trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err(KeyError::IpAddress);
    }
    // Fast path: plain ASCII host names (nearly every list line) skip IDNA.
    let ascii = if s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        s.to_ascii_lowercase()
    } else if s.is_ascii() {
        let bad = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'));
        return Err(KeyError::BadChar(bad.unwrap_or('?')));
    } else {
        idna::domain_to_ascii(s).map_err(|e| KeyError::Idna(e.to_string()))?
    };
    validate(&ascii)?;
    Ok(ascii)
}

fn validate(name: &str) -> Result<(), KeyError> {
    if name.len() > 253 {
        return Err(KeyError::NameTooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(KeyError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(KeyError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(KeyError::BadChar(c));
        }
    }
    Ok(())
}

/// `ads.example.com` → `b"com.example.ads"`. The input must already be normalised.
pub fn reverse_key(normalized: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(normalized.len());
    for (i, label) in normalized.rsplit('.').enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(label.as_bytes());
    }
    out
}

/// The inverse of [`reverse_key`], for explanations and logs.
pub fn unreverse_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut labels: Vec<&str> = text.split('.').collect();
    labels.reverse();
    labels.join(".")
}

/// A reversed key built on the stack from wire-format labels, without allocating: the
/// form the server builds for every query.
#[derive(Clone)]
pub struct ReversedName {
    buf: [u8; 255],
    len: u8,
}

impl ReversedName {
    /// From a name's labels, leftmost first (as hickory's `Name::iter()` yields them, no
    /// root label). ASCII is lower-cased. None if the name has no labels or the key would
    /// not fit in 255 bytes.
    pub fn from_labels<'a, I: DoubleEndedIterator<Item = &'a [u8]>>(labels: I) -> Option<Self> {
        let mut buf = [0u8; 255];
        let mut len = 0usize;
        for (i, label) in labels.rev().enumerate() {
            let need = label.len() + usize::from(i > 0);
            if len + need > buf.len() {
                return None;
            }
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            for (dst, src) in buf[len..len + label.len()].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            len += label.len();
        }
        if len == 0 {
            return None;
        }
        Some(Self {
            buf,
            len: len as u8,
        })
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_dots_and_idn() {
        assert_eq!(
            normalize_domain("  Ads.Example.COM.  ").unwrap(),
            "ads.example.com"
        );
        assert_eq!(
            normalize_domain("_dmarc.example.com").unwrap(),
            "_dmarc.example.com"
        );
        assert_eq!(
            normalize_domain("BÜCHER.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn rejects_what_is_not_a_host_name() {
        assert_eq!(normalize_domain(""), Err(KeyError::Empty));
        assert_eq!(normalize_domain("."), Err(KeyError::Empty));
        assert_eq!(normalize_domain("a..b"), Err(KeyError::EmptyLabel));
        assert_eq!(normalize_domain(".a.b"), Err(KeyError::EmptyLabel));
        assert_eq!(normalize_domain("192.0.2.1"), Err(KeyError::IpAddress));
        assert_eq!(normalize_domain("[2001:db8::1]"), Err(KeyError::IpAddress));
        assert_eq!(normalize_domain("a b.com"), Err(KeyError::BadChar(' ')));
        assert_eq!(
            normalize_domain("ex*ample.com"),
            Err(KeyError::BadChar('*'))
        );
        assert_eq!(
            normalize_domain(&format!("{}.com", "a".repeat(64))),
            Err(KeyError::LabelTooLong)
        );
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(normalize_domain(&long), Err(KeyError::NameTooLong));
    }

    #[test]
    fn keys_reverse_and_round_trip() {
        assert_eq!(reverse_key("ads.example.com"), b"com.example.ads");
        assert_eq!(reverse_key("com"), b"com");
        assert_eq!(unreverse_key(b"com.example.ads"), "ads.example.com");
        let labels: [&[u8]; 3] = [b"WWW", b"Example", b"com"];
        let r = ReversedName::from_labels(labels.into_iter()).unwrap();
        assert_eq!(r.as_bytes(), b"com.example.www");
        assert!(ReversedName::from_labels(std::iter::empty()).is_none());
        let big: Vec<Vec<u8>> = (0..5).map(|_| b"a".repeat(63)).collect();
        assert!(ReversedName::from_labels(big.iter().map(|l| l.as_slice())).is_none());
    }
}
