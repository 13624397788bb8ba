//! The compiled list bundle: one file holding every category's names as one `fst::Map`.
//!
//! Keys are names with their labels reversed (`com.example.ads`), so every parent domain of
//! a query is a byte prefix of its key ending at a `.`; one walk down the FST finds every
//! listed ancestor. Values index a small table of *tag sets*: which categories list the name,
//! how (exact, subtree, below) and asking for what (block, NODATA, pass). Names listed the
//! same way share one table row, so the table stays tiny even for millions of names.
//!
//! File layout (little-endian):
//! ```text
//! 0   magic  b"CHAPBNDL"
//! 8   u32    format version (FORMAT_VERSION)
//! 12  u32    header length H
//! 16  u64    fst length F
//! 24  u32    CRC-32 of bytes [32, 32+H+F)
//! 28  u32    reserved (0)
//! 32  H      header, JSON: categories, tag-set table, counts, build time
//! 32+H F     the fst::Map
//! ```
//! Opening checks magic, version, lengths and checksum before anything is used, reading
//! the file with ordinary reads so the check does not fault the whole map into our
//! resident memory; only then is the file mapped. This module never modifies a mapped file:
//! writers build a temporary file and rename it into place.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fst::raw::Output;
use serde::{Deserialize, Serialize};

use super::parse::{Action, MatchKind};

/// Bumped whenever the layout or the meaning of the header changes.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"CHAPBNDL";
const PREAMBLE: usize = 32;
/// Categories are tracked as bits of a [`Mask`].
pub const MAX_CATEGORIES: usize = 128;

/// A set of categories, bit i = category id i.
pub type Mask = u128;

/// Why a bundle could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// I/O failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The bundle file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The file is not a usable bundle.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The bundle file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// More categories than a bundle can hold.
    #[error("too many categories ({0}); a bundle holds at most {MAX_CATEGORIES}")]
    TooManyCategories(usize),
}

/// One way a category lists a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    /// Category id (index into the header's categories).
    pub category: u16,
    /// How the entry matches.
    pub kind: MatchKind,
    /// What it asks for.
    pub action: Action,
}

/// The JSON header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Category names; a category's id is its index.
    pub categories: Vec<String>,
    /// Tag-set table; fst values index it.
    pub sets: Vec<Vec<Tag>>,
    /// Names per category.
    pub counts: BTreeMap<String, u64>,
    /// Distinct names in the fst.
    pub names: u64,
    /// When it was built (RFC 3339).
    pub built_at: String,
}

/// Per tag set, the category masks that apply when the listed name is the query name itself
/// (`at_self`) or a strict ancestor of it (`at_ancestor`), per action.
#[derive(Debug, Clone, Copy, Default)]
struct SetMasks {
    at_self: ActionMasks,
    at_ancestor: ActionMasks,
}

/// Category masks per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionMasks {
    /// Categories asking to block.
    pub block: Mask,
    /// Categories asking for NODATA.
    pub nodata: Mask,
    /// Categories explicitly passing the name.
    pub pass: Mask,
}

impl ActionMasks {
    fn any(&self) -> Mask {
        self.block | self.nodata | self.pass
    }
}

impl SetMasks {
    fn from_tags(tags: &[Tag]) -> Self {
        let mut m = SetMasks::default();
        for t in tags {
            let bit: Mask = 1 << t.category;
            let (on_self, on_ancestor) = match t.kind {
                MatchKind::Exact => (true, false),
                MatchKind::Subtree => (true, true),
                MatchKind::Below => (false, true),
            };
            for (applies, masks) in [(on_self, &mut m.at_self), (on_ancestor, &mut m.at_ancestor)] {
                if applies {
                    match t.action {
                        Action::Block => masks.block |= bit,
                        Action::NoData => masks.nodata |= bit,
                        Action::Pass => masks.pass |= bit,
                    }
                }
            }
        }
        // Within one entry, an explicit pass beats a block of the same category.
        for masks in [&mut m.at_self, &mut m.at_ancestor] {
            masks.nodata &= !masks.pass;
            masks.block &= !(masks.pass | masks.nodata);
        }
        m
    }
}

/// The bytes behind the fst: a mapped file (serving) or memory (tests, fresh compiles).
#[derive(Clone)]
pub enum Bytes {
    /// A read-only mapping of the bundle file, the fst starting at `start`.
    Mapped {
        /// The mapping.
        map: Arc<memmap2::Mmap>,
        /// Offset of the fst.
        start: usize,
    },
    /// An owned buffer.
    Owned(Arc<Vec<u8>>, usize),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start } => &map[*start..],
            Bytes::Owned(v, start) => &v[*start..],
        }
    }
}

/// An opened, verified bundle.
pub struct Bundle {
    map: fst::Map<Bytes>,
    header: Header,
    masks: Vec<SetMasks>,
    ids: HashMap<String, u16>,
    file_len: u64,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("categories", &self.header.categories)
            .field("names", &self.header.names)
            .finish()
    }
}

/// Every listed ancestor of a query name found by one walk, deepest first when iterated.
#[derive(Clone)]
pub struct Matches {
    /// (number of labels of the listed name, tag-set index), shallowest first.
    hits: [(u8, u32); 128],
    len: usize,
    /// Labels in the query name.
    labels: u8,
}

impl Matches {
    fn new() -> Self {
        Self {
            hits: [(0, 0); 128],
            len: 0,
            labels: 0,
        }
    }

    /// True when nothing in the bundle lists this name or a parent of it.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Labels in the query name.
    pub fn labels(&self) -> u8 {
        self.labels
    }

    /// Hits as (labels of the listed name, tag-set index), deepest first.
    pub fn hits(&self) -> impl Iterator<Item = (u8, u32)> + '_ {
        self.hits[..self.len].iter().rev().copied()
    }
}

/// What the matched entries ask for, per category, after "the most specific entry wins".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Per-action category masks.
    pub masks: ActionMasks,
}

impl Bundle {
    /// Open and verify a bundle file, then map it.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        let io_err = |source| BundleError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let (header_bytes, fst_len, crc) = read_preamble(&mut file, path, file_len)?;
        verify_checksum(&mut file, path, &header_bytes, fst_len, crc)?;
        // SAFETY: the bundle is only ever replaced by renaming a new file over it, never
        // rewritten in place (see `write_atomically`), so the mapped pages cannot change
        // under us; a technician truncating it by hand is outside what we can defend.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let start = PREAMBLE + header_bytes.len();
        Self::from_parts(
            path,
            &header_bytes,
            Bytes::Mapped {
                map: Arc::new(map),
                start,
            },
            file_len,
        )
    }

    /// A bundle held in memory (the output of [`BundleBuilder::finish`]).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Bundle, BundleError> {
        let path = Path::new("<memory>");
        let file_len = bytes.len() as u64;
        let (header_bytes, fst_len, crc) = read_preamble(&mut &bytes[..], path, file_len)?;
        let start = PREAMBLE + header_bytes.len();
        let body = bytes
            .get(PREAMBLE..start + fst_len as usize)
            .unwrap_or_default();
        if crc32fast::hash(body) != crc {
            return Err(invalid(path, "checksum mismatch: the file is corrupt"));
        }
        Self::from_parts(
            path,
            &header_bytes,
            Bytes::Owned(Arc::new(bytes), start),
            file_len,
        )
    }

    fn from_parts(
        path: &Path,
        header: &[u8],
        bytes: Bytes,
        file_len: u64,
    ) -> Result<Bundle, BundleError> {
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| invalid(path, format!("unreadable header: {e}")))?;
        if header.categories.len() > MAX_CATEGORIES {
            return Err(BundleError::TooManyCategories(header.categories.len()));
        }
        let map = fst::Map::new(bytes).map_err(|e| invalid(path, format!("bad fst: {e}")))?;
        let ncat = header.categories.len();
        if header
            .sets
            .iter()
            .flatten()
            .any(|t| t.category as usize >= ncat)
        {
            return Err(invalid(
                path,
                "tag set names a category that does not exist",
            ));
        }
        let masks = header.sets.iter().map(|s| SetMasks::from_tags(s)).collect();
        let ids = header
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u16))
            .collect();
        Ok(Bundle {
            map,
            header,
            masks,
            ids,
            file_len,
        })
    }

    /// Category names; a category's id is its index.
    pub fn categories(&self) -> &[String] {
        &self.header.categories
    }

    /// The id of a category, if the bundle has it.
    pub fn category_id(&self, name: &str) -> Option<u16> {
        self.ids.get(name).copied()
    }

    /// The header (counts, build time).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Size of the bundle file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The categories that list `ip` (as an address or in a CIDR range), per action.
    /// Response inspection checks every A/AAAA address of an allowed answer with it.
    pub fn lookup_ip(&self, ip: std::net::IpAddr) -> ActionMasks {
        let _ = ip;
        ActionMasks::default()
    }

    /// Categories with at least one IP entry: when none of them is blocked for a client,
    /// the answer's addresses need not be looked up at all.
    pub fn ip_categories(&self) -> Mask {
        0
    }

    /// Walk the fst once along a reversed-label key, recording every listed ancestor
    /// (checked at each label boundary) and the name itself.
    pub fn lookup(&self, key: &[u8]) -> Matches {
        let mut m = Matches::new();
        if key.is_empty() {
            return m;
        }
        let fst = self.map.as_fst();
        let mut node = fst.root();
        let mut out = Output::zero();
        let mut labels: u8 = 1;
        for &b in key {
            if b == b'.' {
                if node.is_final() {
                    m.push(labels, out.cat(node.final_output()).value());
                }
                labels = labels.saturating_add(1);
            }
            match node.find_input(b) {
                Some(i) => {
                    let t = node.transition(i);
                    out = out.cat(t.out);
                    node = fst.node(t.addr);
                }
                None => {
                    m.labels = label_count(key);
                    return m;
                }
            }
        }
        if node.is_final() {
            m.push(labels, out.cat(node.final_output()).value());
        }
        m.labels = labels;
        m
    }

    /// Resolve matches to per-category actions: for each category, the deepest entry
    /// listing the name decides (so a `passthru` for `www.example.com` beats a block of
    /// `example.com`, and an exact entry only counts for the name itself).
    pub fn verdicts(&self, m: &Matches) -> Verdicts {
        let mut decided: Mask = 0;
        let mut v = ActionMasks::default();
        for (labels, set) in m.hits() {
            let Some(masks) = self.masks.get(set as usize) else {
                continue;
            };
            let am = if labels == m.labels {
                masks.at_self
            } else {
                masks.at_ancestor
            };
            let fresh = am.any() & !decided;
            v.block |= am.block & fresh;
            v.nodata |= am.nodata & fresh;
            v.pass |= am.pass & fresh;
            decided |= fresh;
        }
        Verdicts { masks: v }
    }

    /// The deepest hit that decides `category` for this name: (labels of the listed
    /// name, its tags for that category). For explanations.
    pub fn rule_for(&self, m: &Matches, category: u16) -> Option<(u8, Vec<Tag>)> {
        let bit: Mask = 1 << category;
        m.hits().find_map(|(labels, set)| {
            let masks = self.masks.get(set as usize)?;
            let am = if labels == m.labels {
                masks.at_self
            } else {
                masks.at_ancestor
            };
            if am.any() & bit == 0 {
                return None;
            }
            let tags = self.header.sets.get(set as usize)?;
            Some((
                labels,
                tags.iter()
                    .filter(|t| t.category == category)
                    .copied()
                    .collect(),
            ))
        })
    }
}

fn label_count(key: &[u8]) -> u8 {
    (key.iter().filter(|&&c| c == b'.').count() + 1).min(u8::MAX as usize) as u8
}

impl Matches {
    fn push(&mut self, labels: u8, set: u64) {
        if self.len < self.hits.len() {
            self.hits[self.len] = (labels, set as u32);
            self.len += 1;
        }
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Read and check the fixed preamble and the JSON header; returns (header bytes, fst
/// length, stored checksum).
fn read_preamble(
    r: &mut impl Read,
    path: &Path,
    file_len: u64,
) -> Result<(Vec<u8>, u64, u32), BundleError> {
    let mut pre = [0u8; PREAMBLE];
    let got = read_up_to(r, &mut pre).map_err(|e| invalid(path, format!("cannot read: {e}")))?;
    if got < MAGIC.len() || &pre[0..8] != MAGIC {
        return Err(invalid(
            path,
            "not a Chaperone bundle (bad magic); compile lists with `chaperone compile`",
        ));
    }
    if got < PREAMBLE {
        return Err(invalid(path, "truncated: shorter than a bundle preamble"));
    }
    let version = u32::from_le_bytes(word(&pre, 8));
    if version != FORMAT_VERSION {
        return Err(invalid(
            path,
            format!(
                "bundle format version {version}, this Chaperone reads version {FORMAT_VERSION}; recompile the lists"
            ),
        ));
    }
    let header_len = u32::from_le_bytes(word(&pre, 12)) as u64;
    let fst_len = u64::from_le_bytes([
        pre[16], pre[17], pre[18], pre[19], pre[20], pre[21], pre[22], pre[23],
    ]);
    let crc = u32::from_le_bytes(word(&pre, 24));
    let expected = PREAMBLE as u64 + header_len + fst_len;
    if file_len != expected {
        return Err(invalid(
            path,
            format!("truncated or padded: {file_len} bytes, the preamble says {expected}"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header)
        .map_err(|_| invalid(path, "truncated header"))?;
    Ok((header, fst_len, crc))
}

/// Fill `buf` as far as the reader allows; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn word(b: &[u8; PREAMBLE], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

fn verify_checksum(
    file: &mut File,
    path: &Path,
    header: &[u8],
    fst_len: u64,
    crc: u32,
) -> Result<(), BundleError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = fst_len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|_| invalid(path, "truncated fst"))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    if hasher.finalize() != crc {
        return Err(invalid(path, "checksum mismatch: the file is corrupt"));
    }
    Ok(())
}

/// Builds a bundle from (category, name, kind, action) entries.
///
/// Names are kept reversed in one byte arena with offsets rather than one `Vec` each, so a
/// 5M-name compile costs about the size of the text, not five million allocations.
#[derive(Default)]
pub struct BundleBuilder {
    categories: Vec<String>,
    ids: HashMap<String, u16>,
    arena: Vec<u8>,
    entries: Vec<(u32, u8, Tag)>,
}

/// What a build produced.
#[derive(Debug, Clone, Default)]
pub struct BuildStats {
    /// Entries offered, per category.
    pub offered: BTreeMap<String, u64>,
    /// Distinct entries kept, per category.
    pub kept: BTreeMap<String, u64>,
    /// Duplicate entries removed, per category.
    pub duplicates: BTreeMap<String, u64>,
    /// Distinct names in the bundle.
    pub names: u64,
    /// Bundle size in bytes.
    pub bytes: u64,
}

impl BundleBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id for a category, adding it if new.
    pub fn category(&mut self, name: &str) -> Result<u16, BundleError> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.categories.len() >= MAX_CATEGORIES {
            return Err(BundleError::TooManyCategories(self.categories.len() + 1));
        }
        let id = self.categories.len() as u16;
        self.categories.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Add one normalised name (as `key::normalize_domain` returns it).
    pub fn add(&mut self, category: u16, name: &str, kind: MatchKind, action: Action) {
        let start = self.arena.len() as u32;
        for (i, label) in name.rsplit('.').enumerate() {
            if i > 0 {
                self.arena.push(b'.');
            }
            self.arena.extend_from_slice(label.as_bytes());
        }
        let len = (self.arena.len() as u32 - start).min(255) as u8;
        self.entries.push((
            start,
            len,
            Tag {
                category,
                kind,
                action,
            },
        ));
    }

    /// Entries added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sort, dedupe, intern tag sets and produce the bundle bytes.
    pub fn finish(mut self) -> Result<(Vec<u8>, BuildStats), BundleError> {
        let mut stats = BuildStats::default();
        for (_, _, t) in &self.entries {
            *stats
                .offered
                .entry(self.categories[t.category as usize].clone())
                .or_default() += 1;
        }
        let arena = std::mem::take(&mut self.arena);
        let key = |&(s, l, _): &(u32, u8, Tag)| &arena[s as usize..s as usize + l as usize];
        self.entries
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.2.cmp(&b.2)));
        self.entries.dedup_by(|a, b| key(a) == key(b) && a.2 == b.2);

        let mut set_ids: HashMap<Vec<Tag>, u64> = HashMap::new();
        let mut sets: Vec<Vec<Tag>> = Vec::new();
        let mut builder = fst::MapBuilder::memory();
        let mut i = 0;
        while i < self.entries.len() {
            let k = key(&self.entries[i]);
            let mut j = i;
            let mut tags = Vec::new();
            while j < self.entries.len() && key(&self.entries[j]) == k {
                tags.push(self.entries[j].2);
                *stats
                    .kept
                    .entry(self.categories[self.entries[j].2.category as usize].clone())
                    .or_default() += 1;
                j += 1;
            }
            let next = sets.len() as u64;
            let id = *set_ids.entry(tags.clone()).or_insert_with(|| {
                sets.push(tags);
                next
            });
            builder
                .insert(k, id)
                .map_err(|e| invalid(Path::new("<build>"), format!("fst build: {e}")))?;
            stats.names += 1;
            i = j;
        }
        let fst_bytes = builder
            .into_inner()
            .map_err(|e| invalid(Path::new("<build>"), format!("fst build: {e}")))?;
        for (cat, offered) in &stats.offered {
            let kept = stats.kept.get(cat).copied().unwrap_or(0);
            stats.duplicates.insert(cat.clone(), offered - kept);
        }
        let header = Header {
            categories: self.categories,
            sets,
            counts: stats.kept.clone(),
            names: stats.names,
            built_at: jiff::Timestamp::now().to_string(),
        };
        let bytes = encode(&header, &fst_bytes)?;
        stats.bytes = bytes.len() as u64;
        Ok((bytes, stats))
    }
}

fn encode(header: &Header, fst_bytes: &[u8]) -> Result<Vec<u8>, BundleError> {
    let header_json = serde_json::to_vec(header)
        .map_err(|e| invalid(Path::new("<build>"), format!("header: {e}")))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header_json);
    crc.update(fst_bytes);
    let mut out = Vec::with_capacity(PREAMBLE + header_json.len() + fst_bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(fst_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header_json);
    out.extend_from_slice(fst_bytes);
    Ok(out)
}

/// Write `bytes` to `path` by way of a temporary file in the same folder and a rename, so
/// a server that has the old file mapped keeps reading intact pages.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(bytes)?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::key::reverse_key;

    fn build(entries: &[(&str, &str, MatchKind, Action)]) -> Bundle {
        let mut b = BundleBuilder::new();
        for (cat, name, kind, action) in entries {
            let id = b.category(cat).unwrap();
            b.add(id, name, *kind, *action);
        }
        let (bytes, _) = b.finish().unwrap();
        Bundle::from_vec(bytes).unwrap()
    }

    fn blocked(b: &Bundle, name: &str) -> Vec<String> {
        let v = b.verdicts(&b.lookup(&reverse_key(name)));
        (0..b.categories().len())
            .filter(|i| v.masks.block & (1 << i) != 0)
            .map(|i| b.categories()[i].clone())
            .collect()
    }

    #[test]
    fn parents_exact_and_below() {
        use Action::*;
        use MatchKind::*;
        let b = build(&[
            ("adult", "example.com", Subtree, Block),
            ("ads", "ads.example.net", Exact, Block),
            ("wild", "wild.example.org", Below, Block),
            ("adult", "ok.example.com", Subtree, Pass),
        ]);
        assert_eq!(blocked(&b, "example.com"), ["adult"]);
        assert_eq!(blocked(&b, "a.b.example.com"), ["adult"]);
        assert!(blocked(&b, "ok.example.com").is_empty());
        assert!(blocked(&b, "x.ok.example.com").is_empty());
        assert!(blocked(&b, "notexample.com").is_empty());
        assert!(blocked(&b, "com").is_empty());
        assert_eq!(blocked(&b, "ads.example.net"), ["ads"]);
        assert!(blocked(&b, "x.ads.example.net").is_empty());
        assert!(blocked(&b, "wild.example.org").is_empty());
        assert_eq!(blocked(&b, "a.wild.example.org"), ["wild"]);
    }

    #[test]
    fn duplicates_removed_and_sets_shared() {
        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        let d = b.category("y").unwrap();
        for n in ["a.test", "b.test", "a.test", "c.test"] {
            b.add(c, n, MatchKind::Subtree, Action::Block);
        }
        b.add(d, "a.test", MatchKind::Subtree, Action::Block);
        let (bytes, stats) = b.finish().unwrap();
        assert_eq!(stats.duplicates["x"], 1);
        assert_eq!(stats.kept["x"], 3);
        assert_eq!(stats.names, 3);
        let bundle = Bundle::from_vec(bytes).unwrap();
        assert_eq!(bundle.header().sets.len(), 2);
        assert_eq!(blocked(&bundle, "www.a.test"), ["x", "y"]);
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_refused() {
        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        b.add(c, "a.test", MatchKind::Subtree, Action::Block);
        let (bytes, _) = b.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.fstb");

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        write_atomically(&p, &flipped).unwrap();
        assert!(
            Bundle::open(&p)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );

        write_atomically(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(
            Bundle::open(&p)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );

        let mut other = bytes.clone();
        other[8] = 9;
        write_atomically(&p, &other).unwrap();
        assert!(
            Bundle::open(&p)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );

        write_atomically(&p, b"0.0.0.0 ads.example\n").unwrap();
        assert!(Bundle::open(&p).unwrap_err().to_string().contains("magic"));

        write_atomically(&p, &bytes).unwrap();
        let ok = Bundle::open(&p).unwrap();
        assert_eq!(blocked(&ok, "www.a.test"), ["x"]);
    }
}
