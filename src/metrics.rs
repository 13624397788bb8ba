//! Every Prometheus metric Chaperone exports, in one place.
//!
//! Labels are bounded and carry no personal data: group, category, outcome, result, mode.
//! Never a client address or a query name (cardinality, and pupils' privacy). Counters used
//! per query are resolved to handles once per snapshot ([`GroupCounters`]) so answering a
//! query touches atomics only, never the registry's label map.
//!
//! Every series a dashboard or alert reads exists from start-up (at zero), so a panel shows
//! 0 rather than "no data" and `rate()` / `increase()` see the first event. The one
//! exception is the upstream latency histogram, which appears with the first cache miss of
//! a mode (its error counter is created alongside it when metrics are rendered).

mod school;

use crate::policy::BlockReason;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
pub use school::{SchoolFamilies, SchoolHandles};

/// Outcomes a query can have, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Resolved and answered.
    Allowed = 0,
    /// Blocked by policy.
    Blocked = 1,
    /// SafeSearch CNAME rewrite.
    Rewritten = 2,
    /// Client outside every configured network.
    Refused = 3,
    /// Upstream failure.
    Servfail = 4,
}

impl Outcome {
    /// All outcomes, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::Blocked,
        Outcome::Rewritten,
        Outcome::Refused,
        Outcome::Servfail,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Blocked => "blocked",
            Outcome::Rewritten => "rewritten",
            Outcome::Refused => "refused",
            Outcome::Servfail => "servfail",
        }
    }
}

/// The group label for clients in no network.
pub const NO_GROUP: &str = "none";

/// All metric families.
pub struct Metrics {
    registry: Registry,
    /// chaperone_queries_total{group,outcome}
    pub queries: IntCounterVec,
    /// chaperone_blocks_total{group,category}
    pub blocks: IntCounterVec,
    /// chaperone_incidents_total{category}
    pub incidents: IntCounterVec,
    /// chaperone_service_blocks_total{group,service}: blocks by catalogue service (a
    /// `service:NAME` category), only for the services the config names.
    pub service_blocks: IntCounterVec,
    /// chaperone_cache_lookups_total{result="hit|miss|stale"}
    pub cache: IntCounterVec,
    /// chaperone_cache_entries
    pub cache_entries: IntGauge,
    /// chaperone_upstream_duration_seconds{mode}
    pub upstream_latency: HistogramVec,
    /// chaperone_upstream_errors_total{mode}
    pub upstream_errors: IntCounterVec,
    /// chaperone_answer_duration_seconds
    pub answer_latency: Histogram,
    /// chaperone_list_entries{category}
    pub list_entries: IntGaugeVec,
    /// chaperone_snapshot_generation
    pub generation: IntGauge,
    /// chaperone_reloads_total{result="success|failure"}
    pub reloads: IntCounterVec,
    /// chaperone_last_reload_timestamp_seconds{result}; start-up counts as a success.
    pub last_reload: IntGaugeVec,
    /// chaperone_last_reload_successful: 1 if the latest load or reload succeeded (derived
    /// from `reloads` and `last_reload` when rendered).
    pub last_reload_ok: IntGauge,
    /// `reloads` {success, failure} at the last render.
    reloads_seen: std::sync::Mutex<[u64; 2]>,
    /// chaperone_exceptions_active
    pub exceptions_active: IntGauge,
    /// chaperone_querylog_dropped_total
    pub querylog_dropped: IntCounter,
    /// chaperone_querylog_written_total
    pub querylog_written: IntCounter,
    /// chaperone_malformed_queries_total
    pub formerr: IntCounter,
    /// chaperone_edns_mac_ignored_total: MAC options from addresses not trusted to send them.
    pub edns_mac_ignored: IntCounter,
    /// chaperone_incident_alerts_dropped_total
    pub alerts_dropped: IntCounter,
    /// chaperone_blockpage_illegal_hits_total
    pub blockpage_illegal: IntCounter,
    /// chaperone_http_rejected_total{reason}
    pub http_rejected: IntCounterVec,
    /// chaperone_querylog_refused_total: queries refused (client in no network), counted
    /// and aggregated per minute instead of logged one by one.
    pub querylog_refused: IntCounter,
    /// chaperone_querylog_trimmed_total: query records deleted to keep the log under its
    /// size cap (`querylog.max_rows` / `max_bytes`), not by age.
    pub querylog_trimmed: IntCounter,
    /// chaperone_audit_records: records in the audit log, set on every append. Prometheus
    /// keeps its history outside the database, so a drop shows deleted records.
    pub audit_records: IntGauge,
    /// chaperone_ratelimited_total{limit="query|refused",action="drop|slip"}
    pub ratelimited: IntCounterVec,
    /// chaperone_rebinding_blocked_total: upstream answers for public names whose
    /// internal addresses were dropped (DNS rebinding protection).
    pub rebinding_blocked: IntCounter,
    /// chaperone_answer_blocks_total{via="cname|address"}: allowed names blocked by
    /// response inspection (a chain target or an answer address was blocked).
    pub answer_blocks: IntCounterVec,
    /// chaperone_ech_stripped_total: HTTPS/SVCB answers rewritten for bypass prevention
    /// (ECH removed, or address hints in blocked ranges dropped).
    pub ech_stripped: IntCounter,
    /// chaperone_school_{queries,blocks,incidents}_total: the same counts by school.
    pub schools: SchoolFamilies,
}

/// Label values of `chaperone_http_rejected_total`.
pub const HTTP_REJECT_REASONS: [&str; 5] = [
    "per_client_connections",
    "submission_rate",
    "no_network",
    "cross_origin",
    "csrf",
];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

/// Label values of `chaperone_cache_lookups_total`.
const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "stale"];
/// Label values of `chaperone_reloads_total` and `chaperone_last_reload_timestamp_seconds`.
const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// Label values of `chaperone_ratelimited_total`: (limit, action).
pub const RATELIMIT_SERIES: [[&str; 2]; 3] =
    [["query", "drop"], ["refused", "drop"], ["refused", "slip"]];

/// Category label of blocks by an allow-only group (name not approved).
pub const NOT_APPROVED: &str = "not-approved";
/// Category label of blocks by bypass prevention (public DoH, Private Relay, canary).
pub const BYPASS: &str = "bypass";

/// Latency buckets from 50 µs (cache hit) to 5 s (upstream timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "chaperone_upstream_duration_seconds",
                "Time to resolve a cache miss upstream (forwarder or recursor).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["mode"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(upstream_latency.clone()))
            .expect("metric registered once");
        let answer_latency = Histogram::with_opts(
            HistogramOpts::new(
                "chaperone_answer_duration_seconds",
                "Time from receiving a query to having its answer, all outcomes.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric definition is valid");
        r.register(Box::new(answer_latency.clone()))
            .expect("metric registered once");
        let list_entries = IntGaugeVec::new(
            Opts::new(
                "chaperone_list_entries",
                "Names listed per category in the loaded bundle.",
            ),
            &["category"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(list_entries.clone()))
            .expect("metric registered once");
        let last_reload = IntGaugeVec::new(
            Opts::new(
                "chaperone_last_reload_timestamp_seconds",
                "Unix time of the last load of config and lists with this result (start-up counts as a successful load).",
            ),
            &["result"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(last_reload.clone()))
            .expect("metric registered once");
        let metrics = Self {
            schools: SchoolFamilies::new(&r),
            queries: counter_vec(
                &r,
                "chaperone_queries_total",
                "DNS queries answered, by policy group and outcome.",
                &["group", "outcome"],
            ),
            blocks: counter_vec(
                &r,
                "chaperone_blocks_total",
                "Blocked queries by policy group and category.",
                &["group", "category"],
            ),
            service_blocks: counter_vec(
                &r,
                "chaperone_service_blocks_total",
                "Blocked queries by policy group and catalogue service (service:NAME categories; also counted in chaperone_blocks_total).",
                &["group", "service"],
            ),
            incidents: counter_vec(
                &r,
                "chaperone_incidents_total",
                "Queries for names in illegal categories.",
                &["category"],
            ),
            cache: counter_vec(
                &r,
                "chaperone_cache_lookups_total",
                "Answer cache lookups by result.",
                &["result"],
            ),
            cache_entries: gauge(&r, "chaperone_cache_entries", "Answers held in the cache."),
            upstream_errors: counter_vec(
                &r,
                "chaperone_upstream_errors_total",
                "Upstream resolutions that failed.",
                &["mode"],
            ),
            generation: gauge(
                &r,
                "chaperone_snapshot_generation",
                "Generation of the policy and list snapshot in use; rises on every successful reload.",
            ),
            reloads: counter_vec(
                &r,
                "chaperone_reloads_total",
                "Reload attempts by result.",
                &["result"],
            ),
            exceptions_active: gauge(
                &r,
                "chaperone_exceptions_active",
                "Temporary unblocks currently in force.",
            ),
            querylog_dropped: counter(
                &r,
                "chaperone_querylog_dropped_total",
                "Query log events dropped because the writer fell behind.",
            ),
            querylog_written: counter(
                &r,
                "chaperone_querylog_written_total",
                "Query log events written.",
            ),
            formerr: counter(
                &r,
                "chaperone_malformed_queries_total",
                "Queries answered FORMERR or NOTIMP.",
            ),
            edns_mac_ignored: counter(
                &r,
                "chaperone_edns_mac_ignored_total",
                "EDNS0 MAC options ignored because the sender is not a trusted relay ([identify] edns_mac_from).",
            ),
            last_reload_ok: gauge(
                &r,
                "chaperone_last_reload_successful",
                "1 if the latest load of config and lists (start-up or reload) succeeded, 0 if it failed and an older snapshot is still in use.",
            ),
            alerts_dropped: counter(
                &r,
                "chaperone_incident_alerts_dropped_total",
                "Incidents recorded but not alerted because [alerts] max_in_flight alerts were already being delivered.",
            ),
            blockpage_illegal: counter(
                &r,
                "chaperone_blockpage_illegal_hits_total",
                "Block page views for names in illegal categories.",
            ),
            http_rejected: counter_vec(
                &r,
                "chaperone_http_rejected_total",
                "Block page and admin API connections or submissions refused, by reason.",
                &["reason"],
            ),
            querylog_refused: counter(
                &r,
                "chaperone_querylog_refused_total",
                "Queries refused (client in no network): counted and aggregated per minute, not logged one by one.",
            ),
            querylog_trimmed: counter(
                &r,
                "chaperone_querylog_trimmed_total",
                "Query records deleted to keep the query log under its size cap.",
            ),
            audit_records: gauge(
                &r,
                "chaperone_audit_records",
                "Records in the audit log (set on every append and at start).",
            ),
            reloads_seen: std::sync::Mutex::new([0, 0]),
            ratelimited: counter_vec(
                &r,
                "chaperone_ratelimited_total",
                "Queries over a rate limit: dropped, or answered truncated (slip) so a real client retries over TCP.",
                &["limit", "action"],
            ),
            rebinding_blocked: counter(
                &r,
                "chaperone_rebinding_blocked_total",
                "Upstream answers for public names from which private, loopback or link-local addresses were dropped (DNS rebinding protection).",
            ),
            answer_blocks: counter_vec(
                &r,
                "chaperone_answer_blocks_total",
                "Allowed names blocked because their upstream answer led to something blocked: a CNAME/DNAME target (via=cname) or an address (via=address).",
                &["via"],
            ),
            ech_stripped: counter(
                &r,
                "chaperone_ech_stripped_total",
                "HTTPS/SVCB answers rewritten for groups with bypass prevention: Encrypted Client Hello removed, address hints in blocked ranges dropped.",
            ),
            upstream_latency,
            answer_latency,
            list_entries,
            last_reload,
            registry: r,
        };
        for result in CACHE_RESULTS {
            metrics.cache.with_label_values(&[result]);
        }
        for reason in HTTP_REJECT_REASONS {
            metrics.http_rejected.with_label_values(&[reason]);
        }
        for via in ["cname", "address"] {
            metrics.answer_blocks.with_label_values(&[via]);
        }
        for labels in RATELIMIT_SERIES {
            metrics.ratelimited.with_label_values(&labels);
        }
        for result in RELOAD_RESULTS {
            metrics.reloads.with_label_values(&[result]);
        }
        // The server creates its metrics immediately before loading the config and lists for
        // the first time, and exits if that fails: a scrape only ever sees a process whose
        // start-up load succeeded, so "time since the last successful load" is honest from
        // the first scrape instead of missing until the first reload.
        metrics
            .last_reload
            .with_label_values(&["success"])
            .set(jiff::Timestamp::now().as_second());
        metrics.last_reload_ok.set(1);
        metrics
    }

    /// The registry, for families owned by their own module ([`crate::leases`],
    /// `lists::fetch`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.derive();
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Bring derived series up to date before a scrape: whether the latest reload succeeded,
    /// and an error counter at zero for every upstream mode that has resolved anything (so
    /// `rate()` of errors is 0 rather than absent while all is well).
    ///
    /// Each reload adds one to exactly one of `chaperone_reloads_total{result}`, so when
    /// only one of them moved since the last scrape, that is the latest result; when both
    /// did, the later timestamp decides (seconds: a success wins a tie).
    fn derive(&self) {
        let counts = RELOAD_RESULTS.map(|r| self.reloads.with_label_values(&[r]).get());
        let mut seen = self
            .reloads_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let moved = [counts[0] > seen[0], counts[1] > seen[1]];
        *seen = counts;
        drop(seen);
        let ok = match moved {
            [true, false] => Some(true),
            [false, true] => Some(false),
            [true, true] => {
                let at = |r: &str| self.last_reload.with_label_values(&[r]).get();
                Some(at("success") >= at("failure"))
            }
            [false, false] => None,
        };
        if let Some(ok) = ok {
            self.last_reload_ok.set(i64::from(ok));
        }
        for family in prometheus::core::Collector::collect(&self.upstream_latency) {
            for m in family.get_metric() {
                for label in m.get_label() {
                    if label.name() == "mode" {
                        self.upstream_errors.with_label_values(&[label.value()]);
                    }
                }
            }
        }
    }

    /// Per-group handles for the categories of a bundle; `schools[i]` is the `school`
    /// label of `groups[i]` (missing: "none").
    pub fn group_counters(
        &self,
        groups: &[String],
        schools: &[&str],
        categories: &[String],
    ) -> GroupCounters {
        let per_group = |g: &str, school: &str| GroupHandles {
            school: self.schools.handles(school, categories),
            outcomes: Outcome::ALL.map(|o| self.queries.with_label_values(&[g, o.label()])),
            blocks: categories
                .iter()
                .map(String::as_str)
                .chain([NOT_APPROVED, BYPASS])
                .map(|c| self.blocks.with_label_values(&[g, c]))
                .collect(),
            services: categories
                .iter()
                .map(|c| {
                    c.strip_prefix(crate::services::SERVICE_PREFIX)
                        .map(|s| self.service_blocks.with_label_values(&[g, s]))
                })
                .collect(),
        };
        GroupCounters {
            groups: groups
                .iter()
                .enumerate()
                .map(|(i, g)| per_group(g, schools.get(i).copied().unwrap_or(NO_GROUP)))
                .collect(),
            none: per_group(NO_GROUP, NO_GROUP),
            incidents: categories
                .iter()
                .map(|c| self.incidents.with_label_values(&[c]))
                .collect(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counter handles for one group.
pub struct GroupHandles {
    outcomes: [IntCounter; 5],
    /// One per bundle category, then [`NOT_APPROVED`], then [`BYPASS`].
    blocks: Vec<IntCounter>,
    /// One per bundle category: the service's counter for a `service:NAME` category.
    services: Vec<Option<IntCounter>>,
    /// The same counts for the group's school.
    school: SchoolHandles,
}

/// Counter handles resolved for one snapshot's groups and categories.
pub struct GroupCounters {
    groups: Vec<GroupHandles>,
    none: GroupHandles,
    incidents: Vec<IntCounter>,
}

impl GroupCounters {
    fn group(&self, group: Option<u16>) -> &GroupHandles {
        group
            .and_then(|g| self.groups.get(g as usize))
            .unwrap_or(&self.none)
    }

    /// Count one query outcome.
    pub fn outcome(&self, group: Option<u16>, outcome: Outcome) {
        let g = self.group(group);
        g.outcomes[outcome as usize].inc();
        g.school.outcomes[outcome as usize].inc();
    }

    /// Count one block by category.
    pub fn block(&self, group: Option<u16>, category: u16) {
        let blocks = &self.group(group).blocks;
        // The last two slots are not-approved and bypass, never a bundle category.
        if (category as usize) < blocks.len().saturating_sub(2) {
            blocks[category as usize].inc();
            self.group(group).school.block_slot(category as usize);
        }
        if let Some(Some(c)) = self.group(group).services.get(category as usize) {
            c.inc();
        }
    }

    /// Count one block for whatever reason: a category, an allow-only group's unapproved
    /// name (`category="not-approved"`) or bypass prevention (`category="bypass"`), so
    /// `chaperone_blocks_total` adds up to `chaperone_queries_total{outcome="blocked"}`.
    pub fn block_reason(&self, group: Option<u16>, reason: BlockReason) {
        let blocks = &self.group(group).blocks;
        let slot = match reason {
            BlockReason::Category(c) => return self.block(group, c),
            BlockReason::NotApproved => blocks.len().checked_sub(2),
            BlockReason::Bypass(_) => blocks.len().checked_sub(1),
        };
        if let Some(i) = slot
            && let Some(c) = blocks.get(i)
        {
            c.inc();
            self.group(group).school.block_slot(i);
        }
    }

    /// Count one incident (and for the group's school).
    pub fn incident(&self, group: Option<u16>, category: u16) {
        if let Some(c) = self.incidents.get(category as usize) {
            c.inc();
        }
        if let Some(c) = self.group(group).school.incidents.get(category as usize) {
            c.inc();
        }
    }
}
