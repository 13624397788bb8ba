//! Device names from DHCP leases, through real sockets: each lease file format parsed from
//! realistic samples (`tests/fixtures/leases/`); a query from a leased address named (host
//! name and MAC) in the query log, an incident and `explain`; a rewritten file used
//! without a restart, a corrupt one keeping the old names; a nominated device matched by
//! its leased MAC; pseudonymised groups storing no plain device name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chaperone::leases::{LeaseFormat, read_file};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use serde_json::Value;

use crate::support::*;

const DSL: &str = "leases-dsl-token";

fn fixture(name: &str) -> PathBuf {
    crate_root().join("tests/fixtures/leases").join(name)
}

/// (host name, MAC) leased to `ip` at Monday 23 November 2026, 10:00 UTC.
fn named(path: &Path, format: LeaseFormat, ip: &str) -> Option<(Option<String>, Option<String>)> {
    let parsed = read_file(path, format).unwrap_or_else(|e| panic!("{e}"));
    let now = school_morning().as_second();
    let l = parsed.leases.get(&ip.parse::<IpAddr>().unwrap())?;
    assert!(l.live_at(now), "{ip} in {} is live", path.display());
    Some((l.hostname.as_deref().map(str::to_owned), l.mac_text()))
}

#[test]
fn every_lease_format_is_read_from_a_realistic_file() {
    let mac14 = Some("02:00:5e:10:00:0e".to_owned());
    let cases = [
        ("dhcpd.leases", LeaseFormat::Isc, "ks2-laptop-14"),
        ("kea-leases4.csv", LeaseFormat::Kea, "ks2-laptop-14"),
        ("dnsmasq.leases", LeaseFormat::Dnsmasq, "ks2-laptop-14"),
        (
            "windows-leases.csv",
            LeaseFormat::WindowsCsv,
            "ks2-laptop-14.ad.example-school.internal",
        ),
    ];
    for (file, format, name) in cases {
        let path = fixture(file);
        assert_eq!(
            named(&path, format, "10.20.1.14"),
            Some((Some(name.to_owned()), mac14.clone())),
            "{file}"
        );
        assert!(
            named(&path, format, "10.20.1.15").is_some(),
            "{file}: 10.20.1.15 leased"
        );
        let parsed = read_file(&path, format).unwrap();
        assert_eq!(parsed.bad, 0, "{file}: no bad lines");
        let ended = parsed.leases.get(&"10.20.1.16".parse::<IpAddr>().unwrap());
        if format != LeaseFormat::Dnsmasq {
            assert!(
                ended.is_none(),
                "{file}: freed, deleted or declined: no name"
            );
        } else {
            assert_eq!(ended.and_then(|l| l.hostname.clone()), None, "{file}: `*`");
        }
    }
    // PowerShell's `-Encoding Unicode`: UTF-16 with a byte order mark.
    let utf8 = std::fs::read_to_string(fixture("windows-leases.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let utf16_path = dir.path().join("leases-utf16.csv");
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            utf8.trim_start_matches('\u{feff}')
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    std::fs::write(&utf16_path, utf16).unwrap();
    assert_eq!(
        named(&utf16_path, LeaseFormat::WindowsCsv, "10.20.1.14")
            .and_then(|(n, _)| n)
            .as_deref(),
        Some("ks2-laptop-14.ad.example-school.internal")
    );
    // dnsmasq's IPv6 leases name the device but carry no MAC.
    assert_eq!(
        named(
            &fixture("dnsmasq.leases"),
            LeaseFormat::Dnsmasq,
            "fd00:20::14"
        ),
        Some((Some("ks2-laptop-14".to_owned()), None))
    );
}

/// Pupils at .41 (ks2-laptop-14) and .42 (the library iPad, nominated by its MAC only),
/// staff (pseudonymised) at .43.
fn config() -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{{UPSTREAM}}"]
timeout_ms = 500
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "social"
path = "social.txt"

[[lists.source]]
category = "illegal"
path = "illegal.txt"

[category.illegal]
verdict = "illegal"

[block_page]
ipv4 = "192.0.2.200"
listen = "127.0.0.1:0"

[[network]]
cidrs = ["127.0.0.41/32", "127.0.0.42/32", "127.0.0.44/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.43/32"]
group = "staff"

[group.pupils]
block = ["social"]

[group.staff]
block = []

[[device]]
name = "library ipad"
macs = ["02:00:5e:10:00:2a"]
allow = ["social"]
groups = ["pupils"]

[identify]
edns_mac_from = ["127.0.0.44/32"]

[[identify.leases]]
path = "dhcp/dnsmasq.leases"
format = "dnsmasq"

[querylog]
retention_days = 30
pseudonymise = ["staff"]

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Dee Safeguarding"
role = "dsl"
sha256 = "{}"
"#,
        token_hash(DSL)
    )
}

const LEASES: &str = "0 02:00:5e:10:00:0e 127.0.0.41 ks2-laptop-14 *\n\
                      0 02:00:5e:10:00:2a 127.0.0.42 library-ipad *\n\
                      0 02:00:5e:10:00:2b 127.0.0.43 staff-laptop-3 *\n";

async fn setup() -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let files = [
        ("social.txt", "social.listed.test\n"),
        ("illegal.txt", "abuse.listed.test\n"),
        ("dhcp/dnsmasq.leases", LEASES),
    ];
    let h = start(&config(), up.addr, &files, school_morning()).await;
    (up, h)
}

fn leases_path(h: &Harness) -> PathBuf {
    h.dir.path().join("dhcp/dnsmasq.leases")
}

async fn get(h: &Harness, path: &str) -> Value {
    let (status, text) = http(h.admin(), "GET", path, Some(DSL), None).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

async fn ask(h: &Harness, from: &str, name: &str) -> ResponseCode {
    rcode(&h.client(from).udp(name, RecordType::A).await)
}

/// (hostname, mac) of every query record from `client`, after the log is flushed.
fn logged(h: &Harness, client: &str) -> Vec<(Option<String>, Option<String>, String)> {
    if let Some(log) = h.running.as_ref().unwrap().pipeline.recorder().query_log() {
        log.flush();
    }
    let db = rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT hostname, mac, name FROM queries WHERE client = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([client], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The device `explain` (admin API) reports for `client`.
async fn explained_device(h: &Harness, client: &str) -> Value {
    get(
        h,
        &format!("/explain?client={client}&name=www.example.test"),
    )
    .await["device"]
        .clone()
}

#[tokio::test]
async fn a_leased_device_is_named_in_the_log_incidents_and_explain() {
    let (up, h) = setup().await;
    assert_eq!(
        ask(&h, "127.0.0.41", "www.example.test.").await,
        ResponseCode::NoError
    );
    assert_eq!(
        ask(&h, "127.0.0.41", "abuse.listed.test.").await,
        ResponseCode::NXDomain
    );

    let rows = logged(&h, "127.0.0.41");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (hostname, mac, name) in &rows {
        assert_eq!(hostname.as_deref(), Some("ks2-laptop-14"), "{name}");
        assert_eq!(mac.as_deref(), Some("02:00:5e:10:00:0e"), "{name}");
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let incident = loop {
        let list = get(&h, "/incidents").await;
        if let Some(first) = list.get(0) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no incident recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(incident["hostname"], "ks2-laptop-14", "{incident}");
    assert_eq!(incident["mac"], "02:00:5e:10:00:0e", "{incident}");

    let explained = get(&h, "/explain?client=127.0.0.41&name=social.listed.test").await;
    assert_eq!(
        explained["device"]["hostname"], "ks2-laptop-14",
        "{explained}"
    );
    assert_eq!(
        explained["device"]["source"], "dnsmasq.leases",
        "{explained}"
    );
    let trace = explained["trace"].to_string();
    assert!(
        trace.contains("device: ks2-laptop-14 (02:00:5e:10:00:0e), from dnsmasq.leases"),
        "{trace}"
    );

    // The CLI's explain reads the same files.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["explain", "--config"])
        .arg(&h.config)
        .args(["--client", "127.0.0.41", "social.listed.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("device: ks2-laptop-14 (02:00:5e:10:00:0e), from dnsmasq.leases"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let file = leases_path(&h).to_string_lossy().into_owned();
    assert_eq!(
        metric(
            h.admin(),
            &format!("chaperone_leases_entries{{file=\"{file}\"}}")
        )
        .await,
        3.0
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_device_nominated_by_mac_is_matched_by_its_leased_mac() {
    let (up, h) = setup().await;
    // No relay, no EDNS MAC: the lease says .42 is the library iPad.
    assert_eq!(
        ask(&h, "127.0.0.42", "social.listed.test.").await,
        ResponseCode::NoError
    );
    assert_eq!(
        ask(&h, "127.0.0.41", "social.listed.test.").await,
        ResponseCode::NXDomain
    );
    // A pupil claiming the iPad's MAC is still not believed (issue 18).
    let ipad_mac = EdnsOption::Unknown(
        u16::from(EdnsCode::Unknown(chaperone::identify::EDNS_MAC_OPTION)),
        vec![2, 0, 0x5e, 0x10, 0, 0x2a],
    );
    let forged = h
        .client("127.0.0.41")
        .udp_with_option("social.listed.test.", RecordType::A, ipad_mac.clone())
        .await;
    assert_eq!(rcode(&forged), ResponseCode::NXDomain);
    // Through the trusted relay, the iPad's MAC names it by its lease.
    let relayed = h
        .client("127.0.0.44")
        .udp_with_option("social.listed.test.", RecordType::A, ipad_mac)
        .await;
    assert_eq!(rcode(&relayed), ResponseCode::NoError);
    let rows = logged(&h, "127.0.0.44");
    assert_eq!(rows[0].0.as_deref(), Some("library-ipad"), "{rows:?}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_block_page_names_a_device_to_itself_only() {
    let (up, h) = setup().await;
    let page = h.running.as_ref().unwrap().block_page_addr.unwrap();
    let view = |from: &'static str| async move {
        let (_, _, body) = http_from(
            from,
            page,
            "GET",
            "/",
            &[("Host", "social.listed.test")],
            None,
        )
        .await;
        body
    };
    let own = view("127.0.0.41").await;
    assert!(own.contains("This site is blocked"), "{own}");
    assert!(
        own.contains("<dt>Device</dt><dd>ks2-laptop-14</dd>"),
        "{own}"
    );
    let other = view("127.0.0.44").await;
    assert!(other.contains("This site is blocked"), "{other}");
    assert!(
        !other.contains("ks2-laptop") && !other.contains("<dt>Device</dt>"),
        "{other}"
    );
    // The library iPad, nominated by its leased MAC, is not blocked: no details.
    let ipad = view("127.0.0.42").await;
    assert!(!ipad.contains("This site is blocked"), "{ipad}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_pseudonymised_group_stores_no_plain_device_name() {
    let (up, h) = setup().await;
    assert_eq!(
        ask(&h, "127.0.0.43", "www.example.test.").await,
        ResponseCode::NoError
    );
    if let Some(log) = h.running.as_ref().unwrap().pipeline.recorder().query_log() {
        log.flush();
    }
    let db = rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap();
    let (client, hostname, mac): (String, Option<String>, Option<String>) = db
        .query_row(
            "SELECT client, hostname, mac FROM queries WHERE grp = 'staff'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    for value in [Some(client), hostname.clone(), mac.clone()] {
        let v = value.expect("stored, as a pseudonym");
        assert!(v.starts_with("anon-"), "{v}");
    }
    assert_ne!(hostname, mac, "separate pseudonyms");
    let plain: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM queries WHERE hostname LIKE '%staff-laptop%' OR mac LIKE '02:00:5e:10:00:2b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(plain, 0);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_rewritten_lease_file_is_used_without_restart_and_a_corrupt_one_is_not() {
    let (up, h) = setup().await;
    assert_eq!(
        explained_device(&h, "127.0.0.41").await["hostname"],
        "ks2-laptop-14"
    );

    // dnsmasq rewrites its file whenever a lease changes.
    std::fs::write(
        leases_path(&h),
        "0 02:00:5e:10:00:0e 127.0.0.41 ks2-laptop-99 *\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while explained_device(&h, "127.0.0.41").await["hostname"] != "ks2-laptop-99" {
        assert!(Instant::now() < deadline, "the new name was never used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ask(&h, "127.0.0.41", "www.example.test.").await,
        ResponseCode::NoError
    );
    let rows = logged(&h, "127.0.0.41");
    assert_eq!(rows.last().unwrap().0.as_deref(), Some("ks2-laptop-99"));
    assert_eq!(
        explained_device(&h, "127.0.0.42").await,
        Value::Null,
        "gone"
    );

    // A corrupt file keeps the names last read.
    let file = leases_path(&h).to_string_lossy().into_owned();
    let failures = format!("chaperone_leases_reload_total{{file=\"{file}\",result=\"failure\"}}");
    let before = metric(h.admin(), &failures).await;
    std::fs::write(leases_path(&h), "\u{0}\u{1} this is not\na lease file\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(h.admin(), &failures).await <= before {
        assert!(Instant::now() < deadline, "the corrupt file was never read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        explained_device(&h, "127.0.0.41").await["hostname"],
        "ks2-laptop-99"
    );
    h.stop().await;
    up.stop().await;
}

#[test]
fn a_database_from_before_device_names_gains_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE queries (id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, client TEXT NOT NULL,
                grp TEXT NOT NULL, device TEXT, mac TEXT, name TEXT NOT NULL, qtype TEXT NOT NULL,
                decision TEXT NOT NULL, category TEXT, rule TEXT, rcode TEXT NOT NULL);
             INSERT INTO queries (ts_us, client, grp, name, qtype, decision, rcode)
                VALUES (1, '10.0.0.1', 'pupils', 'a.test', 'A', 'allowed', 'No Error');",
        )
        .unwrap();
    }
    let conn = chaperone::store::sqlite::connect(&path).unwrap();
    let (rows, hostname): (i64, Option<String>) = conn
        .query_row("SELECT COUNT(*), MAX(hostname) FROM queries", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, hostname), (1, None), "old records kept, no name");
    conn.execute(
        "INSERT INTO incidents (ts_us, client, grp, name, qtype, category, hostname)
         VALUES (1, '10.0.0.1', 'pupils', 'a.test', 'A', 'illegal', 'ks2-laptop-14')",
        [],
    )
    .unwrap();
}

#[test]
fn a_lease_file_with_an_unknown_format_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chaperone.toml");
    write_files(
        dir.path(),
        &[("social.txt", "a.test\n"), ("illegal.txt", "b.test\n")],
    );
    let text = config().replace("format = \"dnsmasq\"", "format = \"infoblox\"");
    std::fs::write(&path, text).unwrap();
    let e = chaperone::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("identify.leases[0].format"), "{e}");
    assert!(e.contains("windows-csv"), "{e}");
}

/// A leased address's reverse name is answered from the lease (AA, the host name) over
/// UDP and TCP without asking upstream; an address with no lease is not.
#[tokio::test]
async fn a_leased_address_has_a_ptr_from_its_lease() {
    let (up, h) = setup().await;
    let c = h.client("127.0.0.43");
    for reply in [
        c.udp("41.0.0.127.in-addr.arpa.", RecordType::PTR).await,
        c.tcp("41.0.0.127.in-addr.arpa.", RecordType::PTR).await,
    ] {
        assert_eq!(rcode(&reply), ResponseCode::NoError);
        assert!(
            reply.metadata.authoritative,
            "answered from the lease, with AA"
        );
        let names: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["ks2-laptop-14."], "{reply:?}");
    }
    let unleased = c.udp("99.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert!(unleased.answers.is_empty(), "{unleased:?}");
    assert!(
        up.seen().iter().all(|q| !q.contains("in-addr.arpa")),
        "reverse names stayed on site: {:?}",
        up.seen()
    );
    h.stop().await;
    up.stop().await;
}
