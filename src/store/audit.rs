//! The audit log: every state-changing admin action, append-only and hash-chained.
//!
//! Each record stores a MAC of the previous record's hash and its own fields: HMAC-SHA256
//! under a key kept in a file outside the database (`audit.key_file`, created mode 0600).
//! After every append the record count and newest hash (the *head*) are published where a
//! copy of the database does not reach: the head file (`audit.head_file`), the
//! `chaperone_audit_records` gauge (Prometheus keeps its history) and an INFO log line.
//!
//! What [`verify`] then proves, and what it does not:
//! - an edited or deleted record breaks the chain from that point (as before);
//! - an edit with every later hash recomputed is caught, because recomputing needs the
//!   key, which someone holding only the database does not have;
//! - deleting the newest records is caught by comparing with the published head (the head
//!   file, or `--expect-count` / `--expect-head` from a log line or Prometheus);
//! - it does NOT prove anything against someone who holds the key file and can rewrite the
//!   head file too (root on the server): then only a head copied elsewhere (logs shipped
//!   off the machine, Prometheus) shows the change;
//! - records written before the key existed (schema 1, plain SHA-256) still verify as a
//!   chain, and anyone can recompute them: they prove order, not authorship. Once keyed
//!   records begin, an unkeyed record after them is reported as forged.
//!
//! When the database no longer matches the published head, appends go on but the head file
//! is left as it was (and an error is logged on every append), so the evidence stays until
//! someone investigates; delete the head file to publish afresh afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, micros};

/// The hash the first record chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation for the keyed hash, so a keyed hash never equals an unkeyed one.
const HMAC_TAG: &str = "chaperone-audit-hmac-sha256-v1";

/// Why the audit chain's key or head could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The key file.
    #[error("audit key file {}: {source}", path.display())]
    Key {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The key file holds no usable key.
    #[error("audit key file {}: expected at least 32 bytes as hex on one line", path.display())]
    BadKey {
        /// Where.
        path: PathBuf,
    },
    /// The head file.
    #[error("audit head file {}: {message}", path.display())]
    Head {
        /// Where.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The published head: how many records the log had and the newest one's hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// Records in the log.
    pub records: u64,
    /// Hash of the newest record (GENESIS when empty).
    pub head: String,
    /// Id of the first keyed record, once there is one: records from it on must be keyed.
    #[serde(default)]
    pub keyed_from: Option<i64>,
}

/// The key and where the head is published: everything an append needs besides the
/// database.
pub struct Chain {
    key: Vec<u8>,
    head_file: PathBuf,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Read the key from `path`, creating it (32 random bytes as hex, mode 0600) if absent.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, ChainError> {
    let key_err = |source| ChainError::Key {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(key_err)?;
        }
        let key: [u8; 32] = rand::random();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(path) {
            Ok(mut f) => {
                use std::io::Write;
                writeln!(f, "{}", hex::encode(key)).map_err(key_err)?;
                f.sync_all().map_err(key_err)?;
                tracing::info!("created the audit key file {}", path.display());
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(key_err(e)),
        }
    }
    load_key(path)
}

/// Read an existing key file.
pub fn load_key(path: &Path) -> Result<Vec<u8>, ChainError> {
    let text = std::fs::read_to_string(path).map_err(|source| ChainError::Key {
        path: path.to_owned(),
        source,
    })?;
    match hex::decode(text.trim()) {
        Ok(k) if k.len() >= 32 => Ok(k),
        _ => Err(ChainError::BadKey {
            path: path.to_owned(),
        }),
    }
}

/// The published head in `path`, if the file exists.
pub fn read_head(path: &Path) -> Result<Option<Head>, ChainError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ChainError::Head {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ChainError::Head {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

fn write_head(path: &Path, head: &Head) -> std::io::Result<()> {
    let tmp = path.with_extension("head.tmp");
    let text = serde_json::to_string(head).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

impl Chain {
    /// The chain for `[audit]`: loads (or creates) the key.
    pub fn open(
        cfg: &crate::config::AuditConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Chain, ChainError> {
        Ok(Chain {
            key: load_or_create_key(&cfg.key_file)?,
            head_file: cfg.head_file.clone(),
            metrics,
        })
    }

    /// The key (for [`verify`]).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The published head, if any.
    pub fn published(&self) -> Result<Option<Head>, ChainError> {
        read_head(&self.head_file)
    }

    /// Publish the current state at start-up: set the gauge, log the head, and say loudly
    /// if the database does not match the head published last time.
    pub fn announce(&self, store: &mut dyn Store) -> Result<(), StoreError> {
        let now = store.audit_head()?;
        if let Some(m) = &self.metrics {
            m.audit_records.set(now.records as i64);
        }
        match self.published() {
            Ok(Some(p)) if !continues(store, &p, &now) => {
                tracing::error!(
                    "audit log does not match its published head ({} records, head {}): it has {} records, head {}; run `chaperone audit verify`",
                    p.records,
                    p.head,
                    now.records,
                    now.head
                );
            }
            Ok(Some(p)) if p != now => self.publish(store, &now, None),
            Ok(Some(_)) => {}
            Ok(None) => self.publish(store, &now, None),
            Err(e) => tracing::error!("{e}"),
        }
        tracing::info!(records = now.records, head = %now.head, "audit log head");
        Ok(())
    }

    fn publish(&self, store: &mut dyn Store, head: &Head, before: Option<&Head>) {
        if let Some(m) = &self.metrics {
            m.audit_records.set(head.records as i64);
        }
        tracing::info!(records = head.records, head = %head.head, "audit log appended");
        match (self.published(), before) {
            (Ok(Some(p)), Some(b)) if !continues(store, &p, b) => {
                tracing::error!(
                    "audit log did not match its published head in {} ({} records, head {}) before this append ({} records, head {}): leaving the head file as evidence; run `chaperone audit verify`",
                    self.head_file.display(),
                    p.records,
                    p.head,
                    b.records,
                    b.head
                );
                return;
            }
            (Err(e), _) => {
                tracing::error!("{e}");
                return;
            }
            _ => {}
        }
        if let Err(e) = write_head(&self.head_file, head) {
            tracing::error!(
                "cannot publish the audit head to {}: {e}",
                self.head_file.display()
            );
        }
    }

    /// Append a keyed record and publish the new head; returns the record's id. The
    /// store serialises appends, so two writers (two instances on one PostgreSQL) can
    /// never both chain from the same predecessor.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        store: &mut dyn Store,
        at: jiff::Timestamp,
        actor: &str,
        role: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let ts_us = micros(at);
        let detail = detail.to_string();
        let appended = store.audit_append(&mut |before: &Head| {
            let fields = [
                before.head.as_str(),
                &ts_us.to_string(),
                actor,
                role,
                action,
                subject,
                &detail,
            ];
            Sealed {
                ts_us,
                fields: [actor, role, action, subject, &detail].map(str::to_owned),
                prev_hash: before.head.clone(),
                hash: keyed_hash(&self.key, &fields),
            }
        })?;
        self.publish(store, &appended.after, Some(&appended.before));
        Ok(appended.id)
    }
}

/// Whether the log at `now` is the published head `p` itself or `p` with records appended
/// after it: the record at position `p.records` still has hash `p.head`. Several instances
/// sharing one database each publish their own head file, which lags behind the others'
/// appends without anything being wrong; a head the log no longer contains is evidence.
fn continues(store: &mut dyn Store, p: &Head, now: &Head) -> bool {
    if p.records >= now.records {
        return p.records == now.records && p.head == now.head;
    }
    if p.records == 0 {
        return p.head == GENESIS;
    }
    hash_at(store, p.records).is_some_and(|h| h == p.head)
}

/// The hash of the `n`-th record (1-based), walking the log in order.
fn hash_at(store: &mut dyn Store, n: u64) -> Option<String> {
    let mut seen = 0u64;
    let mut found = None;
    let walked = store.audit_walk(&mut |r| {
        seen += 1;
        if seen == n {
            found = Some(r.hash);
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    walked.ok().and(found)
}

/// A keyed record ready to insert, made inside the store's append transaction.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// When (µs).
    pub ts_us: i64,
    /// actor, role, action, subject, detail.
    pub fields: [String; 5],
    /// The head it chains from.
    pub prev_hash: String,
    /// Its keyed hash.
    pub hash: String,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The new record's id.
    pub id: i64,
    /// The head before it.
    pub before: Head,
    /// The head after it.
    pub after: Head,
}

/// One record as stored, for [`verify`].
#[derive(Debug, Clone)]
pub struct Stored {
    /// Position (consecutive from 1).
    pub id: i64,
    /// When (µs).
    pub ts_us: i64,
    /// actor, role, action, subject, detail.
    pub fields: [String; 5],
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// Whether the hash is keyed.
    pub keyed: bool,
}

fn keyed_hash(key: &[u8], fields: &[&str; 7]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(HMAC_TAG.as_bytes());
    for part in fields {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Position in the log.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who (token holder, or "block page" for anonymous requests).
    pub actor: String,
    /// Their role.
    pub role: String,
    /// What they did, e.g. "exception.create".
    pub action: String,
    /// What it was done to, e.g. "exception 4" or a domain.
    pub subject: String,
    /// Details as JSON (reason, expiry, groups...).
    pub detail: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// Whether the hash is keyed (HMAC); false for records from before the key.
    pub keyed: bool,
}

pub(crate) fn record_hash(
    prev: &str,
    ts_us: i64,
    actor: &str,
    role: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &ts_us.to_string(),
        actor,
        role,
        action,
        subject,
        detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record fits, and the log matches the expected head; this many were checked.
    Intact(u64),
    /// The first record that does not fit, and why.
    Broken {
        /// Record id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The chain could not be checked (no key for keyed records).
    Unverifiable(String),
}

/// What [`verify`] checks the log against besides itself.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// The key of keyed records (None: they cannot be checked).
    pub key: Option<&'a [u8]>,
    /// The head published outside the database.
    pub published: Option<Head>,
    /// Record count known from elsewhere (a log line, Prometheus).
    pub count: Option<u64>,
    /// Newest hash known from elsewhere.
    pub head: Option<String>,
}

/// Walk the whole log, recomputing every hash and link, then compare the end with what
/// `expect` knows. Names the first problem: an edited record (hash mismatch), a deleted
/// one (gap in ids, broken link), a record forged without the key, or missing newest
/// records / a rewritten chain (count or head differ from the published head).
pub fn verify(store: &mut dyn Store, expect: &Expect<'_>) -> Result<Verification, StoreError> {
    let mut walk = Walk::new(expect);
    let mut outcome = None;
    store.audit_walk(&mut |row| match walk.step(row) {
        Some(v) => {
            outcome = Some(v);
            std::ops::ControlFlow::Break(())
        }
        None => std::ops::ControlFlow::Continue(()),
    })?;
    Ok(outcome.unwrap_or_else(|| walk.finish(expect)))
}

/// The state of a verification walk.
struct Walk<'e> {
    prev: String,
    expected_id: Option<i64>,
    keyed_seen: bool,
    keyed_from: Option<i64>,
    key: Option<&'e [u8]>,
    /// Every hash, by position, to compare with heads published at an earlier count.
    hashes: Vec<String>,
}

impl<'e> Walk<'e> {
    fn new(expect: &Expect<'e>) -> Self {
        Self {
            prev: GENESIS.to_owned(),
            expected_id: None,
            keyed_seen: false,
            keyed_from: expect.published.as_ref().and_then(|p| p.keyed_from),
            key: expect.key,
            hashes: Vec::new(),
        }
    }

    /// Check one record; Some when the walk has its answer.
    fn step(&mut self, row: Stored) -> Option<Verification> {
        let id = row.id;
        if let Some(want) = self.expected_id
            && id != want
        {
            return Some(Verification::Broken {
                id,
                reason: format!("record {want} is missing (deleted)"),
            });
        }
        if row.prev_hash != self.prev {
            return Some(Verification::Broken { id, reason: "does not link to the previous record (a record before it was deleted or changed)".into() });
        }
        if !row.keyed && (self.keyed_seen || self.keyed_from.is_some_and(|k| id >= k)) {
            return Some(Verification::Broken {
                id,
                reason: "is unkeyed although keyed records began before it: it was written without the key (forged)".into(),
            });
        }
        if let Some(reason) = check_hash(&row, self.key) {
            return Some(match reason {
                HashCheck::Mismatch(reason) => Verification::Broken { id, reason },
                HashCheck::NoKey => Verification::Unverifiable(format!(
                    "record {id} is keyed and no audit key was given: cannot check the chain"
                )),
            });
        }
        self.keyed_seen |= row.keyed;
        self.hashes.push(row.hash.clone());
        self.prev = row.hash;
        self.expected_id = Some(id + 1);
        None
    }

    fn finish(self, expect: &Expect<'_>) -> Verification {
        let last = self.expected_id.map_or(0, |next| next - 1);
        compare_head(&self.hashes, last, expect)
    }
}

enum HashCheck {
    Mismatch(String),
    NoKey,
}

fn check_hash(row: &Stored, key: Option<&[u8]>) -> Option<HashCheck> {
    let [actor, role, action, subject, detail] = &row.fields;
    let want = if row.keyed {
        let key = match key {
            Some(k) => k,
            None => return Some(HashCheck::NoKey),
        };
        let ts = row.ts_us.to_string();
        keyed_hash(
            key,
            &[&row.prev_hash, &ts, actor, role, action, subject, detail],
        )
    } else {
        record_hash(
            &row.prev_hash,
            row.ts_us,
            actor,
            role,
            action,
            subject,
            detail,
        )
    };
    (want != row.hash).then(|| {
        HashCheck::Mismatch(if row.keyed {
            "its contents do not match its keyed hash (edited, or rewritten without the key)".into()
        } else {
            "its contents do not match its hash (edited)".into()
        })
    })
}

/// Compare the walked log (its hashes in order, newest id `last`) with the published head
/// and the caller's expectations. A head published at N records must be the hash of the
/// N-th record, even when more were appended since.
fn compare_head(hashes: &[String], last: i64, expect: &Expect<'_>) -> Verification {
    let n = hashes.len() as u64;
    let mut wants: Vec<(&str, u64, Option<&str>)> = Vec::new();
    if let Some(p) = &expect.published {
        wants.push(("the published head file", p.records, Some(p.head.as_str())));
    }
    if expect.count.is_some() || expect.head.is_some() {
        wants.push((
            "--expect-count/--expect-head",
            expect.count.unwrap_or(n),
            expect.head.as_deref(),
        ));
    }
    for (source, records, want_head) in wants {
        if n < records {
            return Verification::Broken {
                id: last + 1,
                reason: format!(
                    "the log has {n} records but {source} says {records}: the newest {} record(s) were deleted",
                    records - n
                ),
            };
        }
        let at = usize::try_from(records).unwrap_or(usize::MAX);
        if let Some(h) = want_head {
            let ours = at
                .checked_sub(1)
                .and_then(|i| hashes.get(i))
                .map_or(GENESIS, String::as_str);
            if !h.eq_ignore_ascii_case(ours) {
                let id = last - (n - records) as i64;
                return Verification::Broken {
                    id,
                    reason: format!(
                        "record {id} (number {records}) has hash {ours}, but {source} says {h}: the log was rewritten or its newest records replaced"
                    ),
                };
            }
        }
        // More records than published: appends after the last publication (e.g. a crash
        // before the head file was written); they verified above, keyed.
    }
    Verification::Intact(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::audit::{append_unkeyed, list};
    use rusqlite::Connection;
    use rusqlite::params;

    struct Db {
        dir: tempfile::TempDir,
        s: crate::store::sqlite::Sqlite,
        chain: Chain,
    }

    fn db() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::sqlite::Sqlite::open(&dir.path().join("a.db")).unwrap();
        let cfg = crate::config::AuditConfig {
            key_file: dir.path().join("keys/audit.key"),
            head_file: dir.path().join("audit.head"),
        };
        let chain = Chain::open(&cfg, None).unwrap();
        Db { dir, s, chain }
    }

    fn t() -> jiff::Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn fill(d: &mut Db, n: usize) {
        for i in 0..n {
            d.chain
                .append(
                    &mut d.s,
                    t(),
                    "tech",
                    "technician",
                    "exception.create",
                    &format!("exception {i}"),
                    &serde_json::json!({"reason": "study"}),
                )
                .unwrap();
        }
    }

    /// What the server and `audit verify` check against: the key and the head file.
    fn check(d: &mut Db) -> Verification {
        let expect = Expect {
            key: Some(d.chain.key()),
            published: d.chain.published().unwrap(),
            ..Default::default()
        };
        verify(&mut d.s, &expect).unwrap()
    }

    fn reason(v: Verification) -> (i64, String) {
        match v {
            Verification::Broken { id, reason } => (id, reason),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn an_untouched_chain_verifies_and_its_head_is_published() {
        let mut d = db();
        fill(&mut d, 5);
        assert_eq!(check(&mut d), Verification::Intact(5));
        let head = d.chain.published().unwrap().unwrap();
        assert_eq!(head.records, 5);
        assert_eq!(
            head.head,
            crate::store::sqlite::audit::head(d.s.connection()).unwrap()
        );
        assert_eq!(head.keyed_from, Some(1));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let d = db();
        let path = d.dir.path().join("keys/audit.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(&path).unwrap(), d.chain.key());
        std::fs::write(&path, "not hex").unwrap();
        assert!(
            load_key(&path)
                .unwrap_err()
                .to_string()
                .contains("audit.key")
        );
    }

    #[test]
    fn updates_and_deletes_are_refused_by_the_database() {
        let mut d = db();
        fill(&mut d, 5);
        assert!(
            d.s.connection()
                .execute("UPDATE audit SET actor = 'x' WHERE id = 2", [])
                .is_err()
        );
        assert!(
            d.s.connection()
                .execute("DELETE FROM audit WHERE id = 2", [])
                .is_err()
        );
    }

    #[test]
    fn an_edited_record_is_found() {
        let mut d = db();
        fill(&mut d, 5);
        d.s.connection().execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET detail = '{\"reason\":\"fun\"}' WHERE id = 3;").unwrap();
        let (id, why) = reason(check(&mut d));
        assert_eq!(id, 3);
        assert!(why.contains("keyed hash"), "{why}");
    }

    #[test]
    fn a_deleted_record_is_found() {
        let mut d = db();
        fill(&mut d, 5);
        d.s.connection()
            .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 2;")
            .unwrap();
        assert_eq!(reason(check(&mut d)).0, 3);
    }

    /// The attack the plain chain could not see: edit a record, recompute every later hash.
    /// Without the key the recomputed hashes are plain SHA-256 (or HMAC under a guessed
    /// key), and the first edited record no longer fits.
    #[test]
    fn an_edit_with_every_later_hash_recomputed_is_found() {
        for forge_key in [None, Some(&b"a guessed key of thirty-two bytes"[..])] {
            let mut d = db();
            fill(&mut d, 5);
            d.s.connection()
                .execute_batch("DROP TRIGGER audit_no_update;")
                .unwrap();
            let rows = list(d.s.connection(), None, 100).unwrap();
            let mut prev = rows[1].hash.clone();
            for r in &rows[2..] {
                let detail = if r.id == 3 {
                    "{\"reason\":\"fun\"}".to_owned()
                } else {
                    r.detail.clone()
                };
                let ts = micros(r.at.parse().unwrap());
                let hash = match forge_key {
                    None => {
                        record_hash(&prev, ts, &r.actor, &r.role, &r.action, &r.subject, &detail)
                    }
                    Some(k) => keyed_hash(
                        k,
                        &[
                            &prev,
                            &ts.to_string(),
                            &r.actor,
                            &r.role,
                            &r.action,
                            &r.subject,
                            &detail,
                        ],
                    ),
                };
                d.s.connection()
                    .execute(
                        "UPDATE audit SET detail = ?1, prev_hash = ?2, hash = ?3, keyed = ?4 WHERE id = ?5",
                        params![detail, prev, hash, i64::from(forge_key.is_some()), r.id],
                    )
                    .unwrap();
                prev = hash;
            }
            // Even with the head file rewritten to match, the key gives it away.
            write_head(
                &d.dir.path().join("audit.head"),
                &Head {
                    records: 5,
                    head: prev.clone(),
                    keyed_from: None,
                },
            )
            .unwrap();
            let (id, why) = reason(check(&mut d));
            assert_eq!(id, 3, "{forge_key:?}: {why}");
        }
    }

    #[test]
    fn deleting_the_newest_records_is_found_by_the_published_head() {
        let mut d = db();
        fill(&mut d, 5);
        d.s.connection()
            .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id > 3;")
            .unwrap();
        let (id, why) = reason(check(&mut d));
        assert_eq!(id, 4);
        assert!(
            why.contains("has 3 records but the published head file says 5"),
            "{why}"
        );
        // Without the head file, counts known from elsewhere do the same.
        let expect = Expect {
            key: Some(d.chain.key()),
            count: Some(5),
            ..Default::default()
        };
        assert!(
            reason(verify(&mut d.s, &expect).unwrap())
                .1
                .contains("newest 2 record(s) were deleted")
        );
    }

    #[test]
    fn deleted_newest_records_stay_visible_after_later_appends() {
        let mut d = db();
        fill(&mut d, 5);
        d.s.connection()
            .execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id > 3;")
            .unwrap();
        // Three honest appends bring the count past the published 5; the head file is
        // left as evidence because the log no longer matched it.
        fill(&mut d, 3);
        assert_eq!(d.chain.published().unwrap().unwrap().records, 5);
        let (id, why) = reason(check(&mut d));
        assert_eq!(id, 5);
        assert!(why.contains("rewritten"), "{why}");
    }

    #[test]
    fn a_stale_head_file_with_more_records_after_it_verifies() {
        let mut d = db();
        fill(&mut d, 2);
        let old = d.chain.published().unwrap().unwrap();
        fill(&mut d, 2);
        // As if the process died after committing record 3 and 4 but before publishing.
        write_head(&d.dir.path().join("audit.head"), &old).unwrap();
        assert_eq!(check(&mut d), Verification::Intact(4));
    }

    #[test]
    fn instances_sharing_the_log_each_publish_a_head_that_follows_the_others() {
        let mut d = db();
        let other = Chain::open(
            &crate::config::AuditConfig {
                key_file: d.dir.path().join("keys/audit.key"),
                head_file: d.dir.path().join("other.head"),
            },
            None,
        )
        .unwrap();
        fill(&mut d, 1);
        for i in 0..2 {
            other
                .append(
                    &mut d.s,
                    t(),
                    "tech",
                    "technician",
                    "x",
                    &format!("b{i}"),
                    &serde_json::json!({}),
                )
                .unwrap();
        }
        fill(&mut d, 1);
        // This instance's head file lagged one record behind the other's two appends; it
        // follows them rather than being left as evidence of tampering.
        let now = d.s.audit_head().unwrap();
        assert_eq!(now.records, 4);
        assert_eq!(d.chain.published().unwrap(), Some(now.clone()));
        assert_eq!(other.published().unwrap().unwrap().records, 3);
        assert_eq!(check(&mut d), Verification::Intact(4));
        // A head the log no longer contains is still kept as evidence.
        d.s.connection()
            .execute_batch(
                "DROP TRIGGER audit_no_update; UPDATE audit SET hash = 'x' WHERE id = 3;",
            )
            .unwrap();
        other
            .append(
                &mut d.s,
                t(),
                "tech",
                "technician",
                "x",
                "b2",
                &serde_json::json!({}),
            )
            .unwrap();
        assert_eq!(other.published().unwrap().unwrap().records, 3);
    }

    #[test]
    fn expect_head_and_count_are_checked() {
        let mut d = db();
        fill(&mut d, 3);
        let head = crate::store::sqlite::audit::head(d.s.connection()).unwrap();
        let good = Expect {
            key: Some(d.chain.key()),
            count: Some(3),
            head: Some(head.to_uppercase()),
            ..Default::default()
        };
        assert_eq!(verify(&mut d.s, &good).unwrap(), Verification::Intact(3));
        let bad = Expect {
            head: Some(GENESIS.to_owned()),
            ..good
        };
        assert_eq!(reason(verify(&mut d.s, &bad).unwrap()).0, 3);
    }

    #[test]
    fn an_old_unkeyed_chain_still_verifies_and_keyed_records_follow_it() {
        let mut d = db();
        for i in 0..3 {
            append_unkeyed(
                d.s.connection(),
                t(),
                "tech",
                "technician",
                "exception.create",
                &format!("old {i}"),
                &serde_json::json!({}),
            )
            .unwrap();
        }
        assert_eq!(
            verify(&mut d.s, &Expect::default()).unwrap(),
            Verification::Intact(3),
            "no key needed for the old records"
        );
        fill(&mut d, 2);
        assert_eq!(check(&mut d), Verification::Intact(5));
        assert!(matches!(
            verify(&mut d.s, &Expect::default()).unwrap(),
            Verification::Unverifiable(_)
        ));
        // A record added without the key after keyed ones began is a forgery.
        append_unkeyed(
            d.s.connection(),
            t(),
            "mallory",
            "technician",
            "exception.create",
            "forged",
            &serde_json::json!({}),
        )
        .unwrap();
        let (id, why) = reason(check(&mut d));
        assert_eq!(id, 6);
        assert!(why.contains("forged"), "{why}");
    }

    #[test]
    fn a_schema_1_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .unwrap();
        let h = record_hash(GENESIS, 1, "a", "r", "x", "s", "{}");
        old.execute(
            "INSERT INTO audit (ts_us, actor, role, action, subject, detail, prev_hash, hash) VALUES (1, 'a', 'r', 'x', 's', '{}', ?1, ?2)",
            params![GENESIS, h],
        )
        .unwrap();
        drop(old);
        let mut s = crate::store::sqlite::Sqlite::open(&path).unwrap();
        assert_eq!(
            verify(&mut s, &Expect::default()).unwrap(),
            Verification::Intact(1)
        );
        assert!(!list(s.connection(), None, 10).unwrap()[0].keyed);
    }
}
