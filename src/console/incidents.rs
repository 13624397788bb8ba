//! Incidents (illegal-category lookups): a paged list, one incident in detail (device,
//! user, school-local time, category, name, alert delivery) and acknowledgement with a
//! note, which goes to the store and the audit log. DSL only; a school-scoped account
//! sees its school's incidents only, as with the JSON API.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Form, error_page};
use super::{ConsoleUser, layout, local_time, see_other, store_error};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::safeguarding::{IncidentAck, IncidentRow};

/// Incidents per page.
const PAGE: usize = 50;
/// Longest acknowledgement note.
const MAX_NOTE: usize = 1_000;

#[derive(Deserialize)]
struct PageQuery {
    before: Option<i64>,
}

async fn list(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    let scope = user.scope(&a);
    let before = q.before;
    let (rows, acks) = a
        .with_db(move |c| {
            let rows = c.list_incidents(jiff::Timestamp::UNIX_EPOCH, before, PAGE)?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            Ok::<_, crate::store::StoreError>((rows, c.incident_acks(&ids)?))
        })
        .await
        .map_err(|e| store_error(&user, e))?;
    // The cursor follows the store's page, even when scoping hides some rows.
    let next = (rows.len() == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| scope.owns_group(&r.group))
        .collect();
    let body = html! {
        p { "Lookups of names in an illegal category (child abuse material, terrorism), newest first. Open one to see who and when, and acknowledge it with what you did." }
        @if rows.is_empty() {
            p { "No incidents." }
        } @else {
            table {
                caption { "Incidents" }
                thead { tr {
                    th scope="col" { "Incident" } th scope="col" { "Time" } th scope="col" { "Device or user" }
                    th scope="col" { "Category" } th scope="col" { "Name" } th scope="col" { "Alert" } th scope="col" { "Status" }
                } }
                tbody { @for r in &rows {
                    tr {
                        td { a href={ "/console/incidents/" (r.id) } { "#" (r.id) } }
                        td { (local_time(&a, &r.time)) }
                        td { (who(r)) }
                        td { (r.category) }
                        td { (r.name) }
                        td { (r.alert_status) }
                        td { (ack_text(&a, acks.iter().find(|k| k.incident_id == r.id))) }
                    }
                } }
            }
        }
        @if let Some(n) = next {
            nav aria-label="Pages" { a href={ "/console/incidents?before=" (n) } { "Older incidents" } }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Incidents", Some(&user), body),
    ))
}

/// The device and the person, as far as they are known.
fn who(r: &IncidentRow) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &r.user {
        parts.push(format!("user {u}"));
    }
    if let Some(h) = r.hostname.as_ref().or(r.device.as_ref()) {
        parts.push(h.clone());
    }
    parts.push(format!("{} ({})", r.client, r.group));
    parts.join(", ")
}

fn ack_text(a: &Admin, ack: Option<&IncidentAck>) -> Markup {
    match ack {
        Some(k) => html! { "Acknowledged by " (k.by) ", " (local_time(a, &k.at)) },
        None => html! { strong { "Open" } },
    }
}

/// Incident `id` if it exists and the account may see it (else the 404 page, as for an
/// incident that does not exist), with its acknowledgement.
async fn one(
    a: &Admin,
    user: &ConsoleUser,
    id: i64,
) -> Result<(IncidentRow, Option<IncidentAck>), Response> {
    let found = a
        .with_db(move |c| {
            let row = c
                .list_incidents(jiff::Timestamp::UNIX_EPOCH, id.checked_add(1), 1)?
                .into_iter()
                .find(|r| r.id == id);
            let ack = c.incident_acks(&[id])?.into_iter().next();
            Ok::<_, crate::store::StoreError>(row.map(|r| (r, ack)))
        })
        .await
        .map_err(|e| store_error(user, e))?;
    match found {
        Some((r, ack)) if user.scope(a).owns_group(&r.group) => Ok((r, ack)),
        _ => Err(error_page(
            Some(user),
            StatusCode::NOT_FOUND,
            &format!("There is no incident {id}."),
        )),
    }
}

async fn detail(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    let (r, ack) = one(&a, &user, id).await?;
    let body = html! {
        table {
            caption { "What happened" }
            tbody {
                tr { th scope="row" { "Time" } td { (local_time(&a, &r.time)) } }
                tr { th scope="row" { "User" } td { (r.user.as_deref().unwrap_or("not known")) } }
                tr { th scope="row" { "Device" } td { (r.hostname.as_deref().or(r.device.as_deref()).unwrap_or("not known"))
                    @if let Some(m) = &r.mac { " (MAC " (m) ")" }
                    @if let Some(d) = &r.device_id { " (enrolled ID " (d) ")" } } }
                tr { th scope="row" { "Address and group" } td { (r.client) " (" (r.group) ")" } }
                tr { th scope="row" { "Category" } td { (r.category) } }
                tr { th scope="row" { "Name looked up" } td { (r.name) " (" (r.qtype) ")" } }
                tr { th scope="row" { "Alert delivery" } td { (r.alert_status) " after " (r.alert_attempts) " attempt(s)"
                    @if let Some(e) = &r.alert_last_error { ": " (e) } } }
                tr { th scope="row" { "Status" } td { (ack_text(&a, ack.as_ref())) } }
            }
        }
        @if let Some(k) = &ack {
            h2 { "Note" }
            p.note { (k.note) }
        } @else {
            h2 { "Acknowledge" }
            form method="post" action={ "/console/incidents/" (r.id) "/ack" } {
                input type="hidden" name="csrf" value=(user.csrf);
                label for="note" { "What you did (kept in the audit log)" }
                textarea id="note" name="note" rows="4" cols="40" maxlength="1000" required {}
                p { button type="submit" { "Acknowledge incident #" (r.id) } }
            }
        }
        p { a href="/console/incidents" { "All incidents" } }
    };
    let title = format!("Incident #{}", r.id);
    Ok(layout::render(
        StatusCode::OK,
        layout::page(&title, Some(&user), body),
    ))
}

#[derive(Deserialize)]
struct AckForm {
    #[serde(default)]
    note: String,
}

async fn acknowledge(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<AckForm>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    one(&a, &user, id).await?;
    let note = f.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return Err(error_page(
            Some(&user),
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The note is required (at most {MAX_NOTE} characters): say what you did."),
        ));
    }
    let now = a.now();
    let (by, n) = (user.name.clone(), note.clone());
    a.with_db(move |c| c.ack_incident(id, &by, &n, now))
        .await
        .map_err(|e| store_error(&user, e))?;
    a.audit(
        &user.name,
        user.role,
        "incident.acknowledge",
        &format!("incident {id}"),
        json!({ "note": note }),
    )
    .await
    .map_err(|e| store_error(&user, e))?;
    Ok(see_other(&format!("/console/incidents/{id}")))
}

/// The incident routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/incidents", get(list))
        .route("/console/incidents/{id}", get(detail))
        .route("/console/incidents/{id}/ack", post(acknowledge))
}
