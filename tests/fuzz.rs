//! Property fuzzing on stable Rust (proptest): the inputs a hostile device or a bad
//! download controls — DNS packets on the fast path, list files in every format, and the
//! config file — must never panic the code that reads them, and what it accepts must be
//! well-formed.
//!
//! Each target starts from a corpus under `tests/corpus/` (and the shipped `lists/` and
//! `config/`) and mutates it: byte edits, truncation, splices, random lines. `cargo test`
//! runs a bounded number of cases; a longer run is
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz`. proptest keeps any failing
//! input it finds in `tests/fuzz.proptest-regressions` and replays it first on every run.

use std::path::{Path, PathBuf};

use chaperone::config::Config;
use chaperone::lists::key::normalize_domain;
use chaperone::lists::parse::{Format, MatchKind, parse_text};
use chaperone::transport::wire;
use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in a corpus folder (sorted, so case generation is reproducible). An empty
/// or missing corpus fails: a fuzz target with nothing to mutate proves little.
fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn wire_seeds() -> Vec<Vec<u8>> {
    corpus("tests/corpus/wire")
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            hex::decode(text.trim()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn text_seeds(dirs: &[&str], also: &[&str]) -> Vec<String> {
    let mut files: Vec<PathBuf> = dirs.iter().flat_map(|d| corpus(d)).collect();
    files.extend(also.iter().map(|f| root().join(f)));
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5_000);
    ProptestConfig::with_cases(cases)
}

/// A seed mutated: some bytes overwritten, then cut to a length, then maybe a random tail.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (
        0..n,
        prop::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(move |(i, edits, cut, tail)| {
            let mut b = seeds[i].clone();
            for (at, byte) in edits {
                if !b.is_empty() {
                    let len = b.len();
                    b[at as usize % len] = byte;
                }
            }
            b.truncate(cut as usize % (b.len() + 1).max(1) + b.len() / 2);
            b.extend(tail);
            b
        })
}

/// Lines of a text seed, edited: lines dropped, duplicated, or replaced by noise made of
/// the characters list and TOML syntax care about.
fn mutated_text(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let n = seeds.len();
    let noise = "[a-z0-9.*|@^$#=\\[\\]\"' :/\\-_\t\r\u{e9}\u{202e}]{0,40}";
    (
        0..n,
        prop::collection::vec((any::<u16>(), 0u8..4, noise), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut lines: Vec<String> = seeds[i].lines().map(str::to_owned).collect();
            for (at, op, text) in edits {
                let at = at as usize % (lines.len() + 1);
                match op {
                    0 if at < lines.len() => {
                        lines.remove(at);
                    }
                    1 if at < lines.len() => {
                        let l = lines[at].clone();
                        lines.insert(at, l);
                    }
                    2 if at < lines.len() => lines[at].push_str(&text),
                    _ => lines.insert(at, text),
                }
            }
            lines.join("\n")
        })
}

proptest! {
    #![proptest_config(cases())]

    /// The fast path's parser takes any bytes; what it accepts has a usable key, and the
    /// TTL scanner never reads past the end.
    #[test]
    fn the_wire_parser_takes_any_packet(pkt in prop_oneof![
        mutated(wire_seeds()),
        prop::collection::vec(any::<u8>(), 0..600),
    ]) {
        if let Some(q) = wire::parse_query(&pkt) {
            prop_assert!(q.wire_name().len() <= 255);
            let _ = q.key();
        }
        let _ = wire::ttl_fields(&pkt);
    }

    /// Every list format reads any text without panicking, and every entry it keeps is a
    /// normalised domain name.
    #[test]
    fn list_parsers_take_any_text(
        text in mutated_text(text_seeds(&["tests/corpus/lists"], &[
            "lists/adult.txt", "lists/gambling.hosts", "lists/malware.adblock",
            "lists/illegal.rpz",
        ])),
        format in prop_oneof![
            Just(Format::Auto), Just(Format::Domains), Just(Format::Hosts),
            Just(Format::Adblock), Just(Format::Rpz),
        ],
    ) {
        let parsed = parse_text(Path::new("fuzz.txt"), &text, format, MatchKind::Subtree);
        for e in &parsed.entries {
            let again = normalize_domain(&e.name);
            prop_assert_eq!(again.as_deref(), Ok(e.name.as_str()));
        }
        let lines = text.lines().count();
        for e in &parsed.errors {
            prop_assert!(e.line >= 1 && e.line <= lines.max(1), "line {} of {}", e.line, lines);
        }
    }

    /// The config loader reports every bad config as an error, never a panic, and every
    /// problem it reports names a key.
    #[test]
    fn the_config_loader_takes_any_text(
        text in mutated_text(text_seeds(&["tests/corpus/config"], &["config/example.toml"])),
    ) {
        let path = root().join("config/fuzz.toml");
        if let Err(chaperone::config::ConfigError::Invalid { problems, .. }) =
            Config::from_str(&path, &text)
        {
            prop_assert!(!problems.is_empty());
            for p in &problems {
                prop_assert!(!p.key.is_empty(), "{p:?}");
            }
        }
    }
}
