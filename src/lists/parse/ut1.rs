//! UT1-style category folders: `<category>/domains` files, one category per folder.

use std::path::{Path, PathBuf};

use super::{Format, MatchKind, Parsed, parse_text, parse_text_chunked, to_text};
use crate::lists::decompress;

/// The names a category's list may have, in order of preference. Mirrors and snapshots
/// compress the large ones; reading them beats skipping a category without a word.
const DOMAIN_FILES: [&str; 4] = ["domains", "domains.xz", "domains.gz", "domains.zst"];

/// The domains file of a category folder, plain or compressed.
fn domains_file(folder: &Path) -> Option<PathBuf> {
    DOMAIN_FILES
        .iter()
        .map(|f| folder.join(f))
        .find(|p| p.is_file())
}

/// A UT1-style folder: every immediate subfolder holding a `domains` file (or
/// `domains.xz`, `.gz`, `.zst`, unpacked on the fly) is a category named after the folder,
/// read as a plain domain list. Sorted by category.
///
/// UT1 ships aliases as symbolic links (`porn -> adult`, `ads -> publicite`); they are
/// skipped when reading every category, so each list is read once under its real name,
/// but an alias named in `only` is read under that name. `only`, if not empty, limits the
/// result to those categories, and one that is missing is an error naming it.
pub fn parse_ut1_dir(
    dir: &Path,
    only: &[String],
    default_kind: MatchKind,
) -> std::io::Result<Vec<(String, Parsed)>> {
    categories(dir, only)?
        .into_iter()
        .map(|(c, p)| {
            let text = read_category(&p)?;
            Ok((c, parse_text(&p, &text, Format::Domains, default_kind)))
        })
        .collect()
}

/// [`parse_ut1_dir`] one category at a time and each in pieces ([`super::parse_text_chunked`]):
/// `each(category, piece)` in category order, so a folder of millions of names is never
/// held parsed all at once.
pub fn for_each_ut1_piece(
    dir: &Path,
    only: &[String],
    default_kind: MatchKind,
    mut each: impl FnMut(&str, Parsed),
) -> std::io::Result<()> {
    for (c, p) in categories(dir, only)? {
        let text = read_category(&p)?;
        parse_text_chunked(&p, &text, Format::Domains, default_kind, |parsed| {
            each(&c, parsed)
        });
    }
    Ok(())
}

/// The categories of a UT1 folder and their domains files, sorted; see [`parse_ut1_dir`].
fn categories(dir: &Path, only: &[String]) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_alias = entry.file_type()?.is_symlink();
        let wanted = if only.is_empty() {
            !is_alias
        } else {
            only.contains(&name)
        };
        if !wanted {
            continue;
        }
        if let Some(domains) = domains_file(&entry.path()) {
            found.push((name, domains));
        }
    }
    found.sort();
    for want in only {
        if !found.iter().any(|(c, _)| c == want) {
            let folder = dir.join(want);
            let why = if !folder.is_dir() {
                "no such category folder"
            } else {
                "the folder has no domains file"
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                // The caller names `dir`.
                format!("UT1 category {want:?}: {why}"),
            ));
        }
    }
    Ok(found)
}

/// A category's domains file as text, unpacked if compressed.
fn read_category(p: &Path) -> std::io::Result<String> {
    // The caller names `dir`; say which file inside it failed.
    let bytes = decompress::read_file(p, decompress::DEFAULT_LIMIT)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    // Not UTF-8: the error already names the file and line.
    to_text(p, bytes)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

    #[test]
    fn ut1_format_reads_a_single_file_as_domains() {
        let parsed = p("casino.example\n192.0.2.7\n", Format::Ut1);
        assert_eq!(names(&parsed), [block("casino.example", Subtree)]);
        assert_eq!(ips(&parsed), [("192.0.2.7/32".to_owned(), Action::Block)]);
        assert!(parsed.errors.is_empty());
    }

    #[test]
    fn ut1_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (cat, text) in [
            ("gambling", "casino.example\n1.2.3.4\n"),
            ("games", "play.example\r\n.dot.example\r\n"),
        ] {
            std::fs::create_dir(dir.path().join(cat)).unwrap();
            std::fs::write(dir.path().join(cat).join("domains"), text).unwrap();
            std::fs::write(dir.path().join(cat).join("urls"), "x.example/y\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        std::fs::create_dir(dir.path().join("packed")).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, b"packed.example\n").unwrap();
        std::fs::write(dir.path().join("packed/domains.xz"), xz.finish().unwrap()).unwrap();
        std::fs::create_dir(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken/domains.gz"), b"\x1f\x8b not gzip").unwrap();
        std::fs::write(dir.path().join("README"), "not a category\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("gambling"), dir.path().join("jeux")).unwrap();

        // A damaged compressed list is an error naming it, never a silent gap.
        let err = parse_ut1_dir(dir.path(), &[], Subtree)
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken/domains.gz"), "{err}");
        std::fs::remove_dir_all(dir.path().join("broken")).unwrap();
        let cats = parse_ut1_dir(dir.path(), &[], Subtree).unwrap();
        assert_eq!(
            cats.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["gambling", "games", "packed"]
        );
        assert_eq!(names(&cats[2].1), [block("packed.example", Subtree)]);
        let gambling = &cats[0].1;
        assert_eq!(names(gambling), [block("casino.example", Subtree)]);
        assert_eq!(ips(gambling), [("1.2.3.4/32".to_owned(), Action::Block)]);
        assert_eq!(cats[1].1.entries.len(), 2);

        let only = parse_ut1_dir(dir.path(), &["games".into()], Exact).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].1.entries[0].kind, Exact);
        #[cfg(unix)]
        {
            let alias = parse_ut1_dir(dir.path(), &["jeux".into()], Subtree).unwrap();
            assert_eq!(alias[0].0, "jeux");
            assert_eq!(alias[0].1.entries.len(), 1);
        }

        for (want, why) in [
            ("missing", "no such category folder"),
            ("empty", "the folder has no domains file"),
        ] {
            let err = parse_ut1_dir(dir.path(), &["games".into(), want.into()], Subtree)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want) && err.contains(why), "{err}");
        }
        assert!(parse_ut1_dir(&dir.path().join("nope"), &[], Subtree).is_err());
    }

    #[test]
    fn real_ut1_folder_parses() {
        let ut1 = real("ut1");
        // The large categories are stored as `domains.xz`: they are read too.
        let cats = parse_ut1_dir(&ut1, &[], Subtree).unwrap();
        assert!(cats.len() > 60, "{} categories", cats.len());
        assert!(cats.iter().any(|(c, _)| c == "redirector"));
        let (mut entries, mut ips) = (0, 0);
        for (cat, parsed) in &cats {
            entries += parsed.entries.len();
            ips += parsed.ips.len();
            // UT1's addresses are plain dotted quads: every line is a name or an address.
            assert!(parsed.errors.is_empty(), "{cat}: {}", parsed.errors[0]);
        }
        assert!(entries > 500_000, "{entries}");
        // The redirector categories are one-sixth addresses; elsewhere they are rare.
        assert!(ips > 68_000, "{ips} IP entries");
        let redirector = &cats.iter().find(|(c, _)| c == "redirector").unwrap().1;
        assert!(redirector.ips.len() > 20_000);
        assert!(redirector.ips.iter().all(|e| e.net.prefix_len() == 32));
        // Ask for one category by name.
        let doh = parse_ut1_dir(&ut1, &["doh".into()], Subtree).unwrap();
        assert!(doh[0].1.entries.len() > 2000);
    }
}
