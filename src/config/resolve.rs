//! Raw config → checked [`Config`]: parse addresses, times, days and names, resolve paths,
//! check cross-references (network → group), and collect every problem with its key path.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{self, QueryLogFormat, RawConfig, SourceMatch, UpstreamMode};
use super::*;
use crate::lists::key::normalize_domain;
use crate::lists::parse::{Format, MatchKind};

/// Collects problems while resolving so one run reports all of them.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// Keep `Ok` values; record `Err` under `key`.
    fn take<T, E: fmt::Display>(&mut self, key: impl Into<String>, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(key, e.to_string());
                None
            }
        }
    }
}

pub(super) fn resolve(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let server = server(raw.server, &mut p);
    let upstream = upstream(raw.upstream, &mut p);
    let cache = cache(raw.cache, &mut p);
    let lists = lists(raw.lists, path, base, &mut p);
    let categories = raw
        .category
        .into_iter()
        .map(|(name, c)| {
            let cfg = CategoryConfig {
                verdict: c.verdict,
                description: c.description,
            };
            (name, cfg)
        })
        .collect();
    let block_page = raw.block_page.map(|b| BlockPageConfig {
        ipv4: b.ipv4,
        ipv6: b.ipv6,
        ttl: b.ttl,
        listen: b.listen,
        school_name: b.school_name.unwrap_or_default(),
        contact: b.contact.unwrap_or_default(),
        text: b.text.unwrap_or_default(),
    });
    let mut groups: BTreeMap<String, GroupConfig> = raw
        .group
        .into_iter()
        .map(|(name, g)| {
            let resolved = group(&name, g, &mut p);
            (name, resolved)
        })
        .collect();
    let networks = networks(raw.network, &groups, &mut p);
    let devices = devices(raw.device, &groups, &mut p);
    let admin = raw.admin.map(|a| admin(a, &mut p));
    let schools =
        super::school::schools(raw.school, raw.trust, &server.timezone, &groups, &mut p.0);
    super::school::apply_baseline(&schools, &mut groups, &devices, &mut p.0);
    if let Some(a) = &admin {
        super::school::check_token_schools(&schools, &a.tokens, &mut p.0);
    }
    check_block_page(&groups, &block_page, &mut p);
    let postgres = super::storage::postgres(&raw.storage, base, &mut p.0);
    let storage_path = match raw.storage.path {
        Some(s) => base.join(s),
        None => config_path_with_ext(path, "db"),
    };
    let querylog = querylog(raw.querylog, &groups, base, &mut p);
    let identify = identify(raw.identify, base, &mut p);
    check_counts(&groups, &networks, &devices, &mut p);
    let http = http(&raw.http, &mut p);
    let audit = audit(raw.audit, &storage_path, base);
    let mut ratelimit = ratelimit(raw.ratelimit, &mut p);
    // A relay trusted to add MACs forwards a whole network's queries: never limit it as
    // one device.
    ratelimit
        .exempt
        .extend(identify.edns_mac_from.iter().copied());

    let zones = super::zones::zones(raw.zone, &upstream, &mut p.0);
    let local = super::zones::local(raw.local, base, &mut p.0);
    let rebinding = super::zones::rebinding(raw.rebinding, &mut p.0);
    let enrolment = super::enrolment::enrolment(raw.enrolment, &mut p.0);
    let encrypted = super::encrypted::encrypted(raw.tls, raw.dot, raw.doh, base, &mut p.0);
    let enrolled_devices = super::enrolled::enrolled(raw.enrolled_device, &groups, &mut p.0);
    let radius = raw.radius.map(|r| super::radius::radius(r, base, &mut p.0));
    let report_terms = super::report::report(raw.report, &mut p.0);
    let users = super::radius::users(raw.users, &groups, base, &mut p.0);
    let services =
        super::services::services(raw.services, base, &groups, &devices, &lists, &mut p.0);
    let (alerts, themes) =
        super::alerts::alerts(raw.alerts, base, &categories, &services, &mut p.0);
    let selftest = super::selftest::selftest(raw.selftest, &groups, &networks, &mut p.0);

    let console = super::console::console(raw.console, &schools, &mut p.0);
    // One address for the console: alerts link to `[console] url` unless told otherwise.
    let alerts = alerts.map(|mut a| {
        a.console_url = a.console_url.or_else(|| console.url.clone());
        a
    });
    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Config {
        path: path.to_owned(),
        server,
        upstream,
        cache,
        lists,
        categories,
        block_page,
        report_terms,
        networks,
        groups,
        devices,
        admin,
        storage_path,
        postgres,
        querylog,
        alerts,
        identify,
        http,
        audit,
        ratelimit,
        zones,
        local,
        rebinding,
        inspect: raw.inspect,
        enrolment,
        encrypted,
        enrolled_devices,
        radius,
        users,
        services,
        schools,
        themes: std::sync::Arc::new(themes),
        selftest,
        console,
    })
}

fn identify(i: raw::RawIdentify, base: &Path, p: &mut Problems) -> IdentifyConfig {
    let edns_mac_from = i
        .edns_mac_from
        .iter()
        .enumerate()
        .filter_map(|(j, c)| p.take(format!("identify.edns_mac_from[{j}]"), parse_cidr(c)))
        .collect();
    let leases = i
        .leases
        .into_iter()
        .enumerate()
        .filter_map(|(j, l)| lease_file(j, l, base, p))
        .collect();
    let leases_poll = match i.leases_poll_secs {
        Some(0) => {
            p.add("identify.leases_poll_secs", "must be at least 1");
            DEFAULT_LEASES_POLL
        }
        Some(s) => Duration::from_secs(s),
        None => DEFAULT_LEASES_POLL,
    };
    IdentifyConfig {
        edns_mac_from,
        leases,
        leases_poll,
    }
}

/// `identify.leases[j]`: the format must be known and the path a file, not a folder. A
/// file that does not exist yet is fine (a DHCP server not yet started): it is read once
/// it appears.
fn lease_file(
    j: usize,
    l: raw::RawLeaseFile,
    base: &Path,
    p: &mut Problems,
) -> Option<crate::leases::LeaseFileConfig> {
    use crate::leases::LeaseFormat;
    let key = format!("identify.leases[{j}]");
    let Some(format) = LeaseFormat::from_name(&l.format) else {
        p.add(
            format!("{key}.format"),
            format!(
                "{:?} is not a lease format: use {}",
                l.format,
                LeaseFormat::NAMES
            ),
        );
        return None;
    };
    let path = base.join(&l.path);
    if path.is_dir() {
        p.add(
            format!("{key}.path"),
            format!("{} is a folder, not a lease file", path.display()),
        );
        return None;
    }
    Some(crate::leases::LeaseFileConfig { path, format })
}

/// Groups, networks and devices are indexed by fixed-width integers in the policy; more
/// than fit would wrap silently, so say so here, naming the key.
fn check_counts(
    groups: &BTreeMap<String, GroupConfig>,
    networks: &[NetworkConfig],
    devices: &[DeviceConfig],
    p: &mut Problems,
) {
    let limits = [
        ("group", groups.len(), super::MAX_GROUPS),
        ("network", networks.len(), super::MAX_INDEXED),
        ("device", devices.len(), super::MAX_INDEXED),
    ];
    for (key, n, max) in limits {
        if n > max {
            p.add(key, format!("{n} entries, but at most {max} are supported"));
        }
    }
    let device_prefixes: usize = devices.iter().map(|d| d.clients.len()).sum();
    if device_prefixes > super::MAX_INDEXED {
        p.add(
            "device",
            format!(
                "{device_prefixes} client prefixes in all, but at most {} are supported",
                super::MAX_INDEXED
            ),
        );
    }
}

/// `[audit]`: the key and head files default to the database's folder.
fn audit(a: raw::RawAudit, storage_path: &Path, base: &Path) -> AuditConfig {
    let dir = storage_path.parent().unwrap_or(Path::new("."));
    AuditConfig {
        key_file: a
            .key_file
            .map_or_else(|| dir.join("audit.key"), |k| base.join(k)),
        head_file: a
            .head_file
            .map_or_else(|| dir.join("audit.head"), |h| base.join(h)),
    }
}

/// Most a rate or burst may be: bucket arithmetic keeps milli-tokens in 32 bits.
const MAX_RATE: u32 = 1_000_000;

fn ratelimit(r: raw::RawRateLimit, p: &mut Problems) -> RateLimitConfig {
    for (key, v) in [
        ("ratelimit.queries_per_second", r.queries_per_second),
        ("ratelimit.burst", r.burst),
        ("ratelimit.refused_per_second", r.refused_per_second),
        ("ratelimit.refused_burst", r.refused_burst),
    ] {
        if v > MAX_RATE {
            p.add(
                key,
                format!("{v} is more than the most allowed, {MAX_RATE}"),
            );
        }
    }
    if r.queries_per_second > 0 && r.burst == 0 {
        p.add(
            "ratelimit.burst",
            "must be at least 1 when queries_per_second is set",
        );
    }
    if r.refused_per_second > 0 && r.refused_burst == 0 {
        p.add(
            "ratelimit.refused_burst",
            "must be at least 1 when refused_per_second is set",
        );
    }
    if r.ipv4_prefix == 0 || r.ipv4_prefix > 32 {
        p.add("ratelimit.ipv4_prefix", "must be 1 to 32");
    }
    if r.ipv6_prefix == 0 || r.ipv6_prefix > 128 {
        p.add("ratelimit.ipv6_prefix", "must be 1 to 128");
    }
    let exempt = r
        .exempt
        .iter()
        .enumerate()
        .filter_map(|(i, c)| p.take(format!("ratelimit.exempt[{i}]"), parse_cidr(c)))
        .collect();
    RateLimitConfig {
        enabled: r.enabled,
        queries_per_second: r.queries_per_second.min(MAX_RATE),
        burst: r.burst.min(MAX_RATE),
        refused_per_second: r.refused_per_second.min(MAX_RATE),
        refused_burst: r.refused_burst.min(MAX_RATE),
        slip: r.slip,
        ipv4_prefix: r.ipv4_prefix.clamp(1, 32),
        ipv6_prefix: r.ipv6_prefix.clamp(1, 128),
        exempt,
    }
}

fn querylog(
    q: raw::RawQueryLog,
    groups: &BTreeMap<String, GroupConfig>,
    base: &Path,
    p: &mut Problems,
) -> QueryLogConfig {
    for (i, g) in q.pseudonymise.iter().enumerate() {
        if !groups.contains_key(g) {
            p.add(
                format!("querylog.pseudonymise[{i}]"),
                format!("no [group.{g}] is defined"),
            );
        }
    }
    if q.queue == 0 {
        p.add("querylog.queue", "must be at least 1");
    }
    if q.retention_days == 0 {
        p.add(
            "querylog.retention_days",
            "must be at least 1 (turn logging off with enabled = false)",
        );
    }
    if q.max_rows == 0 {
        p.add("querylog.max_rows", "must be at least 1");
    }
    if q.max_files == 0 {
        p.add("querylog.max_files", "must be at least 1");
    }
    if q.max_bytes < 4096 {
        p.add("querylog.max_bytes", "must be at least 4096");
    }
    if q.jsonl_path.is_some() && q.format != QueryLogFormat::Jsonl {
        p.add("querylog.jsonl_path", "only applies to format = \"jsonl\"");
    }
    QueryLogConfig {
        enabled: q.enabled,
        format: q.format,
        jsonl_path: q
            .jsonl_path
            .filter(|j| j.as_os_str() != "-")
            .map(|j| base.join(j)),
        retention_days: q.retention_days.max(1),
        pseudonymise: q.pseudonymise,
        queue: q.queue.max(1),
        max_rows: q.max_rows.max(1),
        max_bytes: q.max_bytes.max(4096),
        max_files: q.max_files.max(1),
    }
}

fn http(h: &raw::RawHttp, p: &mut Problems) -> HttpConfig {
    let ranges: [(&str, u64, u64, u64); 6] = [
        ("http.header_timeout_ms", h.header_timeout_ms, 100, 600_000),
        (
            "http.request_timeout_ms",
            h.request_timeout_ms,
            100,
            3_600_000,
        ),
        (
            "http.max_connections",
            h.max_connections as u64,
            1,
            1_000_000,
        ),
        (
            "http.max_connections_per_client",
            h.max_connections_per_client as u64,
            1,
            1_000_000,
        ),
        (
            "http.max_body_bytes",
            h.max_body_bytes as u64,
            1024,
            1 << 24,
        ),
        (
            "http.submissions_per_hour",
            u64::from(h.submissions_per_hour),
            1,
            1_000_000,
        ),
    ];
    for (key, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            p.add(key, format!("must be from {min} to {max}"));
        }
    }
    HttpConfig {
        header_timeout: Duration::from_millis(h.header_timeout_ms),
        request_timeout: Duration::from_millis(h.request_timeout_ms),
        max_connections: h.max_connections.max(1),
        max_connections_per_client: h.max_connections_per_client.max(1),
        max_body_bytes: h.max_body_bytes,
        submissions_per_hour: h.submissions_per_hour.max(1),
    }
}

fn server(s: raw::RawServer, p: &mut Problems) -> ServerConfig {
    if s.listen.is_empty() {
        p.add("server.listen", "at least one address is required");
    }
    let timezone = p
        .take(
            "server.timezone",
            jiff::tz::TimeZone::get(&s.timezone)
                .map_err(|e| format!("unknown time zone {:?}: {e}", s.timezone)),
        )
        .unwrap_or(jiff::tz::TimeZone::UTC);
    if s.max_inflight == 0 {
        p.add("server.max_inflight", "must be at least 1");
    }
    if s.threads == Some(0) {
        p.add("server.threads", "must be at least 1");
    }
    for (key, v) in [
        ("server.tcp_max_connections", s.tcp_max_connections),
        (
            "server.tcp_max_connections_per_client",
            s.tcp_max_connections_per_client,
        ),
        ("server.max_inflight_per_client", s.max_inflight_per_client),
    ] {
        if v == Some(0) {
            p.add(key, "must be at least 1");
        }
    }
    let threads = s.threads.filter(|&t| t > 0);
    let workers =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let max_inflight = s.max_inflight.max(1);
    let tcp_max = s.tcp_max_connections.unwrap_or(10 * workers).max(1);
    if !(512..=4096).contains(&s.edns_buffer_size) {
        p.add("server.edns_buffer_size", "must be 512 to 4096");
    }
    ServerConfig {
        threads,
        listen: s.listen,
        timezone,
        tcp_idle_timeout: Duration::from_secs(s.tcp_idle_timeout_secs.max(1)),
        max_inflight,
        tcp_max_connections: tcp_max,
        tcp_max_connections_per_client: s
            .tcp_max_connections_per_client
            .unwrap_or((tcp_max / 4).max(2))
            .max(1),
        max_inflight_per_client: s
            .max_inflight_per_client
            .unwrap_or(max_inflight / 16)
            .clamp(1, max_inflight),
        edns_buffer_size: s.edns_buffer_size.clamp(512, 4096),
    }
}

fn upstream(u: raw::RawUpstream, p: &mut Problems) -> UpstreamConfig {
    let servers: Vec<UpstreamServer> = u
        .servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| p.take(format!("upstream.servers[{i}]"), parse_upstream(s)))
        .collect();
    if u.mode == UpstreamMode::Forward && u.servers.is_empty() {
        p.add(
            "upstream.servers",
            "forward mode needs at least one server (or set mode = \"recursive\")",
        );
    }
    if u.attempts == 0 {
        p.add("upstream.attempts", "must be at least 1");
    }
    if u.timeout_ms == 0 {
        p.add("upstream.timeout_ms", "must be at least 1");
    }
    let root_hints = if u.root_hints.is_empty() {
        default_root_hints()
    } else {
        u.root_hints
    };
    UpstreamConfig {
        mode: u.mode,
        servers,
        timeout: Duration::from_millis(u.timeout_ms.max(1)),
        attempts: u.attempts.max(1),
        root_hints,
        dnssec: u.dnssec,
    }
}

/// The IANA root server addresses (IPv4 and IPv6), from hickory's built-in table.
pub fn default_root_hints() -> Vec<IpAddr> {
    hickory_proto::ROOTS.to_vec()
}

/// Parse one `upstream.servers` entry; see [`raw::RawUpstream::servers`] for the forms.
pub fn parse_upstream(s: &str) -> Result<UpstreamServer, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("udp", s),
    };
    let (addr_part, server_name) = match rest.split_once('#') {
        Some((a, n)) => (a, Some(n.to_owned())),
        None => (rest, None),
    };
    let (addr_part, path) = match addr_part.split_once('/') {
        Some((a, path)) => (a, Some(format!("/{path}"))),
        None => (addr_part, None),
    };
    let default_port = match scheme {
        "udp" | "tcp" => 53,
        "tls" => 853,
        "https" => 443,
        other => {
            return Err(format!(
                "unknown scheme {other:?} in {s:?} (use udp, tcp, tls or https)"
            ));
        }
    };
    let addr = parse_addr(addr_part, default_port).ok_or_else(|| {
        format!(
            "{s:?}: expected an IP address with optional port, e.g. 192.0.2.53 or [2001:db8::53]:53"
        )
    })?;
    let need_name = || {
        server_name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{s:?}: {scheme} needs the certificate's name after '#'"))
    };
    let transport = match scheme {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls {
            server_name: need_name()?,
        },
        _ => Transport::Https {
            server_name: need_name()?,
            path: path.unwrap_or_else(|| "/dns-query".to_owned()),
        },
    };
    Ok(UpstreamServer { addr, transport })
}

fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

fn cache(c: raw::RawCache, p: &mut Problems) -> CacheConfig {
    if c.max_entries == 0 {
        p.add("cache.max_entries", "must be at least 1");
    }
    if c.min_ttl > c.max_ttl {
        p.add("cache.min_ttl", "is larger than cache.max_ttl");
    }
    if let Some(mb) = c.max_memory_mb
        && !(1..=1 << 20).contains(&mb)
    {
        p.add("cache.max_memory_mb", "must be between 1 and 1048576 (MiB)");
    }
    CacheConfig {
        max_entries: c.max_entries.max(1),
        min_ttl: c.min_ttl,
        max_ttl: c.max_ttl,
        max_negative_ttl: c.max_negative_ttl,
        serve_stale: c.serve_stale,
        max_stale_secs: c.max_stale_secs,
        max_memory_mb: c.max_memory_mb,
        prefetch: c.prefetch,
        nxdomain_cut: c.nxdomain_cut,
    }
}

fn lists(l: raw::RawLists, config_path: &Path, base: &Path, p: &mut Problems) -> ListsConfig {
    let bundle = match l.bundle {
        Some(b) => base.join(b),
        None => default_bundle_path(config_path),
    };
    let cache_dir = match &l.cache_dir {
        Some(d) => base.join(d),
        None => bundle
            .parent()
            .map_or_else(|| PathBuf::from("lists-cache"), |d| d.join("lists-cache")),
    };
    let sources = l
        .source
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.format != Format::Ut1 && s.category.as_deref().unwrap_or("").is_empty() {
                p.add(
                    format!("lists.source[{i}].category"),
                    "is required (except for format = \"ut1\")",
                );
            }
            if s.format != Format::Ut1 && !s.only.is_empty() {
                p.add(
                    format!("lists.source[{i}].only"),
                    "only applies to format = \"ut1\"",
                );
            }
            let is_dir = s.format == Format::Ut1;
            let (url, path) = match super::urlsource::resolve(i, &s, &cache_dir, is_dir) {
                Ok(Some((url, copy))) => (Some(url), copy),
                Ok(None) => (None, base.join(s.path.clone().unwrap_or_default())),
                Err(problems) => {
                    for (key, msg) in problems {
                        p.add(key, msg);
                    }
                    (None, base.join(s.path.clone().unwrap_or_default()))
                }
            };
            SourceConfig {
                category: s.category,
                path,
                format: s.format,
                default_kind: match s.match_kind {
                    SourceMatch::Subtree => MatchKind::Subtree,
                    SourceMatch::Exact => MatchKind::Exact,
                },
                only: s.only,
                url,
            }
        })
        .collect();
    if !(0.0..=1.0).contains(&l.max_shrink) {
        p.add(
            "lists.max_shrink",
            format!("{} is not a fraction between 0 and 1", l.max_shrink),
        );
    }
    if !(0.0..=1.0).contains(&l.max_bad_fraction) {
        p.add(
            "lists.max_bad_fraction",
            format!("{} is not a fraction between 0 and 1", l.max_bad_fraction),
        );
    }
    ListsConfig {
        bundle,
        sources,
        max_shrink: l.max_shrink.clamp(0.0, 1.0),
        cache_dir,
        max_bad_fraction: l.max_bad_fraction.clamp(0.0, 1.0),
    }
}

/// Where a bundle built from sources goes when `lists.bundle` is not set: beside the
/// config, named after it.
fn default_bundle_path(config_path: &Path) -> PathBuf {
    config_path_with_ext(config_path, "fstb")
}

/// `dir/NAME.toml` → `dir/NAME.EXT`.
fn config_path_with_ext(config_path: &Path, ext: &str) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chaperone".to_owned());
    config_path.with_file_name(format!("{stem}.{ext}"))
}

fn group(name: &str, g: raw::RawGroup, p: &mut Problems) -> GroupConfig {
    let key = format!("group.{name}");
    let allow = normalize_names(&format!("{key}.allow"), &g.allow, p);
    if g.allow_only && allow.is_empty() && g.approved.is_empty() {
        p.add(
            format!("{key}.allow_only"),
            "an allow-only group needs `allow` names or `approved` categories",
        );
    }
    let schedules = g
        .schedule
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| schedule(&format!("{key}.schedule[{i}]"), s, p))
        .collect();
    let ss = g.safe_search;
    GroupConfig {
        block: g.block,
        allow,
        allow_only: g.allow_only,
        approved: g.approved,
        block_answer: g.block_answer,
        safe_search: SafeSearchConfig {
            google: ss.google,
            bing: ss.bing,
            duckduckgo: ss.duckduckgo,
            youtube: ss.youtube,
            pixabay: ss.pixabay,
            brave: ss.brave,
        },
        bypass_prevention: g.bypass_prevention,
        schedules,
    }
}

fn normalize_names(key: &str, names: &[String], p: &mut Problems) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let n = n.strip_prefix("*.").unwrap_or(n);
            p.take(format!("{key}[{i}]"), normalize_domain(n))
        })
        .collect()
}

fn schedule(key: &str, s: raw::RawSchedule, p: &mut Problems) -> Option<ScheduleConfig> {
    let days = p.take(format!("{key}.days"), parse_days(&s.days));
    let from = p.take(format!("{key}.from"), parse_hhmm(&s.from));
    let to = p.take(format!("{key}.to"), parse_hhmm(&s.to));
    if s.allow.is_empty() && s.block.is_empty() {
        p.add(key, "a schedule needs `allow` or `block` categories");
    }
    if from.is_some() && from == to {
        p.add(
            format!("{key}.to"),
            "equals `from`: the window would be empty",
        );
    }
    Some(ScheduleConfig {
        name: s.name,
        days: days?,
        from_min: from?,
        to_min: to?,
        allow: s.allow,
        block: s.block,
    })
}

/// Days as a bitmask, bit 0 = Monday.
pub fn parse_days(days: &[String]) -> Result<u8, String> {
    if days.is_empty() {
        return Err("at least one day is required".to_owned());
    }
    let mut mask = 0u8;
    for d in days {
        mask |= match d.to_ascii_lowercase().as_str() {
            "mon" | "monday" => 1,
            "tue" | "tuesday" => 2,
            "wed" | "wednesday" => 4,
            "thu" | "thursday" => 8,
            "fri" | "friday" => 16,
            "sat" | "saturday" => 32,
            "sun" | "sunday" => 64,
            "weekdays" => 0b001_1111,
            "weekend" => 0b110_0000,
            "all" | "every" | "daily" => 0b111_1111,
            other => {
                return Err(format!(
                    "unknown day {other:?} (use mon..sun, weekdays, weekend or all)"
                ));
            }
        };
    }
    Ok(mask)
}

/// "HH:MM" → minutes after midnight. "24:00" is accepted as the end of the day.
pub fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time of day as HH:MM (00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || s.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn networks(
    nets: Vec<raw::RawNetwork>,
    groups: &BTreeMap<String, GroupConfig>,
    p: &mut Problems,
) -> Vec<NetworkConfig> {
    if nets.is_empty() {
        p.add(
            "network",
            "no [[network]] entries: every client would be refused",
        );
    }
    let mut seen: BTreeMap<IpNet, String> = BTreeMap::new();
    nets.into_iter()
        .enumerate()
        .map(|(i, n)| {
            let key = format!("network[{i}]");
            if !groups.contains_key(&n.group) {
                p.add(
                    format!("{key}.group"),
                    format!("no [group.{}] is defined", n.group),
                );
            }
            if n.cidrs.is_empty() {
                p.add(format!("{key}.cidrs"), "at least one CIDR is required");
            }
            let cidrs: Vec<IpNet> = n
                .cidrs
                .iter()
                .enumerate()
                .filter_map(|(j, c)| p.take(format!("{key}.cidrs[{j}]"), parse_cidr(c)))
                .collect();
            for c in &cidrs {
                if let Some(prev) = seen.insert(*c, key.clone()) {
                    p.add(
                        format!("{key}.cidrs"),
                        format!("{c} is already listed in {prev}"),
                    );
                }
            }
            NetworkConfig {
                name: n
                    .name
                    .unwrap_or_else(|| n.cidrs.first().cloned().unwrap_or_default()),
                cidrs,
                group: n.group,
            }
        })
        .collect()
}

/// A CIDR, or a bare address meaning a single host. Host bits must be zero.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.20.0.0/16 or fd00:20::/48"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn devices(
    devs: Vec<raw::RawDevice>,
    groups: &BTreeMap<String, GroupConfig>,
    p: &mut Problems,
) -> Vec<DeviceConfig> {
    devs.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let key = format!("device[{i}]");
            if d.clients.is_empty() && d.macs.is_empty() {
                p.add(&key, "a device needs `clients` or `macs`");
            }
            if d.allow.is_empty() {
                p.add(
                    format!("{key}.allow"),
                    "a device exception needs categories to allow",
                );
            }
            for (j, g) in d.groups.iter().enumerate() {
                if !groups.contains_key(g) {
                    p.add(
                        format!("{key}.groups[{j}]"),
                        format!("no [group.{g}] is defined"),
                    );
                }
            }
            DeviceConfig {
                clients: d
                    .clients
                    .iter()
                    .enumerate()
                    .filter_map(|(j, c)| p.take(format!("{key}.clients[{j}]"), parse_cidr(c)))
                    .collect(),
                macs: d
                    .macs
                    .iter()
                    .enumerate()
                    .filter_map(|(j, m)| p.take(format!("{key}.macs[{j}]"), parse_mac(m)))
                    .collect(),
                name: d.name,
                allow: d.allow,
                groups: d.groups,
            }
        })
        .collect()
}

/// "aa:bb:cc:dd:ee:ff" (or with '-') → bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address such as 00:11:22:aa:bb:cc");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

fn admin(a: raw::RawAdmin, p: &mut Problems) -> AdminConfig {
    let tokens = a
        .token
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let key = format!("admin.token[{i}]");
            let role = p.take(
                format!("{key}.role"),
                match t.role.as_str() {
                    "viewer" => Ok(Role::Viewer),
                    "technician" => Ok(Role::Technician),
                    "dsl" => Ok(Role::Dsl),
                    other => Err(format!(
                        "unknown role {other:?} (use technician, dsl or viewer)"
                    )),
                },
            );
            let sha256 = p.take(format!("{key}.sha256"), parse_sha256(&t.sha256));
            Some(TokenConfig {
                name: t.name,
                role: role?,
                sha256: sha256?,
                school: t.school,
            })
        })
        .collect();
    if a.max_exception_days == 0 {
        p.add("admin.max_exception_days", "must be at least 1");
    }
    AdminConfig {
        listen: a.listen,
        tokens,
        max_exception: Duration::from_secs(u64::from(a.max_exception_days.max(1)) * 86_400),
    }
}

fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.trim()).map_err(|_| "not a hex SHA-256 digest".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| "a SHA-256 digest is 64 hex digits".to_owned())
}

fn check_block_page(
    groups: &BTreeMap<String, GroupConfig>,
    page: &Option<BlockPageConfig>,
    p: &mut Problems,
) {
    // The words go on every page a pupil sees: bounded, like a school's.
    if let Some(b) = page {
        for (key, text, max) in [
            ("school_name", &b.school_name, 200),
            ("contact", &b.contact, 500),
            ("text", &b.text, 2000),
        ] {
            if text.len() > max {
                p.add(format!("block_page.{key}"), format!("at most {max} bytes"));
            }
        }
    }
    for (name, g) in groups {
        if g.block_answer == BlockAnswerKind::BlockPage
            && page
                .as_ref()
                .is_none_or(|b| b.ipv4.is_none() && b.ipv6.is_none())
        {
            p.add(
                format!("group.{name}.block_answer"),
                "\"block_page\" needs [block_page] with ipv4 and/or ipv6",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("192.0.2.1").unwrap();
        assert_eq!(u.addr, "192.0.2.1:53".parse().unwrap());
        assert_eq!(u.transport, Transport::Udp);
        let u = parse_upstream("tcp://[2001:db8::1]:5353").unwrap();
        assert_eq!(u.addr, "[2001:db8::1]:5353".parse().unwrap());
        assert_eq!(u.transport, Transport::Tcp);
        let u = parse_upstream("tls://192.0.2.1#dns.example").unwrap();
        assert_eq!(u.addr.port(), 853);
        let u = parse_upstream("https://192.0.2.1/q#dns.example").unwrap();
        assert_eq!(
            u.transport,
            Transport::Https {
                server_name: "dns.example".into(),
                path: "/q".into()
            }
        );
        assert!(parse_upstream("tls://192.0.2.1").is_err());
        assert!(parse_upstream("quic://192.0.2.1").is_err());
        assert!(parse_upstream("dns.example").is_err());
    }

    #[test]
    fn times_and_days() {
        assert_eq!(parse_hhmm("12:30"), Ok(750));
        assert_eq!(parse_hhmm("24:00"), Ok(1440));
        assert!(parse_hhmm("24:01").is_err());
        assert!(parse_hhmm("7:00").is_err());
        assert!(parse_hhmm("12:60").is_err());
        assert_eq!(parse_days(&["weekdays".into()]), Ok(0b11111));
        assert_eq!(parse_days(&["sat".into(), "Sunday".into()]), Ok(0b1100000));
        assert!(parse_days(&["funday".into()]).is_err());
    }

    #[test]
    fn relays_trusted_with_macs_are_never_rate_limited_as_one_device() {
        let text = r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["192.0.2.53"]
[[network]]
cidrs = ["10.20.0.0/16"]
group = "pupils"
[group.pupils]
[identify]
edns_mac_from = ["10.20.0.1/32"]
[ratelimit]
exempt = ["10.10.0.0/16"]
"#;
        let c = Config::from_str(Path::new("/tmp/relay.toml"), text).unwrap();
        let exempt: Vec<String> = c.ratelimit.exempt.iter().map(|n| n.to_string()).collect();
        assert_eq!(exempt, ["10.10.0.0/16", "10.20.0.1/32"]);
        assert_eq!(
            c.ratelimit.queries_per_second, 100,
            "one device's default rate"
        );
    }

    #[test]
    fn cidrs_and_macs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().prefix_len(), 8);
        assert_eq!(parse_cidr("10.1.2.3").unwrap().prefix_len(), 32);
        assert!(parse_cidr("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
        assert_eq!(
            parse_mac("aa:BB:cc:00:11:22").unwrap(),
            [0xaa, 0xbb, 0xcc, 0, 0x11, 0x22]
        );
        assert!(parse_mac("aa:bb:cc").is_err());
    }
}
