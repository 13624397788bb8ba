//! Admin API handlers. Each state-changing handler: check the role, validate the body,
//! change the store, write the audit record, then apply the change to the live policy.

// Handlers return ready-made error responses (the axum idiom); they are built once per
// failed request, so their size does not matter.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::auth::{Caller, error};
use super::limits::{self, MAX_CATEGORY, MAX_NAME, MAX_TEXT, MAX_URL, one_line};
use super::school::Scope;
use crate::config::Role;
use crate::lists::key::{ReversedName, normalize_domain};
use crate::lists::parse::Format;
use crate::store::{Change, Store, StoreError, audit, safeguarding as sg};

type Result<T> = std::result::Result<T, Response>;

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(m) => error(StatusCode::CONFLICT, &m),
        other => {
            tracing::error!("admin API storage error: {other}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage error (see the server log)",
            )
        }
    }
}

/// The reach of the caller's token (a `[[school]]`, or the whole trust).
fn scope(a: &Admin, caller: &Caller) -> Scope {
    Scope::of(caller, &a.pipeline.state().load().config)
}

/// Read something from the database and answer it as JSON.
async fn db_json<T: serde::Serialize + Send + 'static>(
    a: &Admin,
    f: impl FnOnce(&mut dyn Store) -> std::result::Result<T, StoreError> + Send + 'static,
) -> Result<Response> {
    Ok(Json(a.with_db(f).await.map_err(store_error)?).into_response())
}

fn bad(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// A value outside the range a field can take (400, naming the field).
fn out_of_range(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// A bounded free-text field, or the 422 naming it.
fn field<'a>(name: &str, value: &'a str, max: usize, multiline: bool) -> Result<&'a str> {
    limits::text(name, value, max, true, multiline).map_err(|m| bad(&m))
}

/// Who may submit anonymously: a client in a configured network, within its hourly
/// budget. Returns its group (an anonymous request applies to that group only).
fn admit_anonymous(a: &Admin, client: IpAddr) -> Result<String> {
    let client = client.to_canonical();
    let metrics = a.pipeline.state().metrics().clone();
    let Some(group) = a.group_of(client) else {
        metrics
            .http_rejected
            .with_label_values(&["no_network"])
            .inc();
        return Err(error(
            StatusCode::FORBIDDEN,
            "your address is in no school network: ask a member of staff",
        ));
    };
    let per_hour = a.pipeline.state().load().config.http.submissions_per_hour;
    if !a.submissions.allow(client, per_hour) {
        metrics
            .http_rejected
            .with_label_values(&["submission_rate"])
            .inc();
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("at most {per_hour} requests and reports an hour from one device"),
        ));
    }
    Ok(group)
}

pub async fn healthz(State(a): State<Admin>) -> impl IntoResponse {
    let snap = a.pipeline.state().load();
    Json(json!({
        "status": "ok",
        "generation": snap.generation,
        "list_names": snap.policy.bundle().header().names,
        "bundle_built_at": snap.policy.bundle().header().built_at,
        "exceptions_active": snap.policy.exceptions().len(),
        "storage": if snap.config.postgres.is_some() { "postgres" } else { "sqlite" },
        "bundle_content": snap.policy.bundle().content_id(),
    }))
}

pub async fn metrics(State(a): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        a.pipeline.state().metrics().render(),
    )
}

#[derive(Deserialize)]
pub struct ReloadQuery {
    /// Accept lists that shrank by more than `lists.max_shrink`.
    #[serde(default)]
    force: bool,
}

pub async fn reload(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ReloadQuery>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let result = a.pipeline.reload_with(q.force).await;
    let detail = match &result {
        Ok(g) => json!({ "result": "success", "generation": g, "forced": q.force }),
        Err(e) => json!({ "result": "failure", "error": e.to_string(), "forced": q.force }),
    };
    a.audit(&who, role, "reload", "config and lists", detail)
        .await
        .map_err(store_error)?;
    Ok(match result {
        Ok(generation) => {
            Json(json!({ "reloaded": true, "generation": generation })).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "reloaded": false,
                "error": e.to_string(),
                "serving_generation": a.pipeline.state().load().generation,
            })),
        )
            .into_response(),
    })
}

/// The query of `GET /explain` (and the console's explain form).
#[derive(Deserialize, Default)]
pub struct ExplainQuery {
    /// The client address asking.
    pub client: Option<std::net::IpAddr>,
    /// The name asked.
    pub name: String,
    /// Decide at this time (RFC 3339) instead of now.
    pub at: Option<String>,
    /// Explain as the device enrolled with this ID (as if it asked over DoT/DoH).
    pub device: Option<String>,
    /// Explain as this user signed in on the address (as RADIUS would say).
    pub user: Option<String>,
    /// Record type whose upstream answer is inspected for an allowed name (default A).
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    /// Resolve an allowed name and inspect its answer (default true).
    pub answer: Option<bool>,
}

pub async fn explain(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ExplainQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(explain_value(&a, &q).await?).into_response())
}

/// The explanation `GET /explain` returns, for the console's explain form too (one
/// implementation, so the two can never disagree).
pub async fn explain_value(a: &Admin, q: &ExplainQuery) -> Result<serde_json::Value> {
    let client_ip = q.client.ok_or_else(|| bad("client: required"))?;
    let name = normalize_domain(&q.name).map_err(|e| bad(&format!("name: {e}")))?;
    let now = match &q.at {
        Some(t) => t
            .parse()
            .map_err(|_| bad("at: expected an RFC 3339 time"))?,
        None => a.now(),
    };
    let key = ReversedName::from_labels(name.split('.').map(str::as_bytes))
        .ok_or_else(|| bad("name too long"))?;
    let snap = a.pipeline.state().load();
    let leases = a.pipeline.state().leases().load();
    let sources = crate::identify::Sources {
        trust: &snap.config.identify,
        leases: &leases,
        identities: a.pipeline.state().identities(),
        policy: &snap.policy,
    };
    let credential = match &q.device {
        Some(id) => crate::identity::Credential::Path(id),
        None => crate::identity::Credential::None,
    };
    let client = std::net::SocketAddr::new(client_ip, 0);
    let mut who = crate::identify::client(client, None, credential, &sources, now);
    if let Some(user) = &q.user {
        crate::identify::as_user(&mut who, user, &sources);
    }
    let mut trace = crate::identify::describe(&who);
    let mut outcome = snap
        .policy
        .decide(&who.client, key.as_bytes(), now, Some(&mut trace));
    let found = match q.answer.unwrap_or(true) {
        true => inspect_answer(a, &snap, &name, q, &mut outcome, now, &mut trace).await?,
        false => None,
    };
    let (decision, category, mut rule, incident) =
        crate::record::describe(&snap.policy, outcome.decision, key.as_bytes());
    if let Some(f) = found {
        rule = Some(f.to_string());
    }
    let device = who.lease.as_ref().map(
        |l| json!({ "hostname": l.hostname.as_deref(), "mac": l.mac_text(), "source": &*l.source }),
    );
    let enrolled = who
        .enrolled
        .as_ref()
        .map(|d| json!({ "name": &*d.name, "owner": &*d.owner, "group": &*d.group }));
    // Who answers an allowed name: a local record, a [[zone]]'s servers, a reserved
    // zone, or the main upstream.
    let answer = matches!(outcome.decision, crate::policy::Decision::Allow(_))
        .then(|| snap.local.route(&snap.config, &name));
    Ok(
        json!({ "name": name, "client": client_ip, "at": now.to_string(), "device": device, "enrolled": enrolled, "user": who.user.as_deref(), "trace": trace, "decision": decision, "category": category, "rule": rule, "incident": incident, "answer": answer }),
    )
}

/// How long `explain` waits for an upstream answer to inspect.
const EXPLAIN_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// For an allowed name answered upstream: resolve it (cache first, as serving does) and
/// run response inspection with the trace, so `explain` shows a CNAME target or an answer
/// address that blocks the name. Names answered locally are not inspected.
async fn inspect_answer(
    a: &Admin,
    snap: &crate::state::Snapshot,
    name: &str,
    q: &ExplainQuery,
    outcome: &mut crate::policy::Outcome,
    now: jiff::Timestamp,
    trace: &mut Vec<String>,
) -> Result<Option<crate::policy::Found>> {
    use hickory_proto::rr::{DNSClass, Name, RecordType};
    if !matches!(outcome.decision, crate::policy::Decision::Allow(_)) {
        return Ok(None);
    }
    let qtype: RecordType = match &q.qtype {
        Some(t) => t
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| bad(&format!("type: unknown record type {t:?}")))?,
        None => RecordType::A,
    };
    let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| bad(&format!("name: {e}")))?;
    let key = crate::lists::key::reverse_key(name);
    if snap.local.explain(&key, &fqdn).is_some() {
        return Ok(None);
    }
    let resolved = tokio::time::timeout(
        EXPLAIN_RESOLVE_TIMEOUT,
        a.pipeline.resolve(
            snap,
            q.client.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            &fqdn,
            qtype,
            DNSClass::IN,
            false,
        ),
    )
    .await;
    let answer = match resolved {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            trace.push(format!("answer: {qtype} not inspected: {e}"));
            return Ok(None);
        }
        Err(_) => {
            trace.push(format!(
                "answer: {qtype} not inspected: no upstream answer within {} s",
                EXPLAIN_RESOLVE_TIMEOUT.as_secs()
            ));
            return Ok(None);
        }
    };
    let none = crate::inspect::Findings::default();
    let findings = answer.findings.as_deref().unwrap_or(&none);
    Ok(snap
        .policy
        .explain_answer(outcome, &qtype.to_string(), findings, now, trace))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
    status: Option<String>,
    since: Option<String>,
}

pub async fn list_exceptions(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    let scope = scope(&a, &caller);
    let now = a.now();
    let rows = a
        .with_db(move |c| c.list_exceptions(now, !q.all))
        .await
        .map_err(store_error)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| scope.owns_groups(&r.groups))
        .collect();
    Ok(Json(rows).into_response())
}

pub async fn get_exception(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    let now = a.now();
    match a
        .with_db(move |c| c.get_exception(id, now))
        .await
        .map_err(store_error)?
    {
        Some(row) => {
            scope(&a, &caller).visible(&row.groups, "exception", id)?;
            Ok(Json(row).into_response())
        }
        None => Err(error(StatusCode::NOT_FOUND, &format!("no exception {id}"))),
    }
}

#[derive(Deserialize)]
pub struct NewExceptionBody {
    domain: String,
    #[serde(default)]
    groups: Vec<String>,
    reason: String,
    requested_by: String,
    /// RFC 3339 end time.
    expires: Option<String>,
    /// Or a number of days from now.
    days: Option<u32>,
}

/// Check a domain and groups for an exception: the name is valid, every group exists, and
/// neither the name nor a parent of it is listed in an illegal category. Anonymous callers
/// are not told which list a name is on (that would disclose list contents).
fn check_exceptable(a: &Admin, domain: &str, groups: &[String]) -> Result<String> {
    check_exceptable_for(a, domain, groups, false)
}

fn check_exceptable_for(
    a: &Admin,
    domain: &str,
    groups: &[String],
    anonymous: bool,
) -> Result<String> {
    let snap = a.pipeline.state().load();
    for g in groups {
        if snap.policy.group_index(g).is_none() {
            return Err(bad(&format!("groups: no group {g:?}")));
        }
    }
    if domain.starts_with(crate::services::SERVICE_PREFIX) {
        return check_service_exceptable(&snap, domain, anonymous);
    }
    let domain = normalize_domain(domain.trim_start_matches("*."))
        .map_err(|e| bad(&format!("domain: {e}")))?;
    let key = crate::lists::key::reverse_key(&domain);
    let bundle = snap.policy.bundle();
    let listed = bundle.verdicts(&bundle.lookup(&key)).masks;
    let hit = listed.block | listed.nodata;
    if let Some(cat) = (0..bundle.categories().len() as u16)
        .find(|&c| hit & (1 << c) != 0 && snap.policy.is_illegal(c))
    {
        if anonymous {
            return Err(bad("this name cannot be requested"));
        }
        return Err(bad(&format!(
            "{domain} is in the illegal category {:?}: it can never be unblocked",
            snap.policy.category_name(cat)
        )));
    }
    Ok(domain)
}

/// An exception for `service:NAME` (every domain of a catalogue service): the service must
/// exist, and none of its domains may be listed in an illegal category.
fn check_service_exceptable(
    snap: &crate::state::Snapshot,
    subject: &str,
    anonymous: bool,
) -> Result<String> {
    let catalogue = snap.policy.services();
    let Some(domains) = catalogue.domains_of(subject) else {
        let name = subject.trim_start_matches(crate::services::SERVICE_PREFIX);
        return Err(bad(&format!(
            "domain: unknown service {name:?}{}",
            crate::services::suggest(name, catalogue.services().map(|s| s.name.as_str()))
        )));
    };
    let bundle = snap.policy.bundle();
    for d in domains {
        let listed = bundle
            .verdicts(&bundle.lookup(&crate::lists::key::reverse_key(d)))
            .masks;
        let hit = listed.block | listed.nodata;
        if (0..bundle.categories().len() as u16)
            .any(|c| hit & (1 << c) != 0 && snap.policy.is_illegal(c))
        {
            return Err(bad(if anonymous {
                "this name cannot be requested"
            } else {
                "a domain of this service is in an illegal category: it can never be unblocked"
            }));
        }
    }
    Ok(subject.to_owned())
}

/// Longest unblock allowed, in days (`admin.max_exception_days`).
fn max_days(a: &Admin) -> u32 {
    let max = a
        .pipeline
        .state()
        .load()
        .config
        .admin
        .as_ref()
        .map_or(std::time::Duration::from_secs(30 * 86_400), |c| {
            c.max_exception
        });
    u32::try_from(max.as_secs() / 86_400).unwrap_or(30).max(1)
}

/// `days` checked against 1..=`admin.max_exception_days` before any arithmetic (a huge
/// value once overflowed the time calculation and panicked the handler).
fn check_days(a: &Admin, days: u32) -> Result<u32> {
    let max = max_days(a);
    if (1..=max).contains(&days) {
        Ok(days)
    } else {
        Err(out_of_range(&format!(
            "days: must be from 1 to {max} (admin.max_exception_days)"
        )))
    }
}

fn expiry(a: &Admin, expires: Option<&str>, days: Option<u32>) -> Result<jiff::Timestamp> {
    let now = a.now();
    let max = jiff::SignedDuration::from_hours(24 * i64::from(max_days(a)));
    let at = match (expires, days) {
        (Some(t), None) => t
            .parse::<jiff::Timestamp>()
            .map_err(|_| bad("expires: expected an RFC 3339 time such as 2026-12-01T16:00:00Z"))?,
        (None, Some(d)) => {
            let d = check_days(a, d)?;
            now.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(d)))
                .map_err(|_| out_of_range("days: too far in the future"))?
        }
        (Some(_), Some(_)) => return Err(bad("give either expires or days, not both")),
        (None, None) => {
            return Err(bad(
                "expires (or days) is required: every unblock is temporary",
            ));
        }
    };
    if at <= now {
        return Err(bad("expires: must be in the future"));
    }
    let latest = now
        .checked_add(max)
        .map_err(|_| out_of_range("admin.max_exception_days: too large"))?;
    if at > latest {
        return Err(bad(&format!(
            "expires: at most {} days ahead (admin.max_exception_days)",
            max.as_hours() / 24
        )));
    }
    Ok(at)
}

pub async fn create_exception(
    State(a): State<Admin>,
    caller: Caller,
    Json(b): Json<NewExceptionBody>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let reason = field("reason", &b.reason, MAX_TEXT, true)
        .map_err(|_| {
            bad("reason: required (at most 1000 characters), so the unblock is auditable")
        })?
        .to_owned();
    let requested_by = field("requested_by", &b.requested_by, MAX_NAME, false)?.to_owned();
    let scope = scope(&a, &caller);
    let groups = scope.grant_groups(&b.groups)?;
    let domain = check_exceptable(&a, &b.domain, &groups)?;
    scope.check_baseline(&a.pipeline.state().load(), &domain)?;
    let expires = expiry(&a, b.expires.as_deref(), b.days)?;
    let now = a.now();
    let (d, g, r, rb, gb) = (
        domain.clone(),
        groups.clone(),
        reason.clone(),
        requested_by.clone(),
        who.clone(),
    );
    let id = a
        .with_db(move |c| {
            c.create_exception(&sg::NewException {
                domain: &d,
                groups: &g,
                reason: &r,
                requested_by: &rb,
                granted_by: &gb,
                created: now,
                expires,
                request_id: None,
            })
            .inspect(|_| super::sync::announce(c, Change::Exceptions))
        })
        .await
        .map_err(store_error)?;
    a.audit(&who, role, "exception.create", &format!("exception {id}"), json!({ "domain": domain, "groups": groups, "reason": reason, "requested_by": requested_by, "expires": expires.to_string() }))
        .await
        .map_err(store_error)?;
    a.refresh_exceptions().await.map_err(store_error)?;
    let row = a
        .with_db(move |c| c.get_exception(id, now))
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

#[derive(Deserialize, Default)]
pub struct DecisionBody {
    #[serde(default)]
    reason: String,
    /// Approvals: days the exception lasts (default: as requested).
    days: Option<u32>,
    /// Report approvals: the local category to add the domain to.
    category: Option<String>,
    /// Request approvals: the groups the exception applies to (default: as requested).
    groups: Option<Vec<String>>,
}

pub async fn revoke_exception(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    revoke_exception_as(&a, &who, role, &scope(&a, &caller), id, &reason).await?;
    let now = a.now();
    Ok(Json(
        a.with_db(move |c| c.get_exception(id, now))
            .await
            .map_err(store_error)?,
    )
    .into_response())
}

/// End exception `id` early (the API and the console): checks the reason and the
/// caller's scope, changes the store, writes the audit record, updates the live policy.
pub async fn revoke_exception_as(
    a: &Admin,
    who: &str,
    role: Role,
    scope: &Scope,
    id: i64,
    reason: &str,
) -> Result<()> {
    let reason = limits::text("reason", reason, MAX_TEXT, false, true)
        .map_err(|m| bad(&m))?
        .to_owned();
    let now = a.now();
    if !scope.is_trust() {
        let row = a
            .with_db(move |c| c.get_exception(id, now))
            .await
            .map_err(store_error)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no exception {id}")))?;
        scope.visible(&row.groups, "exception", id)?;
    }
    let by = who.to_owned();
    a.with_db(move |c| {
        c.revoke_exception(id, &by, now)
            .inspect(|_| super::sync::announce(c, Change::Exceptions))
    })
    .await
    .map_err(store_error)?;
    a.audit(
        who,
        role,
        "exception.revoke",
        &format!("exception {id}"),
        json!({ "reason": reason }),
    )
    .await
    .map_err(store_error)?;
    a.refresh_exceptions().await.map_err(store_error)?;
    Ok(())
}

#[derive(Deserialize)]
pub struct NewRequestBody {
    pub domain: String,
    pub reason: String,
    pub requester: String,
    #[serde(default = "default_days")]
    pub days: u32,
    #[serde(default)]
    pub groups: Vec<String>,
    pub category: Option<String>,
}

fn default_days() -> u32 {
    1
}

/// Who is submitting a request or report.
pub enum Submitter {
    /// A token holder (name, role).
    Staff(String, &'static str),
    /// No token: the block page or an anonymous API call, from this address.
    Anonymous {
        /// "block page (ADDR)" or "anonymous (ADDR)", for the audit log.
        actor: String,
        /// The client's address.
        client: IpAddr,
    },
}

impl Submitter {
    fn from_caller(caller: &Caller, client: SocketAddr) -> Self {
        match &caller.who {
            Some((name, role)) => Submitter::Staff(name.clone(), super::role_name(*role)),
            None => Submitter::Anonymous {
                actor: "anonymous".to_owned(),
                client: client.ip().to_canonical(),
            },
        }
    }

    fn actor(&self) -> (String, &'static str) {
        match self {
            Submitter::Staff(n, r) => (n.clone(), r),
            Submitter::Anonymous { actor, .. } => (actor.clone(), "none"),
        }
    }
}

/// Create an unblock request (shared by the API and the block page). Anyone on a school
/// network may ask; an anonymous request is for the asker's own group, and staff must
/// name the groups (a request with no groups would become an exception for everyone).
pub async fn new_request(a: &Admin, b: &NewRequestBody, who: &Submitter) -> Result<i64> {
    let reason = field("reason", &b.reason, MAX_TEXT, true)?.to_owned();
    let requester = field("requester", &b.requester, MAX_NAME, false)?.to_owned();
    let category = match b.category.as_deref() {
        Some(c) => {
            Some(limits::text("category", c, MAX_CATEGORY, false, false).map_err(|m| bad(&m))?)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
        }
        None => None,
    };
    let days = check_days(a, b.days)?;
    let (groups, anonymous) = match who {
        Submitter::Anonymous { client, .. } => (vec![admit_anonymous(a, *client)?], true),
        Submitter::Staff(..) if b.groups.is_empty() => {
            return Err(bad("groups: name the groups the unblock would apply to"));
        }
        Submitter::Staff(..) => (b.groups.clone(), false),
    };
    let domain = check_exceptable_for(a, &b.domain, &groups, anonymous)?;
    let now = a.now();
    let notice_category = category.clone();
    let (d, r, q, g, c) = (
        domain.clone(),
        reason.clone(),
        requester.clone(),
        groups.clone(),
        category,
    );
    let id = a
        .with_db(move |conn| {
            conn.create_request(&sg::NewRequest {
                domain: &d,
                reason: &r,
                requester: &q,
                days,
                groups: &g,
                category: c.as_deref(),
                created: now,
            })
        })
        .await
        .map_err(store_error)?;
    let (actor, role) = who.actor();
    a.audit_as(&actor, role, "request.create", &format!("request {id}"), json!({ "domain": domain, "reason": reason, "requester": requester, "days": days, "groups": groups }))
        .await
        .map_err(store_error)?;
    notify_submission(
        a,
        "unblock-request",
        id,
        domain,
        &requester,
        &actor,
        notice_category,
    );
    Ok(id)
}

pub async fn create_request(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    caller: Caller,
    Json(b): Json<NewRequestBody>,
) -> Result<Response> {
    if caller.who.is_some() {
        scope(&a, &caller).grant_groups(&b.groups)?;
    }
    let id = new_request(&a, &b, &Submitter::from_caller(&caller, client)).await?;
    let row = a
        .with_db(move |c| c.get_request(id))
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn list_requests(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    let scope = scope(&a, &caller);
    let rows = a
        .with_db(move |c| c.list_requests(q.status.as_deref()))
        .await
        .map_err(store_error)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| scope.owns_groups(&r.groups))
        .collect();
    Ok(Json(rows).into_response())
}

pub async fn get_request(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    match a
        .with_db(move |c| c.get_request(id))
        .await
        .map_err(store_error)?
    {
        Some(r) => {
            scope(&a, &caller).visible(&r.groups, "request", id)?;
            Ok(Json(r).into_response())
        }
        None => Err(error(StatusCode::NOT_FOUND, &format!("no request {id}"))),
    }
}

pub async fn approve_request(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let scope = scope(&a, &caller);
    approve_request_as(
        &a,
        &who,
        role,
        &scope,
        id,
        &body.reason,
        body.days,
        body.groups,
    )
    .await?;
    Ok(Json(
        a.with_db(move |c| c.get_request(id))
            .await
            .map_err(store_error)?,
    )
    .into_response())
}

/// Approve request `id` (the API and the console): the exception lasts `days` (default:
/// as requested) for `groups` (default: as requested). Checks the reason, the caller's
/// scope and that the name may be unblocked; creates the exception, writes the audit
/// record and updates the live policy. Returns the exception's id.
#[allow(clippy::too_many_arguments)]
pub async fn approve_request_as(
    a: &Admin,
    who: &str,
    role: Role,
    scope: &Scope,
    id: i64,
    reason: &str,
    days: Option<u32>,
    groups: Option<Vec<String>>,
) -> Result<i64> {
    let reason = field("reason", reason, MAX_TEXT, true)
        .map_err(|_| {
            bad("reason: required (at most 1000 characters), so the decision is auditable")
        })?
        .to_owned();
    let mut req = a
        .with_db(move |c| c.get_request(id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no request {id}")))?;
    scope.visible(&req.groups, "request", id)?;
    if req.status != "pending" {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("request {id} was already {}", req.status),
        ));
    }
    if let Some(g) = groups.filter(|g| !g.is_empty()) {
        req.groups = scope.grant_groups(&g)?;
    }
    if req.groups.is_empty() {
        // Never turn a request without groups into an exception for every group.
        return Err(error(
            StatusCode::CONFLICT,
            &format!(
                "request {id} names no group; decline it, or grant a scoped exception with POST /exceptions"
            ),
        ));
    }
    let domain = check_exceptable(a, &req.domain, &req.groups)?;
    scope.check_baseline(&a.pipeline.state().load(), &domain)?;
    let expires = expiry(a, None, Some(days.unwrap_or(req.days)))?;
    let now = a.now();
    let (d, granted_by, r) = (domain.clone(), who.to_owned(), reason.clone());
    let groups = req.groups.clone();
    let exception_id = a
        .with_db(move |c| -> std::result::Result<i64, StoreError> {
            let new = sg::NewException {
                domain: &d,
                groups: &req.groups,
                reason: &req.reason,
                requested_by: &req.requester,
                granted_by: &granted_by,
                created: now,
                expires,
                request_id: Some(id),
            };
            let decision = sg::RequestDecision {
                status: "approved",
                by: &granted_by,
                reason: &r,
                now,
                exception_id: None,
            };
            c.approve_request(id, &new, &decision)
                .inspect(|_| super::sync::announce(c, Change::Exceptions))
        })
        .await
        .map_err(store_error)?;
    a.audit(who, role, "request.approve", &format!("request {id}"), json!({ "reason": reason, "exception": exception_id, "domain": domain, "groups": groups, "expires": expires.to_string() }))
        .await
        .map_err(store_error)?;
    a.refresh_exceptions().await.map_err(store_error)?;
    Ok(exception_id)
}

pub async fn decline_request(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    decline_request_as(&a, &who, role, &scope(&a, &caller), id, &body.reason).await?;
    Ok(Json(
        a.with_db(move |c| c.get_request(id))
            .await
            .map_err(store_error)?,
    )
    .into_response())
}

/// Decline request `id` with a reason (the API and the console), with its audit record.
pub async fn decline_request_as(
    a: &Admin,
    who: &str,
    role: Role,
    scope: &Scope,
    id: i64,
    reason: &str,
) -> Result<()> {
    let reason = field("reason", reason, MAX_TEXT, true)
        .map_err(|_| {
            bad("reason: required (at most 1000 characters), so the decision is auditable")
        })?
        .to_owned();
    if !scope.is_trust() {
        let req = a
            .with_db(move |c| c.get_request(id))
            .await
            .map_err(store_error)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no request {id}")))?;
        scope.visible(&req.groups, "request", id)?;
    }
    let now = a.now();
    let (by, r) = (who.to_owned(), reason.clone());
    a.with_db(move |c| {
        c.decide_request(
            id,
            &sg::RequestDecision {
                status: "declined",
                by: &by,
                reason: &r,
                now,
                exception_id: None,
            },
        )
    })
    .await
    .map_err(store_error)?;
    a.audit(
        who,
        role,
        "request.decline",
        &format!("request {id}"),
        json!({ "reason": reason }),
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

#[derive(Deserialize)]
pub struct NewReportBody {
    pub url: String,
    pub reporter: String,
    #[serde(default)]
    pub comment: String,
}

/// The domain of a reported URL (or of a bare domain).
pub fn url_domain(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    normalize_domain(host).ok()
}

/// Create a site report (shared by the API and the block page).
pub async fn new_report(a: &Admin, b: &NewReportBody, who: &Submitter) -> Result<i64> {
    let url = field("url", &b.url, MAX_URL, false)?.to_owned();
    let domain = url_domain(&url).ok_or_else(|| bad("url: no domain name in it"))?;
    let reporter = field("reporter", &b.reporter, MAX_NAME, false)?.to_owned();
    let comment = limits::text("comment", &b.comment, MAX_TEXT, false, true)
        .map_err(|m| bad(&m))?
        .to_owned();
    if let Submitter::Anonymous { client, .. } = who {
        admit_anonymous(a, *client)?;
    }
    let now = a.now();
    let (u, d, r, c) = (
        url.clone(),
        domain.clone(),
        reporter.clone(),
        comment.clone(),
    );
    let id = a
        .with_db(move |conn| {
            conn.create_report(&sg::NewReport {
                url: &u,
                domain: &d,
                reporter: &r,
                comment: &c,
                now,
            })
        })
        .await
        .map_err(store_error)?;
    let (actor, role) = who.actor();
    a.audit_as(
        &actor,
        role,
        "report.create",
        &format!("report {id}"),
        json!({ "url": url, "domain": domain, "reporter": reporter, "comment": comment }),
    )
    .await
    .map_err(store_error)?;
    notify_submission(a, "site-report", id, domain, &reporter, &actor, None);
    Ok(id)
}

/// Tell the technician/DSL of a new request or report (`[alerts] notify_requests`),
/// without waiting: the alert task sends it.
fn notify_submission(
    a: &Admin,
    kind: &'static str,
    id: i64,
    domain: String,
    named: &str,
    actor: &str,
    category: Option<String>,
) {
    if !crate::alerts::notifies_requests(&a.pipeline.state().load().config) {
        return;
    }
    let submitted_by = if named.trim().is_empty() {
        actor
    } else {
        named
    };
    a.pipeline.recorder().notify(crate::alerts::Notice {
        kind,
        id,
        domain,
        submitted_by: submitted_by.to_owned(),
        category,
        time: a.now().to_string(),
    });
}

pub async fn create_report(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    caller: Caller,
    Json(b): Json<NewReportBody>,
) -> Result<Response> {
    let id = new_report(&a, &b, &Submitter::from_caller(&caller, client)).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            a.with_db(move |c| c.get_report(id))
                .await
                .map_err(store_error)?,
        ),
    )
        .into_response())
}

pub async fn list_reports(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    scope(&a, &caller).require_trust("site reports (they change the trust's lists)")?;
    db_json(&a, move |c| c.list_reports(q.status.as_deref())).await
}

/// The lines that list `domain` in a file of `format`, with `note` as a comment, in the
/// file's own syntax (a plain name in a hosts, Adblock or RPZ file is ignored or an error,
/// and the site would stay unblocked).
pub fn list_entry(format: Format, domain: &str, note: &str) -> String {
    let note = one_line(note);
    match format {
        Format::Hosts => format!("0.0.0.0 {domain}  # {note}\n"),
        Format::Adblock => format!("! {note}\n||{domain}^\n"),
        Format::Rpz => format!("; {note}\n{domain} CNAME .\n*.{domain} CNAME .\n"),
        Format::Auto | Format::Domains | Format::Ut1 => format!("{domain}  # {note}\n"),
    }
}

/// Whether `domain` is listed in `category` in the live bundle.
pub(super) fn listed_in(a: &Admin, domain: &str, category: &str) -> bool {
    let snap = a.pipeline.state().load();
    let bundle = snap.policy.bundle();
    let Some(cat) = bundle.category_id(category) else {
        return false;
    };
    let key = crate::lists::key::reverse_key(domain);
    let m = bundle.verdicts(&bundle.lookup(&key)).masks;
    (m.block | m.nodata) & (1 << cat) != 0
}

/// The list file approved reports of `category` are appended to: its first
/// `[[lists.source]]` that is a file (not a UT1 folder).
pub(super) fn list_file_of(
    config: &crate::config::Config,
    category: &str,
) -> Option<(std::path::PathBuf, Format)> {
    config
        .lists
        .sources
        .iter()
        .find(|s| s.category.as_deref() == Some(category) && s.format != Format::Ut1)
        .map(|s| (s.path.clone(), s.format))
}

/// Approve a report: append the domain, in the file's own syntax, to the list file of the
/// chosen category (a `[[lists.source]]` of that category), reload, and check that the name
/// is now listed before recording the decision. If it is not, the report stays pending and
/// the answer says why.
pub async fn approve_report(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let scope = scope(&a, &caller);
    approve_report_as(&a, &who, role, &scope, id, &body.reason, body.category).await?;
    Ok(Json(json!({
        "report": a.with_db(move |c| c.get_report(id)).await.map_err(store_error)?,
        "reloaded": true,
        "blocked": true,
    }))
    .into_response())
}

/// Approve report `id` (the API and the console): append the domain to the list file of
/// `category` (default "local"), reload, check the name is now listed, then record the
/// decision and its audit record. If it is not listed the report stays pending and the
/// error (500, JSON with `error`) says why.
pub async fn approve_report_as(
    a: &Admin,
    who: &str,
    role: Role,
    scope: &Scope,
    id: i64,
    reason: &str,
    category: Option<String>,
) -> Result<()> {
    scope.require_trust("site reports (they change the trust's lists)")?;
    let reason = limits::text("reason", reason, MAX_TEXT, false, true)
        .map_err(|m| bad(&m))?
        .to_owned();
    let report = a
        .with_db(move |c| c.get_report(id))
        .await
        .map_err(store_error)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no report {id}")))?;
    if report.status != "pending" {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("report {id} was already {}", report.status),
        ));
    }
    let category = category
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    let (path, format) =
        list_file_of(&a.pipeline.state().load().config, &category).ok_or_else(|| {
            bad(&format!(
                "category {category:?} has no list file in [[lists.source]] to add the domain to"
            ))
        })?;
    let note = format!("report {id} by {}, approved by {who}", report.reporter);
    let domain = report.domain.clone();
    let file = path.clone();
    let written = tokio::task::spawn_blocking(move || append_entry(&file, format, &domain, &note))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    written.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write {}: {e}", path.display()),
        )
    })?;
    let reload = a.pipeline.reload().await;
    let blocked = reload.is_ok() && listed_in(a, &report.domain, &category);
    if !blocked {
        let why = match &reload {
            Err(e) => format!("the reload failed: {e}"),
            Ok(_) => format!(
                "after the reload {} is still not listed in {category:?}",
                report.domain
            ),
        };
        tracing::error!("report {id}: entry written to {} but {why}", path.display());
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "reloaded": reload.is_ok(),
                "blocked": false,
                "error": format!("{} was written to {} but is not blocked: {why}; the report stays pending", report.domain, path.display()),
            })),
        )
            .into_response());
    }
    let now = a.now();
    let (by, r, c) = (who.to_owned(), reason.clone(), category.clone());
    a.with_db(move |conn| {
        conn.decide_report(
            id,
            &sg::ReportDecision {
                status: "approved",
                by: &by,
                reason: &r,
                category: Some(&c),
                now,
            },
        )
        .inspect(|_| super::sync::announce(conn, Change::Lists))
    })
    .await
    .map_err(store_error)?;
    a.audit(who, role, "report.approve", &format!("report {id}"), json!({ "domain": report.domain, "category": category, "list": path.display().to_string(), "reason": reason }))
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Append the entry for `domain` to the list file at `path`, in the file's syntax (sniffed
/// when the source says `auto`).
pub(super) fn append_entry(
    path: &std::path::Path,
    format: Format,
    domain: &str,
    note: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    let existing = std::fs::read(path).unwrap_or_default();
    let format = match format {
        Format::Auto => crate::lists::parse::sniff(&String::from_utf8_lossy(&existing)),
        f => f,
    };
    let needs_newline = existing.last().is_some_and(|&c| c != b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if needs_newline {
        f.write_all(b"\n")?;
    }
    f.write_all(list_entry(format, domain, note).as_bytes())?;
    f.sync_all()
}

pub async fn dismiss_report(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    dismiss_report_as(&a, &who, role, &scope(&a, &caller), id, &body.reason).await?;
    Ok(Json(
        a.with_db(move |c| c.get_report(id))
            .await
            .map_err(store_error)?,
    )
    .into_response())
}

/// Dismiss report `id` (the API and the console), with its audit record.
pub async fn dismiss_report_as(
    a: &Admin,
    who: &str,
    role: Role,
    scope: &Scope,
    id: i64,
    reason: &str,
) -> Result<()> {
    scope.require_trust("site reports (they change the trust's lists)")?;
    let reason = limits::text("reason", reason, MAX_TEXT, false, true)
        .map_err(|m| bad(&m))?
        .to_owned();
    let now = a.now();
    let (by, r) = (who.to_owned(), reason.clone());
    a.with_db(move |c| {
        c.decide_report(
            id,
            &sg::ReportDecision {
                status: "dismissed",
                by: &by,
                reason: &r,
                category: None,
                now,
            },
        )
    })
    .await
    .map_err(store_error)?;
    a.audit(
        who,
        role,
        "report.dismiss",
        &format!("report {id}"),
        json!({ "reason": reason }),
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Default and largest page of `GET /incidents`.
const INCIDENT_PAGE: usize = 100;
const INCIDENT_PAGE_MAX: usize = 1_000;

#[derive(Deserialize)]
pub struct IncidentQuery {
    since: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

pub async fn list_incidents(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<IncidentQuery>,
) -> Result<Response> {
    caller.require(Role::Dsl)?;
    let scope = scope(&a, &caller);
    let since = match &q.since {
        Some(s) => s
            .parse()
            .map_err(|_| bad("since: expected an RFC 3339 time"))?,
        None => jiff::Timestamp::UNIX_EPOCH,
    };
    let limit = q.limit.unwrap_or(INCIDENT_PAGE);
    if !(1..=INCIDENT_PAGE_MAX).contains(&limit) {
        return Err(out_of_range(&format!(
            "limit: must be from 1 to {INCIDENT_PAGE_MAX}"
        )));
    }
    let before = q.before;
    let rows = a
        .with_db(move |c| c.list_incidents(since, before, limit))
        .await
        .map_err(store_error)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    // A school's page may be shorter than `limit`: the cursor still follows the store's.
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| scope.owns_group(&r.group))
        .collect();
    let mut resp = Json(rows).into_response();
    if let Some(n) = next
        && let Ok(v) = header::HeaderValue::from_str(&n)
    {
        resp.headers_mut().insert("x-next-before", v);
    }
    Ok(resp)
}

pub async fn list_audit(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Dsl)?;
    scope(&a, &caller).require_trust("the audit log")?;
    let since = q
        .since
        .as_deref()
        .map(|s| s.parse::<jiff::Timestamp>())
        .transpose()
        .map_err(|_| bad("since: expected an RFC 3339 time"))?;
    let rows = a
        .with_db(move |c| c.audit_list(since, 10_000))
        .await
        .map_err(store_error)?;
    Ok(Json(rows).into_response())
}

pub async fn verify_audit(State(a): State<Admin>, caller: Caller) -> Result<Response> {
    caller.require(Role::Dsl)?;
    scope(&a, &caller).require_trust("the audit log")?;
    let published = a
        .chain
        .published()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let chain = a.chain.clone();
    let (result, head) = a
        .with_db(move |c| {
            let expect = audit::Expect {
                key: Some(chain.key()),
                published,
                ..Default::default()
            };
            Ok::<_, StoreError>((audit::verify(c, &expect)?, c.audit_head()?.head))
        })
        .await
        .map_err(store_error)?;
    Ok(match result {
        audit::Verification::Intact(n) => {
            Json(json!({ "intact": true, "records": n, "head": head })).into_response()
        }
        audit::Verification::Broken { id, reason } => (
            StatusCode::CONFLICT,
            Json(json!({ "intact": false, "first_bad_record": id, "reason": reason })),
        )
            .into_response(),
        audit::Verification::Unverifiable(reason) => (
            StatusCode::CONFLICT,
            Json(json!({ "intact": false, "reason": reason })),
        )
            .into_response(),
    })
}
