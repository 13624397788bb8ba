//! Users from RADIUS accounting, with the real client `radclient` (freeradius-utils): a
//! Start fills the session index (user, group by the user rules, MAC) and `GET /sessions`,
//! a Stop empties it; a wrong secret, an unknown NAS and malformed packets are dropped and
//! counted while the listener keeps serving; the users CSV is followed, a bad one keeping
//! the old groups.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaperone::identity::UserSession;
use chaperone::policy::clock::Clock;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support::*;

const TECH: &str = "radius-technician-token";
const VIEWER: &str = "radius-viewer-token";
const SECRET: &str = "sample-radius-secret";
const PUPIL: &str = "j.smith@pupils.example-school.org.uk";

/// Everyone on loopback is staff by network; RADIUS users are grouped by the rules and
/// the CSV. NAS 127.0.0.1 signs with `SECRET`, 127.0.0.2 with the secret in a file.
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

[[network]]
cidrs = ["127.0.0.0/8"]
group = "staff"

[group.pupils]
block = ["social"]

[group.staff]
block = []

[radius]
listen = ["127.0.0.1:0"]

[[radius.client]]
address = "127.0.0.1"
secret = "{SECRET}"

[[radius.client]]
address = "127.0.0.2/32"
secret_file = "radius.secret"

[users]
csv = "users.csv"

[users.rules]
"*@pupils.example-school.org.uk" = "pupils"
"head@example-school.org.uk" = "staff"

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Tech"
role = "technician"
sha256 = "{}"

[[admin.token]]
name = "View"
role = "viewer"
sha256 = "{}"
"#,
        token_hash(TECH),
        token_hash(VIEWER)
    )
}

const USERS_CSV: &str = "username,group,year\nt.jones@example-school.org.uk,staff,\n";

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
        ("radius.secret", "file-secret\n"),
        ("users.csv", USERS_CSV),
    ];
    let h = start(&config(), up.addr, &files, school_morning()).await;
    (up, h)
}

fn radius_addr(h: &Harness) -> SocketAddr {
    h.running.as_ref().unwrap().radius_addrs[0]
}

/// Run `radclient -x ADDR acct SECRET` with `attrs` on standard input (one try, 1 s
/// timeout); true if it got an Accounting-Response.
async fn radclient(addr: SocketAddr, secret: &str, attrs: &str) -> bool {
    let (secret, attrs) = (secret.to_owned(), attrs.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("radclient")
            .args(["-x", "-t", "1", "-r", "1"])
            .arg(addr.to_string())
            .args(["acct", &secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("radclient is installed (freeradius-utils)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(attrs.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().status.success()
    })
    .await
    .unwrap()
}

fn start_attrs(user: &str, ip: &str, sid: &str) -> String {
    format!(
        "Acct-Status-Type = Start, User-Name = \"{user}\", Framed-IP-Address = {ip}, \
         Acct-Session-Id = \"{sid}\", Calling-Station-Id = \"02-00-5E-10-00-77\", \
         Acct-Interim-Interval = 600"
    )
}

fn session(h: &Harness, ip: &str) -> Option<Arc<UserSession>> {
    let state = h.running.as_ref().unwrap().pipeline.state().clone();
    let now = h.clock.now().as_second();
    state
        .identities()
        .sessions
        .load()
        .lookup(ip.parse::<IpAddr>().unwrap(), now)
        .cloned()
}

/// Poll until `f` holds (the index is published within 100 ms, the CSV looked at every
/// second).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn packets(h: &Harness, result: &str) -> f64 {
    metric(
        h.admin(),
        &format!("chaperone_radius_packets_total{{result=\"{result}\"}}"),
    )
    .await
}

#[tokio::test]
async fn radclient_start_and_stop_fill_and_empty_the_session_index() {
    let (up, h) = setup().await;
    let addr = radius_addr(&h);
    assert!(radclient(addr, SECRET, &start_attrs(PUPIL, "127.0.0.77", "s1")).await);
    eventually("the session is published", || {
        session(&h, "127.0.0.77").is_some()
    })
    .await;
    let s = session(&h, "127.0.0.77").unwrap();
    assert_eq!(&*s.user, PUPIL);
    assert_eq!(s.group.as_deref(), Some("pupils"), "by the suffix rule");
    assert_eq!(s.mac, Some([0x02, 0x00, 0x5e, 0x10, 0x00, 0x77]));
    assert_eq!(&*s.session, "s1");
    assert_eq!(
        s.expires,
        school_morning().as_second() + 1200,
        "twice the interim interval"
    );

    let (status, body) = http(h.admin(), "GET", "/sessions", Some(TECH), None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["user"], PUPIL);
    assert_eq!(list[0]["ip"], "127.0.0.77");
    assert_eq!(list[0]["mac"], "02:00:5e:10:00:77");
    assert_eq!(list[0]["group"], "pupils");
    assert_eq!(list[0]["expires"], "2026-11-23T10:20:00Z");
    let (status, _) = http(h.admin(), "GET", "/sessions", Some(VIEWER), None).await;
    assert_eq!(status, 403, "personal data: technician only");
    let (status, _) = http(h.admin(), "GET", "/sessions", None, None).await;
    assert_eq!(status, 401);

    // The second NAS signs with the secret from its file (radclient sends from it).
    let from_file = format!(
        "{}, Packet-Src-IP-Address = 127.0.0.2",
        start_attrs("t.jones@example-school.org.uk", "127.0.0.78", "s2")
    );
    assert!(radclient(addr, "file-secret", &from_file).await);
    eventually("the CSV user's session", || {
        session(&h, "127.0.0.78").is_some_and(|s| s.group.as_deref() == Some("staff"))
    })
    .await;

    let stop = "Acct-Status-Type = Stop, User-Name = \"j.smith@pupils.example-school.org.uk\", \
                Framed-IP-Address = 127.0.0.77, Acct-Session-Id = \"s1\"";
    assert!(radclient(addr, SECRET, stop).await);
    eventually("Stop removes it", || session(&h, "127.0.0.77").is_none()).await;
    assert!(
        session(&h, "127.0.0.78").is_some(),
        "the other session stays"
    );
    assert_eq!(packets(&h, "ok").await, 3.0);
    assert_eq!(
        metric(h.admin(), "chaperone_radius_sessions").await,
        1.0,
        "gauge"
    );

    // Accounting-On from the second NAS: it restarted, its sessions are gone.
    let on = "Acct-Status-Type = Accounting-On, Packet-Src-IP-Address = 127.0.0.2";
    assert!(radclient(addr, "file-secret", on).await);
    eventually("Accounting-On clears the NAS", || {
        session(&h, "127.0.0.78").is_none()
    })
    .await;
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_an_unknown_nas_and_malformed_packets_are_dropped_and_counted() {
    let (up, h) = setup().await;
    let addr = radius_addr(&h);
    let start = start_attrs(PUPIL, "127.0.0.77", "s1");
    assert!(
        !radclient(addr, "not-the-secret", &start).await,
        "no response to a wrong secret"
    );
    assert!(packets(&h, "bad_authenticator").await >= 1.0);
    let unknown = format!("{start}, Packet-Src-IP-Address = 127.0.0.9");
    assert!(!radclient(addr, SECRET, &unknown).await, "unknown NAS");
    assert!(packets(&h, "unknown_client").await >= 1.0);

    // Malformed: too short, a Length beyond the datagram, and a signed packet whose
    // attribute runs past the end.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut overrun = vec![4u8, 1, 0, 24];
    overrun.extend_from_slice(&[0; 16]);
    overrun.extend_from_slice(&[1, 9, b'x', b'y']);
    let mut input = overrun.clone();
    input.extend_from_slice(SECRET.as_bytes());
    overrun[4..20].copy_from_slice(&md5_of(&input));
    let oversized = vec![4u8; 5000];
    for bad in [
        &[4u8, 1, 0][..],
        &[4, 1, 0x10, 0, 0, 0][..],
        &overrun,
        &oversized,
    ] {
        sock.send_to(bad, addr).await.unwrap();
    }
    eventually_async(&h, "malformed", 4.0).await;
    assert!(session(&h, "127.0.0.77").is_none());

    // Still serving.
    assert!(radclient(addr, SECRET, &start).await);
    eventually("served after the bad packets", || {
        session(&h, "127.0.0.77").is_some()
    })
    .await;
    h.stop().await;
    up.stop().await;
}

/// MD5 by the `md5sum` tool, independently of the code under test.
fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use std::io::Write;
    let mut child = std::process::Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let mut digest = [0u8; 16];
    hex::decode_to_slice(&hex[..32], &mut digest).unwrap();
    digest
}

async fn eventually_async(h: &Harness, result: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = packets(h, result).await;
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{result}: {got} < {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_users_csv_is_followed_and_a_bad_one_keeps_the_last_good() {
    let (up, h) = setup().await;
    let addr = radius_addr(&h);
    let user = "t.jones@example-school.org.uk";
    assert!(radclient(addr, SECRET, &start_attrs(user, "127.0.0.79", "s3")).await);
    let group_is = |want: &'static str| {
        let h = &h;
        move || session(h, "127.0.0.79").is_some_and(|s| s.group.as_deref() == Some(want))
    };
    eventually("staff by the CSV", group_is("staff")).await;

    let csv = h.dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "username,group,year\nt.jones@example-school.org.uk,pupils,Y9\n",
    )
    .unwrap();
    eventually("the rewritten CSV regroups the session", group_is("pupils")).await;
    let state = h.running.as_ref().unwrap().pipeline.state().clone();
    let known: Vec<String> = state
        .identities()
        .users
        .load()
        .known_users()
        .map(str::to_owned)
        .collect();
    assert!(known.contains(&user.to_owned()), "{known:?}");
    assert!(known.contains(&"head@example-school.org.uk".to_owned()));

    let failures = "chaperone_users_reload_total{result=\"failure\"}";
    let before = metric(h.admin(), failures).await;
    std::fs::write(
        &csv,
        "username,group,year\nt.jones@example-school.org.uk,staff,\nx@example-school.org.uk,teachers,\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(h.admin(), failures).await <= before {
        assert!(Instant::now() < deadline, "the bad CSV is counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(group_is("pupils")(), "the last good CSV still decides");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_radius_users_group_decides_queries_from_their_address() {
    let (up, h) = setup().await;
    let client = h.client("127.0.0.77");
    let ask = |name: &'static str| {
        let c = &client;
        async move { rcode(&c.udp(name, RecordType::A).await) }
    };
    assert_eq!(
        ask("social.listed.test.").await,
        ResponseCode::NoError,
        "staff by network"
    );
    assert!(
        radclient(
            radius_addr(&h),
            SECRET,
            &start_attrs(PUPIL, "127.0.0.77", "s1")
        )
        .await
    );
    eventually("session", || session(&h, "127.0.0.77").is_some()).await;
    assert_eq!(
        ask("social.listed.test.").await,
        ResponseCode::NXDomain,
        "pupils by the RADIUS user"
    );
    h.stop().await;
    up.stop().await;
}
