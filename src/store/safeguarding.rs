//! Safeguarding records: temporary unblocks (exceptions), unblock requests, site reports
//! and incidents. Plain SQL over one connection; the admin API wraps each state change with
//! an audit record in the same call.

use crate::policy::Exception;

/// A temporary unblock as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptionRow {
    /// Id.
    pub id: i64,
    /// Domain (and its subdomains).
    pub domain: String,
    /// Groups (empty = all).
    pub groups: Vec<String>,
    /// Why (required).
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Who granted it.
    pub granted_by: String,
    /// When granted (RFC 3339).
    pub created: String,
    /// When it ends (RFC 3339).
    pub expires: String,
    /// When revoked, if it was.
    pub revoked: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// The unblock request it came from, if any.
    pub request_id: Option<i64>,
    /// "active", "expired" or "revoked" at the time of reading.
    pub state: String,
}

/// Fields of a new exception.
#[derive(Debug, Clone)]
pub struct NewException<'a> {
    /// Normalised domain.
    pub domain: &'a str,
    /// Groups (empty = all).
    pub groups: &'a [String],
    /// Reason.
    pub reason: &'a str,
    /// Requester.
    pub requested_by: &'a str,
    /// Granter.
    pub granted_by: &'a str,
    /// Now.
    pub created: jiff::Timestamp,
    /// Expiry.
    pub expires: jiff::Timestamp,
    /// Originating request.
    pub request_id: Option<i64>,
}

impl ExceptionRow {
    /// As the policy takes it.
    pub fn into_exception(self) -> Exception {
        Exception {
            id: self.id,
            domain: self.domain,
            groups: self.groups,
            expires: self.expires.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }
}

/// An unblock request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRow {
    /// Id.
    pub id: i64,
    /// When made.
    pub created: String,
    /// Domain asked for.
    pub domain: String,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub requester: String,
    /// For how many days.
    pub days: u32,
    /// Groups it would apply to.
    pub groups: Vec<String>,
    /// Category that blocked it, when known.
    pub category: Option<String>,
    /// pending, approved, declined.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided: Option<String>,
    /// Why.
    pub decision_reason: Option<String>,
    /// The exception an approval created.
    pub exception_id: Option<i64>,
}

/// Fields of a new unblock request.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// Normalised domain.
    pub domain: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub requester: &'a str,
    /// Days.
    pub days: u32,
    /// Groups.
    pub groups: &'a [String],
    /// Category.
    pub category: Option<&'a str>,
    /// When.
    pub created: jiff::Timestamp,
}

/// A decision on a pending unblock request.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecision<'a> {
    /// "approved" or "declined".
    pub status: &'a str,
    /// Who decided.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// When.
    pub now: jiff::Timestamp,
    /// The exception an approval created.
    pub exception_id: Option<i64>,
}

/// A "this site should be blocked" report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRow {
    /// Id.
    pub id: i64,
    /// When.
    pub created: String,
    /// URL as reported.
    pub url: String,
    /// Its domain.
    pub domain: String,
    /// Who reported it.
    pub reporter: String,
    /// What they saw.
    pub comment: String,
    /// pending, approved, dismissed.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided: Option<String>,
    /// Why.
    pub decision_reason: Option<String>,
    /// The local category it was added to.
    pub category: Option<String>,
}

/// Fields of a new site report.
#[derive(Debug, Clone, Copy)]
pub struct NewReport<'a> {
    /// URL as reported.
    pub url: &'a str,
    /// Its domain.
    pub domain: &'a str,
    /// Who reported it.
    pub reporter: &'a str,
    /// What they saw.
    pub comment: &'a str,
    /// When.
    pub now: jiff::Timestamp,
}

/// A decision on a pending site report.
#[derive(Debug, Clone, Copy)]
pub struct ReportDecision<'a> {
    /// "approved" or "dismissed".
    pub status: &'a str,
    /// Who decided.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The category it was added to, when approved.
    pub category: Option<&'a str>,
    /// When.
    pub now: jiff::Timestamp,
}

/// An incident.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentRow {
    /// Id.
    pub id: i64,
    /// When.
    pub time: String,
    /// Client.
    pub client: String,
    /// Group.
    pub group: String,
    /// Device.
    pub device: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// Device name: its enrolment's, or the DHCP lease's host name.
    pub hostname: Option<String>,
    /// The individual (RADIUS user, ChromeOS user), when known.
    pub user: Option<String>,
    /// The enrolled device's ID, when the query came over DoT/DoH with one.
    pub device_id: Option<String>,
    /// Name queried.
    pub name: String,
    /// Type.
    pub qtype: String,
    /// Category.
    pub category: String,
    /// Matching rule.
    pub rule: Option<String>,
    /// pending, retrying, delivered, failed, dropped (not sent: too many in flight).
    pub alert_status: String,
    /// Delivery attempts.
    pub alert_attempts: i64,
    /// Last delivery error.
    pub alert_last_error: Option<String>,
    /// The alert theme it was recorded under ("illegal", "self-harm"...); None for
    /// incidents recorded before themes.
    pub theme: Option<String>,
    /// Queries it stands for: repeats of the same (client, name, category) within
    /// `[alerts] incident_window_mins` count here instead of making new incidents.
    pub hits: i64,
    /// When the latest of those queries was made (RFC 3339).
    pub last_seen: String,
}

/// What [`crate::store::Store::record_incident`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedIncident {
    /// The incident's id.
    pub id: i64,
    /// True when a new incident was made (and should be alerted); false when the hit was
    /// counted on an open one.
    pub new: bool,
    /// Its hit count now.
    pub hits: i64,
}

/// An incident's acknowledgement by the safeguarding lead (one per incident).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncidentAck {
    /// The incident.
    pub incident_id: i64,
    /// Who acknowledged it (console account or token holder).
    pub by: String,
    /// What they noted (action taken).
    pub note: String,
    /// When, RFC 3339.
    pub at: String,
}
