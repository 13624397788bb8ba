//! The configuration file exactly as written: serde structs, nothing resolved.
//!
//! Every struct denies unknown fields so a misspelt key is an error naming the key rather
//! than a silently ignored setting. Each field documents its default and why it exists.
//! Turning these into the checked [`super::Config`] happens in `super::resolve`; nothing in
//! this file can fail except deserialisation itself.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::lists::parse::Format;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners and server-wide behaviour.
    pub server: RawServer,
    /// Where answers for allowed names come from.
    #[serde(default)]
    pub upstream: RawUpstream,
    /// The answer cache.
    #[serde(default)]
    pub cache: RawCache,
    /// Category lists: the compiled bundle and its sources.
    #[serde(default)]
    pub lists: RawLists,
    /// Per-category settings (verdicts), keyed by category name.
    #[serde(default)]
    pub category: BTreeMap<String, RawCategory>,
    /// The block page the block answer points browsers at.
    #[serde(default)]
    pub block_page: Option<RawBlockPage>,
    /// `chaperone report` settings: named terms.
    #[serde(default)]
    pub report: Option<super::report::RawReport>,
    /// Client networks, each mapped to a policy group. A client in none is refused.
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    /// Policy groups keyed by name.
    #[serde(default)]
    pub group: BTreeMap<String, RawGroup>,
    /// Nominated devices: exceptions for listed client addresses or MAC addresses.
    #[serde(default)]
    pub device: Vec<RawDevice>,
    /// The admin HTTP API (reload, metrics, exceptions).
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// Where Chaperone keeps its own data (query log, exceptions, audit log).
    #[serde(default)]
    pub storage: super::storage::RawStorage,
    /// The query log.
    #[serde(default)]
    pub querylog: RawQueryLog,
    /// Incident alerts to the designated safeguarding lead.
    #[serde(default)]
    pub alerts: Option<RawAlerts>,
    /// How clients are identified beyond their address.
    #[serde(default)]
    pub identify: RawIdentify,
    /// Limits of the HTTP listeners (block page and admin API).
    #[serde(default)]
    pub http: RawHttp,
    /// The audit log's key and published head.
    #[serde(default)]
    pub audit: RawAudit,
    /// Per-client query rate limiting and REFUSED response-rate limiting.
    #[serde(default)]
    pub ratelimit: RawRateLimit,
    /// Conditional forwarding: zones (the AD domain, private reverse zones) answered by
    /// their own servers.
    #[serde(default)]
    pub zone: Vec<super::zones::RawZone>,
    /// Local records and zones, answered from memory.
    #[serde(default)]
    pub local: super::zones::RawLocal,
    /// DNS rebinding protection.
    #[serde(default)]
    pub rebinding: super::zones::RawRebinding,
    /// Response inspection (CNAME targets, answer addresses).
    #[serde(default)]
    pub inspect: super::inspect::InspectConfig,
    /// What enrolment outputs tell devices about the public DoT/DoH service.
    #[serde(default)]
    pub enrolment: super::enrolment::RawEnrolment,
    /// The encrypted listeners' certificate and key.
    #[serde(default)]
    pub tls: Option<super::encrypted::RawTls>,
    /// DNS over TLS (RFC 7858) listener.
    #[serde(default)]
    pub dot: Option<super::encrypted::RawEncryptedListener>,
    /// DNS over HTTPS (RFC 8484) listener.
    #[serde(default)]
    pub doh: Option<super::encrypted::RawEncryptedListener>,
    /// Devices enrolled in the config (IDs sent over DoT/DoH).
    #[serde(default)]
    pub enrolled_device: Vec<super::enrolled::RawEnrolledDevice>,
    /// The RADIUS accounting listener (users signed in by 802.1X).
    #[serde(default)]
    pub radius: Option<super::radius::RawRadius>,
    /// Which policy group a user name is in.
    #[serde(default)]
    pub users: super::radius::RawUsers,
    /// The app/service catalogue (`service:NAME` in category lists).
    #[serde(default)]
    pub services: super::services::RawServices,
    /// Schools of a trust, each owning some groups (`[[school]]`).
    #[serde(default)]
    pub school: Vec<super::school::RawSchool>,
    /// The trust-wide baseline every school's groups block.
    #[serde(default)]
    pub trust: super::school::RawTrust,
    /// `chaperone selftest`: test sources (`[[selftest.source]]`).
    #[serde(default)]
    pub selftest: super::selftest::RawSelftest,
    /// The web console's sessions and accounts.
    #[serde(default)]
    pub console: Option<super::console::RawConsole>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// File holding the key of the audit chain's HMAC (created, mode 0600, if absent).
    /// Keep it away from database copies. Default: `audit.key` beside the database.
    pub key_file: Option<PathBuf>,
    /// File the newest record count and hash are published to after every append, and
    /// `audit verify` compares with. Default: `audit.head` beside the database.
    pub head_file: Option<PathBuf>,
}

/// `[identify]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentify {
    /// Relays (routers, dnsmasq forwarders) trusted to add the EDNS0 MAC option (65001).
    /// The option is ignored, and counted, from every other address: any device can put
    /// any MAC in its own query, so believing it would let a pupil claim a nominated
    /// device's allowances. Default: none, so MACs are never believed.
    #[serde(default)]
    pub edns_mac_from: Vec<String>,
    /// DHCP lease files naming devices (`[[identify.leases]]`).
    #[serde(default)]
    pub leases: Vec<RawLeaseFile>,
    /// Seconds between re-reads of the lease files when no change was noticed (a safety
    /// net under the file watcher). Default 60.
    pub leases_poll_secs: Option<u64>,
}

/// `[[identify.leases]]`: one DHCP server's lease file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLeaseFile {
    /// The lease file (relative to the config file's folder).
    pub path: PathBuf,
    /// "isc", "kea", "dnsmasq" or "windows-csv".
    pub format: String,
}

/// `[http]`: limits of the block page and admin API listeners, each applied per listener.
/// A pupil device can open connections and send forms; none of that may exhaust file
/// descriptors, threads or disk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Close a connection that has not sent a complete request head this long after
    /// connecting or after its previous response (also the keep-alive idle timeout).
    /// Milliseconds; default 10000.
    #[serde(default = "default_http_header_timeout")]
    pub header_timeout_ms: u64,
    /// Longest time to read a request body and answer it, milliseconds; default 30000.
    #[serde(default = "default_http_request_timeout")]
    pub request_timeout_ms: u64,
    /// Open connections per listener; more wait to be accepted. Default 256.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// Open connections per client address per listener; more are closed at once.
    /// Default 8.
    #[serde(default = "default_http_max_per_client")]
    pub max_connections_per_client: usize,
    /// Largest request body, bytes; default 16384.
    #[serde(default = "default_http_max_body")]
    pub max_body_bytes: usize,
    /// Anonymous unblock requests and site reports per client address per hour (block
    /// page and API without a token). Default 10.
    #[serde(default = "default_http_submissions")]
    pub submissions_per_hour: u32,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            header_timeout_ms: default_http_header_timeout(),
            request_timeout_ms: default_http_request_timeout(),
            max_connections: default_http_max_connections(),
            max_connections_per_client: default_http_max_per_client(),
            max_body_bytes: default_http_max_body(),
            submissions_per_hour: default_http_submissions(),
        }
    }
}

fn default_http_header_timeout() -> u64 {
    10_000
}
fn default_http_request_timeout() -> u64 {
    30_000
}
fn default_http_max_connections() -> usize {
    256
}
fn default_http_max_per_client() -> usize {
    8
}
fn default_http_max_body() -> usize {
    16_384
}
fn default_http_submissions() -> u32 {
    10
}

/// `[querylog]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueryLog {
    /// Log every query. Default true: the e-safety coordinator reviews logs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// "sqlite" (default, in the storage database) or "jsonl" (one JSON object per line,
    /// for shipping to Loki, Elasticsearch or Vector).
    #[serde(default)]
    pub format: QueryLogFormat,
    /// For "jsonl": the file to append to, or "-" for standard output. Default "-".
    #[serde(default)]
    pub jsonl_path: Option<PathBuf>,
    /// Days query records are kept before automatic deletion. Default 30. Incidents are
    /// kept separately and are never deleted by this.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Groups whose client addresses are logged as a keyed hash instead (e.g. staff,
    /// guests). Default none.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
    /// Events buffered between answering and writing; beyond it events are dropped and
    /// counted, never making DNS wait. Default 65536.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// SQLite log: most query records kept; beyond it the oldest are deleted (incidents
    /// live in their own table and are kept). Default 10000000.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// JSON lines file: most bytes kept across the file and its rotated copies; the file
    /// is rotated at `max_bytes / max_files` and the oldest copies deleted. Default
    /// 1073741824 (1 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// JSON lines file: most files kept, the current one included. Default 10.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_max_rows() -> u64 {
    10_000_000
}
fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_max_files() -> u32 {
    10
}

impl Default for RawQueryLog {
    fn default() -> Self {
        Self {
            enabled: true,
            format: QueryLogFormat::Sqlite,
            jsonl_path: None,
            retention_days: default_retention(),
            pseudonymise: Vec::new(),
            queue: default_queue(),
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            max_files: default_max_files(),
        }
    }
}

fn default_retention() -> u32 {
    30
}
fn default_queue() -> usize {
    65_536
}

/// Query log destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLogFormat {
    /// The SQLite storage database.
    #[default]
    Sqlite,
    /// JSON lines.
    Jsonl,
}

/// `[alerts]`: see [`super::alerts`].
pub use super::alerts::RawAlerts;

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Addresses to answer DNS on, UDP and TCP each. No default: the technician must say.
    pub listen: Vec<SocketAddr>,
    /// IANA time zone of the school for schedules. Default "Europe/London".
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Seconds an idle TCP connection is kept open. Default 10.
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout_secs: u64,
    /// Most queries resolved upstream at once; more are answered SERVFAIL instead of
    /// queueing without bound. Default 4096.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Worker threads answering queries. Default: one per CPU core.
    pub threads: Option<usize>,
    /// DNS-over-TCP connections open at once, all clients together; when full, the oldest
    /// idle connection is closed for a new one. Default: 10 per worker thread (unbound's
    /// `incoming-num-tcp`).
    pub tcp_max_connections: Option<usize>,
    /// DNS-over-TCP connections open at once from one client address (IPv6: one /64).
    /// Default: a quarter of `tcp_max_connections`, at least 2.
    pub tcp_max_connections_per_client: Option<usize>,
    /// Upstream resolutions in flight at once for one client address (IPv6: one /64), so
    /// one device cannot take the whole `max_inflight`. Default: `max_inflight / 16`, at
    /// least 1. A relay or NAT forwarding many devices counts as one client.
    pub max_inflight_per_client: Option<usize>,
    /// EDNS UDP payload size Chaperone advertises and the most it ever sends over UDP
    /// (lower if the client asks for less; 512 without EDNS). Default 1232, the DNS flag
    /// day 2020 value that avoids IP fragmentation. 512 to 4096.
    #[serde(default = "default_edns_buffer_size")]
    pub edns_buffer_size: u16,
}

fn default_edns_buffer_size() -> u16 {
    1232
}

fn default_timezone() -> String {
    "Europe/London".to_owned()
}
fn default_tcp_idle() -> u64 {
    10
}
fn default_max_inflight() -> usize {
    4096
}

/// `[upstream]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// "forward" (default) sends queries to `servers`; "recursive" resolves from the root.
    #[serde(default)]
    pub mode: UpstreamMode,
    /// Forwarding targets: `IP`, `IP:PORT` (UDP with TCP fallback), `tcp://IP:PORT`,
    /// `tls://IP:PORT#server.name` (DNS over TLS), `https://IP:PORT/dns-query#server.name`
    /// (DNS over HTTPS). Default: none (required in forward mode).
    #[serde(default)]
    pub servers: Vec<String>,
    /// Timeout in milliseconds. Forward mode: per attempt to an upstream. Recursive mode:
    /// per authoritative server asked, capped at 2.5 s. Default 2000 (1000 is a better
    /// choice for recursive mode: the first lookup in a zone with a dead server can wait
    /// for it twice).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per query before SERVFAIL (recursive mode: passes of the recursor).
    /// Default 2.
    #[serde(default = "default_attempts")]
    pub attempts: usize,
    /// Root server addresses for recursive mode. Default: the IANA root servers.
    #[serde(default)]
    pub root_hints: Vec<IpAddr>,
    /// Validate DNSSEC in recursive mode. Default false.
    #[serde(default)]
    pub dnssec: bool,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            mode: UpstreamMode::Forward,
            servers: Vec::new(),
            timeout_ms: default_timeout_ms(),
            attempts: default_attempts(),
            root_hints: Vec::new(),
            dnssec: false,
        }
    }
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_attempts() -> usize {
    2
}

/// How allowed names are resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    /// Send to configured upstream resolvers.
    #[default]
    Forward,
    /// Iterate from the root hints.
    Recursive,
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Most answers kept. Default 100000 (a few tens of MB at most).
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// Floor on cached TTLs, seconds. Default 0 (honour the authority).
    #[serde(default)]
    pub min_ttl: u32,
    /// Ceiling on cached TTLs, seconds. Default 86400.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
    /// Ceiling on negative (NXDOMAIN/NODATA) caching, seconds. Default 3600 (RFC 2308 advice).
    #[serde(default = "default_max_negative_ttl")]
    pub max_negative_ttl: u32,
    /// Serve expired answers when the upstream fails (RFC 8767). Default false.
    #[serde(default)]
    pub serve_stale: bool,
    /// How long past expiry an answer may still be served stale, seconds. Default 86400.
    #[serde(default = "default_max_stale")]
    pub max_stale_secs: u32,
    /// Bound the cache by the memory its answers take, in MiB, instead of by
    /// `max_entries` (which then only sizes the table). Default: unset.
    #[serde(default)]
    pub max_memory_mb: Option<u64>,
    /// Refresh an answer asked for in the last tenth of its TTL in the background, once,
    /// so popular names never expire (unbound's `prefetch`). Default true.
    #[serde(default = "default_true_cache")]
    pub prefetch: bool,
    /// Answer names below a cached NXDOMAIN with NXDOMAIN without asking (RFC 8020).
    /// Default true.
    #[serde(default = "default_true_cache")]
    pub nxdomain_cut: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
            min_ttl: 0,
            max_ttl: default_max_ttl(),
            max_negative_ttl: default_max_negative_ttl(),
            serve_stale: false,
            max_stale_secs: default_max_stale(),
            max_memory_mb: None,
            prefetch: true,
            nxdomain_cut: true,
        }
    }
}

fn default_true_cache() -> bool {
    true
}
fn default_cache_entries() -> usize {
    100_000
}
fn default_max_ttl() -> u32 {
    86_400
}
fn default_max_negative_ttl() -> u32 {
    3_600
}
fn default_max_stale() -> u32 {
    86_400
}

/// `[lists]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLists {
    /// The compiled bundle. With `source` entries it is (re)built from them at start and on
    /// reload; without, it is a bundle made by `chaperone compile` and only mapped.
    pub bundle: Option<PathBuf>,
    /// Source lists compiled into the bundle.
    #[serde(default)]
    pub source: Vec<RawSource>,
    /// A reload is refused when a list file or category lost more than this fraction of
    /// its entries (a truncated download), unless forced. 1.0 turns the check off.
    /// Default 0.5.
    #[serde(default = "default_max_shrink")]
    pub max_shrink: f64,
    /// Where the last good copy of every list downloaded by URL is kept. Default: the
    /// `lists-cache` folder beside the bundle.
    pub cache_dir: Option<PathBuf>,
    /// A download is refused (the last good copy kept) when more than this fraction of its
    /// lines are rejected: an error page or a list in another format. Default 0.2.
    #[serde(default = "default_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn default_max_bad_fraction() -> f64 {
    0.2
}

fn default_max_shrink() -> f64 {
    0.5
}

impl Default for RawLists {
    fn default() -> Self {
        Self {
            bundle: None,
            source: Vec::new(),
            max_shrink: default_max_shrink(),
            cache_dir: None,
            max_bad_fraction: default_max_bad_fraction(),
        }
    }
}

/// `[[lists.source]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Category the entries belong to. Required except for `format = "ut1"`, where the
    /// folder names are the categories.
    pub category: Option<String>,
    /// File (or folder for ut1), relative to the config file. Exactly one of `path` and
    /// `url` is given.
    pub path: Option<PathBuf>,
    /// Download the list from here (`https://`; a ut1 source is a `.tar.gz` archive) and
    /// keep the last good copy in `lists.cache_dir`.
    pub url: Option<String>,
    /// URL sources: how often to download again, e.g. "24h", "6h 30m" (jittered by 10%).
    /// Default "24h".
    pub refresh: Option<String>,
    /// URL sources: accept a plain `http://` URL (no integrity in transit).
    #[serde(default)]
    pub allow_http: bool,
    /// URL sources: the SHA-256 (hex) the downloaded bytes must have.
    pub sha256: Option<String>,
    /// URL sources: the most bytes accepted, downloaded and after decompression.
    /// Default 268435456 (256 MiB).
    pub max_bytes: Option<u64>,
    /// URL sources: connect timeout, e.g. "10s". Default "10s".
    pub connect_timeout: Option<String>,
    /// URL sources: timeout of the whole download, e.g. "5m". Default "5m".
    pub timeout: Option<String>,
    /// URL sources: the `source` label of the refresh metrics. Default: host and path.
    pub name: Option<String>,
    /// List format. Default "auto" (sniffed per file).
    #[serde(default = "default_format")]
    pub format: Format,
    /// "subtree" (default): an entry blocks itself and every name below it; "exact": only
    /// itself (hosts-file semantics).
    #[serde(default, rename = "match")]
    pub match_kind: SourceMatch,
    /// For ut1 folders: only these categories. Default: all.
    #[serde(default)]
    pub only: Vec<String>,
}

fn default_format() -> Format {
    Format::Auto
}

/// How plain entries of a source match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMatch {
    /// The name and all names below it.
    #[default]
    Subtree,
    /// Only the name itself.
    Exact,
}

/// `[category.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCategory {
    /// "illegal", "unacceptable" (default) or "restricted". Illegal categories are blocked
    /// for everyone, can never be allowed by a schedule or exception, and every hit is an
    /// incident.
    #[serde(default)]
    pub verdict: Verdict,
    /// Shown on the block page and in reports.
    #[serde(default)]
    pub description: String,
}

/// The e-safety policy rating of a category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Acceptable at certain times or for nominated users; blocked where a group says so.
    Restricted,
    /// Unacceptable: blocked where a group says so; exceptions may allow it.
    #[default]
    Unacceptable,
    /// Unacceptable and illegal: always blocked, never excepted, always an incident.
    Illegal,
}

/// `[block_page]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlockPage {
    /// IPv4 address blocked A queries are answered with (the block page server).
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// IPv6 address blocked AAAA queries are answered with.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// TTL of block answers, seconds. Default 60, so an unblock takes effect quickly.
    #[serde(default = "default_block_ttl")]
    pub ttl: u32,
    /// Where the block page's web server listens (usually port 80 of `ipv4`). Optional:
    /// without it another web server must serve the page.
    pub listen: Option<SocketAddr>,
    /// The school's name, shown on the page (a `[[school]]`'s `name` wins for its groups).
    pub school_name: Option<String>,
    /// Who a pupil should ask ("Ask Mr Jones in IT, room 12"); a `[[school]]`'s `contact`
    /// wins for its groups.
    pub contact: Option<String>,
    /// The school's own words under the reason; a `[[school]]`'s `block_page_text` wins.
    pub text: Option<String>,
}

fn default_block_ttl() -> u32 {
    60
}

/// `[[network]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// A label for logs and explain output. Default: the first CIDR.
    pub name: Option<String>,
    /// Client networks (IPv4 and IPv6 CIDRs). Longest prefix wins across all networks.
    pub cidrs: Vec<String>,
    /// The `[group.NAME]` these clients get.
    pub group: String,
}

/// `[group.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Categories blocked for this group at all times (schedules may change this).
    #[serde(default)]
    pub block: Vec<String>,
    /// Names (with their subdomains) always allowed for this group, checked before lists.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Allow-only (Key Stage 1): only `allow` names and names in `approved` categories
    /// resolve; everything else gets the block answer. Default false.
    #[serde(default)]
    pub allow_only: bool,
    /// Categories whose names are approved for an allow-only group.
    #[serde(default)]
    pub approved: Vec<String>,
    /// "nxdomain" (default) or "block_page".
    #[serde(default)]
    pub block_answer: BlockAnswerKind,
    /// SafeSearch / restricted-mode rewrites.
    #[serde(default)]
    pub safe_search: RawSafeSearch,
    /// NXDOMAIN for DoH canary and iCloud Private Relay names. Default true.
    #[serde(default = "default_true")]
    pub bypass_prevention: bool,
    /// Time windows that change what is blocked.
    #[serde(default)]
    pub schedule: Vec<RawSchedule>,
}

fn default_true() -> bool {
    true
}

/// What a blocked query gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockAnswerKind {
    /// NXDOMAIN with a synthesised SOA (cacheable negative answer).
    #[default]
    Nxdomain,
    /// A/AAAA point at the block page; other types get NODATA.
    BlockPage,
}

/// `[group.NAME.safe_search]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafeSearch {
    /// Google (every Google search domain) → forcesafesearch.google.com.
    #[serde(default)]
    pub google: bool,
    /// Bing → strict.bing.com.
    #[serde(default)]
    pub bing: bool,
    /// DuckDuckGo → safe.duckduckgo.com.
    #[serde(default)]
    pub duckduckgo: bool,
    /// YouTube restricted mode: "off" (default), "moderate" or "strict".
    #[serde(default)]
    pub youtube: YoutubeMode,
    /// Pixabay → safesearch.pixabay.com.
    #[serde(default)]
    pub pixabay: bool,
    /// Brave Search → forcesafe.search.brave.com.
    #[serde(default)]
    pub brave: bool,
}

/// YouTube restriction level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YoutubeMode {
    /// No rewrite.
    #[default]
    Off,
    /// restrictmoderate.youtube.com
    Moderate,
    /// restrict.youtube.com
    Strict,
}

/// `[[group.NAME.schedule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// A label for explain output and logs.
    pub name: String,
    /// Days the window opens on: "mon".."sun", or "weekdays" / "weekend" / "all".
    pub days: Vec<String>,
    /// Start, "HH:MM" school local time.
    pub from: String,
    /// End, "HH:MM"; earlier than `from` means the window runs past midnight.
    pub to: String,
    /// Categories allowed while the window is open.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Categories blocked while the window is open.
    #[serde(default)]
    pub block: Vec<String>,
}

/// `[[device]]`: a nominated device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    /// Who or what this is, for audit and explain output.
    pub name: String,
    /// Client addresses or CIDRs.
    #[serde(default)]
    pub clients: Vec<String>,
    /// MAC addresses, as sent in the EDNS0 MAC option by dnsmasq `add-mac` and similar.
    #[serde(default)]
    pub macs: Vec<String>,
    /// Categories this device may reach.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Only in these groups. Default: any group.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Admin HTTP listener. Keep it on loopback or the management network.
    pub listen: SocketAddr,
    /// Bearer tokens.
    #[serde(default)]
    pub token: Vec<RawToken>,
    /// Longest a temporary unblock may last, days. Default 30.
    #[serde(default = "default_max_exception_days")]
    pub max_exception_days: u32,
}

fn default_max_exception_days() -> u32 {
    30
}

/// `[[admin.token]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it, for the audit log.
    pub name: String,
    /// "technician", "dsl" or "viewer".
    pub role: String,
    /// SHA-256 of the token, hex. Make one with `chaperone hash-token`.
    pub sha256: String,
    /// Scope the token to one `[[school]]` id: it sees and changes only that school's
    /// data. Default: none (trust-wide).
    pub school: Option<String>,
}

/// `[ratelimit]`: per-client query rate limiting (a token bucket per client prefix) and
/// response-rate limiting of REFUSED answers to clients in no network (RRL with slip).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Limiting on. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Queries per second each client prefix may send (steady rate). Default 100: a
    /// device loading pages asks a few a second on average; the burst covers page loads.
    /// Every answered query of a pupil is a query-log row, so this rate also bounds how
    /// fast one device can grow the log (about 1 MB a minute at 100 q/s).
    #[serde(default = "default_rl_qps")]
    pub queries_per_second: u32,
    /// Queries a client prefix may send at once above the steady rate. Default 2000.
    #[serde(default = "default_rl_burst")]
    pub burst: u32,
    /// REFUSED answers per second to each prefix in no network. Default 10.
    #[serde(default = "default_rl_refused_qps")]
    pub refused_per_second: u32,
    /// REFUSED answers at once above that rate. Default 20.
    #[serde(default = "default_rl_refused_burst")]
    pub refused_burst: u32,
    /// Every Nth REFUSED answer over the limit is sent truncated (TC=1, so a genuine
    /// client retries over TCP) instead of dropped; 0 drops all. Default 2.
    #[serde(default = "default_rl_slip")]
    pub slip: u32,
    /// IPv4 clients are counted per prefix of this length. Default 32: one device, as
    /// unbound's `ip-ratelimit`; a whole classroom behind one /24 sharing a bucket would
    /// be cut off at the start of a lesson.
    #[serde(default = "default_rl_v4")]
    pub ipv4_prefix: u8,
    /// IPv6 clients are counted per prefix of this length. Default 64: one device can
    /// take any address of its /64 (SLAAC privacy addresses), so counting less would
    /// limit nothing.
    #[serde(default = "default_rl_v6")]
    pub ipv6_prefix: u8,
    /// Networks never limited (CIDRs), e.g. the staff server VLAN. The relays in
    /// `[identify] edns_mac_from` are always exempt too: they forward for many devices.
    /// Default none.
    #[serde(default)]
    pub exempt: Vec<String>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            queries_per_second: default_rl_qps(),
            burst: default_rl_burst(),
            refused_per_second: default_rl_refused_qps(),
            refused_burst: default_rl_refused_burst(),
            slip: default_rl_slip(),
            ipv4_prefix: default_rl_v4(),
            ipv6_prefix: default_rl_v6(),
            exempt: Vec::new(),
        }
    }
}

fn default_rl_qps() -> u32 {
    100
}
fn default_rl_burst() -> u32 {
    2000
}
fn default_rl_refused_qps() -> u32 {
    10
}
fn default_rl_refused_burst() -> u32 {
    20
}
fn default_rl_slip() -> u32 {
    2
}
fn default_rl_v4() -> u8 {
    32
}
fn default_rl_v6() -> u8 {
    64
}
