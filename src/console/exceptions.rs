//! Exceptions: the temporary unblocks in force, with the time each has left, and a revoke
//! button (through [`crate::admin::revoke_exception_as`], the JSON API's own code path).

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::auth::Form;
use super::{ConsoleUser, layout, local_time, refused, see_other, store_error};
use crate::admin::Admin;
use crate::config::Role;

async fn page(State(a): State<Admin>, user: ConsoleUser) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let scope = user.scope(&a);
    let now = a.now();
    let rows = a
        .with_db(move |c| c.list_exceptions(now, true))
        .await
        .map_err(|e| store_error(&user, e))?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| scope.owns_groups(&r.groups))
        .collect();
    let can_revoke = user.role >= Role::Technician;
    let body = html! {
        p { "Sites unblocked for a while. Each ends by itself at its end time; revoke one to end it now." }
        @if rows.is_empty() { p { "No temporary unblocks are in force." } } @else {
            table {
                caption { "Temporary unblocks in force" }
                thead { tr {
                    th scope="col" { "Unblock" } th scope="col" { "Site" } th scope="col" { "For" }
                    th scope="col" { "Time left" } th scope="col" { "Ends" } th scope="col" { "Asked by" }
                    th scope="col" { "Granted by" } th scope="col" { "Why" }
                    @if can_revoke { th scope="col" { "Revoke" } }
                } }
                tbody { @for r in &rows { tr {
                    td { "#" (r.id) } td { (r.domain) }
                    td { @if r.groups.is_empty() { "every group" } @else { (r.groups.join(", ")) } }
                    td { (time_left(now, &r.expires)) }
                    td { (local_time(&a, &r.expires)) }
                    td { (r.requested_by) } td { (r.granted_by) } td { (r.reason) }
                    @if can_revoke { td {
                        form method="post" action={ "/console/exceptions/" (r.id) "/revoke" } {
                            input type="hidden" name="csrf" value=(user.csrf);
                            label for={ "revoke-reason-" (r.id) } { "Reason" }
                            input id={ "revoke-reason-" (r.id) } name="reason" type="text";
                            button type="submit" { "Revoke #" (r.id) }
                        }
                    } }
                } } }
            }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Exceptions", Some(&user), body),
    ))
}

/// "2 days 3 hours", "45 minutes".
fn time_left(now: jiff::Timestamp, expires: &str) -> String {
    let Ok(end) = expires.parse::<jiff::Timestamp>() else {
        return String::new();
    };
    let mins = end.duration_since(now).as_mins().max(0);
    let (d, h, m) = (mins / 1_440, (mins % 1_440) / 60, mins % 60);
    let n = |v: i64, unit: &str| format!("{v} {unit}{}", if v == 1 { "" } else { "s" });
    match (d, h) {
        (0, 0) => n(m, "minute"),
        (0, _) => format!("{} {}", n(h, "hour"), n(m, "minute")),
        _ => format!("{} {}", n(d, "day"), n(h, "hour")),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<RevokeForm>,
) -> Response {
    if let Err(r) = user.require(Role::Technician) {
        return r;
    }
    let scope = user.scope(&a);
    match crate::admin::revoke_exception_as(&a, &user.name, user.role, &scope, id, &f.reason).await
    {
        Ok(()) => see_other("/console/exceptions"),
        Err(r) => refused(&user, r).await,
    }
}

/// The exception routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/exceptions", get(page))
        .route("/console/exceptions/{id}/revoke", post(revoke))
}
