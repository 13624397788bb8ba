use super::*;

const GOOD: &str = r#"
name = "tiktok"
title = "TikTok"
description = "Short videos."
groups = ["social", "video"]
source = "Vendor's own host names."
domains = ["TikTok.com", "tiktokcdn.com."]
"#;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn a_good_file_is_read_with_its_domains_normalised() {
    let s = file::parse(GOOD).unwrap();
    assert_eq!(s.name, "tiktok");
    assert_eq!(s.domains, ["tiktok.com", "tiktokcdn.com"]);
    assert_eq!(s.category(), "service:tiktok");
}

#[test]
fn bad_files_name_the_key_that_is_wrong() {
    let bad = GOOD
        .replace("\"video\"", "\"vidoe\"")
        .replace(
            "\"tiktokcdn.com.\"",
            "\"tik tok.com\", \"com\", \"tiktok.com\"",
        )
        .replace("Short videos.", "");
    let problems = file::parse(&bad).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "description",
            "groups[1]",
            "domains[1]",
            "domains[2]",
            "domains[3]"
        ],
        "{problems:?}"
    );
    assert!(
        problems[1].1.contains("did you mean \"video\""),
        "{problems:?}"
    );
    let unknown_key = file::parse(&format!("{GOOD}\nextra = 1\n")).unwrap_err();
    assert!(unknown_key[0].1.contains("extra"), "{unknown_key:?}");
    let bad_name = file::parse(&GOOD.replace("\"tiktok\"", "\"Tik Tok\"")).unwrap_err();
    assert_eq!(bad_name[0].0, "name");
}

#[test]
fn a_folder_is_read_and_duplicate_names_are_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("tiktok.toml", GOOD), ("README.md", "not a service")],
    );
    let c = Catalogue::load(dir.path()).unwrap();
    assert_eq!(c.len(), 1);
    write(dir.path(), &[("tiktok-copy.toml", GOOD)]);
    let problems = Catalogue::load(dir.path()).unwrap_err();
    assert_eq!(problems.len(), 1);
    let text = problems[0].to_string();
    assert!(
        text.contains("tiktok.toml") && text.contains("tiktok-copy.toml"),
        "{text}"
    );
    assert!(text.contains(": name: "), "{text}");
}

#[test]
fn an_oversized_file_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!("{GOOD}\n#{}\n", "x".repeat(MAX_FILE_BYTES as usize));
    write(dir.path(), &[("big.toml", &big)]);
    let problems = Catalogue::load(dir.path()).unwrap_err();
    assert!(problems[0].message.contains("at most"), "{problems:?}");
}

#[test]
fn references_expand_and_unknown_ones_get_a_suggestion() {
    let mut roblox = file::parse(GOOD).unwrap();
    roblox.name = "roblox".into();
    roblox.groups = vec!["games".into()];
    let c = Catalogue::from_services([file::parse(GOOD).unwrap(), roblox]).unwrap();
    assert_eq!(c.expand("adult").unwrap(), None);
    let one = c.expand("service:tiktok").unwrap().unwrap();
    assert_eq!(one[0].name, "tiktok");
    let games = c.expand("service-group:games").unwrap().unwrap();
    assert_eq!(
        games.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["roblox"]
    );
    let e = c.expand("service:tiktokk").unwrap_err();
    assert!(
        e.contains("unknown service \"tiktokk\"") && e.contains("did you mean \"tiktok\""),
        "{e}"
    );
    assert!(
        c.expand("service-group:game")
            .unwrap_err()
            .contains("did you mean \"games\"")
    );
    assert!(
        c.expand("service-group:ai")
            .unwrap_err()
            .contains("no services")
    );
    assert_eq!(c.domains_of("service:tiktok").unwrap().len(), 2);
    assert_eq!(c.domains_of("tiktok.com"), None);
}

#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("tiktok", "tiktok"), 0);
    assert_eq!(edit_distance("tiktokk", "tiktok"), 1);
    assert_eq!(edit_distance("robolx", "roblox"), 2);
    assert_eq!(suggest("zzzzzz", ["tiktok"].into_iter()), "");
}

/// The shipped catalogue: at least 60 services, each with a description and a source,
/// covering every group, and loading without a problem.
#[test]
fn the_shipped_catalogue_has_sixty_services_each_described_and_sourced() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lists/services");
    let c = Catalogue::load(&dir).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(c.len() >= 60, "{} services", c.len());
    for s in c.services() {
        assert!(
            !s.description.trim().is_empty() && !s.source.trim().is_empty(),
            "{}",
            s.name
        );
        let stem = s.file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(stem, s.name, "a service's file is named after it");
    }
    for (g, _) in GROUPS {
        assert!(c.members(g).next().is_some(), "group {g} has members");
    }
    for name in [
        "tiktok",
        "snapchat",
        "instagram",
        "facebook",
        "x",
        "threads",
        "bereal",
        "reddit",
        "pinterest",
        "tumblr",
        "discord",
        "telegram",
        "whatsapp",
        "signal",
        "youtube",
        "twitch",
        "netflix",
        "disney-plus",
        "kick",
        "roblox",
        "fortnite",
        "minecraft",
        "steam",
        "xbox-live",
        "playstation-network",
        "nintendo",
        "among-us",
        "chess-com",
        "chatgpt",
        "gemini",
        "claude",
        "copilot",
        "character-ai",
        "perplexity",
        "deepseek",
        "meta-ai",
        "grok",
        "omegle-clones",
        "chatroulette",
        "psiphon",
        "hola",
        "urban-vpn",
        "opera-vpn",
    ] {
        assert!(c.get(name).is_some(), "the issue names {name}");
    }
}
