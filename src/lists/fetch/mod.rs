//! Lists by URL: downloading sources (`[[lists.source]] url = …`), keeping the last good
//! copy of each on disk, and refreshing them in the background.
//!
//! A URL source compiles from its last good copy in `lists.cache_dir` exactly as a `path`
//! source compiles from its file, so the server filters from the first packet at boot
//! with no network, and a bad download can never reach the compiler: a download becomes the
//! new copy only once it arrived whole (HTTP success, within `max_bytes` before and after
//! decompression, matching its `sha256` pin), unpacked, parsed with no more than
//! `lists.max_bad_fraction` of its lines rejected, and shrank by no more than
//! `lists.max_shrink`. Anything else keeps the copy, is logged with the reason and counted
//! in `chaperone_list_refresh_total{source,result}`.
//!
//! This module owns the transfer ([`http`]), unpacking ([`archive`]), the copies
//! ([`lastgood`]) and the schedule ([`refresh`]). It does not parse list syntax (that is
//! `parse`, which it calls to check a download) and does not compile or swap snapshots
//! (it asks the pipeline to reload, which compiles off the serving threads).

pub mod archive;
pub mod http;
pub mod lastgood;
pub mod refresh;

use std::collections::BTreeMap;
use std::path::Path;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::config::{ListsConfig, SourceConfig, UrlSource};
use crate::lists::compile::{self, ListCounts};
use crate::lists::decompress;
use crate::lists::parse::Format;

/// Why a download was not taken as the new copy. Each is one `result` label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The server answered with an error status.
    #[error("HTTP status {0}")]
    Http(u16),
    /// Connect or whole-download timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// No connection.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The body ended early (shorter than its Content-Length) or was malformed.
    #[error("the download was cut short: {0}")]
    Truncated(String),
    /// Another transfer error.
    #[error("download failed: {0}")]
    Network(String),
    /// More bytes than `max_bytes`, as served or once unpacked.
    #[error("larger than max_bytes = {0}")]
    TooLarge(u64),
    /// The bytes do not have the pinned SHA-256.
    #[error("SHA-256 is {got}, not the pinned {want}")]
    Sha256Mismatch {
        /// The pin.
        want: String,
        /// What arrived.
        got: String,
    },
    /// Not a valid gzip/xz/zstd stream or tar archive.
    #[error("cannot unpack: {0}")]
    BadArchive(String),
    /// Too many rejected lines (an error page, or a list in another format).
    #[error(
        "{bad} of {lines} lines rejected (more than lists.max_bad_fraction = {max}); first: {first}"
    )]
    BadLines {
        /// Rejected lines.
        bad: usize,
        /// Lines with entries or errors.
        lines: usize,
        /// The limit.
        max: f64,
        /// The first rejected line.
        first: String,
    },
    /// The download holds no entries at all.
    #[error("the download holds no entries")]
    Empty,
    /// A category lost more than `lists.max_shrink` of its entries.
    #[error("{}; more than lists.max_shrink", .0.join("; "))]
    Shrunk(Vec<String>),
    /// Local I/O (cache folder).
    #[error("{0}")]
    Io(std::io::Error),
}

/// Every `result` label of `chaperone_list_refresh_total`.
pub const RESULTS: [&str; 14] = [
    "updated",
    "not_modified",
    "http_error",
    "timeout",
    "unreachable",
    "truncated",
    "network_error",
    "too_large",
    "sha256_mismatch",
    "bad_archive",
    "bad_lines",
    "empty",
    "shrunk",
    "error",
];

impl FetchError {
    /// The `result` label.
    pub fn result(&self) -> &'static str {
        match self {
            FetchError::Http(_) => "http_error",
            FetchError::Timeout(_) => "timeout",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Truncated(_) => "truncated",
            FetchError::Network(_) => "network_error",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Sha256Mismatch { .. } => "sha256_mismatch",
            FetchError::BadArchive(_) => "bad_archive",
            FetchError::BadLines { .. } => "bad_lines",
            FetchError::Empty => "empty",
            FetchError::Shrunk(_) => "shrunk",
            FetchError::Io(_) => "error",
        }
    }
}

/// A refresh that kept or replaced the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// A new copy is in place: the lists must be compiled again.
    Updated,
    /// The server said 304, or sent the same bytes again.
    NotModified,
}

impl Refreshed {
    /// The `result` label.
    pub fn result(self) -> &'static str {
        match self {
            Refreshed::Updated => "updated",
            Refreshed::NotModified => "not_modified",
        }
    }
}

/// `chaperone_list_refresh_total{source,result}` and `chaperone_list_age_seconds{source}`.
pub struct FetchMetrics {
    refresh: IntCounterVec,
    age: IntGaugeVec,
}

impl FetchMetrics {
    /// Register on `registry` (once per registry).
    pub fn new(registry: &Registry) -> Self {
        let refresh = IntCounterVec::new(
            Opts::new(
                "chaperone_list_refresh_total",
                "Downloads of URL list sources, by result (updated, not_modified, or why the last good copy was kept).",
            ),
            &["source", "result"],
        )
        .expect("metric definition is valid");
        let age = IntGaugeVec::new(
            Opts::new(
                "chaperone_list_age_seconds",
                "Seconds since the server last confirmed the copy of a URL list source in use (downloaded or 304).",
            ),
            &["source"],
        )
        .expect("metric definition is valid");
        // A second server in one process (tests) brings its own registry; a clash here
        // would only lose these series, never stop the server.
        let _ = registry.register(Box::new(refresh.clone()));
        let _ = registry.register(Box::new(age.clone()));
        Self { refresh, age }
    }

    /// Create every series of these sources at zero, so alerts see the first failure.
    pub fn init(&self, sources: &[SourceConfig]) {
        for u in sources.iter().filter_map(|s| s.url.as_ref()) {
            for r in RESULTS {
                self.refresh.with_label_values(&[&u.name, r]);
            }
        }
        self.update_ages(sources);
    }

    /// Count one refresh.
    pub fn count(&self, source: &str, result: &str) {
        self.refresh.with_label_values(&[source, result]).inc();
    }

    /// Set the age gauge of every URL source from its copy's metadata.
    pub fn update_ages(&self, sources: &[SourceConfig]) {
        let now = jiff::Timestamp::now().as_second();
        for s in sources {
            if let Some(u) = &s.url
                && let Some(meta) = lastgood::read_meta(&s.path)
            {
                self.age
                    .with_label_values(&[&u.name])
                    .set((now - meta.checked_at).max(0));
            }
        }
    }
}

/// Download `src` (a URL source) and, if the download is good and differs from the copy in
/// hand, make it the new last good copy.
pub async fn refresh_source(
    src: &SourceConfig,
    lists: &ListsConfig,
) -> Result<Refreshed, FetchError> {
    let Some(url) = &src.url else {
        return Ok(Refreshed::NotModified);
    };
    let copy = src.path.clone();
    if let Some(dir) = copy.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(FetchError::Io)?;
    }
    lastgood::recover(&copy);
    let meta = lastgood::read_meta(&copy);
    let have = http::Validators {
        etag: meta.as_ref().and_then(|m| m.etag.clone()),
        last_modified: meta.as_ref().and_then(|m| m.last_modified.clone()),
    };
    let raw = lastgood::sibling(&copy, "download");
    let got = http::download(url, &have, &raw).await;
    let result = match got {
        Err(e) => Err(e),
        Ok(http::Got::NotModified) => match meta {
            Some(m) => confirm(&copy, m, None).map(|()| Refreshed::NotModified),
            // A 304 to a request without validators: a broken server.
            None => Err(FetchError::Http(304)),
        },
        Ok(http::Got::Body { sha256, validators }) => {
            take_body(src, url, lists, &raw, sha256, validators, meta).await
        }
    };
    let _ = tokio::fs::remove_file(&raw).await;
    result
}

/// The copy is still current: record when that was confirmed (and new validators).
fn confirm(
    copy: &Path,
    mut meta: lastgood::Meta,
    validators: Option<http::Validators>,
) -> Result<(), FetchError> {
    meta.checked_at = jiff::Timestamp::now().as_second();
    if let Some(v) = validators {
        meta.etag = v.etag;
        meta.last_modified = v.last_modified;
    }
    lastgood::write_meta(copy, &meta).map_err(FetchError::Io)
}

/// Check a downloaded body and promote it.
async fn take_body(
    src: &SourceConfig,
    url: &UrlSource,
    lists: &ListsConfig,
    raw: &Path,
    sha256: [u8; 32],
    validators: http::Validators,
    meta: Option<lastgood::Meta>,
) -> Result<Refreshed, FetchError> {
    let got = hex::encode(sha256);
    if let Some(want) = url.sha256
        && want != sha256
    {
        return Err(FetchError::Sha256Mismatch {
            want: hex::encode(want),
            got,
        });
    }
    if let Some(m) = meta.clone().filter(|m| m.sha256 == got) {
        confirm(&src.path, m, Some(validators))?;
        return Ok(Refreshed::NotModified);
    }
    let (src2, raw2) = (src.clone(), raw.to_owned());
    let old_counts = meta.map(|m| m.counts).unwrap_or_default();
    let (max_bad, max_shrink) = (lists.max_bad_fraction, lists.max_shrink);
    // Unpacking and parsing a large list is CPU work: off the async threads.
    let staged =
        tokio::task::spawn_blocking(move || stage(&src2, &raw2, &old_counts, max_bad, max_shrink))
            .await
            .map_err(|e| FetchError::Io(std::io::Error::other(e.to_string())))?;
    let (staged_path, counts) = staged?;
    let new_meta = lastgood::Meta {
        url: url.url.clone(),
        etag: validators.etag,
        last_modified: validators.last_modified,
        checked_at: jiff::Timestamp::now().as_second(),
        sha256: got,
        counts,
    };
    let copy = src.path.clone();
    tokio::task::spawn_blocking(move || {
        let r = lastgood::promote(&staged_path, &copy, &new_meta);
        if r.is_err() {
            remove(&staged_path);
        }
        r
    })
    .await
    .map_err(|e| FetchError::Io(std::io::Error::other(e.to_string())))?
    .map_err(FetchError::Io)?;
    Ok(Refreshed::Updated)
}

/// Unpack `raw` beside the copy and check it; the staged path and its counts if good.
fn stage(
    src: &SourceConfig,
    raw: &Path,
    old_counts: &BTreeMap<String, u64>,
    max_bad: f64,
    max_shrink: f64,
) -> Result<(std::path::PathBuf, BTreeMap<String, u64>), FetchError> {
    let limit = src
        .url
        .as_ref()
        .map_or(decompress::DEFAULT_LIMIT, |u| u.max_bytes);
    let staged = lastgood::sibling(&src.path, "new");
    remove(&staged);
    let unpacked = if src.format == Format::Ut1 {
        archive::unpack_ut1(raw, &staged, limit).map(drop)
    } else {
        archive::unpack_list(raw, &staged, limit).map(drop)
    };
    let checked = unpacked
        .map_err(|e| match decompress::is_too_large(&e) {
            true => FetchError::TooLarge(limit),
            false => FetchError::BadArchive(e.to_string()),
        })
        .and_then(|()| check(src, &staged, old_counts, max_bad, max_shrink));
    match checked {
        Ok(counts) => Ok((staged, counts)),
        Err(e) => {
            remove(&staged);
            Err(e)
        }
    }
}

/// Parse a staged copy: refuse it when too many lines are bad, it is empty, or a category
/// shrank too much; else its entries per category.
fn check(
    src: &SourceConfig,
    staged: &Path,
    old_counts: &BTreeMap<String, u64>,
    max_bad: f64,
    max_shrink: f64,
) -> Result<BTreeMap<String, u64>, FetchError> {
    let (mut bad, mut good) = (0usize, 0usize);
    let mut first: Option<String> = None;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    // Only counts are kept: the entries of each piece are dropped as soon as counted.
    compile::for_each_piece(src, staged, |category, p| {
        bad += p.errors.len();
        good += p.entries.len() + p.ips.len();
        if first.is_none()
            && let Some(e) = p.errors.first()
        {
            first = Some(format!("line {}: {}: {}", e.line, e.reason, e.text));
        }
        *counts.entry(category.to_owned()).or_default() += (p.entries.len() + p.ips.len()) as u64;
    })
    .map_err(|e| FetchError::BadArchive(e.to_string()))?;
    let lines = bad + good;
    if lines > 0 && bad as f64 / lines as f64 > max_bad {
        return Err(FetchError::BadLines {
            bad,
            lines,
            max: max_bad,
            first: first.unwrap_or_default(),
        });
    }
    if good == 0 {
        return Err(FetchError::Empty);
    }
    // The same guard a reload applies, per category of this source.
    let keyed = |m: &BTreeMap<String, u64>| ListCounts {
        per_source: m
            .iter()
            .map(|(c, n)| ((src.path.clone(), c.clone()), *n))
            .collect(),
        per_category: BTreeMap::new(),
    };
    let shrunk = keyed(&counts).shrunk_from(&keyed(old_counts), max_shrink);
    if !shrunk.is_empty() {
        return Err(FetchError::Shrunk(shrunk));
    }
    Ok(counts)
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// What [`ensure_copies`] found for one URL source.
#[derive(Debug)]
pub enum CopyStatus {
    /// A last good copy was already there, confirmed at this Unix time.
    Cached(i64),
    /// There was none; it was downloaded now.
    Downloaded,
    /// There was none and the download failed.
    Failed(FetchError),
}

/// Make sure every URL source has a last good copy, downloading those that have none
/// (first start, or a new source). Sources with a copy are not downloaded here: the
/// refresher does that in the background once serving. Counted in `metrics` if given.
pub async fn ensure_copies(
    lists: &ListsConfig,
    metrics: Option<&FetchMetrics>,
) -> Vec<(UrlSource, CopyStatus)> {
    let mut out = Vec::new();
    for src in &lists.sources {
        let Some(url) = &src.url else { continue };
        lastgood::recover(&src.path);
        if let Some(meta) = lastgood::read_meta(&src.path) {
            out.push((url.clone(), CopyStatus::Cached(meta.checked_at)));
            continue;
        }
        let status = match refresh_source(src, lists).await {
            Ok(r) => {
                if let Some(m) = metrics {
                    m.count(&url.name, r.result());
                }
                CopyStatus::Downloaded
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.count(&url.name, e.result());
                }
                CopyStatus::Failed(e)
            }
        };
        out.push((url.clone(), status));
    }
    out
}

/// The sentence a person reads about one source's copy (`check`, `compile`, start-up).
pub fn describe(url: &UrlSource, status: &CopyStatus) -> String {
    match status {
        CopyStatus::Cached(at) => {
            let when = jiff::Timestamp::from_second(*at)
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|_| "an unknown time".into());
            format!(
                "{} ({}): using the last good copy, confirmed {when}",
                url.key, url.url
            )
        }
        CopyStatus::Downloaded => format!("{} ({}): downloaded", url.key, url.url),
        CopyStatus::Failed(e) => format!(
            "{} ({}): no last good copy yet and the download failed: {e}",
            url.key, url.url
        ),
    }
}
