//! Admin API handlers. Each state-changing handler: check the role, validate the body,
//! change the store, write the audit record, then apply the change to the live policy.

// Handlers return ready-made error responses (the axum idiom); they are built once per
// failed request, so their size does not matter.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::auth::{Caller, error};
use crate::config::Role;
use crate::lists::key::{ReversedName, normalize_domain};
use crate::policy::Client;
use crate::store::{StoreError, audit, safeguarding as sg};

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

fn sql_error(source: rusqlite::Error) -> Response {
    store_error(StoreError::Sqlite {
        path: "<database>".into(),
        source,
    })
}

/// Read something from the database and answer it as JSON.
fn db_json<T: serde::Serialize>(
    a: &Admin,
    f: impl FnOnce(&mut rusqlite::Connection) -> std::result::Result<T, StoreError>,
) -> Result<Response> {
    Ok(Json(a.with_db(f).map_err(store_error)?).into_response())
}

/// Who a possibly anonymous caller is, for the audit log.
fn actor(caller: &Caller) -> (String, &'static str) {
    caller
        .who
        .clone()
        .map_or(("anonymous".to_owned(), "none"), |(n, r)| {
            (n, super::role_name(r))
        })
}

fn bad(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

pub async fn healthz(State(a): State<Admin>) -> impl IntoResponse {
    let snap = a.pipeline.state().load();
    Json(json!({
        "status": "ok",
        "generation": snap.generation,
        "list_names": snap.policy.bundle().header().names,
        "bundle_built_at": snap.policy.bundle().header().built_at,
        "exceptions_active": snap.policy.exceptions().len(),
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

#[derive(Deserialize)]
pub struct ExplainQuery {
    client: std::net::IpAddr,
    name: String,
    at: Option<String>,
}

pub async fn explain(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ExplainQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
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
    let mut trace = Vec::new();
    let outcome = snap.policy.decide(
        &Client {
            ip: Some(q.client),
            mac: None,
        },
        key.as_bytes(),
        now,
        Some(&mut trace),
    );
    let (decision, category, rule, incident) =
        crate::record::describe(&snap.policy, outcome.decision, key.as_bytes());
    Ok(Json(json!({ "name": name, "client": q.client, "at": now.to_string(), "trace": trace, "decision": decision, "category": category, "rule": rule, "incident": incident })).into_response())
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
    let now = a.now();
    db_json(&a, |c| sg::list_exceptions(c, now, !q.all))
}

pub async fn get_exception(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    let now = a.now();
    match a
        .with_db(|c| sg::get_exception(c, id, now))
        .map_err(store_error)?
    {
        Some(row) => Ok(Json(row).into_response()),
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
/// neither the name nor a parent of it is listed in an illegal category.
fn check_exceptable(a: &Admin, domain: &str, groups: &[String]) -> Result<String> {
    let domain = normalize_domain(domain.trim_start_matches("*."))
        .map_err(|e| bad(&format!("domain: {e}")))?;
    let snap = a.pipeline.state().load();
    for g in groups {
        if snap.policy.group_index(g).is_none() {
            return Err(bad(&format!("groups: no group {g:?}")));
        }
    }
    let key = crate::lists::key::reverse_key(&domain);
    let bundle = snap.policy.bundle();
    let listed = bundle.verdicts(&bundle.lookup(&key)).masks;
    let hit = listed.block | listed.nodata;
    if let Some(cat) = (0..bundle.categories().len() as u16)
        .find(|&c| hit & (1 << c) != 0 && snap.policy.is_illegal(c))
    {
        return Err(bad(&format!(
            "{domain} is in the illegal category {:?}: it can never be unblocked",
            snap.policy.category_name(cat)
        )));
    }
    Ok(domain)
}

fn expiry(a: &Admin, expires: Option<&str>, days: Option<u32>) -> Result<jiff::Timestamp> {
    let now = a.now();
    let at = match (expires, days) {
        (Some(t), None) => t
            .parse::<jiff::Timestamp>()
            .map_err(|_| bad("expires: expected an RFC 3339 time such as 2026-12-01T16:00:00Z"))?,
        (None, Some(d)) if d > 0 => now + jiff::SignedDuration::from_hours(24 * i64::from(d)),
        (None, Some(_)) => return Err(bad("days: must be at least 1")),
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
    let max = jiff::SignedDuration::try_from(max).unwrap_or(jiff::SignedDuration::from_hours(720));
    if at > now + max {
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
    if b.reason.trim().is_empty() {
        return Err(bad("reason: required, so the unblock is auditable"));
    }
    if b.requested_by.trim().is_empty() {
        return Err(bad("requested_by: required"));
    }
    let domain = check_exceptable(&a, &b.domain, &b.groups)?;
    let expires = expiry(&a, b.expires.as_deref(), b.days)?;
    let now = a.now();
    let new = sg::NewException {
        domain: &domain,
        groups: &b.groups,
        reason: b.reason.trim(),
        requested_by: b.requested_by.trim(),
        granted_by: &who,
        created: now,
        expires,
        request_id: None,
    };
    let id = a
        .with_db(|c| sg::create_exception(c, &new))
        .map_err(store_error)?;
    a.audit(&who, role, "exception.create", &format!("exception {id}"), json!({ "domain": domain, "groups": b.groups, "reason": b.reason, "requested_by": b.requested_by, "expires": expires.to_string() }))
        .map_err(store_error)?;
    a.refresh_exceptions().map_err(store_error)?;
    let row = a
        .with_db(|c| sg::get_exception(c, id, now))
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
}

pub async fn revoke_exception(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let now = a.now();
    a.with_db(|c| sg::revoke_exception(c, id, &who, now))
        .map_err(store_error)?;
    a.audit(
        &who,
        role,
        "exception.revoke",
        &format!("exception {id}"),
        json!({ "reason": reason }),
    )
    .map_err(store_error)?;
    a.refresh_exceptions().map_err(store_error)?;
    Ok(Json(
        a.with_db(|c| sg::get_exception(c, id, now))
            .map_err(store_error)?,
    )
    .into_response())
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

/// Create an unblock request (shared by the API and the block page). Anyone may ask; the
/// audit record names the token holder or "block page".
pub fn new_request(a: &Admin, b: &NewRequestBody, actor: &str, role: &str) -> Result<i64> {
    if b.reason.trim().is_empty() || b.requester.trim().is_empty() {
        return Err(bad("reason and requester are required"));
    }
    let domain = check_exceptable(a, &b.domain, &b.groups)?;
    if b.days == 0 {
        return Err(bad("days: must be at least 1"));
    }
    let now = a.now();
    let new = sg::NewRequest {
        domain: &domain,
        reason: b.reason.trim(),
        requester: b.requester.trim(),
        days: b.days,
        groups: &b.groups,
        category: b.category.as_deref(),
        created: now,
    };
    let id = a
        .with_db(|c| sg::create_request(c, &new))
        .map_err(store_error)?;
    a.with_db(|c| a.chain.append(c, now, actor, role, "request.create", &format!("request {id}"), &json!({ "domain": domain, "reason": b.reason, "requester": b.requester, "days": b.days, "groups": b.groups })))
        .map_err(sql_error)?;
    Ok(id)
}

pub async fn create_request(
    State(a): State<Admin>,
    caller: Caller,
    Json(b): Json<NewRequestBody>,
) -> Result<Response> {
    let (actor, role) = actor(&caller);
    let id = new_request(&a, &b, &actor, role)?;
    let row = a.with_db(|c| sg::get_request(c, id)).map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn list_requests(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    db_json(&a, |c| sg::list_requests(c, q.status.as_deref()))
}

pub async fn get_request(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    match a.with_db(|c| sg::get_request(c, id)).map_err(store_error)? {
        Some(r) => Ok(Json(r).into_response()),
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
    if body.reason.trim().is_empty() {
        return Err(bad("reason: required, so the decision is auditable"));
    }
    let req = a
        .with_db(|c| sg::get_request(c, id))
        .map_err(store_error)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no request {id}")))?;
    if req.status != "pending" {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("request {id} was already {}", req.status),
        ));
    }
    let domain = check_exceptable(&a, &req.domain, &req.groups)?;
    let expires = expiry(&a, None, Some(body.days.unwrap_or(req.days)))?;
    let now = a.now();
    let exception_id = a
        .with_db(|c| -> std::result::Result<i64, StoreError> {
            let tx = c.transaction().map_err(|e| StoreError::Sqlite {
                path: "<database>".into(),
                source: e,
            })?;
            let new = sg::NewException {
                domain: &domain,
                groups: &req.groups,
                reason: &req.reason,
                requested_by: &req.requester,
                granted_by: &who,
                created: now,
                expires,
                request_id: Some(id),
            };
            let eid = sg::create_exception(&tx, &new)?;
            sg::decide_request(
                &tx,
                id,
                "approved",
                &who,
                body.reason.trim(),
                now,
                Some(eid),
            )?;
            tx.commit().map_err(|e| StoreError::Sqlite {
                path: "<database>".into(),
                source: e,
            })?;
            Ok(eid)
        })
        .map_err(store_error)?;
    a.audit(&who, role, "request.approve", &format!("request {id}"), json!({ "reason": body.reason, "exception": exception_id, "domain": domain, "expires": expires.to_string() }))
        .map_err(store_error)?;
    a.refresh_exceptions().map_err(store_error)?;
    Ok(Json(a.with_db(|c| sg::get_request(c, id)).map_err(store_error)?).into_response())
}

pub async fn decline_request(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    if body.reason.trim().is_empty() {
        return Err(bad("reason: required, so the decision is auditable"));
    }
    let now = a.now();
    a.with_db(|c| sg::decide_request(c, id, "declined", &who, body.reason.trim(), now, None))
        .map_err(store_error)?;
    a.audit(
        &who,
        role,
        "request.decline",
        &format!("request {id}"),
        json!({ "reason": body.reason }),
    )
    .map_err(store_error)?;
    Ok(Json(a.with_db(|c| sg::get_request(c, id)).map_err(store_error)?).into_response())
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
pub fn new_report(a: &Admin, b: &NewReportBody, actor: &str, role: &str) -> Result<i64> {
    let domain = url_domain(&b.url).ok_or_else(|| bad("url: no domain name in it"))?;
    if b.reporter.trim().is_empty() {
        return Err(bad("reporter: required"));
    }
    let now = a.now();
    let id = a
        .with_db(|c| {
            sg::create_report(c, &b.url, &domain, b.reporter.trim(), b.comment.trim(), now)
        })
        .map_err(store_error)?;
    a.with_db(|c| a.chain.append(c, now, actor, role, "report.create", &format!("report {id}"), &json!({ "url": b.url, "domain": domain, "reporter": b.reporter, "comment": b.comment })))
        .map_err(sql_error)?;
    Ok(id)
}

pub async fn create_report(
    State(a): State<Admin>,
    caller: Caller,
    Json(b): Json<NewReportBody>,
) -> Result<Response> {
    let (actor, role) = actor(&caller);
    let id = new_report(&a, &b, &actor, role)?;
    Ok((
        StatusCode::CREATED,
        Json(a.with_db(|c| sg::get_report(c, id)).map_err(store_error)?),
    )
        .into_response())
}

pub async fn list_reports(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Viewer)?;
    db_json(&a, |c| sg::list_reports(c, q.status.as_deref()))
}

/// Approve a report: append the domain to the local list file of the chosen category (a
/// `[[lists.source]]` of that category), record the decision, and reload so it is blocked
/// at once.
pub async fn approve_report(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<DecisionBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    let report = a
        .with_db(|c| sg::get_report(c, id))
        .map_err(store_error)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no report {id}")))?;
    if report.status != "pending" {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("report {id} was already {}", report.status),
        ));
    }
    let category = body.category.clone().unwrap_or_else(|| "local".to_owned());
    let path = {
        let snap = a.pipeline.state().load();
        snap.config
            .lists
            .sources
            .iter()
            .find(|s| s.category.as_deref() == Some(category.as_str()) && s.format != crate::lists::parse::Format::Ut1)
            .map(|s| s.path.clone())
            .ok_or_else(|| bad(&format!("category {category:?} has no list file in [[lists.source]] to add the domain to")))?
    };
    let line = format!(
        "{}  # report {id} by {}, approved by {who}\n",
        report.domain,
        report.reporter.replace('\n', " ")
    );
    append_line(&path, &line).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write {}: {e}", path.display()),
        )
    })?;
    let now = a.now();
    a.with_db(|c| {
        sg::decide_report(
            c,
            id,
            "approved",
            &who,
            body.reason.trim(),
            Some(&category),
            now,
        )
    })
    .map_err(store_error)?;
    a.audit(&who, role, "report.approve", &format!("report {id}"), json!({ "domain": report.domain, "category": category, "list": path.display().to_string(), "reason": body.reason }))
        .map_err(store_error)?;
    let reload = a.pipeline.reload().await;
    Ok(Json(json!({
        "report": a.with_db(|c| sg::get_report(c, id)).map_err(store_error)?,
        "reloaded": reload.is_ok(),
        "reload_error": reload.err().map(|e| e.to_string()),
    }))
    .into_response())
}

fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if needs_newline {
        f.write_all(b"\n")?;
    }
    f.write_all(line.as_bytes())?;
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
    let now = a.now();
    a.with_db(|c| sg::decide_report(c, id, "dismissed", &who, body.reason.trim(), None, now))
        .map_err(store_error)?;
    a.audit(
        &who,
        role,
        "report.dismiss",
        &format!("report {id}"),
        json!({ "reason": body.reason }),
    )
    .map_err(store_error)?;
    Ok(Json(a.with_db(|c| sg::get_report(c, id)).map_err(store_error)?).into_response())
}

pub async fn list_incidents(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Dsl)?;
    let since = match &q.since {
        Some(s) => s
            .parse()
            .map_err(|_| bad("since: expected an RFC 3339 time"))?,
        None => jiff::Timestamp::UNIX_EPOCH,
    };
    db_json(&a, |c| sg::list_incidents(c, since))
}

pub async fn list_audit(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require(Role::Dsl)?;
    let since = q
        .since
        .as_deref()
        .map(|s| s.parse::<jiff::Timestamp>())
        .transpose()
        .map_err(|_| bad("since: expected an RFC 3339 time"))?;
    let rows = a
        .with_db(|c| audit::list(c, since, 10_000))
        .map_err(sql_error)?;
    Ok(Json(rows).into_response())
}

pub async fn verify_audit(State(a): State<Admin>, caller: Caller) -> Result<Response> {
    caller.require(Role::Dsl)?;
    let published = a
        .chain
        .published()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let expect = audit::Expect {
        key: Some(a.chain.key()),
        published,
        ..Default::default()
    };
    let (result, head) = a
        .with_db(|c| Ok::<_, rusqlite::Error>((audit::verify(c, &expect)?, audit::head(c)?)))
        .map_err(sql_error)?;
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
