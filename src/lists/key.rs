//! Domain names as list keys: normalisation (case, trailing dot, IDN to punycode,
//! validation) and the reversed-label form the FST is keyed by.
//!
//! Reversing labels (`ads.example.com` → `com.example.ads`) makes every parent domain a
//! byte prefix of its children that ends at a `.`, which is what lets one FST walk find
//! every listed ancestor of a query name. The compiler and the server must build keys the
//! same way, so both use this module; it must not know about list formats (that is
//! [`super::parse`]) or about what a match means (that is `policy`).

use std::net::IpAddr;

/// Why a name could not be used as a list entry or query key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing left after trimming and dropping the trailing dot.
    #[error("empty name")]
    Empty,
    /// An empty label (`a..b`, or a leading dot).
    #[error("empty label")]
    EmptyLabel,
    /// A label over 63 bytes (after punycode).
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A name over 253 bytes (after punycode).
    #[error("name longer than 253 bytes")]
    NameTooLong,
    /// A character that cannot appear in a host name.
    #[error("invalid character {0:?}")]
    BadChar(char),
    /// An IP address where a name was expected.
    #[error("IP address, not a domain name")]
    IpAddress,
    /// IDNA (UTS #46) conversion failed; holds the offending label.
    #[error("invalid internationalised name: {0:?} has no valid punycode form")]
    Idna(String),
}

/// Bytes allowed in a normalised label. Underscores are not legal in host names but are
/// common in real lists (`_dmarc`, `foo_bar.blogspot.com`) and resolve fine, so they are
/// kept rather than rejected.
fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Normalise a domain as written in a list or config: trim, strip one trailing dot,
/// lowercase, IDN → punycode, validate (labels of 1–63 letters, digits, hyphens and
/// underscores; at most 253 bytes). IP addresses (also `[v6]`) are rejected because a
/// name list cannot block an address: the entry would silently never match.
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
    let bare = s
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(s);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(KeyError::IpAddress);
    }
    let ascii = if s.bytes().all(|b| is_label_byte(b) || b == b'.') {
        // Fast path: plain ASCII host names (nearly every list line) skip IDNA.
        s.to_ascii_lowercase()
    } else if s.is_ascii() {
        // IDNA would pass most ASCII punctuation through unchanged; name it here instead.
        let bad = s
            .chars()
            .find(|&c| !(c.is_ascii() && is_label_byte(c as u8)) && c != '.');
        return Err(KeyError::BadChar(bad.unwrap_or('?')));
    } else {
        idna::domain_to_ascii(s).map_err(|_| KeyError::Idna(failing_label(s)))?
    };
    validate(&ascii)?;
    Ok(ascii)
}

/// The first label IDNA rejects on its own, to say which part of a long name is wrong
/// (`idna::Errors` carries no detail).
fn failing_label(name: &str) -> String {
    name.split('.')
        .find(|l| !l.is_ascii() && idna::domain_to_ascii(l).is_err())
        .unwrap_or(name)
        .to_owned()
}

fn validate(name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::Empty);
    }
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
            .find(|&c| !(c.is_ascii() && is_label_byte(c as u8)))
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

/// The inverse of [`reverse_key`], for explanations and logs. Non-UTF-8 bytes (possible in
/// keys built from raw query labels) are shown as U+FFFD rather than failing.
pub fn unreverse_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, label) in key.rsplit(|&b| b == b'.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label));
    }
    out
}

/// A reversed key built on the stack from wire-format labels, without allocating: the
/// form the server builds for every query.
///
/// Labels are copied as they are, except for ASCII case. A label that itself contains a
/// `.` byte (legal on the wire, `a\.b`) is not escaped: that can only add separators
/// *after* the true ancestors' prefix, so every listed ancestor of the real name still
/// matches; escaping or refusing such names would instead open a way around the filter.
#[derive(Clone)]
pub struct ReversedName {
    buf: [u8; 255],
    len: u8,
}

impl ReversedName {
    /// From a name's labels, leftmost first (as hickory's `Name::iter()` yields them, no
    /// root label). ASCII is lower-cased. None if the name has no labels or the key would
    /// not fit in 255 bytes (no valid DNS name is that long).
    pub fn from_labels<'a, I: DoubleEndedIterator<Item = &'a [u8]>>(labels: I) -> Option<Self> {
        let mut buf = [0u8; 255];
        let mut len = 0usize;
        let mut any = false;
        for label in labels.rev() {
            let sep = usize::from(any);
            let end = len.checked_add(sep + label.len())?;
            if end > buf.len() {
                return None;
            }
            if any {
                buf[len] = b'.';
                len += 1;
            }
            for (dst, src) in buf[len..end].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            len = end;
            any = true;
        }
        if !any {
            return None;
        }
        Some(Self {
            buf,
            len: u8::try_from(len).ok()?,
        })
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ReversedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReversedName({:?})",
            String::from_utf8_lossy(self.as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_dots_and_whitespace() {
        assert_eq!(
            normalize_domain("  Ads.Example.COM.  ").unwrap(),
            "ads.example.com"
        );
        assert_eq!(normalize_domain("\tx.test\r").unwrap(), "x.test");
        assert_eq!(
            normalize_domain("_dmarc.Example.com").unwrap(),
            "_dmarc.example.com"
        );
        assert_eq!(normalize_domain("com").unwrap(), "com");
        assert_eq!(normalize_domain("a-b.c_d.test").unwrap(), "a-b.c_d.test");
    }

    #[test]
    fn internationalised_names_become_punycode() {
        for input in ["bücher.example", "BÜCHER.example", "Bücher.Example."] {
            assert_eq!(
                normalize_domain(input).unwrap(),
                "xn--bcher-kva.example",
                "{input}"
            );
        }
        // Already punycode: unchanged.
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_domain("例え.テスト").unwrap(),
            "xn--r8jz45g.xn--zckzah"
        );
        // Ideographic full stop is a label separator in IDNA.
        assert_eq!(
            normalize_domain("bücher。example").unwrap(),
            "xn--bcher-kva.example"
        );
        // A non-ASCII character IDNA maps to something still illegal is named.
        assert!(normalize_domain("bü cher.example").is_err());
        assert!(matches!(
            normalize_domain("a\u{200d}\u{0301}b.example"),
            Err(KeyError::Idna(_)) | Err(KeyError::BadChar(_))
        ));
    }

    #[test]
    fn rejects_what_is_not_a_host_name() {
        assert_eq!(normalize_domain(""), Err(KeyError::Empty));
        assert_eq!(normalize_domain("   "), Err(KeyError::Empty));
        assert_eq!(normalize_domain("."), Err(KeyError::Empty));
        assert_eq!(normalize_domain("a..b"), Err(KeyError::EmptyLabel));
        assert_eq!(normalize_domain(".a.b"), Err(KeyError::EmptyLabel));
        assert_eq!(normalize_domain("a.b.."), Err(KeyError::EmptyLabel));
        assert_eq!(normalize_domain("a b.com"), Err(KeyError::BadChar(' ')));
        assert_eq!(
            normalize_domain("ex*ample.com"),
            Err(KeyError::BadChar('*'))
        );
        assert_eq!(
            normalize_domain("*.example.com"),
            Err(KeyError::BadChar('*'))
        );
        assert_eq!(
            normalize_domain("example.com/path"),
            Err(KeyError::BadChar('/'))
        );
        assert_eq!(normalize_domain("[bad]"), Err(KeyError::BadChar('[')));
        assert_eq!(
            normalize_domain(&format!("{}.com", "a".repeat(64))),
            Err(KeyError::LabelTooLong)
        );
        assert!(normalize_domain(&format!("{}.com", "a".repeat(63))).is_ok());
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(long.len(), 259);
        assert_eq!(normalize_domain(&long), Err(KeyError::NameTooLong));
        let max = format!("{}.{}", "a".repeat(63), vec!["b".repeat(63); 3].join("."));
        assert_eq!(max.len(), 255);
        assert_eq!(normalize_domain(&max), Err(KeyError::NameTooLong));
        assert!(normalize_domain(&max[2..]).is_ok());
    }

    #[test]
    fn rejects_ip_addresses() {
        for ip in [
            "192.0.2.1",
            "192.0.2.1.",
            " 0.0.0.0 ",
            "::1",
            "2001:db8::1",
            "[2001:db8::1]",
            "::ffff:192.0.2.1",
        ] {
            assert_eq!(normalize_domain(ip), Err(KeyError::IpAddress), "{ip}");
        }
        // Numeric labels that are not an address are names.
        assert_eq!(normalize_domain("1.2.3").unwrap(), "1.2.3");
        assert_eq!(normalize_domain("123.example").unwrap(), "123.example");
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            KeyError::IpAddress.to_string(),
            "IP address, not a domain name"
        );
        assert_eq!(
            normalize_domain("a!b.test").unwrap_err().to_string(),
            "invalid character '!'"
        );
        assert_eq!(
            KeyError::LabelTooLong.to_string(),
            "label longer than 63 bytes"
        );
    }

    #[test]
    fn keys_reverse_and_round_trip() {
        assert_eq!(reverse_key("ads.example.com"), b"com.example.ads");
        assert_eq!(reverse_key("com"), b"com");
        assert_eq!(unreverse_key(b"com.example.ads"), "ads.example.com");
        assert_eq!(unreverse_key(b"com"), "com");
        for name in ["a.b.c.d.example", "xn--bcher-kva.example", "_x.test"] {
            assert_eq!(unreverse_key(&reverse_key(name)), name);
        }
        // A parent's key is a prefix of its child's key, ending at a label boundary.
        let parent = reverse_key("example.com");
        let child = reverse_key("ads.example.com");
        assert!(child.starts_with(&parent) && child[parent.len()] == b'.');
    }

    #[test]
    fn reversed_names_from_wire_labels() {
        let labels: [&[u8]; 3] = [b"WWW", b"Example", b"com"];
        let r = ReversedName::from_labels(labels.into_iter()).unwrap();
        assert_eq!(r.as_bytes(), b"com.example.www");
        assert_eq!(format!("{r:?}"), "ReversedName(\"com.example.www\")");
        // Same bytes as the allocating form.
        let name = "ads.example.com";
        let r = ReversedName::from_labels(name.split('.').map(str::as_bytes)).unwrap();
        assert_eq!(r.as_bytes(), reverse_key(name).as_slice());
        // Only ASCII is folded; other bytes pass through.
        let labels: [&[u8]; 2] = [b"\xC3\x9C", b"TEST"];
        let r = ReversedName::from_labels(labels.into_iter()).unwrap();
        assert_eq!(r.as_bytes(), b"test.\xC3\x9C");
        assert_eq!(unreverse_key(r.as_bytes()), "Ü.test");
        assert!(ReversedName::from_labels(std::iter::empty()).is_none());
    }

    #[test]
    fn reversed_names_stop_at_255_bytes() {
        // 4 × 63 + 3 dots = 255: fits exactly.
        let fits: Vec<Vec<u8>> = (0..4).map(|_| b"a".repeat(63)).collect();
        let r = ReversedName::from_labels(fits.iter().map(|l| l.as_slice())).unwrap();
        assert_eq!(r.as_bytes().len(), 255);
        let big: Vec<Vec<u8>> = (0..5).map(|_| b"a".repeat(63)).collect();
        assert!(ReversedName::from_labels(big.iter().map(|l| l.as_slice())).is_none());
        let one_over: Vec<Vec<u8>> = vec![
            b"a".repeat(64),
            b"b".repeat(63),
            b"c".repeat(63),
            b"d".repeat(63),
        ];
        assert!(ReversedName::from_labels(one_over.iter().map(|l| l.as_slice())).is_none());
    }
}
