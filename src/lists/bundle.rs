//! The compiled list bundle: one file holding every category's names as one `fst::Map`.
//!
//! Keys are names with their labels reversed (`com.example.ads`), so every parent domain of
//! a query is a byte prefix of its key ending at a `.`; one walk down the FST finds every
//! listed ancestor. Values index a small table of *tag sets*: which categories list the name,
//! how (exact, subtree, below) and asking for what (block, NODATA, pass). Names listed the
//! same way share one table row, so the table stays tiny even for millions of names.
//!
//! IP entries (answers' addresses) are kept per family as a sorted array of disjoint
//! intervals covering the whole address space: each record is the interval's first
//! address and a tag-set index (or none), built by one sweep over every category's CIDRs,
//! so one binary search answers "which categories list this address". Overlapping CIDRs
//! of several categories share one tag set (kind `Exact`); within one category the longest
//! prefix decides, as the deepest name does for names.
//!
//! File layout (little-endian):
//! ```text
//! 0   magic  b"CHAPBNDL"
//! 8   u32    format version (FORMAT_VERSION; 1 = no IP section)
//! 12  u32    header length H
//! 16  u64    fst length F
//! 24  u32    CRC-32 of bytes [32, end of file)
//! 28  u32    reserved (0)
//! 32  H      header, JSON: categories, tag-set table, counts, build time, IP interval counts
//! 32+H F     the fst::Map
//! 32+H+F     IPv4 intervals: N4 × (u32 first address, u32 tag set or u32::MAX)
//! then       IPv6 intervals: N6 × (u128 first address, u32 tag set or u32::MAX)
//! ```
//! N4 and N6 are in the header; the IP section is read in place from the mapping (never
//! copied to the heap), with `from_le_bytes` so no alignment is assumed.
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
pub const FORMAT_VERSION: u32 = 2;
/// The version before IP entries; still opened, as a bundle with no IPs.
const VERSION_NO_IPS: u32 = 1;
/// IP entries a bundle may hold (all categories together). UT1 has about 72,000; a list
/// a thousand times larger is a mistake, and the builder's memory must stay bounded.
pub const MAX_IP_ENTRIES: usize = 4_000_000;
/// No tag set: the interval is not listed.
const NO_SET: u32 = u32::MAX;
const V4_RECORD: usize = 8;
const V6_RECORD: usize = 20;
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
    /// More IP entries than a bundle may hold.
    #[error("too many IP entries; a bundle holds at most {MAX_IP_ENTRIES}")]
    TooManyIps,
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
    /// Distinct IP entries per category (absent in version-1 bundles).
    #[serde(default)]
    pub ip_counts: BTreeMap<String, u64>,
    /// IPv4 interval records in the IP section.
    #[serde(default)]
    pub ipv4_intervals: u64,
    /// IPv6 interval records in the IP section.
    #[serde(default)]
    pub ipv6_intervals: u64,
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

/// A section of the bundle (the fst, the IP intervals): a range of a mapped file
/// (serving) or of memory (tests, fresh compiles).
#[derive(Clone)]
pub enum Bytes {
    /// A read-only mapping of the bundle file, the section being `start..end`.
    Mapped {
        /// The mapping.
        map: Arc<memmap2::Mmap>,
        /// Offset of the section.
        start: usize,
        /// End of the section.
        end: usize,
    },
    /// An owned buffer and the section's range in it.
    Owned(Arc<Vec<u8>>, usize, usize),
}

impl Bytes {
    fn range(&self, start: usize, end: usize) -> Bytes {
        match self {
            Bytes::Mapped { map, .. } => Bytes::Mapped {
                map: map.clone(),
                start,
                end,
            },
            Bytes::Owned(v, ..) => Bytes::Owned(v.clone(), start, end),
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start, end } => map.get(*start..*end).unwrap_or_default(),
            Bytes::Owned(v, start, end) => v.get(*start..*end).unwrap_or_default(),
        }
    }
}

/// The IP section, read in place.
#[derive(Clone)]
struct IpTable {
    bytes: Bytes,
    v4: usize,
    v6: usize,
}

/// Reads one field of record i of an [`IpTable`] family.
type RecordField<T> = fn(&IpTable, usize) -> T;

impl IpTable {
    fn empty() -> Self {
        IpTable {
            bytes: Bytes::Owned(Arc::new(Vec::new()), 0, 0),
            v4: 0,
            v6: 0,
        }
    }

    fn v4_start(&self, i: usize) -> u128 {
        let b = self.bytes.as_ref();
        let at = i * V4_RECORD;
        u32::from_le_bytes(le4(b, at)) as u128
    }

    fn v6_start(&self, i: usize) -> u128 {
        let b = self.bytes.as_ref();
        let at = self.v4 * V4_RECORD + i * V6_RECORD;
        let mut w = [0u8; 16];
        if let Some(s) = b.get(at..at + 16) {
            w.copy_from_slice(s);
        }
        u128::from_le_bytes(w)
    }

    fn v4_set(&self, i: usize) -> u32 {
        u32::from_le_bytes(le4(self.bytes.as_ref(), i * V4_RECORD + 4))
    }

    fn v6_set(&self, i: usize) -> u32 {
        let at = self.v4 * V4_RECORD + i * V6_RECORD + 16;
        u32::from_le_bytes(le4(self.bytes.as_ref(), at))
    }

    /// (number of records, first address of record i, tag set of record i) per family.
    fn family(&self, v6: bool) -> (usize, RecordField<u128>, RecordField<u32>) {
        if v6 {
            (self.v6, Self::v6_start, Self::v6_set)
        } else {
            (self.v4, Self::v4_start, Self::v4_set)
        }
    }

    /// The tag set of the interval holding `addr` (NO_SET if none).
    fn find(&self, addr: u128, v6: bool) -> u32 {
        let (n, start, set) = self.family(v6);
        // Records are sorted by first address and the first one starts at 0.
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if start(self, mid) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo {
            0 => NO_SET,
            i => set(self, i - 1),
        }
    }
}

fn le4(b: &[u8], at: usize) -> [u8; 4] {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    w
}

/// An opened, verified bundle.
pub struct Bundle {
    map: fst::Map<Bytes>,
    header: Header,
    masks: Vec<SetMasks>,
    ids: HashMap<String, u16>,
    file_len: u64,
    ips: IpTable,
    ip_mask: Mask,
    content: u32,
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
        let body_len = file_len - PREAMBLE as u64 - header_bytes.len() as u64;
        verify_checksum(&mut file, path, &header_bytes, body_len, crc)?;
        // SAFETY: the bundle is only ever replaced by renaming a new file over it, never
        // rewritten in place (see `write_atomically`), so the mapped pages cannot change
        // under us; a technician truncating it by hand is outside what we can defend.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let start = PREAMBLE + header_bytes.len();
        let end = map.len();
        Self::from_parts(
            path,
            &header_bytes,
            Bytes::Mapped {
                map: Arc::new(map),
                start,
                end,
            },
            fst_len,
            file_len,
        )
    }

    /// A bundle held in memory (the output of [`BundleBuilder::finish`]).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Bundle, BundleError> {
        let path = Path::new("<memory>");
        let file_len = bytes.len() as u64;
        let (header_bytes, fst_len, crc) = read_preamble(&mut &bytes[..], path, file_len)?;
        let start = PREAMBLE + header_bytes.len();
        let body = bytes.get(PREAMBLE..).unwrap_or_default();
        if crc32fast::hash(body) != crc {
            return Err(invalid(path, "checksum mismatch: the file is corrupt"));
        }
        let end = bytes.len();
        Self::from_parts(
            path,
            &header_bytes,
            Bytes::Owned(Arc::new(bytes), start, end),
            fst_len,
            file_len,
        )
    }

    /// `body` is everything after the header: the fst (`fst_len` bytes), then the IP
    /// section.
    fn from_parts(
        path: &Path,
        header: &[u8],
        body: Bytes,
        fst_len: u64,
        file_len: u64,
    ) -> Result<Bundle, BundleError> {
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| invalid(path, format!("unreadable header: {e}")))?;
        if header.categories.len() > MAX_CATEGORIES {
            return Err(BundleError::TooManyCategories(header.categories.len()));
        }
        let (start, end) = match &body {
            Bytes::Mapped { start, end, .. } | Bytes::Owned(_, start, end) => (*start, *end),
        };
        let fst_end = start + fst_len as usize;
        let ips = ip_table(path, &header, body.range(fst_end, end))?;
        let map = fst::Map::new(body.range(start, fst_end))
            .map_err(|e| invalid(path, format!("bad fst: {e}")))?;
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
        let content = content_hash(&header, body.as_ref());
        let masks: Vec<SetMasks> = header.sets.iter().map(|s| SetMasks::from_tags(s)).collect();
        let ip_mask = check_ip_table(path, &ips, &masks)?;
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
            ips,
            ip_mask,
            content,
        })
    }

    /// What the bundle lists, as a CRC-32 of its categories, tag sets, names and IP
    /// ranges, without its build time: two instances that compiled the same sources
    /// separately show the same value (in `/healthz`), so an operator can see they agree.
    pub fn content_id(&self) -> String {
        format!("{:08x}", self.content)
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
    /// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
    pub fn lookup_ip(&self, ip: std::net::IpAddr) -> ActionMasks {
        let set = match ip.to_canonical() {
            std::net::IpAddr::V4(a) => self.ips.find(u32::from(a) as u128, false),
            std::net::IpAddr::V6(a) => self.ips.find(u128::from(a), true),
        };
        self.masks
            .get(set as usize)
            .map(|m| m.at_self)
            .unwrap_or_default()
    }

    /// The address ranges (first, last) that `category` blocks (or answers NODATA for),
    /// in address order, IPv4 first; adjacent ranges are merged. For firewall export.
    pub fn ip_ranges(&self, category: u16) -> Vec<(std::net::IpAddr, std::net::IpAddr)> {
        let bit: Mask = 1u128.checked_shl(category as u32).unwrap_or(0);
        let mut out = Vec::new();
        for v6 in [false, true] {
            let (n, start, set) = self.ips.family(v6);
            let max = if v6 { u128::MAX } else { u32::MAX as u128 };
            let mut open: Option<(u128, u128)> = None;
            for i in 0..n {
                let first = start(&self.ips, i);
                let last = if i + 1 < n {
                    start(&self.ips, i + 1) - 1
                } else {
                    max
                };
                let listed = self
                    .masks
                    .get(set(&self.ips, i) as usize)
                    .is_some_and(|m| (m.at_self.block | m.at_self.nodata) & bit != 0);
                match (&mut open, listed) {
                    (Some((_, end)), true) if *end + 1 == first => *end = last,
                    (_, true) => {
                        out.extend(open.take().map(|r| addr_pair(r, v6)));
                        open = Some((first, last));
                    }
                    (_, false) => out.extend(open.take().map(|r| addr_pair(r, v6))),
                }
            }
            out.extend(open.map(|r| addr_pair(r, v6)));
        }
        out
    }

    /// Categories with at least one IP entry: when none of them is blocked for a client,
    /// the answer's addresses need not be looked up at all.
    pub fn ip_categories(&self) -> Mask {
        self.ip_mask
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

    /// Up to `max` names `category` blocks by themselves (an exact or subtree block entry),
    /// in key order: known names for `chaperone selftest` to ask. Walks the whole map in
    /// the worst case (a category with no such entry), which is fine for a CLI.
    pub fn sample_names(&self, category: u16, max: usize) -> Vec<String> {
        use fst::{IntoStreamer, Streamer};
        let Some(bit) = 1u128.checked_shl(u32::from(category)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut stream = self.map.stream().into_stream();
        while let Some((key, set)) = stream.next() {
            if out.len() >= max {
                break;
            }
            let blocks = usize::try_from(set)
                .ok()
                .and_then(|i| self.masks.get(i))
                .is_some_and(|m| m.at_self.block & bit != 0);
            if let (true, Ok(key)) = (blocks, std::str::from_utf8(key)) {
                out.push(key.rsplit('.').collect::<Vec<_>>().join("."));
            }
        }
        out
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

fn addr_pair((a, b): (u128, u128), v6: bool) -> (std::net::IpAddr, std::net::IpAddr) {
    let addr = |x: u128| -> std::net::IpAddr {
        if v6 {
            std::net::Ipv6Addr::from(x).into()
        } else {
            std::net::Ipv4Addr::from(x as u32).into()
        }
    };
    (addr(a), addr(b))
}

/// The IP section after the fst: its length must match the header's interval counts.
/// See [`Bundle::content_id`]: the header fields that say what is listed, then the fst
/// and IP section as stored.
fn content_hash(header: &Header, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(
        serde_json::to_string(&header.categories)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(
        serde_json::to_string(&header.sets)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(body);
    h.finalize()
}

fn ip_table(path: &Path, header: &Header, bytes: Bytes) -> Result<IpTable, BundleError> {
    let want = (header.ipv4_intervals as u128) * V4_RECORD as u128
        + (header.ipv6_intervals as u128) * V6_RECORD as u128;
    let have = bytes.as_ref().len() as u128;
    if want != have {
        return Err(invalid(
            path,
            format!("IP section is {have} bytes, the header says {want}"),
        ));
    }
    if want == 0 {
        return Ok(IpTable::empty());
    }
    Ok(IpTable {
        bytes,
        v4: header.ipv4_intervals as usize,
        v6: header.ipv6_intervals as usize,
    })
}

/// Check the IP intervals (first one at address 0, strictly ascending, tag sets that
/// exist) so binary search is sound; returns the categories they list.
fn check_ip_table(path: &Path, ips: &IpTable, masks: &[SetMasks]) -> Result<Mask, BundleError> {
    let mut mask: Mask = 0;
    for v6 in [false, true] {
        let (n, start, set) = ips.family(v6);
        let mut prev: Option<u128> = None;
        for i in 0..n {
            let first = start(ips, i);
            let ok = match prev {
                None => first == 0,
                Some(p) => first > p,
            };
            if !ok || (!v6 && first > u32::MAX as u128) {
                return Err(invalid(path, "IP intervals out of order"));
            }
            prev = Some(first);
            match set(ips, i) {
                NO_SET => {}
                s => match masks.get(s as usize) {
                    Some(m) => mask |= m.at_self.any(),
                    None => {
                        return Err(invalid(
                            path,
                            "IP interval names a tag set that does not exist",
                        ));
                    }
                },
            }
        }
    }
    Ok(mask)
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
    if version != FORMAT_VERSION && version != VERSION_NO_IPS {
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
    let expected = (PREAMBLE as u64)
        .saturating_add(header_len)
        .saturating_add(fst_len);
    // Version 2 has the IP section after the fst; its length is checked against the header.
    if file_len != expected && !(version == FORMAT_VERSION && file_len > expected) {
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

/// Check the CRC over the header and everything after it (`body_len` bytes).
fn verify_checksum(
    file: &mut File,
    path: &Path,
    header: &[u8],
    body_len: u64,
    crc: u32,
) -> Result<(), BundleError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = body_len;
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
    ips: Vec<(ipnet::IpNet, Tag)>,
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
    /// Distinct IP entries kept, per category.
    pub ips: BTreeMap<String, u64>,
    /// IP entries offered, per category.
    pub ips_offered: BTreeMap<String, u64>,
    /// IP interval records (IPv4 + IPv6) in the bundle.
    pub ip_intervals: u64,
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

    /// Add one IP entry (an address or CIDR; host bits are ignored, IPv4-mapped IPv6 is
    /// stored as IPv4). Refused beyond [`MAX_IP_ENTRIES`].
    pub fn add_ip(
        &mut self,
        category: u16,
        net: ipnet::IpNet,
        action: Action,
    ) -> Result<(), BundleError> {
        if self.ips.len() >= MAX_IP_ENTRIES {
            return Err(BundleError::TooManyIps);
        }
        let tag = Tag {
            category,
            kind: MatchKind::Exact,
            action,
        };
        self.ips
            .push((super::parse::ip::canonical(net.trunc()), tag));
        Ok(())
    }

    /// Entries (names and IPs) added so far.
    pub fn len(&self) -> usize {
        self.entries.len() + self.ips.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.ips.is_empty()
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
        let mut intern = |tags: Vec<Tag>| -> u32 {
            let next = sets.len() as u64;
            *set_ids.entry(tags.clone()).or_insert_with(|| {
                sets.push(tags);
                next
            }) as u32
        };
        let ips = std::mem::take(&mut self.ips);
        let (v4, v6) = ip_intervals(ips, &self.categories, &mut stats, &mut intern);
        let mut ip_section = Vec::with_capacity(v4.len() * V4_RECORD + v6.len() * V6_RECORD);
        for (start, set) in &v4 {
            ip_section.extend_from_slice(&(*start as u32).to_le_bytes());
            ip_section.extend_from_slice(&set.to_le_bytes());
        }
        for (start, set) in &v6 {
            ip_section.extend_from_slice(&start.to_le_bytes());
            ip_section.extend_from_slice(&set.to_le_bytes());
        }
        stats.ip_intervals = (v4.len() + v6.len()) as u64;
        let header = Header {
            categories: self.categories,
            sets,
            counts: stats.kept.clone(),
            names: stats.names,
            built_at: jiff::Timestamp::now().to_string(),
            ip_counts: stats.ips.clone(),
            ipv4_intervals: v4.len() as u64,
            ipv6_intervals: v6.len() as u64,
        };
        let bytes = encode(&header, &fst_bytes, &ip_section)?;
        stats.bytes = bytes.len() as u64;
        Ok((bytes, stats))
    }
}

/// Intervals of one family: sorted first addresses and their tag-set index (or
/// [`NO_SET`]), the first at address 0, neighbours never sharing a set.
type Intervals = Vec<(u128, u32)>;

/// Dedupe the IP entries, count them per category, and sweep each family into intervals.
fn ip_intervals(
    mut ips: Vec<(ipnet::IpNet, Tag)>,
    categories: &[String],
    stats: &mut BuildStats,
    intern: &mut impl FnMut(Vec<Tag>) -> u32,
) -> (Intervals, Intervals) {
    for (_, t) in &ips {
        *stats
            .ips_offered
            .entry(categories[t.category as usize].clone())
            .or_default() += 1;
    }
    ips.sort_unstable();
    ips.dedup();
    for (_, t) in &ips {
        *stats
            .ips
            .entry(categories[t.category as usize].clone())
            .or_default() += 1;
    }
    let span = |net: &ipnet::IpNet| -> (u128, u128) {
        match net {
            ipnet::IpNet::V4(n) => (
                u32::from(n.network()) as u128,
                u32::from(n.broadcast()) as u128,
            ),
            ipnet::IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        }
    };
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (net, tag) in &ips {
        let (lo, hi) = span(net);
        match net {
            ipnet::IpNet::V4(_) => v4.push((lo, hi, *tag)),
            ipnet::IpNet::V6(_) => v6.push((lo, hi, *tag)),
        }
    }
    drop(ips);
    (
        sweep(v4, u32::MAX as u128, intern),
        sweep(v6, u128::MAX, intern),
    )
}

/// One pass over a family's CIDRs (first, last, tag) in order of first address, widest
/// first. CIDRs never partly overlap (two are nested or disjoint), so the ones covering
/// the current address form a stack; each point's tag set takes, per category, the tags
/// of the deepest (longest-prefix) CIDR of that category on the stack.
fn sweep(
    mut items: Vec<(u128, u128, Tag)>,
    max: u128,
    intern: &mut impl FnMut(Vec<Tag>) -> u32,
) -> Intervals {
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut out: Intervals = vec![(0, NO_SET)];
    if items.is_empty() {
        return Vec::new();
    }
    let mut stack: Vec<(u128, Vec<Tag>)> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (lo, hi, _) = items[i];
        let mut tags = Vec::new();
        while i < items.len() && items[i].0 == lo && items[i].1 == hi {
            tags.push(items[i].2);
            i += 1;
        }
        while let Some(&(top_hi, _)) = stack.last() {
            if top_hi >= lo {
                break;
            }
            stack.pop();
            // top_hi < lo <= max: no overflow.
            emit(&mut out, top_hi + 1, combined(&stack, intern));
        }
        stack.push((hi, tags));
        emit(&mut out, lo, combined(&stack, intern));
    }
    while let Some((hi, _)) = stack.pop() {
        if hi < max {
            emit(&mut out, hi + 1, combined(&stack, intern));
        }
    }
    out
}

/// The tag set of the CIDRs on `stack` (see [`sweep`]), interned; [`NO_SET`] if empty.
fn combined(stack: &[(u128, Vec<Tag>)], intern: &mut impl FnMut(Vec<Tag>) -> u32) -> u32 {
    let mut decided: Mask = 0;
    let mut tags = Vec::new();
    for (_, here) in stack.iter().rev() {
        let mut seen: Mask = 0;
        for t in here {
            let bit: Mask = 1 << t.category;
            if decided & bit == 0 {
                tags.push(*t);
                seen |= bit;
            }
        }
        decided |= seen;
    }
    if tags.is_empty() {
        return NO_SET;
    }
    tags.sort_unstable();
    intern(tags)
}

/// Start a new interval at `start` (replacing one that starts there), merging it into
/// its predecessor when both have the same set.
fn emit(out: &mut Intervals, start: u128, set: u32) {
    match out.last_mut() {
        Some(last) if last.0 == start => last.1 = set,
        _ => out.push((start, set)),
    }
    let n = out.len();
    if n >= 2 && out[n - 2].1 == out[n - 1].1 {
        out.pop();
    }
}

fn encode(header: &Header, fst_bytes: &[u8], ip_section: &[u8]) -> Result<Vec<u8>, BundleError> {
    let header_json = serde_json::to_vec(header)
        .map_err(|e| invalid(Path::new("<build>"), format!("header: {e}")))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header_json);
    crc.update(fst_bytes);
    crc.update(ip_section);
    let mut out =
        Vec::with_capacity(PREAMBLE + header_json.len() + fst_bytes.len() + ip_section.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(fst_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header_json);
    out.extend_from_slice(fst_bytes);
    out.extend_from_slice(ip_section);
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

    fn ip_bundle(entries: &[(&str, &str, Action)]) -> Bundle {
        let mut b = BundleBuilder::new();
        for (cat, net, action) in entries {
            let id = b.category(cat).unwrap();
            b.add_ip(id, net.parse().unwrap(), *action).unwrap();
        }
        let (bytes, _) = b.finish().unwrap();
        Bundle::from_vec(bytes).unwrap()
    }

    fn ip_cats(b: &Bundle, ip: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
        let m = b.lookup_ip(ip.parse().unwrap());
        let names = |mask: Mask| -> Vec<String> {
            (0..b.categories().len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| b.categories()[i].clone())
                .collect()
        };
        (names(m.block), names(m.nodata), names(m.pass))
    }

    fn blocked_ip(b: &Bundle, ip: &str) -> Vec<String> {
        ip_cats(b, ip).0
    }

    #[test]
    fn ip_lookup_v4_v6_cidr_edges_and_overlaps() {
        use Action::*;
        let b = ip_bundle(&[
            ("adult", "203.0.113.66/32", Block),
            ("redirector", "198.51.100.0/24", Block),
            ("adult", "198.51.100.128/25", Block),
            ("redirector", "198.51.100.200/32", Pass),
            ("doh", "2001:db8::/32", Block),
            ("doh", "2001:db8:1::/48", NoData),
            ("adult", "0.0.0.0/32", Block),
            ("adult", "255.255.255.255/32", Block),
            (
                "adult",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
                Block,
            ),
        ]);
        assert_eq!(blocked_ip(&b, "203.0.113.66"), ["adult"]);
        assert!(blocked_ip(&b, "203.0.113.65").is_empty());
        assert!(blocked_ip(&b, "203.0.113.67").is_empty());
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(blocked_ip(&b, "::ffff:203.0.113.66"), ["adult"]);
        assert!(blocked_ip(&b, "198.51.99.255").is_empty());
        assert_eq!(blocked_ip(&b, "198.51.100.0"), ["redirector"]);
        assert_eq!(blocked_ip(&b, "198.51.100.127"), ["redirector"]);
        assert_eq!(blocked_ip(&b, "198.51.100.128"), ["adult", "redirector"]);
        assert_eq!(blocked_ip(&b, "198.51.100.255"), ["adult", "redirector"]);
        assert!(blocked_ip(&b, "198.51.101.0").is_empty());
        // The longer prefix of a category decides for it: redirector passes .200.
        assert_eq!(
            ip_cats(&b, "198.51.100.200"),
            (vec!["adult".into()], vec![], vec!["redirector".into()])
        );
        assert_eq!(blocked_ip(&b, "2001:db8:ffff::1"), ["doh"]);
        assert_eq!(
            ip_cats(&b, "2001:db8:1::53"),
            (vec![], vec!["doh".into()], vec![])
        );
        assert!(blocked_ip(&b, "2001:db9::").is_empty());
        assert!(blocked_ip(&b, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff").is_empty());
        assert_eq!(blocked_ip(&b, "0.0.0.0"), ["adult"]);
        assert!(blocked_ip(&b, "0.0.0.1").is_empty());
        assert_eq!(blocked_ip(&b, "255.255.255.255"), ["adult"]);
        assert_eq!(
            blocked_ip(&b, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["adult"]
        );
        assert!(blocked_ip(&b, "::").is_empty());
        let all = (1 << b.category_id("adult").unwrap())
            | (1 << b.category_id("redirector").unwrap())
            | (1 << b.category_id("doh").unwrap());
        assert_eq!(b.ip_categories(), all);
        assert_eq!(b.header().ip_counts["adult"], 5);
        // Names are unaffected, and a bundle without IPs looks nothing up.
        assert!(blocked(&b, "example.com").is_empty());
        let names_only = build(&[("x", "a.test", MatchKind::Subtree, Action::Block)]);
        assert_eq!(names_only.ip_categories(), 0);
        assert_eq!(
            names_only.lookup_ip("1.2.3.4".parse().unwrap()),
            ActionMasks::default()
        );
    }

    #[test]
    fn ip_duplicates_counted_and_too_many_refused() {
        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        for net in [
            "192.0.2.1/32",
            "192.0.2.1/32",
            "::ffff:192.0.2.1/128",
            "192.0.2.0/24",
        ] {
            b.add_ip(c, net.parse().unwrap(), Action::Block).unwrap();
        }
        let (bytes, stats) = b.finish().unwrap();
        assert_eq!(stats.ips["x"], 2);
        assert_eq!(stats.ips_offered["x"], 4);
        // [0, 192.0.2.0) none, the /24 (the /32 inside has the same set), then none.
        assert_eq!(stats.ip_intervals, 3);
        let bundle = Bundle::from_vec(bytes).unwrap();
        assert_eq!(bundle.header().ipv4_intervals, 3);
        assert_eq!(bundle.header().ipv6_intervals, 0);

        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        b.ips.resize(
            MAX_IP_ENTRIES,
            (
                ipnet::IpNet::default(),
                Tag {
                    category: c,
                    kind: MatchKind::Exact,
                    action: Action::Block,
                },
            ),
        );
        assert!(matches!(
            b.add_ip(c, "192.0.2.1/32".parse().unwrap(), Action::Block),
            Err(BundleError::TooManyIps)
        ));
    }

    /// A version-1 bundle (no IP section, no IP fields in the header), as the previous
    /// release wrote them.
    fn v1_bytes() -> Vec<u8> {
        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        b.add(c, "a.test", MatchKind::Subtree, Action::Block);
        let (v2, _) = b.finish().unwrap();
        let hlen = u32::from_le_bytes([v2[12], v2[13], v2[14], v2[15]]) as usize;
        let mut header: serde_json::Value =
            serde_json::from_slice(&v2[PREAMBLE..PREAMBLE + hlen]).unwrap();
        let obj = header.as_object_mut().unwrap();
        for k in ["ip_counts", "ipv4_intervals", "ipv6_intervals"] {
            assert!(obj.remove(k).is_some(), "{k}");
        }
        let json = serde_json::to_vec(&header).unwrap();
        let fst = &v2[PREAMBLE + hlen..];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&json);
        crc.update(fst);
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&(fst.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(fst);
        out
    }

    #[test]
    fn version_1_bundles_still_open_without_ips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.fstb");
        write_atomically(&p, &v1_bytes()).unwrap();
        let b = Bundle::open(&p).unwrap();
        assert_eq!(blocked(&b, "www.a.test"), ["x"]);
        assert_eq!(b.ip_categories(), 0);
        assert_eq!(
            b.lookup_ip("192.0.2.1".parse().unwrap()),
            ActionMasks::default()
        );
        assert!(b.header().ip_counts.is_empty());
        // A version-1 file with bytes after the fst is damaged, not a v2 file.
        let mut padded = v1_bytes();
        padded.extend_from_slice(&[0; 8]);
        write_atomically(&p, &padded).unwrap();
        assert!(
            Bundle::open(&p)
                .unwrap_err()
                .to_string()
                .contains("truncated or padded")
        );
    }

    #[test]
    fn a_corrupt_ip_section_is_refused() {
        let mut b = BundleBuilder::new();
        let c = b.category("x").unwrap();
        b.add(c, "a.test", MatchKind::Subtree, Action::Block);
        b.add_ip(c, "2001:db8::/32".parse().unwrap(), Action::Block)
            .unwrap();
        let (bytes, _) = b.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.fstb");
        // The last record's tag set, inside the IP section only the CRC covers.
        let mut flipped = bytes.clone();
        let at = flipped.len() - 2;
        flipped[at] ^= 0x01;
        write_atomically(&p, &flipped).unwrap();
        assert!(
            Bundle::open(&p)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        assert!(
            Bundle::from_vec(flipped)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        // A section cut short (CRC fixed up) disagrees with the header's counts.
        let mut short = bytes.clone();
        short.truncate(short.len() - V6_RECORD);
        let crc = crc32fast::hash(&short[PREAMBLE..]);
        short[24..28].copy_from_slice(&crc.to_le_bytes());
        let err = Bundle::from_vec(short).unwrap_err().to_string();
        assert!(err.contains("IP section"), "{err}");
        // Intervals out of order (CRC fixed up) are refused, not searched.
        let mut unordered = bytes.clone();
        let n = unordered.len();
        unordered[n - V6_RECORD..n - 4].copy_from_slice(&0u128.to_le_bytes());
        let crc = crc32fast::hash(&unordered[PREAMBLE..]);
        unordered[24..28].copy_from_slice(&crc.to_le_bytes());
        let err = Bundle::from_vec(unordered).unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
        write_atomically(&p, &bytes).unwrap();
        let ok = Bundle::open(&p).unwrap();
        assert_eq!(blocked_ip(&ok, "2001:db8::1"), ["x"]);
        assert_eq!(blocked(&ok, "a.test"), ["x"]);
    }

    mod ip_props {
        use super::*;
        use proptest::prelude::*;
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        /// Networks in a small corner of each family, so they overlap often.
        fn net() -> impl Strategy<Value = ipnet::IpNet> {
            prop_oneof![
                (0u32..1024, 20u8..=32).prop_map(|(low, len)| {
                    let a = Ipv4Addr::from(0x0a00_0000 | low);
                    ipnet::IpNet::new(IpAddr::V4(a), len).unwrap().trunc()
                }),
                (0u128..1024, 116u8..=128).prop_map(|(low, len)| {
                    let a = Ipv6Addr::from(0x2001_0db8_u128 << 96 | low);
                    ipnet::IpNet::new(IpAddr::V6(a), len).unwrap().trunc()
                }),
            ]
        }

        fn action() -> impl Strategy<Value = Action> {
            prop_oneof![
                Just(Action::Block),
                Just(Action::NoData),
                Just(Action::Pass)
            ]
        }

        /// Per category, the tags of the longest prefixes holding `ip`.
        fn naive(entries: &[(u16, ipnet::IpNet, Action)], ip: IpAddr) -> ActionMasks {
            let mut tags = Vec::new();
            for cat in 0..4u16 {
                let holding: Vec<_> = entries
                    .iter()
                    .filter(|(c, n, _)| *c == cat && n.contains(&ip))
                    .collect();
                let Some(longest) = holding.iter().map(|(_, n, _)| n.prefix_len()).max() else {
                    continue;
                };
                tags.extend(
                    holding
                        .iter()
                        .filter(|(_, n, _)| n.prefix_len() == longest)
                        .map(|(c, _, a)| Tag {
                            category: *c,
                            kind: MatchKind::Exact,
                            action: *a,
                        }),
                );
            }
            SetMasks::from_tags(&tags).at_self
        }

        proptest! {
            #[test]
            fn lookup_ip_matches_a_naive_scan(
                entries in proptest::collection::vec((0u16..4, net(), action()), 0..40),
                probes in proptest::collection::vec((0u32..1100, 0u128..1100), 1..40),
            ) {
                let mut b = BundleBuilder::new();
                for c in 0..4 {
                    b.category(&format!("c{c}")).unwrap();
                }
                for (c, n, a) in &entries {
                    b.add_ip(*c, *n, *a).unwrap();
                }
                let bundle = Bundle::from_vec(b.finish().unwrap().0).unwrap();
                let mut ips: Vec<IpAddr> = Vec::new();
                for (v4, v6) in probes {
                    ips.push(Ipv4Addr::from(0x0a00_0000 | v4).into());
                    ips.push(Ipv6Addr::from(0x2001_0db8_u128 << 96 | v6).into());
                }
                // Every entry's edges and their neighbours.
                for (_, n, _) in &entries {
                    for a in [n.network(), n.broadcast()] {
                        ips.push(a);
                        match a {
                            IpAddr::V4(v) => {
                                ips.push(Ipv4Addr::from(u32::from(v).wrapping_add(1)).into());
                                ips.push(Ipv4Addr::from(u32::from(v).wrapping_sub(1)).into());
                            }
                            IpAddr::V6(v) => {
                                ips.push(Ipv6Addr::from(u128::from(v).wrapping_add(1)).into());
                                ips.push(Ipv6Addr::from(u128::from(v).wrapping_sub(1)).into());
                            }
                        }
                    }
                }
                for ip in ips {
                    prop_assert_eq!(bundle.lookup_ip(ip), naive(&entries, ip), "{}", ip);
                }
            }
        }
    }
}
