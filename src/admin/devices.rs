//! Device enrolment over the admin API (technician token for every route: an ID is a
//! credential that lets a device use the public resolver, so even listing them is not for
//! viewers).
//!
//! | route | what |
//! |---|---|
//! | `POST /devices` | enrol (`name`, `owner`, `group`, optional `directory_id`, `expires` or `days`) → the device with its ID and where its outputs are |
//! | `GET /devices` | every enrolment, with its state (active, expired, revoked) |
//! | `GET /devices/{id}` | one, with its DoH URL, DoT name and output links |
//! | `POST /devices/{id}/revoke` | revoke (`reason` required); refused from the next query on |
//! | `GET /devices/{id}/profile?kind=` | the raw output: `apple`, `chromeos`, `android`, `windows` |
//!
//! After an enrol or revoke the live index is rebuilt from the store and the config at once
//! ([`rebuild_from_store`]), so a revoked ID is refused on its next query. Each change is
//! written to the audit log with the technician's token name.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use super::auth::{Caller, error};
use super::limits::{self, MAX_TEXT};
use crate::config::Role;
use crate::config::enrolled::MAX_NAME_LEN;
use crate::enrol::{self, Kind, Target};
use crate::store::devices::{self, DeviceRow, NewDevice};
use crate::store::{Change, StoreError};

type Result<T> = std::result::Result<T, Response>;

/// Longest enrolment, in days (ten years: school devices are replaced well before).
const MAX_DAYS: u32 = 3_650;

/// A bad field: 400, naming it.
fn bad(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

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

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no device {id} is enrolled through the admin API"),
    )
}

/// Read the store's live enrolments and swap them into the index, with the config's
/// `[[enrolled_device]]` entries. Called at start and after every enrol and revoke.
pub fn rebuild_from_store(
    state: &crate::state::State,
    db: &mut dyn crate::store::Store,
) -> std::result::Result<usize, StoreError> {
    let live = db.live_devices()?;
    let n = live.len();
    state
        .identities()
        .set_stored(live, &state.load().config.enrolled_devices);
    Ok(n)
}

async fn refresh(a: &Admin) -> Result<()> {
    let state = a.pipeline.state().clone();
    a.with_db(move |c| rebuild_from_store(&state, c))
        .await
        .map(|_| ())
        .map_err(store_error)
}

/// The body of `POST /devices`.
#[derive(Deserialize)]
pub struct EnrolBody {
    name: String,
    #[serde(default = "school")]
    owner: String,
    group: String,
    directory_id: Option<String>,
    /// RFC 3339 end.
    expires: Option<String>,
    /// Or days from now.
    days: Option<u32>,
}

fn school() -> String {
    "school".into()
}

/// The checked fields of an enrolment.
struct Checked {
    name: String,
    owner: String,
    group: String,
    directory_id: Option<String>,
    expires: Option<jiff::Timestamp>,
}

fn check_enrol(a: &Admin, b: &EnrolBody) -> Result<Checked> {
    let text = |field: &str, v: &str| {
        limits::text(field, v, MAX_NAME_LEN, true, false)
            .map(str::to_owned)
            .map_err(|m| bad(&m))
    };
    let name = text("name", &b.name)?;
    let owner = text("owner", &b.owner)?;
    let directory_id = b
        .directory_id
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(|d| text("directory_id", d))
        .transpose()?;
    let groups = &a.pipeline.state().load().config.groups;
    if !groups.contains_key(&b.group) {
        let known: Vec<&str> = groups.keys().map(String::as_str).collect();
        return Err(bad(&format!(
            "group: no group {:?} is configured (there are: {})",
            b.group,
            known.join(", ")
        )));
    }
    let expires = expiry(a.now(), b.expires.as_deref(), b.days)?;
    Ok(Checked {
        name,
        owner,
        group: b.group.clone(),
        directory_id,
        expires,
    })
}

/// The end of an enrolment: `expires` (RFC 3339, in the future) or `days` (1 to
/// [`MAX_DAYS`]), or none.
fn expiry(
    now: jiff::Timestamp,
    expires: Option<&str>,
    days: Option<u32>,
) -> Result<Option<jiff::Timestamp>> {
    let at = match (expires, days) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(bad("give either expires or days, not both")),
        (Some(t), None) => t
            .parse::<jiff::Timestamp>()
            .map_err(|_| bad("expires: expected an RFC 3339 time such as 2027-07-31T16:00:00Z"))?,
        (None, Some(d)) => {
            if !(1..=MAX_DAYS).contains(&d) {
                return Err(bad(&format!("days: must be from 1 to {MAX_DAYS}")));
            }
            now.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(d)))
                .map_err(|_| bad("days: too far in the future"))?
        }
    };
    if at <= now {
        return Err(bad("expires: must be in the future"));
    }
    let latest = now
        .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(MAX_DAYS)))
        .map_err(|_| bad("expires: too far in the future"))?;
    if at > latest {
        return Err(bad(&format!("expires: at most {MAX_DAYS} days ahead")));
    }
    Ok(Some(at))
}

/// A row with what the device needs (DoH URL, DoT name, output links) added.
fn with_outputs(a: &Admin, row: &DeviceRow) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v
        && row.state == "active"
    {
        let snap = a.pipeline.state().load();
        m.extend(enrol::summary(&snap.config.enrolment, &row.id));
    }
    v
}

/// `POST /devices`: enrol a device under a fresh ID.
pub async fn enrol_device(
    State(a): State<Admin>,
    caller: Caller,
    Json(b): Json<EnrolBody>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("enrolled devices")?;
    let c = check_enrol(&a, &b)?;
    let now = a.now();
    // An ID in the live index (the config's entries included) is never handed out.
    let index = a.pipeline.state().identities().devices.load_full();
    let (name, owner, group, dir, by) = (
        c.name.clone(),
        c.owner.clone(),
        c.group.clone(),
        c.directory_id.clone(),
        who.clone(),
    );
    let id = a
        .with_db(move |conn| {
            let new = NewDevice {
                name: &name,
                owner: &owner,
                group: &group,
                directory_id: dir.as_deref(),
                created_by: &by,
                created: now,
                expires: c.expires,
            };
            conn.enrol_device(&new, &|id| index.lookup(id, i64::MIN).is_some())
                .inspect(|_| super::sync::announce(conn, Change::Devices))
        })
        .await
        .map_err(store_error)?;
    a.audit(
        &who,
        role,
        "device.enrol",
        &format!("device {id}"),
        json!({ "name": c.name, "owner": c.owner, "group": c.group, "directory_id": c.directory_id, "expires": c.expires.map(|e| e.to_string()) }),
    )
    .await
    .map_err(store_error)?;
    refresh(&a).await?;
    let row = get_row(&a, id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok((StatusCode::CREATED, Json(with_outputs(&a, &row))).into_response())
}

async fn get_row(a: &Admin, id: String) -> Result<Option<DeviceRow>> {
    if !devices::is_id(&id) {
        return Ok(None);
    }
    let now = a.now();
    a.with_db(move |c| c.get_device(&id, now))
        .await
        .map_err(store_error)
}

/// `GET /devices`: every enrolment, newest first.
pub async fn list_devices(State(a): State<Admin>, caller: Caller) -> Result<Response> {
    caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("enrolled devices")?;
    let now = a.now();
    let rows = a
        .with_db(move |c| c.list_devices(now))
        .await
        .map_err(store_error)?;
    Ok(Json(rows).into_response())
}

/// `GET /devices/{id}`: one enrolment with what the device needs.
pub async fn get_device(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("enrolled devices")?;
    let row = get_row(&a, id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(with_outputs(&a, &row)).into_response())
}

#[derive(Deserialize, Default)]
/// The body of `POST /devices/{id}/revoke`.
pub struct RevokeBody {
    #[serde(default)]
    reason: String,
}

/// `POST /devices/{id}/revoke`: revoke an enrolment; its ID is refused from now on.
pub async fn revoke_device(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<RevokeBody>>,
) -> Result<Response> {
    let (who, role) = caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("enrolled devices")?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let reason = limits::text("reason", &reason, MAX_TEXT, true, true)
        .map_err(|_| {
            bad("reason: required (at most 1000 characters), so the revocation is auditable")
        })?
        .to_owned();
    if get_row(&a, id.clone()).await?.is_none() {
        return Err(not_found(&id));
    }
    let now = a.now();
    let (i, by, r) = (id.clone(), who.clone(), reason.clone());
    a.with_db(move |c| {
        c.revoke_device(&i, &by, &r, now)
            .inspect(|_| super::sync::announce(c, Change::Devices))
    })
    .await
    .map_err(store_error)?;
    a.audit(
        &who,
        role,
        "device.revoke",
        &format!("device {id}"),
        json!({ "reason": reason }),
    )
    .await
    .map_err(store_error)?;
    refresh(&a).await?;
    let row = get_row(&a, id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(row).into_response())
}

#[derive(Deserialize)]
/// `?kind=` of the profile route.
pub struct ProfileQuery {
    kind: String,
}

/// `GET /devices/{id}/profile?kind=`: the raw output for the device.
pub async fn device_profile(
    State(a): State<Admin>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response> {
    caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("enrolled devices")?;
    let kind =
        Kind::from_name(&q.kind).ok_or_else(|| bad(&format!("kind: expected {}", Kind::NAMES)))?;
    let row = get_row(&a, id.clone())
        .await?
        .ok_or_else(|| not_found(&id))?;
    if row.state != "active" {
        return Err(error(
            StatusCode::CONFLICT,
            &format!("device {id} is {}: enrol it again for a new ID", row.state),
        ));
    }
    let target = Target {
        id: &row.id,
        name: &row.name,
        group: &row.group,
    };
    let out = enrol::output(kind, &a.pipeline.state().load().config.enrolment, target)
        .map_err(|e| error(StatusCode::CONFLICT, &e.to_string()))?;
    let disposition = format!("attachment; filename=\"{}\"", out.filename);
    Ok((
        [
            (header::CONTENT_TYPE, out.content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_a_time_or_days_within_bounds() {
        let now: jiff::Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(expiry(now, None, None).unwrap(), None);
        assert_eq!(
            expiry(now, None, Some(2)).unwrap().unwrap().to_string(),
            "2026-12-01T10:00:00Z"
        );
        assert!(
            expiry(now, Some("2027-07-31T16:00:00Z"), None)
                .unwrap()
                .is_some()
        );
        for (e, d) in [
            (None, Some(0)),
            (None, Some(MAX_DAYS + 1)),
            (None, Some(u32::MAX)),
            (Some("2020-01-01T00:00:00Z"), None),
            (Some("tomorrow"), None),
            (Some("2027-01-01T00:00:00Z"), Some(3)),
        ] {
            assert!(expiry(now, e, d).is_err(), "{e:?} {d:?}");
        }
    }
}
