//! The shipped configs load, the README's config reference covers every key of the example
//! config, and bad configs are rejected with errors that name the key or file:line.

use std::collections::BTreeSet;

use crate::support::crate_root;

/// Leaf key paths of a TOML value: `lists.source[].path`, `group.NAME.block`.
fn keys(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                // Map-like sections (group.NAME, category.NAME, users.rules.NAME) are
                // documented as NAME.
                let name = if matches!(prefix, "group" | "category" | "users.rules") {
                    "NAME"
                } else {
                    k.as_str()
                };
                let path = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}.{name}")
                };
                keys(&path, v, out);
            }
        }
        toml::Value::Array(items)
            if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
        {
            for item in items {
                keys(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn the_example_config_and_lists_check_clean() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(crate_root().join("config/example.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK (4 groups, 4 networks"), "{text}");
}

#[test]
fn the_docker_config_parses() {
    let path = crate_root().join("docker/chaperone.toml");
    chaperone::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_readme_documents_every_example_key() {
    let text = std::fs::read_to_string(crate_root().join("config/example.toml")).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    let mut all = BTreeSet::new();
    keys("", &value, &mut all);
    assert!(
        all.contains("lists.source[].path")
            && all.contains("group.NAME.schedule[].days")
            && all.len() > 40,
        "{all:?}"
    );
    let readme = std::fs::read_to_string(crate_root().join("README.md")).unwrap();
    let reference = readme
        .split("## Configuration reference")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| {
            let (parent, leaf) = k.rsplit_once('.').unwrap_or(("", k));
            let grouped = format!("{parent}.{{");
            !(reference.contains(k.as_str())
                || reference
                    .lines()
                    .any(|l| l.contains(&grouped) && l.contains(leaf)))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config/example.toml missing from the README reference: {missing:?}"
    );
}

fn check_error(config: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    crate::support::write_files(dir.path(), files);
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "check must fail");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["192.0.2.53"]
[lists]
bundle = "b.fstb"
[[lists.source]]
category = "adult"
path = "adult.txt"
[[network]]
cidrs = ["10.0.0.0/8"]
group = "pupils"
[group.pupils]
block = ["adult"]
"#;

#[test]
fn bad_configs_name_the_key_and_bad_lists_name_the_line() {
    let files = [("adult.txt", "adult.example\n")];
    let e = check_error(
        &GOOD.replace("cidrs = [\"10.0.0.0/8\"]", "cidrs = [\"10.0.0.1/8\"]"),
        &files,
    );
    assert!(
        e.contains("network[0].cidrs[0]") && e.contains("10.0.0.0/8"),
        "{e}"
    );
    let e = check_error(
        &GOOD.replace("group = \"pupils\"", "group = \"pupil\""),
        &files,
    );
    assert!(
        e.contains("network[0].group") && e.contains("group.pupil"),
        "{e}"
    );
    let e = check_error(
        &GOOD.replace("[group.pupils]", "[group.pupils]\ncolour = \"red\""),
        &files,
    );
    assert!(e.contains("colour"), "unknown keys are errors: {e}");
    let e = check_error(
        &GOOD.replace(
            "servers = [\"192.0.2.53\"]",
            "servers = [\"quic://192.0.2.53\"]",
        ),
        &files,
    );
    assert!(e.contains("upstream.servers[0]"), "{e}");
    let e = check_error(
        GOOD,
        &[(
            "adult.txt",
            "adult.example\nnot a name\n010.1.2.3\n10.1.2.3\n",
        )],
    );
    // An address is an IP entry; a malformed one is a bad line with the reason.
    assert!(
        e.contains("adult.txt:2:")
            && e.contains("adult.txt:3: not a valid IPv4 address")
            && !e.contains("adult.txt:4:"),
        "{e}"
    );
    let e = check_error(GOOD, &[]);
    assert!(
        e.contains("adult.txt"),
        "a missing list names the file: {e}"
    );
}

/// Groups are bits of a `u128` and networks/devices `u16` indices in the policy: more than
/// fit must be refused by name, not wrap silently and give one group another's policy.
#[test]
fn more_groups_or_devices_than_the_policy_can_index_are_refused() {
    let files = [("adult.txt", "adult.example\n")];
    let groups: String = (0..129).map(|i| format!("[group.g{i}]\n")).collect();
    let e = check_error(&format!("{GOOD}{groups}"), &files);
    assert!(
        e.contains("group:") && e.contains("130 entries, but at most 128"),
        "{e}"
    );
    let devices: String = (0..65_536)
        .map(|i| {
            format!(
                "[[device]]\nname = \"d{i}\"\nclients = [\"10.{}.{}.1\"]\nallow = [\"adult\"]\n",
                i / 256,
                i % 256
            )
        })
        .collect();
    let e = check_error(&format!("{GOOD}{devices}"), &files);
    assert!(
        e.contains("device:") && e.contains("65536 entries, but at most 65535"),
        "{e}"
    );
}
