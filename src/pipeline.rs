//! The request pipeline: the only place that knows the order of the stages.
//!
//! ```text
//! identify → decide (policy) → answer: block | rewrite | allow → cache → resolve
//!          → inspect (the answer against the same policy) → record
//! ```
//! An allowed name is answered, in this order ([`Pipeline::answer_locally`], then
//! [`Pipeline::resolve`]): local records → (lease PTR, [`Pipeline::lease_ptr`]) → zone
//! forwarding (`[[zone]]`, longest zone wins) → local zones and reserved names
//! (RFC 6303 NXDOMAIN) → the main upstream. Local answers carry AA and never reach the
//! cache; forwarded and upstream answers are cached, after rebinding protection.
//! - Policy runs before the cache, and the cache holds only upstream answers, so an unblock,
//!   a schedule change or a reload applies to the very next query, cached or not.
//! - A blocked name never reaches `resolve`: nothing about it leaves the school.
//! - An allowed name's upstream answer is inspected for this client ([`Pipeline::inspect`]):
//!   a CNAME/DNAME target or an address that is blocked blocks the asked name, cached or
//!   not, since the cache holds answers and the decision is made per query. Groups with
//!   bypass prevention get HTTPS/SVCB records without ECH ([`Pipeline::strip_svcb`]).
//! - `record` (metrics, query log) never blocks the answer.
//! - The admit check (known networks only) is part of `decide`: a client in no network
//!   gets REFUSED and costs one prefix lookup.
//! - Upstream work is shared fairly: identical questions in flight are asked upstream once
//!   (every asker waits for the one answer), and one client (see
//!   [`crate::transport::client_key`]) may hold at most `max_inflight_per_client` of the
//!   `max_inflight` upstream resolutions, so a device flooding names whose servers never
//!   answer cannot leave others without a slot.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use tokio::sync::Semaphore;

use crate::answer::ede::Ede;
use crate::answer::{self, Reply};
use crate::cache::{AnswerCache, CacheKey, Cached};
use crate::config::{RebindingConfig, UpstreamConfig, ZoneConfig};
use crate::identify;
use crate::identity::Credential;
use crate::lists::key::ReversedName;
use crate::metrics::Outcome as MetricOutcome;
use crate::policy::clock::SharedClock;
use crate::policy::{BlockReason, Client, Decision, Outcome, Policy};
use crate::record::{QueryEvent, Recorder};
use crate::resolve::rebinding::Rebinding;
use crate::resolve::zones::Zones;
use crate::resolve::{Answer, Upstream, UpstreamError};
use crate::state::{Snapshot, State};

/// A query the policy has decided, waiting for its answer.
pub struct Decided {
    /// The snapshot it was decided in (used for the whole query).
    pub snap: Arc<Snapshot>,
    /// Who asked.
    pub client: Client,
    /// The device's DHCP lease, if one names it (for the query log and incidents).
    pub lease: Option<Arc<crate::leases::Lease>>,
    /// The enrolled device an encrypted listener's ID named.
    pub enrolled: Option<Arc<crate::identity::EnrolledDevice>>,
    /// The individual, where known (RADIUS user, ChromeOS templated user).
    pub user: Option<Arc<str>>,
    /// The decision (a block found by response inspection replaces an allow).
    pub outcome: Outcome,
    /// What in the upstream answer blocked the query, when response inspection did.
    pub found: Option<crate::policy::Found>,
    /// Policy time.
    pub now: jiff::Timestamp,
    started: Instant,
}

/// One question to answer.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// Client socket address.
    pub src: SocketAddr,
    /// Query name (lower-cased).
    pub name: &'a LowerName,
    /// Query type.
    pub qtype: RecordType,
    /// Query class.
    pub qclass: DNSClass,
    /// The request's EDNS, if any.
    pub edns: Option<&'a Edns>,
    /// What an encrypted listener read that may name the device (DoT SNI, DoH path).
    pub credential: crate::identity::Credential<'a>,
}

struct UpstreamSlot {
    config: UpstreamConfig,
    upstream: Arc<Upstream>,
    /// `[[zone]]` and `[rebinding]` as the slot was built from them.
    zone_configs: (Vec<ZoneConfig>, RebindingConfig),
    zones: Zones,
    rebinding: Rebinding,
}

impl UpstreamSlot {
    fn build(c: &crate::config::Config) -> Result<Self, UpstreamError> {
        Ok(Self {
            config: c.upstream.clone(),
            upstream: Arc::new(Upstream::from_config(&c.upstream)?),
            zone_configs: (c.zones.clone(), c.rebinding.clone()),
            zones: Zones::new(&c.zones)?,
            rebinding: Rebinding::new(&c.rebinding, &c.zones),
        })
    }

    fn same_settings(&self, c: &crate::config::Config) -> bool {
        self.config == c.upstream
            && self.zone_configs.0 == c.zones
            && self.zone_configs.1 == c.rebinding
    }
}

/// The assembled pipeline.
pub struct Pipeline {
    state: Arc<State>,
    cache: AnswerCache,
    upstream: ArcSwap<UpstreamSlot>,
    inflight: Semaphore,
    shares: Shares,
    flights: Mutex<HashMap<CacheKey, Arc<Flight>>>,
    clock: SharedClock,
    recorder: Recorder,
    cache_counters: CacheCounters,
    prefetch: Prefetch,
    limiter: crate::ratelimit::RateLimiter,
}

/// `chaperone_cache_lookups_total` handles, resolved once so a lookup costs one atomic add.
pub struct CacheCounters {
    /// result="hit"
    pub hit: prometheus::IntCounter,
    /// result="miss"
    pub miss: prometheus::IntCounter,
    /// result="stale"
    pub stale: prometheus::IntCounter,
    /// result="cut": answered NXDOMAIN from a cached NXDOMAIN above the name (RFC 8020).
    pub cut: prometheus::IntCounter,
    /// result="prefetch": hits that started a background refresh (also counted as hits).
    pub prefetch: prometheus::IntCounter,
}

/// Prefetch requests for the background worker ([`Pipeline::start_prefetch`]): a bounded
/// queue, so a burst of due entries drops requests rather than piling up.
struct Prefetch {
    tx: tokio::sync::mpsc::Sender<CacheKey>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<CacheKey>>>,
}

/// Prefetch requests waiting at most.
const PREFETCH_QUEUE: usize = 256;
/// Prefetches in flight at most (they also share one client's upstream share).
const PREFETCH_CONCURRENCY: usize = 8;
/// The client prefetches are charged to, for the per-client share of upstream slots.
const PREFETCH_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

impl Pipeline {
    /// Assemble the pipeline on a state.
    pub fn new(
        state: Arc<State>,
        clock: SharedClock,
        recorder: Recorder,
    ) -> Result<Self, UpstreamError> {
        let snap = state.load();
        let slot = UpstreamSlot::build(&snap.config)?;
        Ok(Self {
            cache: AnswerCache::new(&snap.config.cache),
            inflight: Semaphore::new(inflight_budget(snap.config.server.max_inflight)),
            shares: Shares::new(snap.config.server.max_inflight_per_client),
            flights: Mutex::new(HashMap::new()),
            upstream: ArcSwap::from_pointee(slot),
            cache_counters: CacheCounters {
                hit: state.metrics().cache.with_label_values(&["hit"]),
                miss: state.metrics().cache.with_label_values(&["miss"]),
                stale: state.metrics().cache.with_label_values(&["stale"]),
                cut: state.metrics().cache.with_label_values(&["cut"]),
                prefetch: state.metrics().cache.with_label_values(&["prefetch"]),
            },
            prefetch: {
                let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_QUEUE);
                Prefetch {
                    tx,
                    rx: Mutex::new(Some(rx)),
                }
            },
            limiter: crate::ratelimit::RateLimiter::new(state.metrics()),
            state: state.clone(),
            clock,
            recorder,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Reload config and lists; rebuild the upstream (and drop the cache) if the upstream
    /// settings changed.
    pub async fn reload(&self) -> Result<u64, Arc<crate::state::LoadError>> {
        self.reload_with(false).await
    }

    /// [`Pipeline::reload`]; `force` accepts lists that shrank past `lists.max_shrink`.
    pub async fn reload_with(&self, force: bool) -> Result<u64, Arc<crate::state::LoadError>> {
        let generation = self.state.reload_with(force).await?;
        self.cache.set_config(&self.state.load().config.cache);
        let snap = self.state.snapshot();
        if !self.upstream.load().same_settings(&snap.config) {
            match UpstreamSlot::build(&snap.config) {
                Ok(slot) => {
                    self.upstream.store(Arc::new(slot));
                    self.cache.clear();
                    tracing::info!("upstream settings changed: new upstream in use, cache cleared");
                }
                Err(e) => tracing::error!(
                    "upstream settings changed but cannot be used, keeping the old upstream: {e}"
                ),
            }
        }
        Ok(generation)
    }

    /// Decide a query: snapshot, client, policy. Synchronous and allocation-free, so the
    /// UDP fast path can answer blocks and cache hits without leaving the receive loop.
    /// `credential` is what an encrypted listener read (the device ID); plain DNS passes
    /// [`Credential::None`].
    pub fn decide(
        &self,
        src: SocketAddr,
        mac: Option<[u8; 6]>,
        credential: Credential<'_>,
        key: &[u8],
    ) -> Decided {
        let started = Instant::now();
        let snap = self.state.snapshot();
        let now = self.clock.now();
        // Without lease files configured, not even the lease map's load is paid.
        let leases = (!snap.config.identify.leases.is_empty()).then(|| self.state.leases().load());
        let sources = identify::Sources {
            trust: &snap.config.identify,
            leases: leases
                .as_ref()
                .map_or(crate::leases::LeaseMap::empty(), |g| g.as_ref()),
            identities: self.state.identities(),
            policy: &snap.policy,
        };
        let who = identify::client(src, mac, credential, &sources, now);
        drop(leases);
        if who.mac_ignored {
            self.state.metrics().edns_mac_ignored.inc();
        }
        let outcome = snap.policy.decide(&who.client, key, now, None);
        Decided {
            snap,
            client: who.client,
            lease: who.lease,
            enrolled: who.enrolled,
            user: who.user,
            outcome,
            found: None,
            now,
            started,
        }
    }

    /// Count and record a finished query (metrics, query log, incidents).
    pub fn finish(
        &self,
        d: &Decided,
        key: &[u8],
        qtype: RecordType,
        rcode: ResponseCode,
        metric: MetricOutcome,
    ) {
        let counters = &d.snap.counters;
        if let Decision::Block {
            reason, incident, ..
        } = d.outcome.decision
        {
            counters.block_reason(d.outcome.group, reason);
            if let (BlockReason::Category(cat), true) = (reason, incident) {
                counters.incident(d.outcome.group, cat);
            }
        }
        counters.outcome(d.outcome.group, metric);
        self.state
            .metrics()
            .answer_latency
            .observe(d.started.elapsed().as_secs_f64());
        self.recorder.record(QueryEvent {
            at: d.now,
            client: &d.client,
            lease: d.lease.as_deref(),
            enrolled: d.enrolled.as_deref(),
            user: d.user.as_deref(),
            snapshot: &d.snap,
            outcome: &d.outcome,
            found: d.found.as_ref(),
            key,
            qtype,
            rcode,
        });
    }

    /// Answer one question (the general path: TCP, and UDP queries the fast path passes on).
    pub async fn handle(&self, q: &Question<'_>) -> Reply {
        // The root name has no labels and so no reversed key: it matches no list entry and
        // is resolved like any other name.
        let reversed = ReversedName::from_labels(q.name.iter());
        let key: &[u8] = match &reversed {
            Some(k) => k.as_bytes(),
            None if q.name.is_root() => b"",
            None => return Reply::rcode(ResponseCode::FormErr),
        };
        let mut d = self.decide(q.src, identify::mac(q.edns), q.credential, key);
        let (reply, metric) = match d.outcome.decision {
            Decision::Refuse => (
                Reply::rcode(ResponseCode::Refused)
                    .with_ede(Ede::for_decision(&d.snap.policy, &d.outcome.decision)),
                MetricOutcome::Refused,
            ),
            Decision::Block { .. } => (self.blocked(&d, q, key), MetricOutcome::Blocked),
            Decision::Rewrite { target, .. } => match self
                .resolve(
                    &d.snap,
                    q.src.ip(),
                    target.name(),
                    q.qtype,
                    q.qclass,
                    dnssec_ok(q),
                )
                .await
            {
                Ok(a) => (
                    answer::rewritten(q.name, target.name(), a),
                    MetricOutcome::Rewritten,
                ),
                Err(_) => (
                    Reply::rcode(ResponseCode::ServFail),
                    MetricOutcome::Servfail,
                ),
            },
            Decision::Allow(_) => match self.answer_locally(&d.snap, key, q) {
                Some(r) => (r, MetricOutcome::Allowed),
                None => match self
                    .resolve(&d.snap, q.src.ip(), q.name, q.qtype, q.qclass, dnssec_ok(q))
                    .await
                {
                    Ok(a) if self.inspect(&mut d, a.findings.as_deref()) => {
                        (self.blocked(&d, q, key), MetricOutcome::Blocked)
                    }
                    Ok(mut a) => {
                        self.strip_svcb(&d, &mut a);
                        (Reply::from_answer(a), MetricOutcome::Allowed)
                    }
                    Err(_) => (
                        Reply::rcode(ResponseCode::ServFail),
                        MetricOutcome::Servfail,
                    ),
                },
            },
        };
        self.finish(&d, key, q.qtype, reply.rcode, metric);
        reply
    }

    /// The answer to a blocked query, as the decision says (NXDOMAIN, NODATA or the block
    /// page, with the SOA of the listed name and the EDE).
    fn blocked(&self, d: &Decided, q: &Question<'_>, key: &[u8]) -> Reply {
        let Decision::Block {
            answer,
            rule_labels,
            ..
        } = d.outcome.decision
        else {
            return Reply::rcode(ResponseCode::ServFail);
        };
        let zone = zone_of(q.name, key, rule_labels);
        let page = d.snap.config.block_page.as_ref();
        answer::blocked(q.name, q.qtype, answer, &zone, page)
            .with_ede(Ede::for_decision(&d.snap.policy, &d.outcome.decision))
    }

    /// Response inspection: check an allowed query's upstream answer (its `findings`)
    /// against the client's policy. True when it blocks the query; the decision in `d`
    /// then says why, as a block of the asked name would.
    pub fn inspect(&self, d: &mut Decided, findings: Option<&crate::inspect::Findings>) -> bool {
        let Some(f) = findings else {
            return false;
        };
        let Some((decision, found)) = d.snap.policy.decide_answer(&d.outcome, f, d.now, None)
        else {
            return false;
        };
        let via = match found {
            crate::policy::Found::Target(_) => "cname",
            crate::policy::Found::Address(_) => "address",
        };
        self.state
            .metrics()
            .answer_blocks
            .with_label_values(&[via])
            .inc();
        d.outcome.decision = decision;
        d.found = Some(found);
        true
    }

    /// For a group with bypass prevention, HTTPS/SVCB records lose ECH and any address
    /// hint the client may not reach. Returns (changed, hints changed): a rewrite that
    /// dropped hints depends on the client's group and time, and must not be shared.
    pub fn strip_svcb(&self, d: &Decided, a: &mut Answer) -> (bool, bool) {
        if !a.findings.as_ref().is_some_and(|f| f.svcb)
            || !d.snap.policy.prevents_bypass(&d.outcome)
        {
            return (false, false);
        }
        let ech = crate::inspect::svcb::strip(&mut a.answers, |_| false);
        let policy = &d.snap.policy;
        let hints = crate::inspect::svcb::strip(&mut a.answers, |ip| {
            policy.blocks_address(&d.outcome, ip, d.now)
        });
        if ech || hints {
            self.state.metrics().ech_stripped.inc();
        }
        (ech || hints, hints)
    }

    /// The answers Chaperone gives itself for an allowed name, in order: local records,
    /// then a PTR from DHCP leases, then — unless a `[[zone]]` forwards the name — local
    /// zones and reserved names (RFC 6303, `home.arpa`, `local`, single labels...). None:
    /// resolve it (zone forwarder or main upstream). Class IN only.
    pub fn answer_locally(&self, snap: &Snapshot, key: &[u8], q: &Question<'_>) -> Option<Reply> {
        if q.qclass != DNSClass::IN {
            return None;
        }
        let name: &Name = q.name;
        if let Some(r) = snap.local.records(key, name, q.qtype) {
            return Some(r);
        }
        if let Some(r) = self.lease_ptr(snap, name, q.qtype) {
            return Some(r);
        }
        snap.local.after_forwarding(key, name, q.qtype)
    }

    /// PTR answers from DHCP leases (issue 12 §3): between local records and zone
    /// forwarding, so a leased address's name is answered here even when its reverse zone
    /// is forwarded or reserved. Only PTR queries for live leases with a host name.
    fn lease_ptr(&self, snap: &Snapshot, name: &Name, qtype: RecordType) -> Option<Reply> {
        if qtype != RecordType::PTR || snap.config.identify.leases.is_empty() {
            return None;
        }
        let leases = self.state.leases().load();
        crate::local::leases::ptr(&leases, name, self.clock.now().as_second())
    }

    /// Cache lookup counters.
    pub fn cache_counters(&self) -> &CacheCounters {
        &self.cache_counters
    }

    /// Per-client query and REFUSED-answer rate limits (every listener).
    pub fn limiter(&self) -> &crate::ratelimit::RateLimiter {
        &self.limiter
    }

    /// The answer cache (the UDP fast path serves it as bytes).
    pub fn cache(&self) -> &AnswerCache {
        &self.cache
    }

    /// Keep the ECH-less form of an HTTPS/SVCB answer (already as served) for the fast
    /// path, under its own key, as long as the answer it came from.
    pub fn cache_stripped(&self, q: &crate::transport::wire::Query, name: &Name, a: &Answer) {
        let key = crate::cache::KeyRef::of(q, true).to_owned_key();
        let ttl = self.cache.ttl_for(a);
        if ttl > 0 {
            self.cache.store(key, name, a, ttl, Instant::now());
        }
    }

    /// Ask for `key` to be refreshed in the background (a hit near expiry). Dropped when
    /// the queue is full.
    pub fn prefetch(&self, key: CacheKey) {
        if self.prefetch.tx.try_send(key.unstripped()).is_ok() {
            self.cache_counters.prefetch.inc();
        }
    }

    /// Start the prefetch worker: it takes requests from the queue and refreshes at most
    /// [`PREFETCH_CONCURRENCY`] at a time. It ends when the pipeline is dropped. Without it
    /// (tests that build a bare pipeline), requests fill the queue and are dropped.
    pub fn start_prefetch(self: &Arc<Self>) {
        let rx = self
            .prefetch
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut rx) = rx else { return };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            while let Some(key) = rx.recv().await {
                while running.len() >= PREFETCH_CONCURRENCY {
                    running.join_next().await;
                }
                let Some(p) = weak.upgrade() else { return };
                running.spawn(async move { p.refresh(key).await });
            }
        });
    }

    /// Resolve `key` upstream and store the answer, sharing the flight with any client
    /// asking at the same moment.
    async fn refresh(&self, key: CacheKey) {
        let Some(name) = key.name() else { return };
        let snap = self.state.snapshot();
        let flight = self.join_flight(&key);
        let _ = flight
            .get_or_try_init(|| self.fill(&snap, PREFETCH_CLIENT, &name, &key, false))
            .await;
        self.leave_flight(&key, &flight);
    }

    /// Cache, then upstream (coalesced, bounded in flight per client and in total, timed,
    /// counted), then stale. `client` is who asked, for the per-client share.
    pub async fn resolve(
        &self,
        snap: &Snapshot,
        client: IpAddr,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
        dnssec_ok: bool,
    ) -> Result<Answer, UpstreamError> {
        let key = CacheKey::new(name, qtype, qclass, dnssec_ok);
        let stale = match self.cache.get(&key, Instant::now()) {
            Cached::Fresh { answer, refresh } => {
                self.cache_counters.hit.inc();
                if refresh {
                    self.prefetch(key);
                }
                return Ok(answer);
            }
            Cached::Cut(a) => {
                self.cache_counters.cut.inc();
                return Ok(a);
            }
            Cached::Stale(a) => Some(a),
            Cached::Miss => None,
        };
        self.cache_counters.miss.inc();
        if qclass != DNSClass::IN {
            return Err(UpstreamError::Failed(format!(
                "class {qclass} is not resolved"
            )));
        }
        let flight = self.join_flight(&key);
        let shared =
            flight.get_or_try_init(|| self.fill(snap, client, name, &key, stale.is_some()));
        // With a stale answer in hand, do not keep the client waiting for the whole budget
        // (RFC 8767 suggests answering stale after about 1.8 s), even behind another
        // client's flight.
        let shared = match stale {
            Some(_) => tokio::time::timeout(Duration::from_millis(1800), shared)
                .await
                .unwrap_or_else(|_| Err(UpstreamError::Failed("timed out".to_owned()))),
            None => shared.await,
        };
        let result = match shared {
            Ok(Ok(a)) => Ok(a.clone()),
            Ok(Err(m)) => Err(UpstreamError::Failed(m.clone())),
            Err(e) => Err(e),
        };
        self.leave_flight(&key, &flight);
        match result {
            Ok(a) => Ok(a),
            Err(e) => match stale {
                Some(a) => {
                    self.cache_counters.stale.inc();
                    tracing::debug!("serving stale answer: {e}");
                    Ok(a)
                }
                None => Err(e),
            },
        }
    }

    /// A flight's work: ask upstream (within `client`'s share), filter rebinding, read the
    /// findings, cache the answer and return it as the cache serves it. The outer error:
    /// no upstream slot was free; the inner one is the upstream's, shared by every waiter.
    async fn fill(
        &self,
        snap: &Snapshot,
        client: IpAddr,
        name: &Name,
        key: &CacheKey,
        has_stale: bool,
    ) -> Result<Result<Answer, String>, UpstreamError> {
        let (qtype, dnssec_ok) = (key.qtype(), key.dnssec_ok());
        let (r, mode) = self
            .fetch(snap, client, name, qtype, dnssec_ok, has_stale)
            .await?;
        Ok(match r {
            Ok(mut a) => {
                if self.upstream.load().rebinding.filter(name, &mut a) {
                    self.state.metrics().rebinding_blocked.inc();
                    tracing::debug!("rebinding protection: internal addresses dropped for {name}");
                }
                a.findings = crate::inspect::Findings::of_records(&a.answers).into_shared();
                // Everyone in the flight gets the answer as the cache will serve it.
                let served = self.cache.insert(key.clone(), name, &a, Instant::now());
                self.state
                    .metrics()
                    .cache_entries
                    .set(self.cache.len() as i64);
                Ok(served)
            }
            Err(e) => {
                self.state
                    .metrics()
                    .upstream_errors
                    .with_label_values(&[mode])
                    .inc();
                Err(match e {
                    UpstreamError::Failed(m) => m,
                    other => other.to_string(),
                })
            }
        })
    }

    /// The flight for `key`: the one being resolved now, or a new one.
    fn join_flight(&self, key: &CacheKey) -> Arc<Flight> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights.entry(key.clone()).or_default().clone()
    }

    /// Forget the flight for `key` once it has its answer, or once nobody else waits on it
    /// (its asker had no upstream slot), so the table holds only questions in flight.
    fn leave_flight(&self, key: &CacheKey, flight: &Arc<Flight>) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = flights.get(key)
            && Arc::ptr_eq(f, flight)
            && (flight.initialized() || Arc::strong_count(flight) <= 2)
        {
            flights.remove(key);
        }
    }

    /// Ask upstream once, within the client's share and the global bound. The outer error
    /// means no slot was free (nothing was asked, another waiter may try); the inner
    /// result is the upstream's, shared by every waiter of the flight.
    async fn fetch(
        &self,
        snap: &Snapshot,
        client: IpAddr,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        has_stale: bool,
    ) -> Result<(Result<Answer, UpstreamError>, &'static str), UpstreamError> {
        let Some(_share) = self.shares.take(client) else {
            return Err(UpstreamError::Failed(
                "this client has too many queries in flight".to_owned(),
            ));
        };
        let Ok(_permit) = self.inflight.try_acquire() else {
            return Err(UpstreamError::Failed(
                "too many queries in flight".to_owned(),
            ));
        };
        let slot = self.upstream.load_full();
        let started = Instant::now();
        let zone = slot.zones.route(name);
        let deadline = upstream_deadline(zone.map_or(&snap.config.upstream, |z| &z.config));
        let deadline = if has_stale {
            deadline.min(Duration::from_millis(1800))
        } else {
            deadline
        };
        let asked = async {
            match zone {
                Some(z) => z.forwarder.resolve(name, qtype).await,
                None => slot.upstream.resolve(name, qtype, dnssec_ok).await,
            }
        };
        let r = match tokio::time::timeout(deadline, asked).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Failed("timed out".to_owned())),
        };
        let mode = match zone {
            Some(_) => "zone",
            None => slot.upstream.mode_name(),
        };
        self.state
            .metrics()
            .upstream_latency
            .with_label_values(&[mode])
            .observe(started.elapsed().as_secs_f64());
        Ok((r, mode))
    }
}

/// One question being resolved upstream; every asker waits on the same cell.
type Flight = tokio::sync::OnceCell<Result<Answer, String>>;

/// Upstream resolutions in flight per client, bounded by `limit`.
struct Shares {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One client's slot, given back on drop.
struct Share<'a> {
    shares: &'a Shares,
    client: IpAddr,
}

impl Shares {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `client`, or None if it holds its whole share already.
    fn take(&self, client: IpAddr) -> Option<Share<'_>> {
        let client = crate::transport::client_key(client);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(client).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Share {
            shares: self,
            client,
        })
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut held = self
            .shares
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// `max_inflight`, kept to a quarter of the open files limit: every upstream query holds a
/// socket, and a flood of names that never resolve must not take the descriptors that TCP
/// clients, the database and the web listeners need.
fn inflight_budget(configured: usize) -> usize {
    #[cfg(unix)]
    if let Some(files) = crate::transport::open_files_limit() {
        let room = usize::try_from(files / 4).unwrap_or(usize::MAX).max(1);
        if configured > room {
            tracing::warn!(
                "server.max_inflight = {configured} is more than a quarter of the open files limit ({files}): using {room}"
            );
            return room;
        }
    }
    configured
}

/// The whole budget for one upstream resolution: every attempt's timeout, plus slack for
/// recursion's several round trips.
fn upstream_deadline(c: &UpstreamConfig) -> Duration {
    c.timeout * (c.attempts as u32).max(1) + Duration::from_millis(500)
}

fn dnssec_ok(q: &Question<'_>) -> bool {
    q.edns.is_some_and(|e| e.flags().dnssec_ok)
}

/// The listed name that matched (owner of the synthesised SOA), or the query name.
fn zone_of(qname: &Name, key: &[u8], rule_labels: u8) -> Name {
    if rule_labels == 0 {
        return qname.clone();
    }
    let mut n =
        Name::from_ascii(Policy::rule_name(key, rule_labels)).unwrap_or_else(|_| qname.clone());
    n.set_fqdn(true);
    n
}
