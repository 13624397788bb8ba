//! The RADIUS session table: what accounting says is signed in where, by address, with
//! expiry. The listener changes it under a mutex (never on the query path); the query path
//! reads only the immutable [`SessionIndex`] published from it into
//! [`Identities::sessions`], rebuilt and swapped whole at most every
//! [`PUBLISH_EVERY`] (a busy controller's interim updates must not rebuild a large index
//! per packet).
//!
//! Expiry: a Start or Interim-Update keeps the session for twice the NAS's
//! Acct-Interim-Interval (so one lost update does not end it) or, without one,
//! `radius.session_ttl_secs`; never past Session-Timeout from the session's start. Stop
//! removes it; Accounting-On/Off from a NAS removes all of that NAS's sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::packet::{Accounting, Status};
use crate::identity::{Identities, MAX_SESSIONS, SessionIndex, UserSession};
use crate::users::UserDirectory;

/// Longest wait between a change and its publication.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Bounds on a NAS's Acct-Interim-Interval, seconds (RFC 2869 §5.16 says at least 60).
const INTERIM_BOUNDS: (u32, u32) = (60, 86_400);

/// What one accounting packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Sessions were added, renewed or removed.
    Recorded,
    /// Nothing to record (no user or address, another status type): acknowledged.
    Ignored,
    /// The table is full ([`MAX_SESSIONS`]): not recorded, not acknowledged.
    Full,
}

struct Entry {
    session: Arc<UserSession>,
    /// The NAS (packet source) that reported it.
    nas: IpAddr,
    /// Unix seconds it was first seen, for Session-Timeout.
    started: i64,
}

#[derive(Default)]
struct Table {
    by_ip: HashMap<IpAddr, Entry>,
    dirty: bool,
}

/// The live session table and where it is published.
pub struct Sessions {
    table: Mutex<Table>,
    identities: Arc<Identities>,
}

impl Sessions {
    /// An empty table publishing into `identities`.
    pub fn new(identities: Arc<Identities>) -> Self {
        Self {
            table: Mutex::default(),
            identities,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply one authenticated Accounting-Request from `nas` at `now` (Unix seconds).
    pub fn apply(&self, nas: IpAddr, acct: &Accounting, now: i64, ttl: Duration) -> Applied {
        let nas = nas.to_canonical();
        let mut t = self.table();
        match acct.status {
            Some(Status::Start | Status::InterimUpdate) => {
                let users = self.identities.users.load();
                t.upsert(nas, acct, now, ttl, &users)
            }
            Some(Status::Stop) => t.stop(nas, acct),
            Some(Status::AccountingOn | Status::AccountingOff) => {
                let before = t.by_ip.len();
                t.by_ip.retain(|_, e| e.nas != nas);
                t.dirty |= t.by_ip.len() != before;
                Applied::Recorded
            }
            Some(Status::Other(_)) | None => Applied::Ignored,
        }
    }

    /// Forget sessions that expired before `now`.
    pub fn sweep(&self, now: i64) {
        let mut t = self.table();
        let before = t.by_ip.len();
        t.by_ip.retain(|_, e| now < e.session.expires);
        t.dirty |= t.by_ip.len() != before;
    }

    /// Take each session's group from `users` again (the rules or the CSV changed).
    pub fn regroup(&self, users: &UserDirectory) {
        let mut t = self.table();
        let mut changed = false;
        for e in t.by_ip.values_mut() {
            let group = users.group_of(&e.session.user);
            if group != e.session.group {
                let mut s = (*e.session).clone();
                s.group = group;
                e.session = Arc::new(s);
                changed = true;
            }
        }
        t.dirty |= changed;
    }

    /// Publish the table if it changed since the last time; returns the session count.
    pub fn publish_if_changed(&self) -> Option<usize> {
        let mut t = self.table();
        if !t.dirty {
            return None;
        }
        t.dirty = false;
        let index = SessionIndex::new(t.by_ip.iter().map(|(ip, e)| (*ip, e.session.clone())));
        let n = index.len();
        drop(t);
        self.identities.sessions.store(Arc::new(index));
        Some(n)
    }

    /// Number of sessions in the table.
    pub fn len(&self) -> usize {
        self.table().by_ip.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Table {
    fn upsert(
        &mut self,
        nas: IpAddr,
        acct: &Accounting,
        now: i64,
        ttl: Duration,
        users: &UserDirectory,
    ) -> Applied {
        let Some(user) = acct.user.as_deref().filter(|u| !u.is_empty()) else {
            return Applied::Ignored;
        };
        if acct.addresses.is_empty() {
            return Applied::Ignored;
        }
        let session_id: Arc<str> = acct.session_id.as_deref().unwrap_or("").into();
        let keep = match acct.interim_interval {
            Some(i) => 2 * i64::from(i.clamp(INTERIM_BOUNDS.0, INTERIM_BOUNDS.1)),
            None => i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        };
        let user: Arc<str> = user.into();
        let group = users.group_of(&user);
        let mut recorded = false;
        for ip in &acct.addresses {
            let ip = ip.to_canonical();
            // The same session renewing keeps its start, for Session-Timeout.
            let started = match self.by_ip.get(&ip) {
                Some(e) if e.session.session == session_id && e.session.user == user => e.started,
                Some(_) => now,
                None if self.by_ip.len() >= MAX_SESSIONS => continue,
                None => now,
            };
            let mut expires = now.saturating_add(keep);
            if let Some(t) = acct.session_timeout.filter(|t| *t > 0) {
                expires = expires.min(started.saturating_add(i64::from(t)));
            }
            let session = Arc::new(UserSession {
                user: user.clone(),
                group: group.clone(),
                mac: acct.mac,
                session: session_id.clone(),
                expires,
            });
            self.by_ip.insert(
                ip,
                Entry {
                    session,
                    nas,
                    started,
                },
            );
            recorded = true;
        }
        if recorded {
            self.dirty = true;
            Applied::Recorded
        } else {
            Applied::Full
        }
    }

    /// Remove the stopped session: its addresses when the Stop names them (if the session
    /// there is the one stopping), else every address of that NAS's session ID.
    fn stop(&mut self, nas: IpAddr, acct: &Accounting) -> Applied {
        let sid = acct.session_id.as_deref();
        let user = acct.user.as_deref();
        let same = |e: &Entry| {
            e.nas == nas
                && sid.is_none_or(|s| &*e.session.session == s)
                && user.is_none_or(|u| &*e.session.user == u)
        };
        let before = self.by_ip.len();
        if acct.addresses.is_empty() {
            if sid.is_none() {
                return Applied::Ignored;
            }
            self.by_ip.retain(|_, e| !same(e));
        } else {
            for ip in &acct.addresses {
                let ip = ip.to_canonical();
                if self.by_ip.get(&ip).is_some_and(same) {
                    self.by_ip.remove(&ip);
                }
            }
        }
        self.dirty |= self.by_ip.len() != before;
        Applied::Recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UsersConfig;

    fn acct(status: Status, user: &str, ip: &str, sid: &str) -> Accounting {
        Accounting {
            status: Some(status),
            user: Some(user.into()),
            addresses: vec![ip.parse().unwrap()],
            mac: None,
            session_id: Some(sid.into()),
            interim_interval: None,
            session_timeout: None,
        }
    }

    fn sessions() -> Sessions {
        let ids = Arc::new(Identities::default());
        let config = UsersConfig {
            csv: None,
            exact: Default::default(),
            suffixes: vec![("@pupils.org".into(), "pupils".into())],
        };
        ids.users
            .store(Arc::new(UserDirectory::new(&config, Arc::default())));
        Sessions::new(ids)
    }

    const NAS: &str = "10.0.0.1";
    const TTL: Duration = Duration::from_secs(3600);

    fn lookup(s: &Sessions, ip: &str, now: i64) -> Option<Arc<UserSession>> {
        s.publish_if_changed();
        s.identities
            .sessions
            .load()
            .lookup(ip.parse().unwrap(), now)
            .cloned()
    }

    #[test]
    fn start_interim_and_stop() {
        let s = sessions();
        let nas = NAS.parse().unwrap();
        let start = acct(Status::Start, "a@pupils.org", "10.1.0.5", "s1");
        assert_eq!(s.apply(nas, &start, 1000, TTL), Applied::Recorded);
        let got = lookup(&s, "10.1.0.5", 1000).unwrap();
        assert_eq!(got.group.as_deref(), Some("pupils"));
        assert_eq!(got.expires, 4600);
        let mut interim = acct(Status::InterimUpdate, "a@pupils.org", "10.1.0.5", "s1");
        interim.interim_interval = Some(10); // clamped to 60
        interim.session_timeout = Some(500);
        s.apply(nas, &interim, 1300, TTL);
        assert_eq!(lookup(&s, "10.1.0.5", 1300).unwrap().expires, 1420);
        interim.interim_interval = Some(600);
        s.apply(nas, &interim, 1350, TTL);
        assert_eq!(
            lookup(&s, "10.1.0.5", 1350).unwrap().expires,
            1500,
            "Session-Timeout counts from the start"
        );
        // A Stop for another session on the address does not end this one.
        let other = acct(Status::Stop, "a@pupils.org", "10.1.0.5", "s0");
        s.apply(nas, &other, 1400, TTL);
        assert!(lookup(&s, "10.1.0.5", 1400).is_some());
        let stop = acct(Status::Stop, "a@pupils.org", "10.1.0.5", "s1");
        s.apply(nas, &stop, 1400, TTL);
        assert!(lookup(&s, "10.1.0.5", 1400).is_none());
    }

    #[test]
    fn accounting_on_clears_only_that_nas_and_stop_without_address_uses_the_id() {
        let s = sessions();
        let (a, b): (IpAddr, IpAddr) = (NAS.parse().unwrap(), "10.0.0.2".parse().unwrap());
        s.apply(a, &acct(Status::Start, "x", "10.1.0.1", "1"), 0, TTL);
        s.apply(a, &acct(Status::Start, "y", "10.1.0.2", "2"), 0, TTL);
        s.apply(b, &acct(Status::Start, "z", "10.1.0.3", "3"), 0, TTL);
        let mut stop = acct(Status::Stop, "y", "10.1.0.2", "2");
        stop.addresses.clear();
        s.apply(a, &stop, 1, TTL);
        assert!(lookup(&s, "10.1.0.2", 1).is_none());
        let mut on = Accounting {
            status: Some(Status::AccountingOn),
            ..Default::default()
        };
        s.apply(a, &on, 1, TTL);
        assert!(lookup(&s, "10.1.0.1", 1).is_none());
        assert!(
            lookup(&s, "10.1.0.3", 1).is_some(),
            "another NAS's session stays"
        );
        on.status = Some(Status::Other(15));
        assert_eq!(s.apply(b, &on, 1, TTL), Applied::Ignored);
        let mut no_ip = acct(Status::Start, "x", "10.1.0.1", "1");
        no_ip.addresses.clear();
        assert_eq!(s.apply(b, &no_ip, 1, TTL), Applied::Ignored);
    }

    #[test]
    fn expired_sessions_are_swept_and_groups_follow_the_directory() {
        let s = sessions();
        let nas = NAS.parse().unwrap();
        s.apply(
            nas,
            &acct(Status::Start, "a@pupils.org", "10.1.0.5", "1"),
            0,
            TTL,
        );
        s.apply(
            nas,
            &acct(Status::Start, "b@staff.org", "::ffff:10.1.0.6", "2"),
            3000,
            TTL,
        );
        assert!(
            lookup(&s, "10.1.0.6", 3000).is_some(),
            "mapped address canonical"
        );
        s.sweep(3600);
        assert_eq!(s.len(), 1);
        let config = UsersConfig {
            csv: None,
            exact: [("b@staff.org".to_owned(), "staff".to_owned())].into(),
            suffixes: vec![],
        };
        s.regroup(&UserDirectory::new(&config, Arc::default()));
        assert_eq!(
            lookup(&s, "10.1.0.6", 3600).unwrap().group.as_deref(),
            Some("staff")
        );
    }
}
