//! Last good copies: where each downloaded list lives in `lists.cache_dir`, the validators
//! and counts kept beside it, and replacing a copy without ever leaving a half-written one.
//!
//! A copy is the unpacked list (a file, or for a UT1 archive a folder of
//! `<category>/domains`), so compiling a URL source is compiling a local file. This module
//! never downloads and never decides whether a download is good: it stores what it is
//! given once the caller has checked it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What is kept beside a copy (`<copy>.meta.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The URL it came from.
    pub url: String,
    /// `ETag` of the response, for `If-None-Match`.
    pub etag: Option<String>,
    /// `Last-Modified` of the response, for `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// When the server last confirmed this copy (downloaded, or answered 304), Unix seconds.
    pub checked_at: i64,
    /// SHA-256 (hex) of the bytes as downloaded, to skip a reload when nothing changed.
    pub sha256: String,
    /// Entries per category (one entry, the source's category, for a single list), for the
    /// shrink guard.
    pub counts: BTreeMap<String, u64>,
}

/// The copy of `url` inside `cache_dir`: a readable name from the URL's last path segment
/// plus a hash of the whole URL, so two sources never share a copy.
pub fn copy_path(cache_dir: &Path, url: &str, is_dir: bool) -> PathBuf {
    let hash = hex::encode(&Sha256::digest(url.as_bytes())[..6]);
    let last = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let readable: String = last
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '-',
        })
        .take(48)
        .collect();
    let kind = if is_dir { "dir" } else { "list" };
    cache_dir.join(format!("{readable}-{hash}.{kind}"))
}

/// `<copy>.meta.json`.
pub fn meta_path(copy: &Path) -> PathBuf {
    let mut name = copy.file_name().unwrap_or_default().to_os_string();
    name.push(".meta.json");
    copy.with_file_name(name)
}

/// The metadata of a copy, if the copy and its metadata are both there and readable.
pub fn read_meta(copy: &Path) -> Option<Meta> {
    if !copy.exists() {
        return None;
    }
    let text = std::fs::read(meta_path(copy)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Write the metadata of `copy` atomically.
pub fn write_meta(copy: &Path, meta: &Meta) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    write_atomically(&meta_path(copy), &bytes)
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = sibling(path, "tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `path` with `.{tag}-{pid}` appended: a scratch name beside it, on the same file system
/// (so a rename is atomic), unique per process.
pub fn sibling(path: &Path, tag: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}-{}", std::process::id()));
    path.with_file_name(name)
}

/// Replace `copy` with `staged` (a file or folder beside it) and write its metadata.
///
/// A file is replaced by one rename. A folder cannot be swapped atomically, so the old one
/// is first moved aside, the new one moved in, and the old one deleted; a crash in between
/// leaves either the old folder (aside) or the new one, and [`recover`] puts the old one
/// back at the next start when the new one is missing.
pub fn promote(staged: &Path, copy: &Path, meta: &Meta) -> io::Result<()> {
    if staged.is_dir() {
        let aside = sibling(copy, "old");
        if copy.exists() {
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(copy, &aside)?;
        }
        std::fs::rename(staged, copy)?;
        let _ = std::fs::remove_dir_all(&aside);
    } else {
        std::fs::rename(staged, copy)?;
    }
    write_meta(copy, meta)
}

/// After a crash during [`promote`] of a folder: put the old folder back if the new one
/// never arrived.
pub fn recover(copy: &Path) {
    let aside = sibling(copy, "old");
    if !copy.exists() && aside.is_dir() {
        let _ = std::fs::rename(&aside, copy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_named_after_the_url_and_never_shared() {
        let dir = Path::new("/cache");
        let a = copy_path(dir, "https://l.example/x/list.txt?k=1", false);
        let b = copy_path(dir, "https://l.example/y/list.txt?k=1", false);
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("list-txt-") && name.ends_with(".list"),
            "{name}"
        );
        assert!(
            copy_path(dir, "https://l.example/blacklists.tar.gz", true)
                .to_string_lossy()
                .ends_with(".dir")
        );
        assert_eq!(
            meta_path(&a).file_name().unwrap().to_string_lossy(),
            format!("{name}.meta.json")
        );
    }

    #[test]
    fn promote_replaces_files_and_folders_and_keeps_meta() {
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("l.list");
        let staged = tmp.path().join("staged");
        std::fs::write(&staged, "new\n").unwrap();
        std::fs::write(&copy, "old\n").unwrap();
        let meta = Meta {
            url: "https://l.example/".into(),
            etag: Some("\"1\"".into()),
            ..Meta::default()
        };
        promote(&staged, &copy, &meta).unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "new\n");
        assert_eq!(read_meta(&copy).unwrap(), meta);

        let dir_copy = tmp.path().join("u.dir");
        std::fs::create_dir_all(dir_copy.join("old-cat")).unwrap();
        let staged_dir = tmp.path().join("staged-dir");
        std::fs::create_dir_all(staged_dir.join("new-cat")).unwrap();
        promote(&staged_dir, &dir_copy, &meta).unwrap();
        assert!(dir_copy.join("new-cat").is_dir());
        assert!(!dir_copy.join("old-cat").exists());
        assert!(!sibling(&dir_copy, "old").exists());

        // A crash after moving the old folder aside: it comes back.
        std::fs::rename(&dir_copy, sibling(&dir_copy, "old")).unwrap();
        recover(&dir_copy);
        assert!(dir_copy.join("new-cat").is_dir());
    }
}
