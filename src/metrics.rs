//! Every Prometheus metric Chaperone exports, in one place.
//!
//! Labels are bounded and carry no personal data: group, category, outcome, result. Never
//! a client address or a query name (cardinality, and pupils' privacy). Counters used per
//! query are resolved to handles once per snapshot ([`GroupCounters`]) so answering a query
//! touches atomics only, never the registry's label map.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    /// chaperone_last_reload_timestamp_seconds{result}
    pub last_reload: IntGaugeVec,
    /// chaperone_exceptions_active
    pub exceptions_active: IntGauge,
    /// chaperone_querylog_dropped_total
    pub querylog_dropped: IntCounter,
    /// chaperone_querylog_written_total
    pub querylog_written: IntCounter,
    /// chaperone_malformed_queries_total
    pub formerr: IntCounter,
}

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
                "Unix time of the last reload attempt with this result.",
            ),
            &["result"],
        )
        .expect("metric definition is valid");
        r.register(Box::new(last_reload.clone()))
            .expect("metric registered once");
        Self {
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
            upstream_latency,
            answer_latency,
            list_entries,
            last_reload,
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Per-group handles for the categories of a bundle.
    pub fn group_counters(&self, groups: &[String], categories: &[String]) -> GroupCounters {
        let per_group = |g: &str| GroupHandles {
            outcomes: Outcome::ALL.map(|o| self.queries.with_label_values(&[g, o.label()])),
            blocks: categories
                .iter()
                .map(|c| self.blocks.with_label_values(&[g, c]))
                .collect(),
        };
        GroupCounters {
            groups: groups.iter().map(|g| per_group(g)).collect(),
            none: per_group(NO_GROUP),
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
    blocks: Vec<IntCounter>,
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
        self.group(group).outcomes[outcome as usize].inc();
    }

    /// Count one block by category.
    pub fn block(&self, group: Option<u16>, category: u16) {
        if let Some(c) = self.group(group).blocks.get(category as usize) {
            c.inc();
        }
    }

    /// Count one incident.
    pub fn incident(&self, category: u16) {
        if let Some(c) = self.incidents.get(category as usize) {
            c.inc();
        }
    }
}
