//! List file formats: plain domain lists, hosts files, Adblock-style rules, RPZ zone files
//! and UT1-style category folders, all read into [`Entry`] values.
//!
//! This module owns the syntax of list files and nothing else: it does not dedupe, merge
//! categories or decide precedence (that is the bundle and `policy`), and it never touches
//! the network (downloads are `lists::fetch`).
//!
//! One file per format (`domains`, `hosts`, `adblock`, `rpz`, `ut1`, and `sniff` for
//! `format = "auto"`); this file holds the types they share, the dispatch by format and
//! the normalisation every format goes through (`Parsed::entry`).
//!
//! Real lists are messy (CRLF, inline comments, IP entries, cosmetic filter rules, hosts
//! headers), so parsing never stops at a bad line: every rejected line is reported as
//! `file:line: reason: text`, well-formed lines with no DNS meaning are counted as
//! `unsupported`, and the rest become entries. What each syntax means (`lists/README.md`
//! says the same for list maintainers):
//!
//! | syntax | format | kind | action |
//! |---|---|---|---|
//! | `example.com` | domains, ut1 | source default (subtree) | block |
//! | `.example.com` | domains | subtree | block |
//! | `*.example.com` | domains | below (subdomains only) | block |
//! | `0.0.0.0 example.com` | hosts | source default | block |
//! | `\|\|example.com^` | adblock | subtree | block |
//! | `@@\|\|example.com^` | adblock | subtree | pass |
//! | `example.com CNAME .` | rpz | exact | block (NXDOMAIN) |
//! | `*.example.com CNAME .` | rpz | below | block |
//! | `example.com CNAME *.` | rpz | exact | NODATA |
//! | `example.com CNAME rpz-passthru.` | rpz | exact | pass |
//! | `example.com CNAME rpz-drop.` | rpz | exact | block |
//! | `203.0.113.66`, `198.51.100.0/24`, `2001:db8::/32` | domains, ut1 | IP (answers' addresses) | block |
//! | `\|\|203.0.113.66^` | adblock | IP | block |
//! | `@@\|\|203.0.113.66^` | adblock | IP | pass |
//! | `32.66.113.0.203.rpz-ip CNAME .` | rpz | IP (`rpz-ip` trigger) | as for names |
//!
//! IP entries ([`IpEntry`]) match the A/AAAA addresses of answers, not query names; a
//! hosts line's address is never one (`0.0.0.0 name` lists the name). Odd addresses
//! (leading zeros, ranges, host bits after the prefix, prefixes broader than /8 or /16)
//! are bad lines: see [`ip::ip_net`].

mod adblock;
mod domains;
mod hosts;
pub mod ip;
mod rpz;
mod sniff;
mod ut1;

pub use sniff::sniff;
pub use ut1::{for_each_ut1_piece, parse_ut1_dir};

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::key::normalize_domain;

/// How an entry matches query names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum MatchKind {
    /// Only the name itself.
    Exact,
    /// The name and every name below it.
    Subtree,
    /// Only names strictly below it (`*.example.com`).
    Below,
}

/// What a listed name asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Action {
    /// Blocked (NXDOMAIN or the group's block answer).
    Block,
    /// NOERROR with no records (RPZ `CNAME *.`).
    NoData,
    /// Explicitly allowed (RPZ `rpz-passthru.`, Adblock `@@||d^`).
    Pass,
}

/// One list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name normalised by [`normalize_domain`].
    pub name: String,
    /// How it matches.
    pub kind: MatchKind,
    /// What it asks for.
    pub action: Action,
}

/// One IP entry: answers with an address in `net` are treated as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpEntry {
    /// The address (a /32 or /128) or network; IPv4-mapped IPv6 is stored as IPv4.
    pub net: ipnet::IpNet,
    /// What it asks for.
    pub action: Action,
}

/// One rejected line, reported as `file:line: reason: text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number (for a multi-line RPZ record, the line it starts on).
    pub line: usize,
    /// The line (trimmed, at most 120 characters).
    pub text: String,
    /// Why it was rejected.
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.reason,
            self.text
        )
    }
}

/// List file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Sniffed per file from its first lines.
    Auto,
    /// One name per line.
    Domains,
    /// `IP name...` lines.
    Hosts,
    /// Adblock-style `||name^` rules.
    Adblock,
    /// RPZ zone file.
    Rpz,
    /// A UT1-style folder of `<category>/domains` files ([`parse_ut1_dir`]); a single file
    /// in this format is read as [`Format::Domains`].
    Ut1,
}

/// The result of parsing one file.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// Entries, in file order (duplicates kept: the bundle builder counts them).
    pub entries: Vec<Entry>,
    /// IP entries, in file order (duplicates kept).
    pub ips: Vec<IpEntry>,
    /// Rejected lines.
    pub errors: Vec<LineError>,
    /// Comment lines, and lines that are boilerplate rather than entries (hosts-file
    /// `localhost`, RPZ SOA/NS/`$TTL`).
    pub comments: usize,
    /// Well-formed lines with no DNS meaning (cosmetic rules, RPZ local data).
    pub unsupported: usize,
}

/// Where a line came from, for error reports.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    line: usize,
    text: &'a str,
}

impl Parsed {
    /// Normalise `name` and keep it, or report why not.
    fn entry(&mut self, at: At<'_>, name: &str, kind: MatchKind, action: Action) {
        match normalize_domain(name) {
            Ok(name) => self.entries.push(Entry { name, kind, action }),
            Err(e) => self.bad(at, e.to_string()),
        }
    }

    /// An address or CIDR becomes an IP entry (or a bad line if odd); anything else is a
    /// name for [`Parsed::entry`].
    fn entry_or_ip(&mut self, at: At<'_>, text: &str, kind: MatchKind, action: Action) {
        match ip::ip_net(text) {
            Ok(Some(net)) => self.ips.push(IpEntry { net, action }),
            Ok(None) => self.entry(at, text, kind, action),
            Err(reason) => self.bad(at, reason),
        }
    }

    fn bad(&mut self, at: At<'_>, reason: impl Into<String>) {
        self.errors.push(LineError {
            path: at.path.to_owned(),
            line: at.line,
            text: at.text.trim().chars().take(120).collect(),
            reason: reason.into(),
        });
    }
}

/// Parse the text of one list file. `default_kind` applies to plain entries (subtree
/// normally, exact when the source says `match = "exact"`); explicit syntax (`*.d`, `.d`,
/// `||d^`, RPZ owners) overrides it. RPZ ignores it: RPZ defines its own matching.
pub fn parse_text(path: &Path, text: &str, format: Format, default_kind: MatchKind) -> Parsed {
    // A UTF-8 byte-order mark (Windows editors) would otherwise spoil the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => sniff(text),
        other => other,
    };
    let mut out = Parsed::default();
    if format == Format::Rpz {
        rpz::parse(path, text, &mut out);
        return out;
    }
    for (i, raw) in text.lines().enumerate() {
        let at = At {
            path,
            line: i + 1,
            text: raw,
        };
        match format {
            Format::Hosts => hosts::hosts_line(&mut out, at, default_kind),
            Format::Adblock => adblock::adblock_line(&mut out, at),
            _ => domains::domain_line(&mut out, at, default_kind),
        }
    }
    out
}

/// Read and parse one file. A file that is not UTF-8 is an `InvalidData` error naming the
/// file and the line of the first bad byte: guessing an encoding could turn a name into a
/// different, valid one.
pub fn parse_file(path: &Path, format: Format, default_kind: MatchKind) -> std::io::Result<Parsed> {
    parse_bytes(path, std::fs::read(path)?, format, default_kind)
}

/// [`parse_file`] on bytes already read (or unpacked) from `path`.
pub fn parse_bytes(
    path: &Path,
    bytes: Vec<u8>,
    format: Format,
    default_kind: MatchKind,
) -> std::io::Result<Parsed> {
    Ok(parse_text(
        path,
        &to_text(path, bytes)?,
        format,
        default_kind,
    ))
}

/// The bytes of `path` as text; not UTF-8 is an `InvalidData` error naming the file and
/// the line of the first bad byte.
pub fn to_text(path: &Path, bytes: Vec<u8>) -> std::io::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}:{line}: not UTF-8 text", path.display()),
        )
    })
}

/// Lines per piece when a list is parsed piecewise.
const CHUNK_LINES: usize = 65_536;

/// [`parse_text`] in pieces of at most 65,536 lines, each piece's result handed to `each`
/// in file order, so the entries of a list of millions of names never sit in memory all at
/// once (the compiler and the download check consume them as they come). The format is
/// sniffed once on the whole text and line numbers are those of the whole file. RPZ
/// (multi-line records, `$ORIGIN` state) is parsed in one piece.
pub fn parse_text_chunked(
    path: &Path,
    text: &str,
    format: Format,
    default_kind: MatchKind,
    mut each: impl FnMut(Parsed),
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => sniff(text),
        other => other,
    };
    if format == Format::Rpz {
        each(parse_text(path, text, format, default_kind));
        return;
    }
    if text.is_empty() {
        // An empty list still names its category.
        each(Parsed::default());
        return;
    }
    let mut offset = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .match_indices('\n')
            .nth(CHUNK_LINES - 1)
            .map_or(rest.len(), |(i, _)| i + 1);
        let (piece, tail) = rest.split_at(end);
        let mut parsed = parse_text(path, piece, format, default_kind);
        for e in &mut parsed.errors {
            e.line += offset;
        }
        offset += CHUNK_LINES;
        each(parsed);
        rest = tail;
    }
}

/// Strip an inline `#` comment (hosts and domain lists) and surrounding whitespace.
fn strip_comment(line: &str) -> &str {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim()
}

/// The address field of a hosts line; a zone suffix (`fe80::1%lo0`) is allowed.
fn parse_host_address(field: &str) -> Option<IpAddr> {
    field.split('%').next().unwrap_or(field).parse().ok()
}

#[cfg(test)]
mod testing {
    //! Helpers shared by the format modules' tests.
    pub(super) use super::*;

    pub(super) fn p(text: &str, format: Format) -> Parsed {
        parse_text(Path::new("list.txt"), text, format, MatchKind::Subtree)
    }

    pub(super) fn names(parsed: &Parsed) -> Vec<(String, MatchKind, Action)> {
        parsed
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.kind, e.action))
            .collect()
    }

    pub(super) fn ips(parsed: &Parsed) -> Vec<(String, Action)> {
        parsed
            .ips
            .iter()
            .map(|e| (e.net.to_string(), e.action))
            .collect()
    }

    pub(super) fn error_lines(parsed: &Parsed) -> Vec<usize> {
        parsed.errors.iter().map(|e| e.line).collect()
    }

    pub(super) fn block(name: &str, kind: MatchKind) -> (String, MatchKind, Action) {
        (name.to_owned(), kind, Action::Block)
    }

    /// The real-world lists in `../shared/lists-real` (not shipped with the crate, but
    /// always beside it in the workplace and in CI). A missing file fails the test: a test
    /// that passes because its fixture vanished proves nothing.
    pub(super) fn real(rel: &str) -> PathBuf {
        // LISTS_REAL points elsewhere (a worktree that has no shared/ beside it).
        let root = std::env::var_os("LISTS_REAL").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lists-real"),
            PathBuf::from,
        );
        let path = root.join(rel);
        assert!(
            path.exists(),
            "fixture {} is missing: these tests need shared/lists-real beside the repository",
            path.display()
        );
        path
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

    #[test]
    fn chunked_parsing_matches_whole_parsing() {
        let mut text = String::from("\u{feff}# header\r\n");
        for i in 0..150_000 {
            match i % 1000 {
                7 => text.push_str("bad name\r\n"),
                _ => text.push_str(&format!("n{i}.example\r\n")),
            }
        }
        let whole = p(&text, Format::Auto);
        let (mut entries, mut errors, mut comments, mut pieces) = (Vec::new(), Vec::new(), 0, 0);
        parse_text_chunked(
            Path::new("list.txt"),
            &text,
            Format::Auto,
            MatchKind::Subtree,
            |piece| {
                pieces += 1;
                entries.extend(piece.entries);
                errors.extend(piece.errors);
                comments += piece.comments;
            },
        );
        assert_eq!(pieces, 3);
        assert_eq!(entries, whole.entries);
        assert_eq!(errors, whole.errors);
        assert_eq!(comments, whole.comments);
        let mut empty = 0;
        parse_text_chunked(Path::new("e"), "", Format::Auto, MatchKind::Subtree, |_| {
            empty += 1
        });
        assert_eq!(empty, 1, "an empty list still names its category");
    }

    #[test]
    fn error_text_is_trimmed_and_capped() {
        let text = format!("  {}!  \n", "a".repeat(300));
        let parsed = p(&text, Format::Domains);
        assert_eq!(parsed.errors[0].text.len(), 120);
        assert!(parsed.errors[0].text.starts_with("aaa"));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        let parsed = p("\u{feff}first.example\nsecond.example\n", Format::Domains);
        assert_eq!(parsed.entries[0].name, "first.example");
        assert!(parsed.errors.is_empty());
        assert_eq!(
            p("\u{feff}0.0.0.0 a.example\n", Format::Auto).entries.len(),
            1
        );
    }

    #[test]
    fn files_that_are_not_utf8_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.txt");
        std::fs::write(&path, b"ok.example\ncaf\xe9.example\n").unwrap();
        let err = parse_file(&path, Format::Domains, Subtree).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            err.to_string().ends_with("latin1.txt:2: not UTF-8 text"),
            "{err}"
        );
        let ok = dir.path().join("ok.txt");
        std::fs::write(&ok, "ok.example\n").unwrap();
        assert_eq!(
            parse_file(&ok, Format::Auto, Subtree)
                .unwrap()
                .entries
                .len(),
            1
        );
        assert!(parse_file(&dir.path().join("absent"), Format::Auto, Subtree).is_err());
    }

    #[test]
    fn the_sample_lists_parse_cleanly() {
        let lists = Path::new(env!("CARGO_MANIFEST_DIR")).join("lists");
        for (file, format, min) in [
            ("adult.txt", Format::Domains, 10),
            ("gambling.hosts", Format::Hosts, 10),
            ("malware.adblock", Format::Adblock, 10),
            ("illegal.rpz", Format::Rpz, 10),
            ("games.txt", Format::Domains, 10),
            ("social.txt", Format::Domains, 10),
            ("ks1-approved.txt", Format::Domains, 10),
            ("doh/domains", Format::Domains, 1000),
        ] {
            let path = lists.join(file);
            let parsed = parse_file(&path, format, Subtree).unwrap();
            assert!(parsed.errors.is_empty(), "{file}: {:?}", parsed.errors);
            assert!(
                parsed.entries.len() >= min,
                "{file}: {}",
                parsed.entries.len()
            );
            // The sniffer agrees with the declared format.
            let sniffed = parse_file(&path, Format::Auto, Subtree).unwrap();
            assert_eq!(sniffed.entries, parsed.entries, "{file}");
        }
        // The syntax the samples demonstrate (lists/README.md) means what it says.
        let has = |file: &str, format, entry: (&str, MatchKind, Action)| {
            let parsed = parse_file(&lists.join(file), format, Subtree).unwrap();
            let want = Entry {
                name: entry.0.to_owned(),
                kind: entry.1,
                action: entry.2,
            };
            assert!(parsed.entries.contains(&want), "{file}: {want:?}");
            parsed
        };
        has(
            "adult.txt",
            Format::Domains,
            ("cams.test", Below, Action::Block),
        );
        has(
            "adult.txt",
            Format::Domains,
            ("strip-club-listings.test", Subtree, Action::Block),
        );
        let hosts = has(
            "gambling.hosts",
            Format::Hosts,
            ("xn--glcksspiel-beb.test", Subtree, Action::Block),
        );
        assert!(hosts.entries.iter().all(|e| e.name != "localhost"));
        let adblock = has(
            "malware.adblock",
            Format::Adblock,
            ("safe.malware.example", Subtree, Action::Pass),
        );
        assert_eq!(adblock.unsupported, 3);
        has(
            "illegal.rpz",
            Format::Rpz,
            ("mirror-07.invalid", Below, Action::Block),
        );
        has(
            "illegal.rpz",
            Format::Rpz,
            ("nodata-09.invalid", Exact, Action::NoData),
        );
        has(
            "games.txt",
            Format::Domains,
            ("games.example", Subtree, Action::Block),
        );
        // The example's IP entries: the documentation address in adult, and the DoH
        // resolvers' addresses.
        let adult = parse_file(&lists.join("adult.txt"), Format::Domains, Subtree).unwrap();
        let doc: ipnet::IpNet = "203.0.113.66/32".parse().unwrap();
        assert_eq!(
            adult.ips,
            [IpEntry {
                net: doc,
                action: Action::Block
            }]
        );
        for format in [Format::Domains, Format::Auto] {
            let doh = parse_file(&lists.join("doh/ips"), format, Subtree).unwrap();
            assert!(doh.errors.is_empty(), "{:?}", doh.errors.first());
            assert!(doh.entries.is_empty());
            assert!(doh.ips.len() > 3000, "{}", doh.ips.len());
            assert!(doh.ips.iter().any(|e| e.net.to_string() == "1.1.1.1/32"));
            assert!(doh.ips.iter().any(|e| e.net.addr().is_ipv6()));
        }
    }
}
