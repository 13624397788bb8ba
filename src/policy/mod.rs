//! The filtering policy: who is asking (network → group, device) and what they may reach.
//!
//! [`Policy::build`] turns a checked [`Config`] and an opened [`Bundle`] into an immutable
//! policy with category names resolved to bit masks, so [`Policy::decide`] is straight-line
//! arithmetic on masks plus one FST walk: no locks, no allocation. The same function fills
//! an optional trace for `chaperone explain`, so an explanation can never disagree with what
//! the server does.
//!
//! Order of the decision, and why:
//! 1. Network → group; no network → REFUSED (never an open resolver).
//! 2. Illegal categories block for everyone, before anything that could allow.
//! 3. Bypass prevention (DoH canary, iCloud Private Relay, DDR discovery) — bypass tools
//!    beat allow lists.
//! 4. The group's allow names and live exceptions (checked before block lists).
//! 5. Allow-only groups: only approved names pass.
//! 6. Blocked categories: the group's, changed by schedules in force and by nominated
//!    device exceptions.
//! 7. SafeSearch rewrites for every name allowed by steps 4–6: an allow or an exception
//!    for `youtube.com` lifts a block, never Restricted Mode.

pub mod clock;
pub mod network;
mod response;
pub mod safesearch;
mod schedule;
pub mod when;

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{BlockAnswerKind, Config, Problem, Verdict};
use crate::lists::bundle::{Bundle, BundleBuilder, Mask};
use crate::lists::key::{normalize_domain, unreverse_key};
use crate::lists::parse::{Action, MatchKind};
use crate::services::Catalogue;
use network::PrefixTable;
pub use response::Found;
pub use safesearch::{Engine, SafeSearch, Target};
pub use schedule::Window;

/// Names that let a device bypass the filter, as (name, what it is, how it is answered)
/// under bypass prevention; each covers its subdomains. Append only: the index is
/// [`BlockReason::Bypass`].
///
/// `resolver.arpa` is Discovery of Designated Resolvers (RFC 9462): a client asks
/// `_dns.resolver.arpa SVCB` and upgrades to the encrypted resolver named there, which
/// Chaperone cannot see into. RFC 9462 §4 says a resolver with no designated resolver
/// SHOULD answer NODATA for the whole name (not NXDOMAIN), and §6.1 that a forwarder
/// SHOULD NOT forward it: an upstream's answer would point clients at the upstream's own
/// encrypted resolver. Groups without bypass prevention get the same NODATA from the
/// reserved names ([`crate::local::rfc6303`]), just not counted as a block.
pub const BYPASS_NAMES: &[(&str, &str, BlockAnswer)] = &[
    (
        "use-application-dns.net",
        "Firefox DoH canary",
        BlockAnswer::NxDomain,
    ),
    (
        "mask.icloud.com",
        "iCloud Private Relay",
        BlockAnswer::NxDomain,
    ),
    (
        "mask-h2.icloud.com",
        "iCloud Private Relay",
        BlockAnswer::NxDomain,
    ),
    (
        "resolver.arpa",
        "DDR encrypted-resolver discovery",
        BlockAnswer::NoData,
    ),
];

/// [`BYPASS_NAMES`] (and their subdomains) as a bundle, built once.
static BYPASS_BUNDLE: std::sync::LazyLock<Bundle> = std::sync::LazyLock::new(|| {
    names_bundle(BYPASS_NAMES.iter().map(|(n, _, _)| *n), MatchKind::Subtree)
});

/// The category name of public DoH resolvers, blocked by bypass prevention when listed.
pub const DOH_CATEGORY: &str = "doh";

/// Why a name is blocked when no list category is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// A category list (id into the bundle's categories).
    Category(u16),
    /// An allow-only group and the name is not approved.
    NotApproved,
    /// Bypass prevention (index into [`BYPASS_NAMES`]).
    Bypass(u8),
}

/// What the block was found on: the name asked, or the upstream answer to it (response
/// inspection, [`crate::inspect`]: a CNAME/DNAME target in the chain, or an A/AAAA address
/// in a blocked IP range). An answer-side block is answered exactly as a name block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// The query name (or a listed parent of it).
    #[default]
    Name,
    /// A CNAME or DNAME target in the answer's chain.
    Cname,
    /// An address in the answer.
    Address,
}

/// How a blocked query is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAnswer {
    /// NXDOMAIN.
    NxDomain,
    /// NOERROR, no records.
    NoData,
    /// A/AAAA of the block page.
    BlockPage,
}

/// Why a name is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    /// Nothing blocks it.
    Unlisted,
    /// Listed, but not in a category blocked for this group now.
    NotBlockedHere,
    /// The group's allow list.
    GroupAllow,
    /// An exception granted through the admin API (index into the exception table).
    Exception(u32),
    /// A list entry passes it explicitly (RPZ passthru, Adblock `@@`).
    ListPass,
    /// Approved for an allow-only group.
    Approved,
}

/// In words, for the query log, `explain` and the admin API (not the Rust variant name).
impl std::fmt::Display for AllowReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowReason::Unlisted => f.write_str("on no list"),
            AllowReason::NotBlockedHere => f.write_str("listed, not blocked for this group now"),
            AllowReason::GroupAllow => f.write_str("on the group's allow list"),
            AllowReason::Exception(_) => f.write_str("temporary exception"),
            AllowReason::ListPass => f.write_str("passed by a list rule"),
            AllowReason::Approved => f.write_str("approved for an allow-only group"),
        }
    }
}

/// The policy's answer for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Client is in no configured network.
    Refuse,
    /// Resolve normally.
    Allow(AllowReason),
    /// Do not resolve.
    Block {
        /// Why.
        reason: BlockReason,
        /// How to answer.
        answer: BlockAnswer,
        /// Labels of the listed name that matched (0 if not from a list).
        rule_labels: u8,
        /// An illegal-category hit: an incident.
        incident: bool,
        /// What was found listed: the asked name, or something in its upstream answer.
        via: Via,
    },
    /// Answer with a CNAME to a safe-mode host and its addresses.
    Rewrite {
        /// The engine.
        engine: Engine,
        /// The target.
        target: Target,
    },
}

/// Who is asking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// Source address.
    pub ip: Option<IpAddr>,
    /// MAC address from the EDNS0 MAC option, if the relay sent one.
    pub mac: Option<[u8; 6]>,
    /// The group an identity stronger than the address puts the client in.
    pub pin: Option<Pin>,
}

/// A group chosen by identity rather than by network (see [`crate::identity`] for the
/// precedence: device ID > RADIUS user > lease MAC / nominated device > network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// An enrolled device (DoT/DoH ID): its group, on any network, on site or off. No
    /// nominated device applies: an off-site address means nothing about the device.
    Device(u16),
    /// A RADIUS user on a school network: their group instead of the network's.
    User(u16),
    /// An encrypted-listener query whose ID is unknown, revoked or expired: refused.
    Unknown,
}

/// Result of [`Policy::decide`]: the decision and the context it was made in.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Group index, if the client is in a network.
    pub group: Option<u16>,
    /// Nominated device index, if one matched.
    pub device: Option<u16>,
}

/// A resolved policy group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Name.
    pub name: String,
    block: Mask,
    allow_names: Option<Arc<Bundle>>,
    allow_only: bool,
    approved: Mask,
    block_answer: BlockAnswerKind,
    safe_search: SafeSearch,
    bypass: bool,
    schedules: Vec<Window>,
    /// Its `[[school]]`'s time zone for schedules (None: `[server] timezone`).
    timezone: Option<jiff::tz::TimeZone>,
}

#[derive(Debug, Clone)]
struct Device {
    name: String,
    macs: Vec<[u8; 6]>,
    allow: Mask,
    /// Bit per group index; all ones = any group.
    groups: u128,
}

/// A live, time-limited exception (admin API): a domain and its subdomains allowed for
/// some groups until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Id in the store.
    pub id: i64,
    /// Normalised domain (with its subdomains).
    pub domain: String,
    /// Group names it applies to (empty = all groups).
    pub groups: Vec<String>,
    /// When it stops applying.
    pub expires: jiff::Timestamp,
}

/// Exceptions indexed for lookup: reversed-key domain → indices into the exception list,
/// with each exception's groups as a bit mask of group indices. Looked up once per label
/// boundary of the query name, and only when exceptions exist.
#[derive(Debug, Default)]
struct ExceptionIndex {
    by_key: std::collections::HashMap<Vec<u8>, Vec<u32>>,
    groups: Vec<u128>,
}

impl ExceptionIndex {
    /// An exception for `service:NAME` applies to each of the service's domains (and their
    /// subdomains); one for a service the catalogue no longer has applies to nothing.
    fn new(exceptions: &[Exception], groups: &[Group], services: &Catalogue) -> Self {
        let mut idx = ExceptionIndex::default();
        for (i, e) in exceptions.iter().enumerate() {
            let one = [e.domain.clone()];
            let domains = match e.domain.starts_with(crate::services::SERVICE_PREFIX) {
                true => services.domains_of(&e.domain).unwrap_or(&[]),
                false => &one[..],
            };
            for d in domains {
                idx.by_key
                    .entry(crate::lists::key::reverse_key(d))
                    .or_default()
                    .push(i as u32);
            }
            let mask = if e.groups.is_empty() {
                u128::MAX
            } else {
                e.groups
                    .iter()
                    .filter_map(|g| groups.iter().position(|x| &x.name == g))
                    .fold(0u128, |m, gi| m | 1 << gi)
            };
            idx.groups.push(mask);
        }
        idx
    }
}

/// The immutable policy.
#[derive(Debug)]
pub struct Policy {
    bundle: Arc<Bundle>,
    networks: PrefixTable<(u16, u16)>,
    network_names: Vec<String>,
    groups: Vec<Group>,
    devices: Vec<Device>,
    device_nets: PrefixTable<u16>,
    illegal: Mask,
    doh: Mask,
    exceptions: Vec<Exception>,
    exception_index: ExceptionIndex,
    timezone: jiff::tz::TimeZone,
    inspect: crate::config::InspectConfig,
    /// The service catalogue, for exceptions on `service:NAME`.
    services: Arc<Catalogue>,
}

impl Policy {
    /// Resolve category names against the bundle and build the policy. Every unknown
    /// category and every attempt to schedule or except an illegal category is reported
    /// with its key path.
    pub fn build(
        config: &Config,
        bundle: Arc<Bundle>,
        exceptions: Vec<Exception>,
    ) -> Result<Policy, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut illegal: Mask = 0;
        for (name, c) in &config.categories {
            match bundle.category_id(name) {
                Some(id) if c.verdict == Verdict::Illegal => illegal |= 1 << id,
                Some(_) => {}
                None => problems.push(Problem::new(
                    format!("category.{name}"),
                    format!("no list provides category {name:?} ({})", known(&bundle)),
                )),
            }
        }
        let resolver = MaskResolver {
            bundle: &bundle,
            illegal,
            services: &config.services,
        };
        let mut groups: Vec<Group> = config
            .groups
            .iter()
            .map(|(name, g)| build_group(name, g, &resolver, &mut problems))
            .collect();
        for g in &mut groups {
            g.timezone = config.schools.of_group(&g.name).map(|s| s.timezone.clone());
        }
        let group_index = |name: &str| {
            config
                .groups
                .keys()
                .position(|g| g == name)
                .map(|i| i as u16)
        };

        let mut nets = Vec::new();
        let mut network_names = Vec::new();
        for (i, n) in config.networks.iter().enumerate() {
            let Some(g) = group_index(&n.group) else {
                continue;
            };
            network_names.push(n.name.clone());
            nets.extend(n.cidrs.iter().map(|c| (*c, (g, i as u16))));
        }
        let mut devices = Vec::new();
        let mut device_nets = Vec::new();
        for (i, d) in config.devices.iter().enumerate() {
            let key = format!("device[{i}].allow");
            let allow = resolver.mask(&key, &d.allow, false, &mut problems);
            let groups = if d.groups.is_empty() {
                u128::MAX
            } else {
                d.groups
                    .iter()
                    .filter_map(|g| group_index(g))
                    .fold(0, |m, g| m | 1 << g)
            };
            device_nets.extend(d.clients.iter().map(|c| (*c, i as u16)));
            devices.push(Device {
                name: d.name.clone(),
                macs: d.macs.clone(),
                allow,
                groups,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let doh = bundle.category_id(DOH_CATEGORY).map_or(0, |id| 1 << id);
        let services = config.services.catalogue.clone();
        let exception_index = ExceptionIndex::new(&exceptions, &groups, &services);
        Ok(Policy {
            bundle,
            networks: PrefixTable::new(nets),
            network_names,
            groups,
            devices,
            device_nets: PrefixTable::new(device_nets),
            illegal,
            doh,
            exceptions,
            exception_index,
            timezone: config.server.timezone.clone(),
            inspect: config.inspect,
            services,
        })
    }

    /// The same policy with a different set of live exceptions (cheap: shares the bundle).
    pub fn with_exceptions(&self, exceptions: Vec<Exception>) -> Policy {
        Policy {
            bundle: self.bundle.clone(),
            networks: self.networks.clone(),
            network_names: self.network_names.clone(),
            groups: self.groups.clone(),
            devices: self.devices.clone(),
            device_nets: self.device_nets.clone(),
            illegal: self.illegal,
            doh: self.doh,
            exception_index: ExceptionIndex::new(&exceptions, &self.groups, &self.services),
            exceptions,
            timezone: self.timezone.clone(),
            inspect: self.inspect,
            services: self.services.clone(),
        }
    }

    /// The bundle this policy matches against.
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }

    /// Groups, by index.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The index of a group by name.
    pub fn group_index(&self, name: &str) -> Option<u16> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(|i| i as u16)
    }

    /// The group of a client address (longest matching network), or None if it is in
    /// no configured network: the same lookup [`Policy::decide`] starts with.
    pub fn group_of(&self, ip: IpAddr) -> Option<u16> {
        self.networks.lookup(ip.to_canonical()).map(|(g, _)| g)
    }

    /// The service catalogue the config named.
    pub fn services(&self) -> &Arc<Catalogue> {
        &self.services
    }

    /// Live exceptions.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// Name of the category with this id.
    pub fn category_name(&self, id: u16) -> &str {
        self.bundle
            .categories()
            .get(id as usize)
            .map_or("?", String::as_str)
    }

    /// Verdict-level: is this category illegal?
    pub fn is_illegal(&self, id: u16) -> bool {
        self.illegal & (1 << id) != 0
    }

    /// Name of a nominated device.
    pub fn device_name(&self, idx: u16) -> &str {
        self.devices
            .get(idx as usize)
            .map_or("?", |d| d.name.as_str())
    }

    /// Decide for one query. `key` is the query name in reversed-label form.
    pub fn decide(
        &self,
        client: &Client,
        key: &[u8],
        now: jiff::Timestamp,
        trace: Option<&mut Vec<String>>,
    ) -> Outcome {
        let mut t = Tracer(trace);
        let refuse = Outcome {
            decision: Decision::Refuse,
            group: None,
            device: None,
        };
        let Some(ip) = client.ip else {
            return refuse;
        };
        let (gi, device) = match client.pin {
            Some(Pin::Unknown) => {
                t.say(|| "identity: the device ID is unknown, revoked or expired → REFUSED".into());
                return refuse;
            }
            Some(Pin::Device(g)) => {
                t.say(|| format!("identity: enrolled device → group {}", self.group_name(g)));
                (g, None)
            }
            _ => {
                let Some(gi) = self.network_group(ip, client.pin, &mut t) else {
                    return refuse;
                };
                (gi, self.device_for(ip, client.mac, gi))
            }
        };
        let group = &self.groups[gi as usize];
        if let Some(d) = device {
            t.say(|| {
                format!(
                    "device: nominated device {:?}",
                    self.devices[d as usize].name
                )
            });
        }
        let decision = self.decide_in_group(group, gi, device, key, now, &mut t);
        Outcome {
            decision,
            group: Some(gi),
            device,
        }
    }

    /// The group of a client on a school network: the network's, or the RADIUS user's
    /// that overrides it; None (refused) off every configured network.
    fn network_group(&self, ip: IpAddr, pin: Option<Pin>, t: &mut Tracer) -> Option<u16> {
        let Some((gi, ni)) = self.networks.lookup(ip) else {
            t.say(|| format!("network: {ip} is in no configured network → REFUSED"));
            return None;
        };
        t.say(|| {
            format!(
                "network: {ip} → {} → group {}",
                self.network_names[ni as usize],
                self.group_name(gi)
            )
        });
        match pin {
            Some(Pin::User(u)) if u != gi => {
                t.say(|| {
                    format!(
                        "identity: RADIUS user's group {} overrides it",
                        self.group_name(u)
                    )
                });
                Some(u)
            }
            _ => Some(gi),
        }
    }

    /// The minutes after local midnight at which group `gi`'s schedule windows open or
    /// close, and the zone they are read in: the only moments a schedule can change what
    /// the group may reach. The block page tries each to say when a site opens ("games
    /// sites open at 12:00"); deciding stays with [`Self::decide`].
    pub fn schedule_edges(&self, gi: u16) -> (Vec<u16>, jiff::tz::TimeZone) {
        let Some(group) = self.groups.get(gi as usize) else {
            return (Vec::new(), self.timezone.clone());
        };
        let mut edges: Vec<u16> = group
            .schedules
            .iter()
            .flat_map(|w| [w.from_min, w.to_min])
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let zone = group.timezone.as_ref().unwrap_or(&self.timezone).clone();
        (edges, zone)
    }

    /// A group's name ("?" for an index out of range).
    pub fn group_name(&self, idx: u16) -> &str {
        self.groups
            .get(idx as usize)
            .map_or("?", |g| g.name.as_str())
    }

    /// Steps 2–7 for a client already placed in `group`. Each step is its own function;
    /// this one only knows their order. Every allow path ends in [`Self::safe_search`]:
    /// "allowed" means "not blocked", not "unfiltered".
    fn decide_in_group(
        &self,
        group: &Group,
        gi: u16,
        device: Option<u16>,
        key: &[u8],
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Decision {
        let m = Matched::new(&self.bundle, key);
        if let Some(block) = self.illegal(&m, t) {
            return block;
        }
        if let Some(block) = self.bypass(group, key, t) {
            return block;
        }
        let reason = match self.allowed_by_name(group, gi, key, now, t) {
            Some(reason) => reason,
            None if group.allow_only => match self.approved(group, &m, t) {
                Ok(reason) => reason,
                Err(block) => return block,
            },
            None => match self.categories(group, device, &m, now, t) {
                Ok(reason) => reason,
                Err(block) => return block,
            },
        };
        self.safe_search(group, key, reason, t)
    }

    /// Step 2: illegal content is blocked for everyone, before anything that could allow,
    /// and is always an incident.
    fn illegal(&self, m: &Matched, t: &mut Tracer) -> Option<Decision> {
        let cat = first(m.listed() & self.illegal)?;
        t.say(|| {
            format!(
                "verdict: {} is illegal: blocked for everyone, no exception applies",
                self.category_name(cat)
            )
        });
        Some(self.block_category(m, cat, true, BlockAnswer::NxDomain, t))
    }

    /// Step 3: bypass prevention (DoH canary, iCloud Private Relay, DDR) beats allow lists.
    fn bypass(&self, group: &Group, key: &[u8], t: &mut Tracer) -> Option<Decision> {
        if !group.bypass {
            return None;
        }
        let hit = BYPASS_BUNDLE
            .verdicts(&BYPASS_BUNDLE.lookup(key))
            .masks
            .block;
        if hit == 0 {
            return None;
        }
        let idx = self.bypass_index(key);
        let (name, what, answer) = BYPASS_NAMES[idx as usize];
        t.say(|| {
            let how = match answer {
                BlockAnswer::NoData => "NODATA",
                _ => "NXDOMAIN",
            };
            format!("bypass prevention: {name} ({what}) → {how}")
        });
        Some(Decision::Block {
            reason: BlockReason::Bypass(idx),
            answer,
            // The SOA of the negative answer is owned by the bypass name, so a client
            // caching it negatively covers the whole name (as for a list rule).
            rule_labels: name.split('.').count() as u8,
            incident: false,
            via: Via::Name,
        })
    }

    /// Step 4: the group's allow names, then live exceptions.
    fn allowed_by_name(
        &self,
        group: &Group,
        gi: u16,
        key: &[u8],
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Option<AllowReason> {
        if let Some(allow) = &group.allow_names
            && !allow.lookup(key).is_empty()
        {
            t.say(|| format!("allow: on group {}'s allow list", group.name));
            return Some(AllowReason::GroupAllow);
        }
        let ex = self.exception_for(key, gi, now)?;
        t.say(|| {
            let e = &self.exceptions[ex as usize];
            format!(
                "exception #{}: {} allowed until {}",
                e.id, e.domain, e.expires
            )
        });
        Some(AllowReason::Exception(ex))
    }

    /// Step 5, for allow-only groups: only names on the approved lists pass.
    fn approved(
        &self,
        group: &Group,
        m: &Matched,
        t: &mut Tracer,
    ) -> Result<AllowReason, Decision> {
        let v = &m.verdicts;
        if (v.block | v.pass) & group.approved != 0 {
            t.say(|| format!("allow-only: approved for group {}", group.name));
            return Ok(AllowReason::Approved);
        }
        t.say(|| format!("allow-only: not on group {}'s approved lists", group.name));
        Err(Decision::Block {
            reason: BlockReason::NotApproved,
            answer: group_answer(group.block_answer),
            rule_labels: 0,
            incident: false,
            via: Via::Name,
        })
    }

    /// Step 6: categories blocked for this group now (schedules, nominated devices).
    fn categories(
        &self,
        group: &Group,
        device: Option<u16>,
        m: &Matched,
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Result<AllowReason, Decision> {
        let listed = m.listed();
        let blocked = self.blocked_mask(group, device, now, t);
        if let Some(cat) = first(listed & blocked) {
            let answer = if m.verdicts.nodata & (1 << cat) != 0 {
                BlockAnswer::NoData
            } else {
                group_answer(group.block_answer)
            };
            return Err(self.block_category(m, cat, false, answer, t));
        }
        if listed != 0 {
            t.say(|| {
                format!(
                    "listed in {} but not blocked for this group now",
                    self.mask_names(listed)
                )
            });
            Ok(AllowReason::NotBlockedHere)
        } else if m.verdicts.pass != 0 {
            t.say(|| format!("passed by {}", self.mask_names(m.verdicts.pass)));
            Ok(AllowReason::ListPass)
        } else {
            Ok(AllowReason::Unlisted)
        }
    }

    /// Step 7: an allowed name of a search engine or video site is rewritten to its safe
    /// mode, whichever step allowed it, unless the group turns SafeSearch off.
    fn safe_search(
        &self,
        group: &Group,
        key: &[u8],
        reason: AllowReason,
        t: &mut Tracer,
    ) -> Decision {
        if let Some((engine, target)) = group.safe_search.rewrite(key) {
            t.say(|| format!("safe search: {} → CNAME {}", engine.name(), target.host()));
            return Decision::Rewrite { engine, target };
        }
        t.say(|| "decision: allow".to_owned());
        Decision::Allow(reason)
    }

    /// A block by category `cat`, naming the listed rule in the trace. Illegal content
    /// gets NXDOMAIN, never the block page: there is nothing to request and no page should
    /// suggest there might be.
    fn block_category(
        &self,
        m: &Matched,
        cat: u16,
        incident: bool,
        answer: BlockAnswer,
        t: &mut Tracer,
    ) -> Decision {
        let rule_labels = self.bundle.rule_for(&m.matches, cat).map_or(0, |(l, _)| l);
        t.say(|| {
            format!(
                "rule: {} lists {}",
                self.category_name(cat),
                suffix(m.key, rule_labels)
            )
        });
        Decision::Block {
            reason: BlockReason::Category(cat),
            answer,
            rule_labels,
            incident,
            via: Via::Name,
        }
    }

    /// Categories blocked for `group` at `now` for this device: the group's, plus schedule
    /// blocks, minus schedule and device allows; illegal and (with bypass prevention) DoH
    /// always in.
    fn blocked_mask(
        &self,
        group: &Group,
        device: Option<u16>,
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Mask {
        let mut mask = group.block;
        if group.bypass {
            mask |= self.doh;
        }
        if !group.schedules.is_empty() {
            let zone = group.timezone.as_ref().unwrap_or(&self.timezone);
            let local = now.to_zoned(zone.clone());
            let (mut allow, mut block) = (0, 0);
            for w in &group.schedules {
                if w.is_open(&local) {
                    t.say(|| {
                        format!(
                            "schedule: {:?} in force at {}",
                            w.name,
                            local.strftime("%a %H:%M %Z")
                        )
                    });
                    allow |= w.allow;
                    block |= w.block;
                }
            }
            if allow | block == 0 {
                t.say(|| {
                    format!(
                        "schedule: none in force at {}",
                        local.strftime("%a %H:%M %Z")
                    )
                });
            }
            // A window that blocks wins over one that allows the same category.
            mask = (mask & !allow) | block;
        }
        if let Some(d) = device {
            mask &= !self.devices[d as usize].allow;
        }
        mask | self.illegal
    }

    fn device_for(&self, ip: IpAddr, mac: Option<[u8; 6]>, group: u16) -> Option<u16> {
        let in_group = |d: u16| self.devices[d as usize].groups & (1 << group) != 0;
        if let Some(mac) = mac {
            let found = self
                .devices
                .iter()
                .position(|d| d.macs.contains(&mac))
                .map(|i| i as u16);
            if let Some(d) = found.filter(|&d| in_group(d)) {
                return Some(d);
            }
        }
        self.device_nets.lookup(ip).filter(|&d| in_group(d))
    }

    fn exception_for(&self, key: &[u8], group: u16, now: jiff::Timestamp) -> Option<u32> {
        if self.exceptions.is_empty() {
            return None;
        }
        let idx = &self.exception_index;
        let boundaries = key
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'.')
            .map(|(i, _)| i);
        boundaries
            .chain(std::iter::once(key.len()))
            .find_map(|end| {
                idx.by_key.get(&key[..end])?.iter().copied().find(|&i| {
                    let live = self
                        .exceptions
                        .get(i as usize)
                        .is_some_and(|e| e.expires > now);
                    live && idx
                        .groups
                        .get(i as usize)
                        .is_some_and(|m| m & (1 << group) != 0)
                })
            })
    }

    fn bypass_index(&self, key: &[u8]) -> u8 {
        let name = unreverse_key(key);
        BYPASS_NAMES
            .iter()
            .position(|(n, _, _)| name == *n || name.ends_with(&format!(".{n}")))
            .unwrap_or(0) as u8
    }

    fn mask_names(&self, mask: Mask) -> String {
        (0..128u16)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.category_name(i).to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The listed name that decided a block, for logs and the block page.
    pub fn rule_name(key: &[u8], rule_labels: u8) -> String {
        suffix(key, rule_labels)
    }
}

fn group_answer(kind: BlockAnswerKind) -> BlockAnswer {
    match kind {
        BlockAnswerKind::Nxdomain => BlockAnswer::NxDomain,
        BlockAnswerKind::BlockPage => BlockAnswer::BlockPage,
    }
}

/// The lowest set bit as a category id. Category order is list order, which is stable.
fn first(mask: Mask) -> Option<u16> {
    (mask != 0).then(|| mask.trailing_zeros() as u16)
}

/// The last `labels` labels of the name behind a reversed key, as a domain.
fn suffix(key: &[u8], labels: u8) -> String {
    let mut end = key.len();
    let mut seen = 0;
    for (i, &b) in key.iter().enumerate() {
        if b == b'.' {
            seen += 1;
            if seen == labels as usize {
                end = i;
                break;
            }
        }
    }
    unreverse_key(&key[..end])
}

fn known(bundle: &Bundle) -> String {
    if bundle.categories().is_empty() {
        "the lists define no categories".to_owned()
    } else {
        format!("known: {}", bundle.categories().join(", "))
    }
}

/// Resolves category names to masks, reporting unknown ones and illegal ones where they
/// may not appear.
struct MaskResolver<'a> {
    bundle: &'a Bundle,
    illegal: Mask,
    /// `service-group:NAME` stands for each member's `service:NAME` category.
    services: &'a crate::services::ServicesConfig,
}

impl MaskResolver<'_> {
    fn mask(
        &self,
        key: &str,
        names: &[String],
        illegal_ok: bool,
        problems: &mut Vec<Problem>,
    ) -> Mask {
        let mut mask = 0;
        let expanded = names.iter().enumerate().flat_map(|(i, n)| {
            self.services
                .expand_name(n)
                .into_iter()
                .map(move |c| (i, c))
        });
        for (i, n) in expanded {
            let n = &n;
            match self.bundle.category_id(n) {
                Some(id) if !illegal_ok && self.illegal & (1 << id) != 0 => problems.push(Problem::new(
                    format!("{key}[{i}]"),
                    format!("{n:?} is an illegal category: it can never be allowed by a schedule or exception"),
                )),
                Some(id) => mask |= 1 << id,
                None if n.starts_with(crate::services::SERVICE_PREFIX) => problems.push(Problem::new(
                    format!("{key}[{i}]"),
                    format!("{n:?} is not in the bundle: it was compiled without this service (compile it with `chaperone compile --config`)"),
                )),
                None => problems.push(Problem::new(
                    format!("{key}[{i}]"),
                    format!("unknown category {n:?} ({})", known(self.bundle)),
                )),
            }
        }
        mask
    }
}

fn build_group(
    name: &str,
    g: &crate::config::GroupConfig,
    r: &MaskResolver,
    problems: &mut Vec<Problem>,
) -> Group {
    let key = format!("group.{name}");
    let schedules = g
        .schedules
        .iter()
        .enumerate()
        .map(|(i, s)| Window {
            name: s.name.clone(),
            days: s.days,
            from_min: s.from_min,
            to_min: s.to_min,
            allow: r.mask(
                &format!("{key}.schedule[{i}].allow"),
                &s.allow,
                false,
                problems,
            ),
            block: r.mask(
                &format!("{key}.schedule[{i}].block"),
                &s.block,
                true,
                problems,
            ),
        })
        .collect();
    Group {
        name: name.to_owned(),
        block: r.mask(&format!("{key}.block"), &g.block, true, problems),
        allow_names: (!g.allow.is_empty()).then(|| {
            Arc::new(names_bundle(
                g.allow.iter().map(String::as_str),
                MatchKind::Subtree,
            ))
        }),
        allow_only: g.allow_only,
        approved: r.mask(&format!("{key}.approved"), &g.approved, false, problems),
        block_answer: g.block_answer,
        safe_search: SafeSearch::new(&g.safe_search),
        bypass: g.bypass_prevention,
        schedules,
        timezone: None,
    }
}

/// A one-category in-memory bundle of names (allow lists, bypass names).
fn names_bundle<'a>(names: impl Iterator<Item = &'a str>, kind: MatchKind) -> Bundle {
    let mut b = BundleBuilder::new();
    if let Ok(id) = b.category("names") {
        for n in names {
            if let Ok(n) = normalize_domain(n) {
                b.add(id, &n, kind, Action::Block);
            }
        }
    }
    b.finish()
        .and_then(|(bytes, _)| Bundle::from_vec(bytes))
        .expect("an in-memory bundle of valid names always builds")
}

/// The lists' matches for one query name, looked up once and shared by every step.
struct Matched<'k> {
    key: &'k [u8],
    matches: crate::lists::bundle::Matches,
    verdicts: crate::lists::bundle::ActionMasks,
}

impl<'k> Matched<'k> {
    fn new(bundle: &Bundle, key: &'k [u8]) -> Self {
        let matches = bundle.lookup(key);
        let verdicts = bundle.verdicts(&matches).masks;
        Matched {
            key,
            matches,
            verdicts,
        }
    }

    /// Categories that list the name to block it (with any answer).
    fn listed(&self) -> Mask {
        self.verdicts.block | self.verdicts.nodata
    }
}

/// Collects explanation lines only when asked, so `decide` costs nothing extra on the
/// serving path (the closures are never called).
struct Tracer<'a>(Option<&'a mut Vec<String>>);

impl Tracer<'_> {
    fn say(&mut self, line: impl FnOnce() -> String) {
        if let Some(v) = self.0.as_mut() {
            v.push(line());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
