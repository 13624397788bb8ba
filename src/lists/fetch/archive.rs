//! Unpacking a download into the shape a source compiles from: a single list becomes one
//! plain file; a UT1 archive (`blacklists.tar.gz`) becomes a folder of
//! `<category>/domains` files, the layout `parse::parse_ut1_dir` reads.
//!
//! Everything a download holds is untrusted: sizes are bounded after decompression, only
//! `domains` files are taken from an archive, category names are checked so no entry can
//! write outside the staging folder, and links in the archive are never followed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

use crate::lists::decompress::{self, Limited, Packing};

/// Most categories one archive may hold (UT1 has about 100).
const MAX_CATEGORIES: usize = 1_000;

/// Unpack the downloaded file `raw` into the plain file `to`; at most `limit` bytes.
pub fn unpack_list(raw: &Path, to: &Path, limit: u64) -> io::Result<u64> {
    let mut input = BufReader::new(File::open(raw)?);
    let packing = Packing::sniff(input.fill_buf()?);
    let mut out = io::BufWriter::new(File::create(to)?);
    let n = decompress::unpack_to(packing, input, &mut out, limit)?;
    io::Write::flush(&mut out)?;
    out.get_ref().sync_all()?;
    Ok(n)
}

/// Unpack the (compressed) tar archive `raw` into the folder `to` (created), keeping each
/// `<category>/domains` (any leading folders, e.g. `blacklists/`, are dropped). UT1's
/// aliases (`porn -> adult`) are links: each becomes a copy of its target's list, so a
/// source may name either. Returns the categories found.
pub fn unpack_ut1(raw: &Path, to: &Path, limit: u64) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(to)?;
    let mut input = BufReader::new(File::open(raw)?);
    let packing = Packing::sniff(input.fill_buf()?);
    let mut tar = tar::Archive::new(Limited::new(packing.reader(input)?, limit));
    let mut found: Vec<String> = Vec::new();
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    let mut written: u64 = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let (Some(alias), Some(target)) = (alias_name(&path), entry.link_name()?)
                && let Some(target) = target
                    .file_name()
                    .map(|t| t.to_string_lossy().into_owned())
                    .filter(|t| valid_category(t))
            {
                aliases.insert(alias, target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let Some(category) = category_of(&path) else {
            continue;
        };
        if found.len() >= MAX_CATEGORIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {MAX_CATEGORIES} categories in the archive"),
            ));
        }
        let dir = to.join(&category);
        std::fs::create_dir_all(&dir)?;
        let mut out = io::BufWriter::new(File::create(dir.join("domains"))?);
        written += io::copy(&mut (&mut entry).take(limit + 1), &mut out)?;
        if written > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {limit} bytes once unpacked"),
            ));
        }
        io::Write::flush(&mut out)?;
        found.push(category);
    }
    for (alias, target) in aliases {
        let from = to.join(&target).join("domains");
        if from.is_file() && !to.join(&alias).exists() {
            let dir = to.join(&alias);
            std::fs::create_dir_all(&dir)?;
            written += std::fs::copy(&from, dir.join("domains"))?;
            if written > limit {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("more than {limit} bytes once unpacked"),
                ));
            }
            found.push(alias);
        }
    }
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the archive holds no <category>/domains file",
        ));
    }
    found.sort();
    Ok(found)
}

/// `…/<category>/domains` → the category, if it is a plain, safe folder name.
fn category_of(path: &Path) -> Option<String> {
    if path.file_name()? != "domains"
        || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let category = path.parent()?.file_name()?.to_string_lossy().into_owned();
    valid_category(&category).then_some(category)
}

/// `…/<alias>` (a link at category level) → the alias name.
fn alias_name(path: &Path) -> Option<String> {
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let name = path.file_name()?.to_string_lossy().into_owned();
    valid_category(&name).then_some(name)
}

/// Category names are folder names: letters, digits, `_`, `-`, `.` (not leading), at most
/// 64 characters.
fn valid_category(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar.gz like UT1's: `blacklists/<cat>/{domains,urls}`, an alias link, and hostile
    /// entries.
    fn archive(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("blacklists.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, body).unwrap();
        };
        add("blacklists/gambling/domains", b"casino.example\n");
        add("blacklists/gambling/urls", b"casino.example/x\n");
        add("blacklists/games/domains", b"play.example\n");
        add("blacklists/README", b"hello\n");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        tar.append_link(&mut h, "blacklists/jeux", "games").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn a_ut1_archive_becomes_a_category_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = archive(tmp.path());
        let out = tmp.path().join("out");
        let cats = unpack_ut1(&raw, &out, 1 << 20).unwrap();
        assert_eq!(cats, ["gambling", "games", "jeux"]);
        assert_eq!(
            std::fs::read_to_string(out.join("jeux/domains")).unwrap(),
            "play.example\n"
        );
        assert!(!out.join("gambling/urls").exists());
        // Too small a limit is an error, not a partial folder that compiles.
        let err = unpack_ut1(&raw, &tmp.path().join("small"), 20).unwrap_err();
        assert!(
            decompress::is_too_large(&err) || err.to_string().contains("bytes"),
            "{err}"
        );
    }

    #[test]
    fn entries_cannot_escape_or_pose_as_categories() {
        assert_eq!(
            category_of(Path::new("a/b/ads/domains")).as_deref(),
            Some("ads")
        );
        assert_eq!(category_of(Path::new("../ads/domains")), None);
        assert_eq!(category_of(Path::new("/ads/domains")), None);
        assert_eq!(category_of(Path::new("ads/urls")), None);
        assert_eq!(category_of(Path::new(".hidden/domains")), None);
        assert_eq!(category_of(Path::new("domains")), None);
    }

    #[test]
    fn a_file_that_is_not_an_archive_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("x");
        std::fs::write(&raw, "<html>not found</html>\n").unwrap();
        assert!(unpack_ut1(&raw, &tmp.path().join("o"), 1 << 20).is_err());
    }
}
