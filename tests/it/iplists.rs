//! IP entries in lists: `check` and `compile` count them per category, `export --firewall`
//! turns a category's into gateway rules, and an answer pointing at a listed address is
//! blocked for the groups that block the category.

use std::process::{Command, Output};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{UPSTREAM}"]
timeout_ms = 500
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "adult"
path = "adult.txt"

[[lists.source]]
category = "doh"
path = "doh-ips.txt"
format = "domains"

[[lists.source]]
category = "filter"
path = "filter.adblock"
format = "adblock"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["adult", "doh", "filter"]

[group.staff]
block = ["doh"]
"#;

const ADULT: &str = "adult.listed.test\n203.0.113.66   # RFC 5737 documentation address\n";
const DOH: &str = "1.1.1.1   # one.one.one.one\n1.0.0.1\n8.8.8.0/24\n2606:4700:4700::1111\n";
const FILTER: &str = "||ads.example.test^\n||198.51.100.7^\n@@||198.51.100.8^\n";

fn chaperone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .output()
        .expect("run chaperone")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup(extra_adult: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let adult = format!("{ADULT}{extra_adult}");
    write_files(
        dir.path(),
        &[
            ("adult.txt", adult.as_str()),
            ("doh-ips.txt", DOH),
            ("filter.adblock", FILTER),
            (
                "chaperone.toml",
                &CONFIG.replace("{UPSTREAM}", "127.0.0.1:53"),
            ),
        ],
    );
    let config = dir.path().join("chaperone.toml");
    (dir, config)
}

/// The summary line of one category: (names, IPs).
fn counts(out: &str, category: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(category))
        .unwrap_or_else(|| panic!("no line for {category} in:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[2], f[4]), ("names", "IPs"), "{line}");
    (f[1].parse().unwrap(), f[3].parse().unwrap())
}

#[test]
fn check_and_compile_count_ip_entries_per_category() {
    let (_dir, config) = setup("");
    let cfg = config.to_str().unwrap();
    let check = chaperone(&["check", "-c", cfg]);
    let out = text(&check);
    assert!(check.status.success(), "{out}");
    assert_eq!(counts(&out, "adult"), (1, 1));
    assert_eq!(counts(&out, "doh"), (0, 4));
    assert_eq!(counts(&out, "filter"), (1, 2));
    assert!(out.contains("0 bad lines"), "{out}");
    assert!(out.contains("2 listed names, 7 IP entries)"), "{out}");

    // An odd address is a bad line with its reason, and the rest still count.
    let (_dir, config) = setup("10.0.0.1/8\n010.0.0.1\n");
    let cfg = config.to_str().unwrap();
    let check = chaperone(&["check", "-c", cfg]);
    let out = text(&check);
    assert!(!check.status.success(), "{out}");
    assert!(
        out.contains(
            "adult.txt:3: host bits set after the prefix: did you mean 10.0.0.0/8?: 10.0.0.1/8"
        ),
        "{out}"
    );
    assert!(
        out.contains("adult.txt:4: not a valid IPv4 address"),
        "{out}"
    );
    let bundle = config.with_file_name("out.fstb");
    let compile = chaperone(&["compile", "-c", cfg, "--out", bundle.to_str().unwrap()]);
    let out = text(&compile);
    assert!(compile.status.success(), "{out}");
    assert_eq!(counts(&out, "adult"), (1, 1));
    assert!(out.contains("7 IP entries"), "{out}");
    assert!(out.contains("2 bad lines"), "{out}");
    let b = chaperone::lists::Bundle::open(&bundle).unwrap();
    assert_eq!(b.header().ip_counts["doh"], 4);
    let adult = b.category_id("adult").unwrap();
    assert_eq!(
        b.lookup_ip("203.0.113.66".parse().unwrap()).block,
        1 << adult
    );

    // Lists given as arguments: a UT1-style folder's addresses too.
    let ut1 = config.with_file_name("ut1");
    write_files(
        &ut1,
        &[("redirector/domains", "proxy.example\n192.0.2.44\n")],
    );
    let compile = chaperone(&[
        "compile",
        "--out",
        bundle.to_str().unwrap(),
        &format!("ut1:{}", ut1.display()),
    ]);
    let out = text(&compile);
    assert!(compile.status.success(), "{out}");
    assert_eq!(counts(&out, "redirector"), (1, 1));
}

#[test]
fn export_prints_firewall_rules_for_a_category() {
    let (_dir, config) = setup("");
    let cfg = config.to_str().unwrap();
    let nft = chaperone(&["export", "-c", cfg, "--firewall", "nftables", "doh"]);
    let out = String::from_utf8_lossy(&nft.stdout).into_owned();
    assert!(nft.status.success(), "{}", text(&nft));
    assert!(out.contains("table inet chaperone_doh {"), "{out}");
    assert!(
        out.contains("elements = {\n            1.0.0.1, 1.1.1.1, 8.8.8.0/24,\n"),
        "{out}"
    );
    assert!(out.contains("2606:4700:4700::1111,"), "{out}");
    assert!(
        out.contains("ip6 daddr @v6 udp dport { 53, 443, 853 } drop"),
        "{out}"
    );

    let ipt = chaperone(&[
        "export",
        "--config",
        cfg,
        "--firewall",
        "iptables",
        "--reject",
        "filter",
    ]);
    let out = String::from_utf8_lossy(&ipt.stdout).into_owned();
    assert!(ipt.status.success(), "{}", text(&ipt));
    // The pass entry is not exported.
    assert!(
        out.contains("add chaperone_filter_v4 198.51.100.7/32\n"),
        "{out}"
    );
    assert!(!out.contains("198.51.100.8"), "{out}");
    assert!(out.contains("-j REJECT --reject-with tcp-reset"), "{out}");

    let missing = chaperone(&["export", "-c", cfg, "--firewall", "nftables", "nope"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no category \"nope\""),
        "{}",
        text(&missing)
    );
}

const SNEAKY_ZONE: &str = r#"
$TTL 300
@        IN SOA ns.sneaky.test. hostmaster.sneaky.test. 1 3600 600 86400 60
@        IN NS  ns.sneaky.test.
ns       IN A   192.0.2.53
www      IN A   203.0.113.66
fine     IN A   192.0.2.10
doh      IN AAAA 2606:4700:4700::1111
"#;

#[tokio::test]
async fn an_answer_pointing_at_a_listed_address_is_blocked() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("sneaky.test.", SNEAKY_ZONE)],
    )
    .await;
    let h = start(
        CONFIG,
        up.addr,
        &[
            ("adult.txt", ADULT),
            ("doh-ips.txt", DOH),
            ("filter.adblock", FILTER),
        ],
        school_morning(),
    )
    .await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");
    // An unlisted name whose upstream answer is A 203.0.113.66 (listed in adult).
    let a = pupil.udp("www.sneaky.test.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NXDomain, "{a:?}");
    assert!(ips(&a).is_empty());
    // Staff do not block adult: the same answer passes.
    let a = staff.udp("www.sneaky.test.", RecordType::A).await;
    assert_eq!(
        ips(&a),
        vec!["203.0.113.66".parse::<std::net::IpAddr>().unwrap()]
    );
    // Both block doh, listed by IPv6 address; and an unlisted address passes.
    for client in [&pupil, &staff] {
        let aaaa = client.udp("doh.sneaky.test.", RecordType::AAAA).await;
        assert_eq!(rcode(&aaaa), ResponseCode::NXDomain, "{aaaa:?}");
    }
    let fine = pupil.udp("fine.sneaky.test.", RecordType::A).await;
    assert_eq!(
        ips(&fine),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    h.stop().await;
    up.stop().await;
}
