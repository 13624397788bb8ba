//! One test per decision step of [`Policy::decide`], on a small in-memory bundle, so each
//! step's rule is pinned down on its own and a reordering of the steps shows up here first.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::lists::key::reverse_key;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"

[upstream]
servers = ["127.0.0.1:53"]

[[network]]
cidrs = ["10.0.1.0/24"]
group = "pupils"

[[network]]
cidrs = ["10.0.2.0/24"]
group = "staff"

[[network]]
cidrs = ["10.0.3.0/24"]
group = "ks1"

[[network]]
cidrs = ["10.0.4.0/24"]
group = "open"

[category.illegal]
verdict = "illegal"

[group.pupils]
block = ["games", "social", "ads"]
allow = ["bing.com", "allowed.games.test"]

[group.pupils.safe_search]
google = true
bing = true
youtube = "strict"

[[group.pupils.schedule]]
name = "lunch"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["games"]

[group.staff]
block = []
bypass_prevention = false

[group.ks1]
allow_only = true
approved = ["approved"]
allow = ["phonics.test"]

[group.ks1.safe_search]
google = true

[group.open]
block = ["games"]

[[device]]
name = "coordinator"
clients = ["10.0.1.99"]
allow = ["social"]
groups = ["pupils"]
"#;

/// A bundle: games, social, illegal, approved, ads (NODATA) and pass entries.
fn bundle() -> Bundle {
    let mut b = BundleBuilder::new();
    let mut add = |cat: &str, name: &str, action: Action| {
        let id = b.category(cat).unwrap();
        b.add(id, name, MatchKind::Subtree, action);
    };
    add("games", "games.test", Action::Block);
    add("games", "allowed.games.test", Action::Block);
    add("social", "social.test", Action::Block);
    add("illegal", "abuse.test", Action::Block);
    add("approved", "learning.test", Action::Block);
    add("approved", "google.com", Action::Block);
    add("ads", "ads.test", Action::NoData);
    add("ads", "ok.ads.test", Action::Pass);
    b.finish()
        .and_then(|(bytes, _)| Bundle::from_vec(bytes))
        .unwrap()
}

fn policy_with(exceptions: Vec<Exception>) -> Policy {
    let config = Config::from_str(Path::new("/tmp/policy-test.toml"), CONFIG).unwrap();
    Policy::build(&config, Arc::new(bundle()), exceptions).unwrap()
}

pub(crate) fn policy() -> Policy {
    policy_with(Vec::new())
}

/// Monday 23 November 2026, 10:00 London: school day, outside lunch.
fn morning() -> jiff::Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn lunch() -> jiff::Timestamp {
    "2026-11-23T12:30:00Z".parse().unwrap()
}

fn decide_at(p: &Policy, from: &str, name: &str, now: jiff::Timestamp) -> Decision {
    let client = Client {
        ip: Some(from.parse().unwrap()),
        mac: None,
        pin: None,
    };
    p.decide(&client, &reverse_key(name), now, None).decision
}

fn decide(p: &Policy, from: &str, name: &str) -> Decision {
    decide_at(p, from, name, morning())
}

fn category_block(p: &Policy, cat: &str, answer: BlockAnswer, incident: bool) -> Decision {
    Decision::Block {
        reason: BlockReason::Category(p.bundle().category_id(cat).unwrap()),
        answer,
        rule_labels: 2,
        incident,
        via: Via::Name,
    }
}

fn exception(domain: &str, groups: &[&str], expires: jiff::Timestamp) -> Exception {
    Exception {
        id: 7,
        domain: domain.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        expires,
    }
}

const PUPIL: &str = "10.0.1.5";
const STAFF: &str = "10.0.2.5";
const KS1: &str = "10.0.3.5";
const OPEN: &str = "10.0.4.5";
const COORDINATOR: &str = "10.0.1.99";

#[test]
fn step1_clients_in_no_network_are_refused() {
    let p = policy();
    assert_eq!(
        decide(&p, "192.0.2.1", "www.example.test"),
        Decision::Refuse
    );
    let nobody = Client::default();
    let out = p.decide(&nobody, &reverse_key("example.test"), morning(), None);
    assert_eq!(out.decision, Decision::Refuse);
    assert_eq!(out.group, None);
}

#[test]
fn step2_illegal_content_beats_every_allow() {
    let later = morning() + jiff::SignedDuration::from_hours(24);
    let p = policy_with(vec![exception("abuse.test", &[], later)]);
    let illegal = category_block(&p, "illegal", BlockAnswer::NxDomain, true);
    for from in [PUPIL, STAFF, KS1, OPEN, COORDINATOR] {
        assert_eq!(decide(&p, from, "www.abuse.test"), illegal, "{from}");
    }
}

#[test]
fn step3_bypass_names_are_refused_where_bypass_prevention_is_on() {
    let p = policy();
    let d = decide(&p, PUPIL, "use-application-dns.net");
    assert!(
        matches!(
            d,
            Decision::Block {
                reason: BlockReason::Bypass(0),
                answer: BlockAnswer::NxDomain,
                ..
            }
        ),
        "{d:?}"
    );
    assert!(matches!(
        decide(&p, PUPIL, "x.mask.icloud.com"),
        Decision::Block {
            reason: BlockReason::Bypass(1),
            ..
        }
    ));
    assert_eq!(
        decide(&p, STAFF, "use-application-dns.net"),
        Decision::Allow(AllowReason::Unlisted),
        "staff turned bypass prevention off"
    );
}

#[test]
fn step4_allow_names_and_exceptions_lift_a_block() {
    let later = morning() + jiff::SignedDuration::from_hours(1);
    let p = policy_with(vec![exception("social.test", &["pupils"], later)]);
    assert_eq!(
        decide(&p, PUPIL, "allowed.games.test"),
        Decision::Allow(AllowReason::GroupAllow)
    );
    assert_eq!(
        decide(&p, PUPIL, "www.social.test"),
        Decision::Allow(AllowReason::Exception(0))
    );
    assert_eq!(
        decide(&p, KS1, "www.social.test"),
        Decision::Block {
            reason: BlockReason::NotApproved,
            answer: BlockAnswer::NxDomain,
            rule_labels: 0,
            incident: false,
            via: Via::Name,
        },
        "the exception is for pupils only"
    );
    let expired = policy_with(vec![exception("social.test", &["pupils"], morning())]);
    assert_eq!(
        decide(&expired, PUPIL, "www.social.test"),
        category_block(&p, "social", BlockAnswer::NxDomain, false),
        "an exception ends when it expires"
    );
}

#[test]
fn step5_allow_only_groups_pass_approved_names_only() {
    let p = policy();
    assert_eq!(
        decide(&p, KS1, "www.learning.test"),
        Decision::Allow(AllowReason::Approved)
    );
    assert_eq!(
        decide(&p, KS1, "phonics.test"),
        Decision::Allow(AllowReason::GroupAllow)
    );
    assert!(matches!(
        decide(&p, KS1, "www.example.test"),
        Decision::Block {
            reason: BlockReason::NotApproved,
            ..
        }
    ));
}

#[test]
fn step6_categories_blocked_now_for_this_group_and_device() {
    let p = policy();
    let games = category_block(&p, "games", BlockAnswer::NxDomain, false);
    assert_eq!(decide(&p, PUPIL, "www.games.test"), games);
    assert_eq!(
        decide_at(&p, PUPIL, "www.games.test", lunch()),
        Decision::Allow(AllowReason::NotBlockedHere),
        "the lunchtime schedule allows games"
    );
    assert_eq!(
        decide(&p, STAFF, "www.games.test"),
        Decision::Allow(AllowReason::NotBlockedHere)
    );
    assert_eq!(
        decide(&p, COORDINATOR, "www.social.test"),
        Decision::Allow(AllowReason::NotBlockedHere),
        "the nominated device may reach social media"
    );
    assert_eq!(decide(&p, COORDINATOR, "www.games.test"), games);
    assert_eq!(
        decide(&p, PUPIL, "tracker.ads.test"),
        category_block(&p, "ads", BlockAnswer::NoData, false),
        "a NODATA entry answers NODATA"
    );
    assert_eq!(
        decide(&p, PUPIL, "ok.ads.test"),
        Decision::Allow(AllowReason::ListPass)
    );
    assert_eq!(
        decide(&p, PUPIL, "www.example.test"),
        Decision::Allow(AllowReason::Unlisted)
    );
}

fn is_rewrite(d: Decision, engine: Engine) -> bool {
    matches!(d, Decision::Rewrite { engine: e, .. } if e == engine)
}

#[test]
fn step7_safe_search_applies_after_every_allow_path() {
    let later = morning() + jiff::SignedDuration::from_hours(1);
    let p = policy_with(vec![exception("youtube.com", &["pupils"], later)]);
    let d = decide(&p, PUPIL, "www.youtube.com");
    assert!(
        is_rewrite(d, Engine::YouTube),
        "an exception keeps Restricted Mode: {d:?}"
    );
    let d = decide(&p, PUPIL, "www.bing.com");
    assert!(
        is_rewrite(d, Engine::Bing),
        "an allow entry keeps SafeSearch: {d:?}"
    );
    let d = decide(&p, KS1, "www.google.com");
    assert!(
        is_rewrite(d, Engine::Google),
        "approval keeps SafeSearch: {d:?}"
    );
    let d = decide(&p, PUPIL, "www.google.co.uk");
    assert!(is_rewrite(d, Engine::Google), "unlisted: {d:?}");
    assert_eq!(
        decide(&p, OPEN, "www.google.com"),
        Decision::Allow(AllowReason::NotBlockedHere),
        "a group without SafeSearch is not rewritten"
    );
}

#[test]
fn the_trace_names_every_step_taken() {
    let p = policy();
    let client = Client {
        ip: Some(PUPIL.parse().unwrap()),
        mac: None,
        pin: None,
    };
    let mut trace = Vec::new();
    p.decide(
        &client,
        &reverse_key("www.games.test"),
        morning(),
        Some(&mut trace),
    );
    let text = trace.join("\n");
    assert!(text.contains("group pupils"), "{text}");
    assert!(text.contains("rule: games lists games.test"), "{text}");
}

#[test]
fn group_of_is_the_network_lookup_decide_starts_with() {
    let p = policy();
    for (from, group) in [
        (PUPIL, "pupils"),
        (STAFF, "staff"),
        (KS1, "ks1"),
        (OPEN, "open"),
    ] {
        assert_eq!(
            p.group_of(from.parse().unwrap()),
            p.group_index(group),
            "{from}"
        );
    }
    assert_eq!(
        p.group_of("::ffff:10.0.1.5".parse().unwrap()),
        p.group_index("pupils")
    );
    assert_eq!(p.group_of("192.0.2.1".parse().unwrap()), None);
}

#[test]
fn an_enrolled_device_is_decided_in_its_group_on_any_network() {
    let p = policy();
    let pupils = p.group_index("pupils").unwrap();
    let staff = p.group_index("staff").unwrap();
    let at = |from: &str, pin| {
        let client = Client {
            ip: Some(from.parse().unwrap()),
            mac: None,
            pin,
        };
        p.decide(&client, &reverse_key("www.games.test"), morning(), None)
    };
    // Off site (no configured network), a pupil device is filtered as a pupil.
    let off_site = at("203.0.113.9", Some(Pin::Device(pupils)));
    assert_eq!(off_site.group, Some(pupils));
    assert_eq!(
        off_site.decision,
        category_block(&p, "games", BlockAnswer::NxDomain, false)
    );
    // On the staff network too: the device's group, not the network's.
    assert_eq!(at(STAFF, Some(Pin::Device(pupils))).group, Some(pupils));
    // The nominated device matched by address does not apply to an enrolled device.
    assert_eq!(at(COORDINATOR, Some(Pin::Device(pupils))).device, None);
    assert_eq!(
        at("203.0.113.9", Some(Pin::Unknown)).decision,
        Decision::Refuse
    );
    assert_eq!(at("203.0.113.9", None).decision, Decision::Refuse);
    // A RADIUS user's group overrides the network's, but only on a school network.
    let staff_user = at(PUPIL, Some(Pin::User(staff)));
    assert_eq!(staff_user.group, Some(staff));
    assert_eq!(
        at("203.0.113.9", Some(Pin::User(staff))).decision,
        Decision::Refuse
    );
}

/// RFC 9462: DDR discovery gets NODATA (not NXDOMAIN) under bypass prevention, for the
/// discovery name and anything else under `resolver.arpa`, with the SOA owned by
/// `resolver.arpa`; explain says so. Staff (bypass prevention off) are not blocked here:
/// the reserved names answer them (crate::local).
#[test]
fn step3_ddr_discovery_is_nodata_under_bypass_prevention() {
    let p = policy();
    let ddr = BYPASS_NAMES
        .iter()
        .position(|(n, _, _)| *n == "resolver.arpa")
        .unwrap() as u8;
    for name in [
        "_dns.resolver.arpa",
        "resolver.arpa",
        "x._dns.resolver.arpa",
    ] {
        assert_eq!(
            decide(&p, PUPIL, name),
            Decision::Block {
                reason: BlockReason::Bypass(ddr),
                answer: BlockAnswer::NoData,
                rule_labels: 2,
                incident: false,
                via: Via::Name,
            },
            "{name}"
        );
    }
    assert_eq!(
        decide(&p, STAFF, "_dns.resolver.arpa"),
        Decision::Allow(AllowReason::Unlisted)
    );
    assert!(matches!(
        decide(&p, PUPIL, "resolver.arpa.example.test"),
        Decision::Allow(_)
    ));
    let client = Client {
        ip: Some(PUPIL.parse().unwrap()),
        mac: None,
        pin: None,
    };
    let mut trace = Vec::new();
    p.decide(
        &client,
        &reverse_key("_dns.resolver.arpa"),
        morning(),
        Some(&mut trace),
    );
    let text = trace.join("\n");
    assert!(
        text.contains("bypass prevention: resolver.arpa (DDR") && text.contains("→ NODATA"),
        "{text}"
    );
}

/// Step 8 (response inspection): the answer to an allowed name, as findings with these
/// CNAME targets, for a client at `from`.
fn decide_answer_at(
    p: &Policy,
    from: &str,
    name: &str,
    targets: &[&str],
    now: jiff::Timestamp,
) -> Option<Decision> {
    let client = Client {
        ip: Some(from.parse().unwrap()),
        mac: None,
        pin: None,
    };
    let outcome = p.decide(&client, &reverse_key(name), now, None);
    let findings = crate::inspect::Findings {
        targets: targets
            .iter()
            .map(|t| reverse_key(t).into_boxed_slice())
            .collect(),
        ..Default::default()
    };
    p.decide_answer(&outcome, &findings, now, None)
        .map(|(d, _)| d)
}

#[test]
fn step8_a_blocked_cname_target_blocks_the_asked_name() {
    let p = policy();
    let d = decide_answer_at(
        &p,
        PUPIL,
        "front.test",
        &["cdn.test", "www.games.test"],
        morning(),
    );
    assert!(
        matches!(
            d,
            Some(Decision::Block {
                reason: BlockReason::Category(_),
                rule_labels: 0,
                incident: false,
                via: Via::Cname,
                ..
            })
        ),
        "{d:?}"
    );
    // The same chain at lunch, when games are allowed; and for staff, who block nothing.
    assert_eq!(
        decide_answer_at(&p, PUPIL, "front.test", &["www.games.test"], lunch()),
        None
    );
    assert_eq!(
        decide_answer_at(&p, STAFF, "front.test", &["www.games.test"], morning()),
        None
    );
    // A target on the group's allow list passes; an unlisted chain passes.
    assert_eq!(
        decide_answer_at(&p, PUPIL, "front.test", &["allowed.games.test"], morning()),
        None
    );
    assert_eq!(
        decide_answer_at(&p, PUPIL, "front.test", &["edge.cdn.test"], morning()),
        None
    );
}

#[test]
fn step8_an_explicit_allow_covers_its_chain_but_never_illegal_targets() {
    let p = policy();
    // allowed.games.test is on the pupils' allow list: its CDN chain is not
    // second-guessed...
    assert_eq!(
        decide_answer_at(&p, PUPIL, "allowed.games.test", &["social.test"], morning()),
        None
    );
    // ...except for illegal content, blocked for everyone whatever allowed the name.
    let d = decide_answer_at(&p, STAFF, "front.test", &["x.abuse.test"], morning());
    assert!(
        matches!(
            d,
            Some(Decision::Block {
                incident: true,
                answer: BlockAnswer::NxDomain,
                via: Via::Cname,
                ..
            })
        ),
        "{d:?}"
    );
    let d = decide_answer_at(
        &p,
        PUPIL,
        "allowed.games.test",
        &["x.abuse.test"],
        morning(),
    );
    assert!(
        matches!(d, Some(Decision::Block { incident: true, .. })),
        "{d:?}"
    );
}

#[test]
fn step8_blocks_and_rewrites_are_not_inspected() {
    let p = policy();
    // Already blocked, or rewritten to SafeSearch: nothing to inspect.
    assert_eq!(
        decide_answer_at(&p, PUPIL, "games.test", &["abuse.test"], morning()),
        None
    );
    assert_eq!(
        decide_answer_at(&p, PUPIL, "www.google.com", &["abuse.test"], morning()),
        None
    );
}
