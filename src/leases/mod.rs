//! Device names from DHCP leases: reads the lease files of the school's DHCP server (ISC
//! dhcpd, Kea memfile, dnsmasq, a Windows DHCP server's CSV export) into one map from
//! address to (MAC, host name, expiry), kept behind an `ArcSwap` like the lists.
//!
//! It owns reading and parsing lease files, the live map and its reloads (see
//! [`Leases::refresh`]); [`crate::identify`] reads the map for each query and the server's
//! watcher decides when to refresh. It must not decide anything about policy, and must not
//! answer DNS itself: PTR answers from leases are built elsewhere on [`LeaseMap::lookup`].
//!
//! Lease files are written by another program and may be half-written, corrupt or huge:
//! a bad line is skipped and counted, never fatal; a file larger than [`MAX_FILE_BYTES`],
//! one that vanished or cannot be read keeps the map last read from it, logged and counted
//! in `chaperone_leases_reload_total{file,result="failure"}`. Host names are cleaned (no
//! control characters, at most [`MAX_HOSTNAME`] bytes) because any device can choose its
//! own, and they end up in logs, alerts and the block page.

mod dnsmasq;
mod isc;
mod kea;
pub mod watch;
mod windows;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Largest lease file read, bytes. dhcpd appends to its file between rewrites; even a
/// trust's busiest server stays far below this.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most addresses kept from one file; the rest are skipped and counted as bad.
pub const MAX_ENTRIES: usize = 262_144;
/// Longest host name kept, bytes (a DNS name's limit).
pub const MAX_HOSTNAME: usize = 253;

/// Which DHCP server wrote a lease file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseFormat {
    /// ISC dhcpd `dhcpd.leases`.
    Isc,
    /// Kea memfile CSV (`kea-leases4.csv`, `kea-leases6.csv`).
    Kea,
    /// dnsmasq `dnsmasq.leases`.
    Dnsmasq,
    /// `Get-DhcpServerv4Lease | Export-Csv` from a Windows DHCP server.
    WindowsCsv,
}

impl LeaseFormat {
    /// The config spellings, for error messages.
    pub const NAMES: &'static str = "\"isc\", \"kea\", \"dnsmasq\" or \"windows-csv\"";

    /// Parse the config spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "isc" => Some(Self::Isc),
            "kea" => Some(Self::Kea),
            "dnsmasq" => Some(Self::Dnsmasq),
            "windows-csv" => Some(Self::WindowsCsv),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Isc => "isc",
            Self::Kea => "kea",
            Self::Dnsmasq => "dnsmasq",
            Self::WindowsCsv => "windows-csv",
        }
    }
}

/// One `[[identify.leases]]` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFileConfig {
    /// The lease file.
    pub path: PathBuf,
    /// Its format.
    pub format: LeaseFormat,
}

/// What a lease says about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The device's MAC address, when the lease names one (IPv6 leases often do not).
    pub mac: Option<[u8; 6]>,
    /// The host name the device gave, cleaned; None when it gave none.
    pub hostname: Option<Arc<str>>,
    /// Unix time the lease ends; None for a lease that never does (reservations).
    pub expires: Option<i64>,
    /// The file it came from (its file name), for `explain`.
    pub source: Arc<str>,
}

impl Lease {
    /// Whether the lease is still in force at `now` (Unix seconds).
    pub fn live_at(&self, now: i64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// The MAC as text, "aa:bb:cc:dd:ee:ff".
    pub fn mac_text(&self) -> Option<String> {
        self.mac.map(format_mac)
    }
}

/// "aa:bb:cc:dd:ee:ff".
pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// What parsing one file gave.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Live leases by address (the file's last word on each address).
    pub leases: HashMap<IpAddr, Lease>,
    /// Lines or blocks that could not be read, skipped.
    pub bad: usize,
}

impl Parsed {
    /// Record the file's latest word on `ip`: a lease, or (None) that it is no longer
    /// leased. Beyond [`MAX_ENTRIES`] addresses, new ones are counted as bad.
    fn set(&mut self, ip: IpAddr, lease: Option<Lease>) {
        match lease {
            Some(l) if self.leases.len() < MAX_ENTRIES || self.leases.contains_key(&ip) => {
                self.leases.insert(ip, l);
            }
            Some(_) => self.bad += 1,
            None => {
                self.leases.remove(&ip);
            }
        }
    }
}

/// Why a lease file could not be read at all (the previous map is kept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Missing, unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{} is {size} bytes, more than the {MAX_FILE_BYTES} read from a lease file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not text in the expected format at all (no line could be read).
    #[error("{}: not a {format} lease file ({bad} bad lines, none readable)", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: &'static str,
        /// Bad lines.
        bad: usize,
    },
}

/// Parse lease file text in `format`. `source` names the file in each lease.
pub fn parse(format: LeaseFormat, text: &str, source: &Arc<str>) -> Parsed {
    match format {
        LeaseFormat::Isc => isc::parse(text, source),
        LeaseFormat::Kea => kea::parse(text, source),
        LeaseFormat::Dnsmasq => dnsmasq::parse(text, source),
        LeaseFormat::WindowsCsv => windows::parse(text, source),
    }
}

/// Read and parse one lease file, bounded by [`MAX_FILE_BYTES`]. A file with bad lines and
/// no good ones is refused (a truncated or wrong-format file must not wipe every name);
/// an empty file is a valid empty lease file.
pub fn read_file(path: &Path, format: LeaseFormat) -> Result<Parsed, LeaseError> {
    use std::io::Read;
    let read_err = |source| LeaseError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(LeaseError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LeaseError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    let text = decode_text(&bytes);
    let parsed = parse(format, &text, &source_name(path));
    if parsed.leases.is_empty() && parsed.bad > 0 {
        return Err(LeaseError::Unreadable {
            path: path.to_owned(),
            format: format.name(),
            bad: parsed.bad,
        });
    }
    Ok(parsed)
}

/// The file name a lease is credited to ("dnsmasq.leases").
fn source_name(path: &Path) -> Arc<str> {
    let name = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy());
    Arc::from(name.as_ref())
}

/// File bytes as text: a UTF-8 byte order mark is dropped, UTF-16 (PowerShell's
/// `-Encoding Unicode`, with its BOM) is decoded, and invalid UTF-8 is replaced rather than
/// refused so one odd host name cannot hide a whole file.
pub fn decode_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let utf16 = |le: bool, body: &[u8]| {
        let units = body.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        std::borrow::Cow::Owned(
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        )
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        _ => String::from_utf8_lossy(bytes),
    }
}

/// A host name as a device gave it, made safe to store and show: trimmed, a trailing dot
/// dropped, control characters replaced, at most [`MAX_HOSTNAME`] bytes. Empty and `*`
/// (dnsmasq's "none") are no name.
pub fn clean_hostname(raw: &str) -> Option<Arc<str>> {
    let s = raw.trim().trim_end_matches('.');
    if s.is_empty() || s == "*" {
        return None;
    }
    let mut out = String::with_capacity(s.len().min(MAX_HOSTNAME));
    for c in s.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_HOSTNAME {
            break;
        }
        out.push(c);
    }
    Some(Arc::from(out))
}

/// A MAC in the forms lease files use: `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` (Windows),
/// or 12 hex digits. Anything else (DUIDs, long client ids, `*`) is None.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let s = s.trim();
    if let Ok(m) = crate::config::parse_mac(s) {
        return Some(m);
    }
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut m = [0u8; 6];
        for (i, b) in m.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(m);
    }
    None
}

/// The merged map of every configured lease file: what a query looks up.
#[derive(Debug, Default)]
pub struct LeaseMap {
    by_ip: HashMap<IpAddr, Arc<Lease>>,
    by_mac: HashMap<[u8; 6], Arc<Lease>>,
}

impl LeaseMap {
    /// Merge per-file maps; for an address in several files the first file configured
    /// wins. The MAC index keeps, per MAC, the lease that ends last.
    pub fn merge<'a>(files: impl IntoIterator<Item = &'a HashMap<IpAddr, Arc<Lease>>>) -> Self {
        let mut m = LeaseMap::default();
        for f in files {
            for (ip, lease) in f {
                m.by_ip.entry(*ip).or_insert_with(|| lease.clone());
                if let Some(mac) = lease.mac {
                    let later = |old: &Arc<Lease>| match (old.expires, lease.expires) {
                        (Some(a), Some(b)) => b > a,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    match m.by_mac.get(&mac) {
                        Some(old) if !later(old) => {}
                        _ => {
                            m.by_mac.insert(mac, lease.clone());
                        }
                    }
                }
            }
        }
        m
    }

    /// A shared empty map, for when no lease files are configured (the query path then
    /// skips loading the live map altogether).
    pub fn empty() -> &'static LeaseMap {
        static EMPTY: std::sync::LazyLock<LeaseMap> = std::sync::LazyLock::new(LeaseMap::default);
        &EMPTY
    }

    /// The live lease of `ip` at `now` (Unix seconds), if any. One hash lookup, no
    /// allocation: safe on the query path.
    pub fn lookup(&self, ip: IpAddr, now: i64) -> Option<&Arc<Lease>> {
        if self.by_ip.is_empty() {
            return None;
        }
        self.by_ip
            .get(&ip.to_canonical())
            .filter(|l| l.live_at(now))
    }

    /// The live lease of a device by its MAC (for queries a trusted relay forwarded with
    /// the device's MAC: the relay's own address says nothing about the device).
    pub fn lookup_mac(&self, mac: [u8; 6], now: i64) -> Option<&Arc<Lease>> {
        if self.by_mac.is_empty() {
            return None;
        }
        self.by_mac.get(&mac).filter(|l| l.live_at(now))
    }

    /// The host name leased to `ip` at `now`, for PTR answers.
    pub fn hostname_for(&self, ip: IpAddr, now: i64) -> Option<&str> {
        self.lookup(ip, now)?.hostname.as_deref()
    }

    /// Addresses in the map (live or not).
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// No addresses.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// `chaperone_leases_*` metric handles.
#[derive(Clone)]
pub struct LeaseMetrics {
    /// chaperone_leases_entries{file}
    pub entries: IntGaugeVec,
    /// chaperone_leases_reload_total{file,result="success|failure|unchanged"}
    pub reloads: IntCounterVec,
    /// chaperone_leases_bad_lines{file}: lines skipped in the last read of the file.
    pub bad_lines: IntGaugeVec,
}

impl LeaseMetrics {
    /// Register on `registry` (once per registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let entries = IntGaugeVec::new(
            Opts::new(
                "chaperone_leases_entries",
                "Addresses read from a DHCP lease file ([[identify.leases]]).",
            ),
            &["file"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "chaperone_leases_reload_total",
                "Reads of a DHCP lease file by result; a failure keeps the addresses last read from it.",
            ),
            &["file", "result"],
        )?;
        let bad_lines = IntGaugeVec::new(
            Opts::new(
                "chaperone_leases_bad_lines",
                "Lines or blocks skipped in the last read of a DHCP lease file.",
            ),
            &["file"],
        )?;
        registry.register(Box::new(entries.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(bad_lines.clone()))?;
        Ok(Self {
            entries,
            reloads,
            bad_lines,
        })
    }
}

/// What was last read from one file.
struct FileState {
    config: LeaseFileConfig,
    /// Size and modification time when last read; an unchanged file is not read again.
    stamp: Option<(u64, SystemTime)>,
    leases: Arc<HashMap<IpAddr, Arc<Lease>>>,
    /// The last read failed with this message (logged once, not at every poll).
    failing: Option<String>,
}

/// The live lease map and the files behind it.
pub struct Leases {
    current: ArcSwap<LeaseMap>,
    files: Mutex<Vec<FileState>>,
    metrics: Option<LeaseMetrics>,
}

impl Default for Leases {
    fn default() -> Self {
        Self::new(None)
    }
}

/// The outcome of reading one file in [`Leases::refresh`].
#[derive(Debug)]
pub enum FileResult {
    /// Read; this many live addresses and bad lines.
    Read {
        /// Addresses.
        entries: usize,
        /// Skipped lines.
        bad: usize,
    },
    /// Size and time unchanged since the last read: not read again.
    Unchanged,
    /// Could not be read: the previous addresses of the file are kept.
    Failed(LeaseError),
}

impl Leases {
    /// An empty map; `metrics` counts reads.
    pub fn new(metrics: Option<LeaseMetrics>) -> Self {
        Self {
            current: ArcSwap::from_pointee(LeaseMap::default()),
            files: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The map in force. Hold the guard for one query only.
    pub fn load(&self) -> arc_swap::Guard<Arc<LeaseMap>> {
        self.current.load()
    }

    /// The map in force, owned.
    pub fn snapshot(&self) -> Arc<LeaseMap> {
        self.current.load_full()
    }

    /// Read the configured files (those changed since their last read, or all with
    /// `force`) and swap in the merged map. Blocking file I/O: run it off the DNS threads.
    /// Files no longer configured are forgotten; a file that fails keeps what was last
    /// read from it, and says why in the result and the log.
    pub fn refresh(&self, configs: &[LeaseFileConfig], force: bool) -> Vec<(PathBuf, FileResult)> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let mut old: Vec<FileState> = std::mem::take(&mut *files);
        let mut results = Vec::with_capacity(configs.len());
        for c in configs {
            let prev = old
                .iter()
                .position(|f| f.config == *c)
                .map(|i| old.swap_remove(i));
            let (state, result) = self.refresh_one(c, prev, force);
            results.push((c.path.clone(), result));
            files.push(state);
        }
        let merged = LeaseMap::merge(files.iter().map(|f| f.leases.as_ref()));
        self.current.store(Arc::new(merged));
        results
    }

    fn refresh_one(
        &self,
        c: &LeaseFileConfig,
        prev: Option<FileState>,
        force: bool,
    ) -> (FileState, FileResult) {
        let label = c.path.to_string_lossy();
        let stamp = std::fs::metadata(&c.path)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        if let Some(p) = &prev
            && !force
            && stamp.is_some()
            && p.stamp == stamp
        {
            self.count(&label, "unchanged");
            return (
                FileState {
                    config: c.clone(),
                    stamp,
                    leases: p.leases.clone(),
                    failing: None,
                },
                FileResult::Unchanged,
            );
        }
        match read_file(&c.path, c.format) {
            Ok(parsed) => {
                let (entries, bad) = (parsed.leases.len(), parsed.bad);
                if bad > 0 {
                    tracing::warn!("lease file {}: {bad} bad lines skipped", c.path.display());
                }
                self.count(&label, "success");
                if let Some(m) = &self.metrics {
                    m.entries.with_label_values(&[&label]).set(entries as i64);
                    m.bad_lines.with_label_values(&[&label]).set(bad as i64);
                }
                let leases = parsed
                    .leases
                    .into_iter()
                    .map(|(ip, l)| (ip, Arc::new(l)))
                    .collect();
                (
                    FileState {
                        config: c.clone(),
                        stamp,
                        leases: Arc::new(leases),
                        failing: None,
                    },
                    FileResult::Read { entries, bad },
                )
            }
            Err(e) => {
                self.count(&label, "failure");
                let kept = prev.as_ref().map_or(0, |p| p.leases.len());
                let message = e.to_string();
                let again = prev
                    .as_ref()
                    .is_some_and(|p| p.failing.as_deref() == Some(message.as_str()));
                if again {
                    tracing::debug!("lease file still not read: {message}");
                } else {
                    tracing::error!(
                        "lease file not read, keeping the {kept} addresses last read from it: {message}"
                    );
                }
                let state = FileState {
                    config: c.clone(),
                    // Read again next time, even if it looks the same.
                    stamp: None,
                    leases: prev.map(|p| p.leases).unwrap_or_default(),
                    failing: Some(message),
                };
                (state, FileResult::Failed(e))
            }
        }
    }

    fn count(&self, file: &str, result: &str) {
        if let Some(m) = &self.metrics {
            m.reloads.with_label_values(&[file, result]).inc();
        }
    }

    /// Create every series for `configs` at zero, so dashboards see them from start-up.
    pub fn init_metrics(&self, configs: &[LeaseFileConfig]) {
        let Some(m) = &self.metrics else { return };
        for c in configs {
            let label = c.path.to_string_lossy();
            m.entries.with_label_values(&[&label]);
            m.bad_lines.with_label_values(&[&label]);
            for r in ["success", "failure", "unchanged"] {
                m.reloads.with_label_values(&[&label, r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(mac: u8, name: &str, expires: Option<i64>) -> Arc<Lease> {
        Arc::new(Lease {
            mac: Some([2, 0, 0, 0, 0, mac]),
            hostname: clean_hostname(name),
            expires,
            source: Arc::from("test"),
        })
    }

    #[test]
    fn hostnames_are_cleaned_and_bounded() {
        assert_eq!(
            clean_hostname("  ks2-laptop-14. ").as_deref(),
            Some("ks2-laptop-14")
        );
        assert_eq!(clean_hostname("*"), None);
        assert_eq!(clean_hostname(""), None);
        assert_eq!(clean_hostname("a\u{1b}[31mb").as_deref(), Some("a?[31mb"));
        let long = "é".repeat(300);
        let cleaned = clean_hostname(&long).unwrap();
        assert!(cleaned.len() <= MAX_HOSTNAME && cleaned.len() >= MAX_HOSTNAME - 1);
    }

    #[test]
    fn macs_in_every_lease_file_form() {
        let m = Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0e]);
        assert_eq!(parse_mac("02:00:5e:10:00:0e"), m);
        assert_eq!(parse_mac("02-00-5E-10-00-0E"), m);
        assert_eq!(parse_mac("02005e10000e"), m);
        assert_eq!(parse_mac("*"), None);
        assert_eq!(parse_mac("00:01:00:01:2a:3b:4c:5d"), None);
    }

    #[test]
    fn byte_order_marks_and_utf16_are_decoded() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFabc"), "abc");
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("a,b".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode_text(&utf16), "a,b");
    }

    #[test]
    fn expired_leases_give_no_name_and_first_file_wins() {
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let a: HashMap<IpAddr, Arc<Lease>> = [(ip, lease(1, "first", Some(100)))].into();
        let b: HashMap<IpAddr, Arc<Lease>> = [(ip, lease(2, "second", None))].into();
        let m = LeaseMap::merge([&a, &b]);
        assert_eq!(m.hostname_for(ip, 50), Some("first"));
        assert_eq!(m.hostname_for(ip, 100), None);
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(m.hostname_for(mapped, 50), Some("first"));
        assert_eq!(
            m.lookup_mac([2, 0, 0, 0, 0, 2], 1000)
                .and_then(|l| l.hostname.as_deref()),
            Some("second")
        );
    }

    #[test]
    fn a_failed_read_keeps_the_previous_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsmasq.leases");
        std::fs::write(&path, "0 02:00:00:00:00:01 10.0.0.5 laptop-1 *\n").unwrap();
        let leases = Leases::default();
        let cfg = [LeaseFileConfig {
            path: path.clone(),
            format: LeaseFormat::Dnsmasq,
        }];
        leases.refresh(&cfg, false);
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(leases.load().hostname_for(ip, 0), Some("laptop-1"));
        std::fs::write(&path, "garbage line\nmore garbage\n").unwrap();
        let r = leases.refresh(&cfg, true);
        assert!(matches!(r[0].1, FileResult::Failed(_)), "{r:?}");
        assert_eq!(leases.load().hostname_for(ip, 0), Some("laptop-1"));
        std::fs::remove_file(&path).unwrap();
        leases.refresh(&cfg, false);
        assert_eq!(leases.load().hostname_for(ip, 0), Some("laptop-1"));
        std::fs::write(&path, "0 02:00:00:00:00:01 10.0.0.5 laptop-2 *\n").unwrap();
        leases.refresh(&cfg, false);
        assert_eq!(leases.load().hostname_for(ip, 0), Some("laptop-2"));
        leases.refresh(&[], false);
        assert_eq!(leases.load().hostname_for(ip, 0), None);
    }
}
