//! Device enrolment through the real admin API (HTTP on loopback) and the `chaperone`
//! binary: enrol → the ID is in the live index; revoke → it is not; every change audited;
//! a bad group is a 400 naming the field; no token is a 401; profiles parse back; store
//! enrolments survive a restart and merge with the config's `[[enrolled_device]]`.

use std::net::SocketAddr;
use std::process::{Command, Output};

use chaperone::identity::Credential;
use serde_json::Value;

use crate::safeguarding::{DSL, FILES, TECH, VIEWER, config};
use crate::support::*;

const UPSTREAM: &str = "127.0.0.1:9";

fn enrol_config() -> String {
    config("http://127.0.0.1:9/none")
        + r#"
[enrolment]
doh_url = "https://dns.example-school.org.uk/dns-query"
dot_name = "dns.example-school.org.uk"
chromeos_salt = "salt-for-tests"
organisation = "Example School"

[[enrolled_device]]
id = "config-staff-laptop"
name = "staff laptop"
group = "staff"
"#
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Whether the live index accepts `id` now, as DoH path and as DoT SNI label.
fn resolves(h: &Harness, id: &str) -> Option<String> {
    let p = &h.running.as_ref().unwrap().pipeline;
    let now = p.clock().now().as_second();
    let ids = p.state().identities();
    let by_path = ids.resolve(Credential::Path(id), now);
    let by_sni = ids.resolve(Credential::Sni(id), now);
    assert_eq!(by_path.is_some(), by_sni.is_some());
    by_path.map(|n| n.device.group.to_string())
}

async fn post(admin: SocketAddr, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let (s, b) = http(admin, "POST", path, token, Some(body)).await;
    (s, json(&b))
}

#[tokio::test]
async fn enrol_resolve_and_revoke_through_the_admin_api() {
    let h = start(
        &enrol_config(),
        UPSTREAM.parse().unwrap(),
        FILES,
        school_morning(),
    )
    .await;
    let admin = h.admin();
    let body = r#"{"name":"ks2-ipad-14","owner":"j.smith","group":"pupils","days":365}"#;

    let (s, _) = http(admin, "POST", "/devices", None, Some(body)).await;
    assert_eq!(s, 401, "no token");
    let (s, _) = http(admin, "GET", "/devices", Some(VIEWER), None).await;
    assert_eq!(s, 403, "viewers may not see device IDs");
    let (s, e) = post(
        admin,
        "/devices",
        Some(TECH),
        &body.replace("pupils", "nope"),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("group:"), "{e}");
    let (s, e) = post(
        admin,
        "/devices",
        Some(TECH),
        &body.replace("ks2-ipad-14", "a\\nb"),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("name"), "{e}");

    let (s, d) = post(admin, "/devices", Some(TECH), body).await;
    assert_eq!(s, 201, "{d}");
    let id = d["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 24);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{id}"
    );
    assert_eq!(d["state"], "active");
    assert_eq!(d["created_by"], "Sam Technician");
    assert_eq!(
        d["doh_url"],
        format!("https://dns.example-school.org.uk/dns-query/{id}").as_str()
    );
    assert_eq!(
        d["android_private_dns"],
        format!("{id}.dns.example-school.org.uk").as_str()
    );
    assert_eq!(
        resolves(&h, &id).as_deref(),
        Some("pupils"),
        "enrolled: in the index at once"
    );
    assert_eq!(
        resolves(&h, "config-staff-laptop").as_deref(),
        Some("staff"),
        "the config's device is still there"
    );
    assert_eq!(resolves(&h, "unknownid"), None);

    let (s, list) = http(admin, "GET", "/devices", Some(TECH), None).await;
    assert_eq!(s, 200);
    let list = json(&list);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    let (s, profile) = http(
        admin,
        "GET",
        &format!("/devices/{id}/profile?kind=apple"),
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let v = plist::Value::from_reader(std::io::Cursor::new(profile.as_bytes())).unwrap();
    let payload = &v.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()[0];
    let dns = payload.as_dictionary().unwrap()["DNSSettings"]
        .as_dictionary()
        .unwrap();
    assert_eq!(
        dns["ServerURL"].as_string(),
        Some(format!("https://dns.example-school.org.uk/dns-query/{id}").as_str())
    );
    let (s, _) = http(
        admin,
        "GET",
        &format!("/devices/{id}/profile?kind=palm"),
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = http(
        admin,
        "GET",
        "/devices/aaaaaaaaaaaaaaaaaaaaaaaa/profile?kind=apple",
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(s, 404);

    let (s, e) = post(admin, &format!("/devices/{id}/revoke"), Some(TECH), "{}").await;
    assert_eq!(s, 400, "a reason is required: {e}");
    assert!(
        resolves(&h, &id).is_some(),
        "still enrolled after a refused revoke"
    );
    let (s, r) = post(
        admin,
        &format!("/devices/{id}/revoke"),
        Some(TECH),
        r#"{"reason":"lost on a trip"}"#,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["state"], "revoked");
    assert_eq!(r["revoked_reason"], "lost on a trip");
    assert_eq!(
        resolves(&h, &id),
        None,
        "revoked: refused from the next query"
    );
    let (s, _) = post(
        admin,
        &format!("/devices/{id}/revoke"),
        Some(TECH),
        r#"{"reason":"again"}"#,
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = http(
        admin,
        "GET",
        &format!("/devices/{id}/profile?kind=android"),
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(s, 409, "no profile for a revoked device");

    let (s, audit) = http(admin, "GET", "/audit", Some(DSL), None).await;
    assert_eq!(s, 200);
    let audit = json(&audit);
    let subject = format!("device {id}");
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == subject.as_str())
        .map(|r| (r["action"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("device.enrol", "Sam Technician"),
            ("device.revoke", "Sam Technician")
        ],
        "{audit}"
    );
    let (s, v) = http(admin, "GET", "/audit/verify", Some(DSL), None).await;
    assert_eq!(s, 200, "{v}");
    h.stop().await;
}

#[tokio::test]
async fn stored_enrolments_come_back_after_a_restart_and_the_config_wins_a_clash() {
    let h = start(
        &enrol_config(),
        UPSTREAM.parse().unwrap(),
        FILES,
        school_morning(),
    )
    .await;
    let admin = h.admin();
    let mut ids = Vec::new();
    for name in ["cb-1", "cb-2"] {
        let body = format!(r#"{{"name":"{name}","group":"pupils","directory_id":"dir-{name}"}}"#);
        let (s, d) = post(admin, "/devices", Some(TECH), &body).await;
        assert_eq!(s, 201, "{d}");
        ids.push(d["id"].as_str().unwrap().to_owned());
    }
    let (s, _) = post(
        admin,
        &format!("/devices/{}/revoke", ids[1]),
        Some(TECH),
        r#"{"reason":"sold"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let Harness { dir, running, .. } = h;
    running.unwrap().shutdown().await;

    // The config now also enrols the first ID, in another group: the config wins.
    let clash = format!(
        "{}\n[[enrolled_device]]\nid = \"{}\"\nname = \"moved\"\ngroup = \"staff\"\n",
        enrol_config(),
        ids[0]
    );
    let h = start_in(
        dir,
        &clash,
        UPSTREAM.parse().unwrap(),
        &[],
        school_morning(),
    )
    .await;
    assert_eq!(resolves(&h, &ids[0]).as_deref(), Some("staff"));
    assert_eq!(
        resolves(&h, &ids[1]),
        None,
        "still revoked after the restart"
    );
    h.stop().await;

    let h = start(
        &enrol_config(),
        UPSTREAM.parse().unwrap(),
        FILES,
        school_morning(),
    )
    .await;
    assert_eq!(
        resolves(&h, &ids[0]),
        None,
        "another database knows nothing of it"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_chromebook_fleet_template_names_the_user_and_the_device() {
    let h = start(
        &enrol_config(),
        UPSTREAM.parse().unwrap(),
        FILES,
        school_morning(),
    )
    .await;
    let admin = h.admin();
    let (_, fleet) = post(
        admin,
        "/devices",
        Some(TECH),
        r#"{"name":"year 7 chromebooks","group":"pupils"}"#,
    )
    .await;
    let fleet = fleet["id"].as_str().unwrap().to_owned();
    let (_, cb) = post(
        admin,
        "/devices",
        Some(TECH),
        r#"{"name":"cb-17","group":"pupils","directory_id":"85729104-ef7a-5718d62e72ca"}"#,
    )
    .await;
    let (s, policy) = http(
        admin,
        "GET",
        &format!("/devices/{fleet}/profile?kind=chromeos"),
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let policy = json(&policy);
    let template = policy["DnsOverHttpsTemplatesWithIdentifiers"]
        .as_str()
        .unwrap();
    let salt = policy["DnsOverHttpsSalt"].as_str().unwrap();
    // Fill the template in as Chrome does (SHA-256 of salt then value, upper-case hex).
    let hash = |v: &str| {
        use sha2::{Digest, Sha256};
        hex::encode_upper(Sha256::digest(format!("{salt}{v}").as_bytes()))
    };
    let url = template
        .replace("${USER_EMAIL}", &hash("j.smith@example-school.org.uk"))
        .replace(
            "${DEVICE_DIRECTORY_ID}",
            &hash("85729104-ef7a-5718d62e72ca"),
        );
    let path = url
        .strip_prefix("https://dns.example-school.org.uk/dns-query/")
        .unwrap();
    let p = &h.running.as_ref().unwrap().pipeline;
    let ids = p.state().identities();
    // The user directory (RADIUS side) feeds its names in at merge; here by hand.
    ids.rebuild_chrome(Some(salt), ["j.smith@example-school.org.uk"]);
    let now = p.clock().now().as_second();
    let named = ids
        .resolve(Credential::Path(path), now)
        .expect("the fleet ID is known");
    assert_eq!(named.user.as_deref(), Some("j.smith@example-school.org.uk"));
    assert_eq!(&*named.device.id, cb["id"].as_str().unwrap());
    h.stop().await;
}

fn chaperone(admin: SocketAddr, cfg: &str, args: &[&str]) -> Output {
    let url = format!("http://{admin}");
    let mut all = vec!["admin", "--url", &url, "--token", TECH, "--config", cfg];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(&all)
        .env_remove("RUST_LOG")
        .output()
        .expect("the chaperone binary runs")
}

#[tokio::test]
async fn the_cli_enrols_lists_prints_a_profile_and_revokes() {
    let h = start(
        &enrol_config(),
        UPSTREAM.parse().unwrap(),
        FILES,
        school_morning(),
    )
    .await;
    let admin = h.admin();
    let cfg = h.config.to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            chaperone(admin, &cfg, &a)
        })
    };
    let out = run(&[
        "--json",
        "devices",
        "enrol",
        "--name",
        "ks2-ipad-14",
        "--group",
        "pupils",
        "--days",
        "30",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = json(&String::from_utf8_lossy(&out.stdout));
    let id = d["id"].as_str().unwrap().to_owned();
    assert_eq!(resolves(&h, &id).as_deref(), Some("pupils"));

    let out = run(&["devices", "enrol", "--name", "x", "--group", "nope"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("group"),
        "the error names the field"
    );

    let out = run(&["devices", "list"]).await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("id") && header.contains("state"),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains(&id)).expect("listed");
    assert!(
        row.contains("active") && row.contains("ks2-ipad-14"),
        "{table}"
    );

    let out = run(&["devices", "profile", &id, "--kind", "apple"])
        .await
        .unwrap();
    assert!(out.status.success());
    let v = plist::Value::from_reader(std::io::Cursor::new(&out.stdout))
        .expect("stdout is the profile itself");
    assert_eq!(
        v.as_dictionary().unwrap()["PayloadType"].as_string(),
        Some("Configuration")
    );
    let out = run(&["devices", "profile", &id, "--kind", "android"])
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{id}.dns.example-school.org.uk\n")
    );

    let out = run(&["devices", "revoke", &id, "--reason", "lost"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(resolves(&h, &id), None);
    h.stop().await;
}
