//! `[[lists.source]]` with a `url`: checks the download settings at load, so a refresh
//! never meets a bad URL, duration or pin, and works out where its last good copy lives.
//!
//! This module only validates and resolves; downloading is `lists::fetch`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::UrlSource;
use super::raw::RawSource;
use crate::lists::fetch::lastgood;

/// Default interval between downloads.
const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Default limit on bytes downloaded and after decompression (zip-bomb bound).
pub const DEFAULT_MAX_BYTES: u64 = crate::lists::decompress::DEFAULT_LIMIT;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A config problem: (key path, message).
pub type KeyProblem = (String, String);

/// Resolve the URL settings of source `i`; `Ok(None)` for a `path` source. `cache_dir`
/// is where last good copies live; the returned path is the copy this source compiles from.
pub fn resolve(
    i: usize,
    s: &RawSource,
    cache_dir: &Path,
    is_dir: bool,
) -> Result<Option<(UrlSource, PathBuf)>, Vec<KeyProblem>> {
    let key = format!("lists.source[{i}]");
    let mut problems = Vec::new();
    let mut bad = |field: &str, msg: String| problems.push((format!("{key}.{field}"), msg));
    let Some(url) = s.url.as_deref() else {
        for (field, given) in [
            ("refresh", s.refresh.is_some()),
            ("sha256", s.sha256.is_some()),
            ("max_bytes", s.max_bytes.is_some()),
            ("connect_timeout", s.connect_timeout.is_some()),
            ("timeout", s.timeout.is_some()),
            ("name", s.name.is_some()),
            ("allow_http", s.allow_http),
        ] {
            if given {
                bad(field, "only applies to a source with a `url`".into());
            }
        }
        if s.path.is_none() {
            bad("path", "a source needs a `path` or a `url`".into());
        }
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    };
    if s.path.is_some() {
        bad(
            "path",
            "give either `path` or `url`, not both (a URL's copy lives in lists.cache_dir)".into(),
        );
    }
    match check_url(url, s.allow_http) {
        Ok(()) => {}
        Err(msg) => bad("url", msg),
    }
    let mut duration = |field: &str, v: &Option<String>, default: Duration| match v {
        None => default,
        Some(text) => match parse_duration(text) {
            Ok(d) => d,
            Err(msg) => {
                bad(field, msg);
                default
            }
        },
    };
    let refresh = duration("refresh", &s.refresh, DEFAULT_REFRESH);
    let connect_timeout = duration(
        "connect_timeout",
        &s.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let timeout = duration("timeout", &s.timeout, DEFAULT_TIMEOUT);
    let sha256 = match s.sha256.as_deref().map(parse_sha256) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(msg)) => {
            bad("sha256", msg);
            None
        }
    };
    let max_bytes = s.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 {
        bad("max_bytes", "must be more than 0".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = s.name.clone().unwrap_or_else(|| default_name(url));
    let copy = lastgood::copy_path(cache_dir, url, is_dir);
    Ok(Some((
        UrlSource {
            url: url.to_owned(),
            name,
            key,
            refresh,
            sha256,
            max_bytes,
            connect_timeout,
            timeout,
        },
        copy,
    )))
}

/// `https://host/...`, or `http://` with the opt-in; nothing else (no `file:`, no
/// credentials in the URL, which would end up in logs).
fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(format!(
                "{url:?} is plain http, which anyone on the path can alter: use https, or set allow_http = true on this source (and a sha256 pin if the file never changes)"
            ));
        }
        other => {
            return Err(format!(
                "{url:?}: scheme {other:?} is not supported (https)"
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{url:?} carries credentials, which would be logged: not supported"
        ));
    }
    Ok(())
}

/// The metric label for a URL: host and path, without the query (it may hold a key).
fn default_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}{}", u.host_str().unwrap_or_default(), u.path()),
        Err(_) => url.to_owned(),
    }
}

/// A humane duration: "24h", "90m", "1h 30m", "2 days", "45s" (jiff's friendly format).
/// At least one second; at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!("{text:?} is not a duration (write e.g. \"24h\", \"30m\", \"1h 30m\"): {e}")
    };
    let secs = match text.trim().parse::<jiff::SignedDuration>() {
        Ok(d) => d.as_secs(),
        // Days ("2 days", "1d") are calendar units to a SignedDuration; here a day is 24h.
        Err(_) => {
            let span: jiff::Span = text.trim().parse().map_err(|e| bad(&e))?;
            span.total((
                jiff::Unit::Second,
                jiff::SpanRelativeTo::days_are_24_hours(),
            ))
            .map_err(|e| bad(&e))? as i64
        }
    };
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(format!("{text:?} must be between 1 second and a year"));
    }
    Ok(Duration::from_secs(secs as u64))
}

fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| format!("{text:?} is not a SHA-256 (64 hex digits)"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humane_and_bounded() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(5_400)
        );
        assert_eq!(
            parse_duration("2 days").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5m").is_err());
    }

    #[test]
    fn urls_must_be_https_unless_allowed() {
        assert!(check_url("https://lists.example/a.txt", false).is_ok());
        let err = check_url("http://lists.example/a.txt", false).unwrap_err();
        assert!(err.contains("allow_http"), "{err}");
        assert!(check_url("http://lists.example/a.txt", true).is_ok());
        assert!(check_url("file:///etc/hosts", true).is_err());
        assert!(check_url("https://u:p@lists.example/", false).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    #[test]
    fn the_default_name_drops_the_query() {
        assert_eq!(
            default_name("https://lists.example/x/list.txt?key=secret"),
            "lists.example/x/list.txt"
        );
    }
}
