//! The Debian package's files, checked without installing anything: the packaged config
//! loads (with its /var/lib/chaperone paths moved into a temp dir and the starter lists the
//! package ships put there), the systemd unit has the hardening a school server needs, and
//! the maintainer scripts are valid shell with the token cargo-deb fills in. `.ci/run`
//! also builds and installs the real .deb.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::crate_root;

/// The `[package.metadata.deb]` assets: (source, destination).
fn assets() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(crate_root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Where an asset lands: `dest` names a folder (ending in /) or the file itself.
fn installed_path(source: &str, dest: &str) -> String {
    if dest.ends_with('/') {
        let name = Path::new(source).file_name().unwrap().to_str().unwrap();
        format!("/{dest}{name}")
    } else {
        format!("/{dest}")
    }
}

#[test]
fn the_packaged_config_passes_check_with_the_starter_lists_it_ships() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate_root();
    // The postinst copies /usr/share/chaperone/lists/* to /var/lib/chaperone/lists/.
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    let mut shipped = 0;
    for (source, dest) in assets() {
        let installed = installed_path(&source, &dest);
        if let Some(name) = installed.strip_prefix("/usr/share/chaperone/lists/") {
            std::fs::copy(root.join(&source), lists.join(name)).unwrap();
            shipped += 1;
        }
    }
    assert!(shipped > 0, "the package ships starter lists");
    let assets = assets();
    assert!(
        assets
            .iter()
            .any(|(s, d)| s == "packaging/chaperone.toml" && d == "etc/chaperone/chaperone.toml"),
        "the packaged config is installed as /etc/chaperone/chaperone.toml"
    );
    let text = std::fs::read_to_string(root.join("packaging/chaperone.toml")).unwrap();
    assert!(text.contains("\"0.0.0.0:53\"") && text.contains("\"[::]:53\""));
    let rebased = text.replace("/var/lib/chaperone", dir.path().to_str().unwrap());
    let config = dir.path().join("chaperone.toml");
    std::fs::write(&config, rebased).unwrap();

    let loaded = chaperone::state::load(&config, Vec::new())
        .unwrap_or_else(|e| panic!("packaged config loads: {e}"));
    assert_eq!(
        loaded.config.storage_path,
        dir.path().join("chaperone.db"),
        "data in /var/lib/chaperone"
    );
    let report = loaded.report.expect("lists compiled from sources");
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // And the binary's own check, as the unit's ExecStartPre runs it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(": OK ("), "{stdout}");
}

/// `Key=value` lines of a unit file (last one wins, as for these single-valued keys).
fn unit_keys(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_checks_before_it_serves() {
    let text = std::fs::read_to_string(crate_root().join("packaging/chaperone.service")).unwrap();
    let keys = unit_keys(&text);
    let want = [
        ("User", "chaperone"),
        ("LimitNOFILE", "65536"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "chaperone"),
        ("ConfigurationDirectory", "chaperone"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        (
            "ExecStartPre",
            "/usr/bin/chaperone check --config /etc/chaperone/chaperone.toml",
        ),
        (
            "ExecStart",
            "/usr/bin/chaperone serve --config /etc/chaperone/chaperone.toml",
        ),
        ("WantedBy", "multi-user.target"),
    ];
    for (k, v) in want {
        assert_eq!(keys.get(k).map(String::as_str), Some(v), "{k}");
    }
    // The binary is where the package puts it.
    assert!(
        assets()
            .iter()
            .any(|(s, d)| s == "target/release/chaperone" && d == "usr/bin/")
    );
}

#[test]
fn maintainer_scripts_are_valid_shell_and_leave_systemd_to_cargo_deb() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate_root().join("packaging/debian");
    for name in ["postinst", "prerm", "postrm"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#DEBHELPER#"), "{name}");
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("systemctl")),
            "{name}: systemctl unguarded (no systemd in containers and CI)"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is executable");
        let status = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: sh -n");
    }
}
