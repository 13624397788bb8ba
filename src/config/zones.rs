//! `[[zone]]` (conditional forwarding), `[local]` (local records and zones) and
//! `[rebinding]` (DNS rebinding protection): the raw TOML shapes, their checked forms, and
//! the checks, each problem naming its key (`zone[1].servers[0]`, `local.records[3]`).
//!
//! Record lines are parsed with hickory's zone file parser (`hickory_proto::serialize::txt`),
//! so their syntax is exactly that of a zone file line: `NAME [TTL] TYPE RDATA`. This file
//! only reads and checks; answering from the records is `crate::local`, forwarding is
//! `crate::resolve`.

use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use serde::Deserialize;

use super::raw::UpstreamMode;
use super::{Problem, UpstreamConfig, UpstreamServer, parse_upstream};
use crate::lists::key::normalize_domain;

/// `[[zone]]`: names at or below `name` are forwarded to `servers` (the school's domain
/// controllers), in forward and recursive mode alike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    /// The zone, e.g. "ad.example-school.internal" or "10.in-addr.arpa".
    pub name: String,
    /// Its servers, in the same forms as `upstream.servers`.
    pub servers: Vec<String>,
    /// Per-attempt timeout, milliseconds. Default: `upstream.timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Attempts before SERVFAIL. Default: `upstream.attempts`.
    pub attempts: Option<usize>,
}

/// `[local]`: names answered from memory, authoritatively.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// Records as zone file lines: `NAME [TTL] TYPE RDATA` (A, AAAA, CNAME, PTR, SRV, TXT,
    /// MX). Names are absolute. Default none.
    #[serde(default)]
    pub records: Vec<String>,
    /// Zones Chaperone answers for completely: a name below one with no local record gets
    /// NXDOMAIN (a `[[zone]]` deeper inside still forwards). Without it, names with no
    /// record go on to forwarding as usual. Default none.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Zone files (RFC 1035 master file syntax, with `$ORIGIN`), relative to the config
    /// file. Their records are served like `records`; a file with an SOA is a zone
    /// answered completely, like a `zones` entry. Default none.
    #[serde(default)]
    pub zone_files: Vec<std::path::PathBuf>,
    /// Answer PTR queries for the addresses of local A/AAAA records. Default true.
    #[serde(default = "yes")]
    pub auto_ptr: bool,
    /// Answer NXDOMAIN locally for private reverse zones (RFC 6303), `home.arpa`,
    /// `local`, `invalid`, `onion`, single-label names and `localhost` (loopback), unless
    /// a `[[zone]]` forwards them. Default true.
    #[serde(default = "yes")]
    pub serve_rfc6303: bool,
    /// TTL of records written without one, and of local negative answers. Default 300.
    #[serde(default = "default_local_ttl")]
    pub ttl: u32,
}

impl Default for RawLocal {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            zones: Vec::new(),
            zone_files: Vec::new(),
            auto_ptr: true,
            serve_rfc6303: true,
            ttl: default_local_ttl(),
        }
    }
}

/// `[rebinding]`: DNS rebinding protection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRebinding {
    /// Drop private, loopback, link-local, CGNAT and unspecified addresses from upstream
    /// answers for names not in `allow` or a `[[zone]]`. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Zones whose answers may hold private addresses. `[[zone]]` names are always
    /// allowed. Default none.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Default for RawRebinding {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_local_ttl() -> u32 {
    300
}

/// One `[[zone]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The zone (lower case, fully qualified).
    pub name: Name,
    /// Its forwarder settings (mode forward, the zone's servers and timeouts).
    pub upstream: UpstreamConfig,
}

/// `[local]`, checked.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Records, each with where it came from (`local.records[3]`) for errors and explain.
    pub records: Vec<LocalRecord>,
    /// Zones answered completely (lower case, fully qualified).
    pub zones: Vec<Name>,
    /// PTR records made from A/AAAA records.
    pub auto_ptr: bool,
    /// Private and special-use names answered locally.
    pub serve_rfc6303: bool,
    /// TTL of local negative answers.
    pub ttl: u32,
}

/// One local record and where it was written.
#[derive(Debug, Clone)]
pub struct LocalRecord {
    /// The record (owner lower-cased, fully qualified).
    pub record: Record,
    /// `local.records[3]` or `file:line`.
    pub source: String,
}

/// `[rebinding]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebindingConfig {
    /// Protection on.
    pub enabled: bool,
    /// Zones allowed private addresses (besides `[[zone]]`s).
    pub allow: Vec<Name>,
}

/// Types a local record may have.
pub const LOCAL_TYPES: [RecordType; 7] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::MX,
];

/// Most `[[zone]]` entries and local records: each zone holds a resolver, and every
/// record is held in memory for the life of the snapshot.
pub const MAX_ZONES: usize = 256;
/// See [`MAX_ZONES`].
pub const MAX_LOCAL_RECORDS: usize = 100_000;

/// A zone or record name as a lower-case, fully qualified hickory name.
pub fn zone_name(s: &str) -> Result<Name, String> {
    let n = normalize_domain(s).map_err(|e| format!("{s:?}: {e}"))?;
    let mut name = Name::from_ascii(&n).map_err(|e| format!("{s:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Check the `[[zone]]` entries; their defaults come from `[upstream]`.
pub(super) fn zones(
    raw: Vec<RawZone>,
    upstream: &UpstreamConfig,
    problems: &mut Vec<Problem>,
) -> Vec<ZoneConfig> {
    if raw.len() > MAX_ZONES {
        problems.push(Problem::new(
            "zone",
            format!("{} zones, but at most {MAX_ZONES} are supported", raw.len()),
        ));
    }
    let mut out: Vec<ZoneConfig> = Vec::new();
    for (i, z) in raw.into_iter().enumerate().take(MAX_ZONES) {
        let key = format!("zone[{i}]");
        let name = match zone_name(&z.name) {
            Ok(n) => n,
            Err(e) => {
                problems.push(Problem::new(format!("{key}.name"), e));
                continue;
            }
        };
        if let Some(j) = out.iter().position(|o| o.name == name) {
            problems.push(Problem::new(
                format!("{key}.name"),
                format!("{name} is already forwarded by zone[{j}]"),
            ));
        }
        if z.servers.is_empty() {
            problems.push(Problem::new(
                format!("{key}.servers"),
                "at least one server is required",
            ));
        }
        let servers: Vec<UpstreamServer> = z
            .servers
            .iter()
            .enumerate()
            .filter_map(|(j, s)| match parse_upstream(s) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(Problem::new(format!("{key}.servers[{j}]"), e));
                    None
                }
            })
            .collect();
        if z.timeout_ms == Some(0) {
            problems.push(Problem::new(
                format!("{key}.timeout_ms"),
                "must be at least 1",
            ));
        }
        if z.attempts == Some(0) {
            problems.push(Problem::new(
                format!("{key}.attempts"),
                "must be at least 1",
            ));
        }
        out.push(ZoneConfig {
            name,
            upstream: UpstreamConfig {
                mode: UpstreamMode::Forward,
                servers,
                timeout: z
                    .timeout_ms
                    .map_or(upstream.timeout, |t| Duration::from_millis(t.max(1))),
                attempts: z.attempts.unwrap_or(upstream.attempts).max(1),
                root_hints: Vec::new(),
                dnssec: false,
            },
        });
    }
    out
}

/// Check `[local]`; zone files are read relative to `base`.
pub(super) fn local(raw: RawLocal, base: &Path, problems: &mut Vec<Problem>) -> LocalConfig {
    if raw.records.len() > MAX_LOCAL_RECORDS {
        problems.push(Problem::new(
            "local.records",
            format!(
                "{} records, but at most {MAX_LOCAL_RECORDS} are supported",
                raw.records.len()
            ),
        ));
    }
    let mut records = Vec::new();
    for (i, line) in raw.records.iter().enumerate().take(MAX_LOCAL_RECORDS) {
        let source = format!("local.records[{i}]");
        match parse_record(line, raw.ttl) {
            Ok(record) => records.push(LocalRecord { record, source }),
            Err(e) => problems.push(Problem::new(source, e)),
        }
    }
    let mut zones = Vec::new();
    for (i, z) in raw.zones.iter().enumerate() {
        match zone_name(z) {
            Ok(n) => zones.push(n),
            Err(e) => problems.push(Problem::new(format!("local.zones[{i}]"), e)),
        }
    }
    for (i, rel) in raw.zone_files.iter().enumerate() {
        let path = base.join(rel);
        match zone_file(&path, raw.ttl) {
            Ok(z) => {
                if z.has_soa && !zones.contains(&z.origin) {
                    zones.push(z.origin);
                }
                let source = rel.display().to_string();
                records.extend(z.records.into_iter().map(|record| LocalRecord {
                    record,
                    source: source.clone(),
                }));
            }
            Err(e) => problems.push(Problem::new(format!("local.zone_files[{i}]"), e)),
        }
    }
    if records.len() > MAX_LOCAL_RECORDS {
        problems.push(Problem::new(
            "local",
            format!(
                "{} records in all, but at most {MAX_LOCAL_RECORDS} are supported",
                records.len()
            ),
        ));
    }
    LocalConfig {
        records,
        zones,
        auto_ptr: raw.auto_ptr,
        serve_rfc6303: raw.serve_rfc6303,
        ttl: raw.ttl,
    }
}

/// Check `[rebinding]`.
pub(super) fn rebinding(raw: RawRebinding, problems: &mut Vec<Problem>) -> RebindingConfig {
    let mut allow = Vec::new();
    for (i, z) in raw.allow.iter().enumerate() {
        match zone_name(z) {
            Ok(n) => allow.push(n),
            Err(e) => problems.push(Problem::new(format!("rebinding.allow[{i}]"), e)),
        }
    }
    RebindingConfig {
        enabled: raw.enabled,
        allow,
    }
}

/// Parse one record line (`NAME [TTL] [IN] TYPE RDATA`, names absolute, the zone file
/// syntax) into a record of one of the [`LOCAL_TYPES`].
pub fn parse_record(line: &str, default_ttl: u32) -> Result<Record, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('$') || line.contains(['\n', '\r']) {
        return Err("expected one record: NAME [TTL] TYPE RDATA".to_owned());
    }
    let text = format!("$TTL {default_ttl}\n{line}\n");
    let (_, sets) = hickory_proto::serialize::txt::Parser::new(text, None, Some(Name::root()))
        .parse()
        .map_err(|e| format!("{line:?}: {e}"))?;
    let mut all = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>());
    let (Some(mut record), None) = (all.next(), all.next()) else {
        return Err(format!("{line:?}: expected exactly one record"));
    };
    if !LOCAL_TYPES.contains(&record.record_type()) {
        return Err(format!(
            "{line:?}: type {} is not served locally (use A, AAAA, CNAME, PTR, SRV, TXT or MX)",
            record.record_type()
        ));
    }
    if record.dns_class != DNSClass::IN {
        return Err(format!("{line:?}: only class IN is served"));
    }
    // Owner names are matched in lower case, like query names.
    record.name = zone_name(&record.name.to_ascii())?;
    Ok(record)
}

/// What a zone file holds.
#[derive(Debug)]
struct ZoneFile {
    origin: Name,
    has_soa: bool,
    records: Vec<Record>,
}

/// Most lines of a zone file searched for the line of a parse error.
const MAX_ERROR_SEARCH_LINES: usize = 5_000;

/// Read a zone file. SOA and NS records describe the zone and are not served as data;
/// every other record must be one of the [`LOCAL_TYPES`]. Errors say `file:line` where
/// the line can be found.
fn zone_file(path: &Path, default_ttl: u32) -> Result<ZoneFile, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let parse = |t: &str| {
        let t = format!("$TTL {default_ttl}\n{t}\n");
        hickory_proto::serialize::txt::Parser::new(t, Some(path.to_owned()), None).parse()
    };
    let (origin, sets) = match parse(&text) {
        Ok(r) => r,
        Err(e) => {
            return Err(match error_line(&text, parse) {
                Some(line) => format!("{shown}:{line}: {e}"),
                None => format!("{shown}: {e}"),
            });
        }
    };
    let mut out = ZoneFile {
        origin: zone_name(&origin.to_ascii())?,
        has_soa: false,
        records: Vec::new(),
    };
    for set in sets.into_values() {
        for r in set.records_without_rrsigs() {
            match r.record_type() {
                RecordType::SOA => out.has_soa = true,
                RecordType::NS => {}
                t if LOCAL_TYPES.contains(&t) => {
                    let mut r = r.clone();
                    r.name = zone_name(&r.name.to_ascii())?;
                    out.records.push(r);
                }
                t => {
                    return Err(format!(
                        "{shown}: {} {t}: type {t} is not served locally (use A, AAAA, CNAME, PTR, SRV, TXT or MX)",
                        r.name
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The first line at which the file stops parsing: the shortest prefix, ending outside
/// parentheses, that fails (hickory's parser reports no line numbers).
fn error_line<T, E>(text: &str, parse: impl Fn(&str) -> Result<T, E>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut depth = 0i32;
    for (i, line) in lines.iter().enumerate().take(MAX_ERROR_SEARCH_LINES) {
        let code = line.split(';').next().unwrap_or("");
        depth += code.matches('(').count() as i32 - code.matches(')').count() as i32;
        if depth <= 0 && parse(&lines[..=i].join("\n")).is_err() {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_parse_as_zone_file_lines() {
        let r = parse_record("MIS.Example-School.internal A 10.10.0.20", 300).unwrap();
        assert_eq!(r.name.to_ascii(), "mis.example-school.internal.");
        assert_eq!(r.ttl, 300);
        assert_eq!(r.record_type(), RecordType::A);
        let r = parse_record(
            "_ldap._tcp.example-school.internal 60 SRV 0 100 389 dc1.example-school.internal",
            300,
        )
        .unwrap();
        assert_eq!(r.ttl, 60);
        assert_eq!(r.record_type(), RecordType::SRV);
        let r = parse_record(r#"note.example-school.internal TXT "hello world""#, 300).unwrap();
        assert_eq!(r.record_type(), RecordType::TXT);
        let r = parse_record(
            "example-school.internal MX 10 mail.example-school.internal",
            300,
        )
        .unwrap();
        assert_eq!(r.record_type(), RecordType::MX);
    }

    #[test]
    fn zone_files_are_read_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("school.zone");
        std::fs::write(
            &good,
            "$ORIGIN example-school.internal.\n@ IN SOA ns hostmaster ( 1 3600\n 600 86400 60 )\n@ IN NS ns\nmis IN A 10.10.0.20\nprinter 60 IN A 10.10.0.31\n",
        )
        .unwrap();
        let z = zone_file(&good, 300).unwrap();
        assert!(z.has_soa);
        assert_eq!(z.origin.to_ascii(), "example-school.internal.");
        assert_eq!(z.records.len(), 2);
        let bad = dir.path().join("bad.zone");
        std::fs::write(
            &bad,
            "$ORIGIN example-school.internal.\n; comment\nmis IN A 10.10.0.20\nprinter IN A 10.10.0\nx IN A 10.0.0.1\n",
        )
        .unwrap();
        let e = zone_file(&bad, 300).unwrap_err();
        assert!(e.contains("bad.zone:4:"), "{e}");
        let ns = dir.path().join("ns.zone");
        std::fs::write(&ns, "$ORIGIN x.internal.\nmail IN HINFO a b\n").unwrap();
        assert!(zone_file(&ns, 300).unwrap_err().contains("HINFO"));
    }

    #[test]
    fn bad_record_lines_say_what_is_wrong() {
        assert!(parse_record("mis.example A 10.10.0", 300).is_err());
        assert!(
            parse_record("mis.example NS ns.example", 300)
                .unwrap_err()
                .contains("NS")
        );
        assert!(parse_record("mis.example", 300).is_err());
        assert!(parse_record("", 300).is_err());
        assert!(parse_record("a.example A 10.0.0.1\nb.example A 10.0.0.2", 300).is_err());
    }
}
