//! UT1-style category folders: `<category>/domains` files, one category per folder.

use std::path::Path;

use super::{Format, MatchKind, Parsed, parse_file};

/// A UT1-style folder: every immediate subfolder holding a `domains` file is a category
/// named after the folder, read as a plain domain list. Sorted by category.
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
        let domains = entry.path().join("domains");
        if wanted && domains.is_file() {
            found.push((name, domains));
        }
    }
    found.sort();
    for want in only {
        if !found.iter().any(|(c, _)| c == want) {
            let folder = dir.join(want);
            let why = if !folder.is_dir() {
                "no such category folder"
            } else if folder.join("domains.xz").exists() || folder.join("domains.gz").exists() {
                "its domains file is compressed; decompress it first"
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
    found
        .into_iter()
        .map(
            |(c, p)| match parse_file(&p, Format::Domains, default_kind) {
                Ok(parsed) => Ok((c, parsed)),
                // The caller names `dir`; say which file inside it failed.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", p.display()),
                )),
            },
        )
        .collect()
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
        assert_eq!(
            parsed.errors[0].to_string(),
            "list.txt:2: IP address, not a domain name: 192.0.2.7"
        );
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
        std::fs::write(dir.path().join("packed/domains.xz"), b"").unwrap();
        std::fs::write(dir.path().join("README"), "not a category\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("gambling"), dir.path().join("jeux")).unwrap();

        let cats = parse_ut1_dir(dir.path(), &[], Subtree).unwrap();
        assert_eq!(
            cats.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["gambling", "games"]
        );
        let gambling = &cats[0].1;
        assert_eq!(names(gambling), [block("casino.example", Subtree)]);
        assert_eq!(gambling.errors[0].line, 2);
        assert_eq!(gambling.errors[0].path, dir.path().join("gambling/domains"));
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
            ("packed", "compressed"),
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
        // Only the categories stored uncompressed have a `domains` file.
        let cats = parse_ut1_dir(&ut1, &[], Subtree).unwrap();
        assert!(cats.len() > 40, "{} categories", cats.len());
        let (mut entries, mut errors) = (0, 0);
        for (cat, parsed) in &cats {
            entries += parsed.entries.len();
            errors += parsed.errors.len();
            for e in &parsed.errors {
                // UT1 lists a few addresses; those are the only expected rejects.
                assert_eq!(e.reason, "IP address, not a domain name", "{cat}: {e}");
            }
        }
        assert!(entries > 30_000, "{entries}");
        assert!(errors < entries / 20, "{errors} errors");
        // Ask for one category by name.
        let doh = parse_ut1_dir(&ut1, &["doh".into()], Subtree).unwrap();
        assert!(doh[0].1.entries.len() > 2000);
    }
}
