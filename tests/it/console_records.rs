//! The DSL's records: query-log search, the checks log and the annual review, in the
//! store (both backends) and through the console pages over real HTTP (sign-in, CSRF,
//! roles, CSV export).

use std::net::SocketAddr;

use chaperone::store::postgres::Postgres;
use chaperone::store::querylog::LogEvent;
use chaperone::store::records::{NameMatch, NewCheck, NewReview, Period, SearchFilter};
use chaperone::store::sqlite::Sqlite;
use chaperone::store::{Store, micros};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{authority, pg, school_morning, start};

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(pg::Database),
}

impl Backend {
    fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Box::new(Sqlite::open(&dir.path().join("s.db")).unwrap()),
            Backend::Postgres(db) => Box::new(
                Postgres::connect_now(&db.config()).unwrap_or_else(|e| panic!("connect: {e}")),
            ),
        }
    }
}

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$body(&super::Backend::Sqlite(tempfile::tempdir().unwrap()));
            }
            #[test]
            fn postgres() {
                super::$body(&super::Backend::Postgres(crate::support::pg::database()));
            }
        }
    };
}

fn event(ts: &str, client: &str, group: &str, name: &str, decision: &str) -> LogEvent {
    LogEvent {
        ts_us: micros(ts.parse().unwrap()),
        client: client.into(),
        group: group.into(),
        device: None,
        mac: None,
        hostname: Some(format!("{client}-laptop")),
        user: (group == "pupils").then(|| "pupil7".to_owned()),
        device_id: None,
        name: name.into(),
        qtype: "A".into(),
        decision: decision.into(),
        category: (decision == "blocked").then(|| "adult".to_owned()),
        rule: None,
        rcode: "NOERROR".into(),
        incident: false,
        count: 1,
    }
}

fn search_filters_and_pages(b: &Backend) {
    let mut s = b.open();
    let mut batch = Vec::new();
    for i in 0..30 {
        let name = if i % 3 == 0 {
            "www.bad.example"
        } else {
            "ok.test"
        };
        let decision = if i % 3 == 0 { "blocked" } else { "allowed" };
        batch.push(event(
            &format!("2026-11-23T10:{i:02}:00Z"),
            "10.20.0.5",
            "pupils",
            name,
            decision,
        ));
    }
    batch.push(event(
        "2026-11-23T11:00:00Z",
        "anon-0123456789abcdef",
        "staff",
        "bad.example",
        "blocked",
    ));
    batch.push(event(
        "2026-11-23T11:01:00Z",
        "10.20.0.6",
        "pupils",
        "notbad.example",
        "allowed",
    ));
    s.insert_queries(&batch).unwrap();

    let all = s
        .search_queries(&SearchFilter::default(), None, 100)
        .unwrap();
    assert_eq!(all.len(), 32);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // Suffix: the name and names below it, not notbad.example.
    let suffix = SearchFilter {
        name: Some("BAD.example.".into()),
        name_match: NameMatch::Suffix,
        ..Default::default()
    };
    let rows = s.search_queries(&suffix, None, 100).unwrap();
    assert_eq!(rows.len(), 11, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.name.ends_with("bad.example") && r.name != "notbad.example")
    );
    // Contains does match notbad.example; a LIKE wildcard in the input is literal.
    let contains = SearchFilter {
        name: Some("bad".into()),
        ..Default::default()
    };
    assert_eq!(s.search_queries(&contains, None, 100).unwrap().len(), 12);
    let wild = SearchFilter {
        name: Some("b%d".into()),
        ..Default::default()
    };
    assert!(s.search_queries(&wild, None, 100).unwrap().is_empty());

    // Group, outcome, category, user, device, time range together.
    let f = SearchFilter {
        group: Some("pupils".into()),
        decision: Some("blocked".into()),
        category: Some("adult".into()),
        user: Some("pupil7".into()),
        device: Some("10.20.0.5-lap".into()),
        from_us: Some(micros("2026-11-23T10:10:00Z".parse().unwrap())),
        to_us: Some(micros("2026-11-23T10:20:00Z".parse().unwrap())),
        ..Default::default()
    };
    let rows = s.search_queries(&f, None, 100).unwrap();
    let minutes: Vec<i64> = rows.iter().map(|r| (r.ts_us / 60_000_000) % 60).collect();
    assert_eq!(minutes, vec![18, 15, 12], "{rows:?}");

    // The pseudonym is what is stored and what is found.
    let anon = SearchFilter {
        device: Some("anon-0123456789abcdef".into()),
        ..Default::default()
    };
    let rows = s.search_queries(&anon, None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].group, "staff");

    // Keyset paging: pages of 10 cover everything once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .search_queries(&SearchFilter::default(), before, 10)
            .unwrap();
        seen.extend(page.iter().map(|r| r.id));
        match page.last() {
            Some(last) if page.len() == 10 => before = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(seen, all.iter().map(|r| r.id).collect::<Vec<_>>());
}
both!(search, search_filters_and_pages);

fn checks_and_reviews_append_only(b: &Backend) {
    let mut s = b.open();
    let at: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
    let check = |who: &'static str, passed| NewCheck {
        at,
        who,
        what: "adult test site",
        target: "pupils",
        source: "manual",
        passed,
        detail: "block page shown",
        action: "none",
    };
    let a = s.insert_check(&check("sam", true)).unwrap();
    let later = NewCheck {
        at: at + jiff::Span::new().hours(2),
        ..check("alex", false)
    };
    let b2 = s.insert_check(&later).unwrap();
    assert!(b2 > a);
    let bad = NewCheck {
        source: "guess",
        ..check("sam", true)
    };
    assert!(s.insert_check(&bad).is_err(), "unknown source refused");
    let rows = s.list_checks(Period::default(), 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.who.as_str()).collect::<Vec<_>>(),
        ["alex", "sam"]
    );
    assert!(!rows[0].passed && rows[1].passed);
    let first_hour = Period {
        from_us: Some(micros(at)),
        to_us: Some(micros(at) + 3_600_000_000),
    };
    assert_eq!(s.list_checks(first_hour, 10).unwrap().len(), 1);

    let date: jiff::civil::Date = "2026-09-10".parse().unwrap();
    let review = NewReview {
        at,
        date,
        reviewers: "DSL, head teacher, IT lead",
        decisions: "games blocked for pupils except at lunch: distraction",
        next_due: "2027-09-10".parse().unwrap(),
        recorded_by: "dsl",
    };
    s.insert_review(&review).unwrap();
    assert!(
        s.insert_review(&NewReview {
            next_due: date,
            ..review.clone()
        })
        .is_err()
    );
    let rows = s.list_reviews(Period::default(), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].next_due, "2027-09-10");

    // Append-only: the database itself refuses edits.
    let refused = match b {
        Backend::Sqlite(dir) => {
            let c = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
            [
                c.execute("UPDATE checks SET passed = 1", []).is_err(),
                c.execute("DELETE FROM reviews", []).is_err(),
            ]
        }
        Backend::Postgres(db) => {
            let mut c = db.superuser();
            [
                c.execute("UPDATE checks SET passed = true", &[]).is_err(),
                c.execute("DELETE FROM reviews", &[]).is_err(),
            ]
        }
    };
    assert_eq!(refused, [true, true]);
}
both!(records, checks_and_reviews_append_only);

// --- the console pages over HTTP ---

const ADULT: &str = "adult.example\n";

fn config(hashes: &[(&str, &str, String)]) -> String {
    let mut users = String::new();
    for (name, role, hash) in hashes {
        users.push_str(&format!(
            "[[console.user]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\"\n\n"
        ));
    }
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
category = "adult"
path = "adult.txt"

[storage]
path = "chaperone.db"

[querylog]
enabled = true
pseudonymise = ["staff"]

[[network]]
name = "staff-vlan"
cidrs = ["127.0.0.1/32"]
group = "staff"

[[network]]
name = "pupil-vlan"
cidrs = ["127.0.0.2/32"]
group = "pupils"

[group.staff]
block = ["adult"]

[group.pupils]
block = ["adult"]

[[group.pupils.schedule]]
name = "lunch"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = []
block = ["adult"]

[admin]
listen = "127.0.0.1:0"

[console]
url = "http://127.0.0.1/console/"

{users}"#
    )
}

/// One HTTP/1.1 request with an optional session cookie and url-encoded form: (status,
/// head, body).
async fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        r.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        r.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(r.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sign in; returns the session cookie ("name=value").
async fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let form = format!("username={user}&password={password}&next=%2Fconsole%2F");
    let (status, head, body) = req(addr, "POST", "/console/login", None, Some(&form)).await;
    assert!(status == 303 || status == 302, "{status} {head} {body}");
    head.lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie: {head}"))
        .to_owned()
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_dsl_searches_exports_and_records_checks_in_the_console() {
    let up = authority("127.0.0.1:0".parse().unwrap(), &[]).await;
    let hash = |p: &str| chaperone::config::console::hash_password(p).unwrap();
    let cfg = config(&[
        ("dsl", "dsl", hash("dsl-pass")),
        ("tech", "technician", hash("tech-pass")),
        ("viewer", "viewer", hash("viewer-pass")),
    ]);
    let h = start(&cfg, up.addr, &[("adult.txt", ADULT)], school_morning()).await;
    let admin = h.admin();
    // Real queries: a pupil blocked, a staff member (pseudonymised) blocked.
    h.client("127.0.0.2")
        .udp("www.adult.example.", RecordType::A)
        .await;
    h.client("127.0.0.1")
        .udp("adult.example.", RecordType::A)
        .await;

    let dsl = login(admin, "dsl", "dsl-pass").await;
    // The query log writer is asynchronous: wait (bounded) until both rows are searchable.
    let mut page = String::new();
    for _ in 0..50 {
        page = req(
            admin,
            "GET",
            "/console/search?name=adult.example&match=suffix&decision=blocked",
            Some(&dsl),
            None,
        )
        .await
        .2;
        if page.matches("<tr>").count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("www.adult.example"), "{page}");
    assert!(page.contains("127.0.0.2"), "the pupil's address: {page}");
    assert!(
        page.contains("<td>anon-"),
        "staff stay pseudonymous: {page}"
    );
    assert!(
        !page.contains(">127.0.0.1<") && !page.contains("127.0.0.1 ("),
        "no staff address: {page}"
    );
    // Filter by group: only the pupil.
    let pupils = req(
        admin,
        "GET",
        "/console/search?group=pupils",
        Some(&dsl),
        None,
    )
    .await
    .2;
    assert!(
        pupils.contains("www.adult.example") && !pupils.contains("<td>anon-"),
        "{pupils}"
    );

    // CSV with the same filters.
    let (status, head, csv) = req(
        admin,
        "GET",
        "/console/search.csv?group=pupils&decision=blocked",
        Some(&dsl),
        None,
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,time_utc,client,group"), "{csv}");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",127.0.0.2,pupils,")
            && lines[1].contains("www.adult.example,A,blocked,adult"),
        "{csv}"
    );

    // A viewer may not search; a technician may not either.
    let viewer = login(admin, "viewer", "viewer-pass").await;
    assert_eq!(
        req(admin, "GET", "/console/search", Some(&viewer), None)
            .await
            .0,
        403
    );
    assert_eq!(
        req(admin, "GET", "/console/search.csv", Some(&viewer), None)
            .await
            .0,
        403
    );
    // Without a session: the sign-in page, not data.
    let (_, _, body) = req(admin, "GET", "/console/search?group=pupils", None, None).await;
    assert!(body.contains("action=\"/console/login\""), "{body}");
    assert!(!body.contains("www.adult.example"), "{body}");

    // Record a check as the technician; a post without the session's CSRF token is refused.
    let tech = login(admin, "tech", "tech-pass").await;
    let checks = req(admin, "GET", "/console/checks", Some(&tech), None)
        .await
        .2;
    let csrf = csrf_of(&checks);
    let form = "what=adult+site+from+pupil+laptop&target=pupils&result=pass&detail=block+page+shown&action=none";
    let (status, _, _) = req(
        admin,
        "POST",
        "/console/checks",
        Some(&tech),
        Some(&format!("csrf=wrong&{form}")),
    )
    .await;
    assert_eq!(status, 403);
    let (status, head, _) = req(
        admin,
        "POST",
        "/console/checks",
        Some(&tech),
        Some(&format!("csrf={csrf}&{form}")),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let checks = req(admin, "GET", "/console/checks", Some(&viewer), None)
        .await
        .2;
    assert!(
        checks.contains("adult site from pupil laptop") && checks.contains("tech"),
        "{checks}"
    );
    // A viewer sees the log but may not record.
    let vcsrf = csrf_of(&checks);
    assert_eq!(
        req(
            admin,
            "POST",
            "/console/checks",
            Some(&viewer),
            Some(&format!("csrf={vcsrf}&{form}"))
        )
        .await
        .0,
        403
    );
    // The annual review (DSL), then the printable export holds both.
    let dcsrf = csrf_of(
        &req(admin, "GET", "/console/checks", Some(&dsl), None)
            .await
            .2,
    );
    let review = format!(
        "csrf={dcsrf}&date=2026-11-20&reviewers=DSL+and+head&decisions=games+blocked+for+pupils+outside+lunch&next_due=2027-11-20"
    );
    assert_eq!(
        req(admin, "POST", "/console/reviews", Some(&dsl), Some(&review))
            .await
            .0,
        303
    );
    let export = req(admin, "GET", "/console/checks/export", Some(&viewer), None)
        .await
        .2;
    assert!(
        export.contains("@media screen") && export.contains("@page"),
        "print CSS"
    );
    assert!(
        export.contains("games blocked for pupils outside lunch")
            && export.contains("adult site from pupil laptop"),
        "{export}"
    );

    // Policy in words and the explain form.
    let policy = req(
        admin,
        "GET",
        "/console/policy?client=127.0.0.2&name=www.adult.example",
        Some(&viewer),
        None,
    )
    .await
    .2;
    assert!(policy.contains("adult always blocked"), "{policy}");
    assert!(
        policy.contains("adult blocked Mon–Fri 12:00–13:00 (lunch)"),
        "{policy}"
    );
    assert!(
        policy.contains("blocked") && policy.contains("www.adult.example from 127.0.0.2"),
        "{policy}"
    );

    // Every record was audited.
    let mut db = Sqlite::open(&h.dir.path().join("chaperone.db")).unwrap();
    let audit = db.audit_list(None, 100).unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    for a in ["querylog.export", "check.record", "review.record"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    h.stop().await;
}
