//! Record stage: what happened to each query goes to the query log and the incident
//! channel, without ever making the answer wait.
//!
//! Events are copied into an owned form and offered to bounded channels with `try_send`;
//! when a writer falls behind the event is dropped and counted
//! (`chaperone_querylog_dropped_total`) rather than slowing DNS for the whole school.
//!
//! Refused queries (clients in no school network) are never logged one by one: anyone on
//! the internet can send them, so a flood would fill the disk. They are counted
//! (`chaperone_querylog_refused_total`) and the writer stores one total per minute.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::sync::mpsc;

use crate::lists::key::unreverse_key;
use crate::metrics::Metrics;
use crate::policy::{BYPASS_NAMES, BlockReason, Decision, Outcome, Policy};
use crate::state::Snapshot;
use crate::store::querylog::QueryLog;

/// A query as seen by the pipeline (borrowed; nothing is copied unless someone listens).
pub struct QueryEvent<'a> {
    /// When.
    pub at: jiff::Timestamp,
    /// Who.
    pub client: &'a crate::policy::Client,
    /// The device's DHCP lease, if one names it.
    pub lease: Option<&'a crate::leases::Lease>,
    /// The enrolled device an encrypted listener's ID named.
    pub enrolled: Option<&'a crate::identity::EnrolledDevice>,
    /// The individual, where known.
    pub user: Option<&'a str>,
    /// The snapshot it was decided in.
    pub snapshot: &'a Snapshot,
    /// The decision.
    pub outcome: &'a Outcome,
    /// What in the upstream answer blocked it (response inspection), if that did.
    pub found: Option<&'a crate::policy::Found>,
    /// Reversed query name.
    pub key: &'a [u8],
    /// Query type.
    pub qtype: RecordType,
    /// Response code sent.
    pub rcode: ResponseCode,
}

pub use crate::alerts::AlertEvent;
pub use crate::store::querylog::LogEvent;

/// Sends events to the query log and incident channels.
#[derive(Clone)]
pub struct Recorder {
    log: Option<QueryLog>,
    incidents: Option<mpsc::Sender<AlertEvent>>,
    metrics: std::sync::Arc<Metrics>,
}

impl Recorder {
    /// A recorder feeding the given channels.
    pub fn new(
        log: Option<QueryLog>,
        incidents: Option<mpsc::Sender<AlertEvent>>,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        Self {
            log,
            incidents,
            metrics,
        }
    }

    /// The query log, if one is running.
    pub fn query_log(&self) -> Option<&QueryLog> {
        self.log.as_ref()
    }

    /// Record one query. Cheap when nobody listens.
    pub fn record(&self, e: QueryEvent<'_>) {
        if matches!(e.outcome.decision, Decision::Refuse) {
            self.metrics.querylog_refused.inc();
            if let Some(log) = &self.log {
                log.count_refused();
            }
            return;
        }
        let theme = self.incidents.as_ref().and_then(|_| theme_of(&e));
        if self.log.is_none() && theme.is_none() {
            return;
        }
        let owned = to_log_event(&e);
        if let (Some(t), Some(tx)) = (theme, &self.incidents) {
            let hit = AlertEvent::Hit {
                event: owned.clone(),
                theme: t.name.clone(),
                delivery: t.delivery,
            };
            if tx.try_send(hit).is_err() {
                tracing::error!(
                    "incident channel full: incident dropped (category {})",
                    owned.category.as_deref().unwrap_or("unknown")
                );
            }
        }
        if let Some(log) = &self.log
            && !log.offer(owned)
        {
            self.metrics.querylog_dropped.inc();
        }
    }

    /// Hand a request notification to the alert task (never waits: dropped and logged
    /// when the channel is full).
    pub fn notify(&self, notice: crate::alerts::Notice) {
        if let Some(tx) = &self.incidents
            && tx.try_send(AlertEvent::Notice(notice)).is_err()
        {
            tracing::error!("alert channel full: request notification dropped");
        }
    }
}

/// The alert theme of a blocked query, when its delivery is not off: an incident.
/// Illegal-category hits always have one (the policy marks them).
fn theme_of<'a>(e: &QueryEvent<'a>) -> Option<&'a crate::alerts::themes::ThemeInfo> {
    let Decision::Block {
        reason, incident, ..
    } = e.outcome.decision
    else {
        return None;
    };
    let themes = &e.snapshot.config.themes;
    match reason {
        BlockReason::Category(c) => themes.of(e.snapshot.policy.category_name(c), incident),
        BlockReason::Bypass(_) => themes.of(crate::alerts::themes::BYPASS, incident),
        BlockReason::NotApproved => None,
    }
}

fn to_log_event(e: &QueryEvent<'_>) -> LogEvent {
    let policy = &e.snapshot.policy;
    let (decision, category, mut rule, incident) = describe(policy, e.outcome.decision, e.key);
    if let Some(found) = e.found {
        rule = Some(found.to_string());
    }
    LogEvent {
        ts_us: e.at.as_microsecond(),
        client: e.client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        group: e
            .outcome
            .group
            .and_then(|g| policy.groups().get(g as usize))
            .map_or_else(|| "none".to_owned(), |g| g.name.clone()),
        device: e.outcome.device.map(|d| policy.device_name(d).to_owned()),
        mac: e.client.mac.map(format_mac),
        hostname: match (e.enrolled, e.lease) {
            (Some(d), _) => Some(d.name.to_string()),
            (None, l) => l.and_then(|l| l.hostname.as_deref().map(str::to_owned)),
        },
        user: e.user.map(str::to_owned),
        device_id: e.enrolled.map(|d| d.id.to_string()),
        name: unreverse_key(e.key),
        qtype: e.qtype.to_string(),
        decision: decision.to_owned(),
        category,
        rule,
        rcode: rcode_name(e.rcode),
        incident,
        count: 1,
    }
}

/// (decision, category, rule, incident) for a decision, in words.
pub fn describe(
    policy: &Policy,
    d: Decision,
    key: &[u8],
) -> (&'static str, Option<String>, Option<String>, bool) {
    match d {
        Decision::Refuse => ("refused", None, None, false),
        Decision::Allow(reason) => ("allowed", None, Some(reason.to_string()), false),
        Decision::Rewrite { engine, target } => (
            "rewritten",
            Some(format!("safesearch:{}", engine.name())),
            Some(target.host().trim_end_matches('.').to_owned()),
            false,
        ),
        Decision::Block {
            reason,
            rule_labels,
            incident,
            ..
        } => {
            let (category, rule) = match reason {
                BlockReason::Category(c) => (
                    policy.category_name(c).to_owned(),
                    Policy::rule_name(key, rule_labels),
                ),
                BlockReason::NotApproved => {
                    ("not-approved".to_owned(), "allow-only group".to_owned())
                }
                BlockReason::Bypass(i) => (
                    "bypass".to_owned(),
                    BYPASS_NAMES
                        .get(i as usize)
                        .map_or("bypass", |b| b.0)
                        .to_owned(),
                ),
            };
            ("blocked", Some(category), Some(rule), incident)
        }
    }
}

/// The mnemonic of a response code as DNS tools print it (`NOERROR`, `NXDOMAIN`...), for
/// the query log: log shippers and people grep for these, not for descriptions.
pub fn rcode_name(rcode: ResponseCode) -> String {
    match u16::from(rcode) {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        other => format!("RCODE{other}"),
    }
}

/// "aa:bb:cc:dd:ee:ff"
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
