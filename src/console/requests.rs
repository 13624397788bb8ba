//! Unblock requests and site reports: pending ones with their decision forms (approve
//! with a duration and groups, or decline with a reason; approve a report into a list, or
//! dismiss it) and the decided ones. Every decision goes through the same functions as the
//! JSON API ([`crate::admin::approve_request_as`] and friends), so the checks, store calls
//! and audit records are one code path.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Form;
use super::{ConsoleUser, layout, local_time, refused, see_other, store_error};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::safeguarding::{ReportRow, RequestRow};

/// Decided requests and reports shown (the newest).
const DECIDED_SHOWN: usize = 50;

async fn page(State(a): State<Admin>, user: ConsoleUser) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let scope = user.scope(&a);
    let trust = scope.is_trust();
    let (requests, reports) = a
        .with_db(move |c| {
            let r = c.list_requests(None)?;
            let p = if trust {
                c.list_reports(None)?
            } else {
                Vec::new()
            };
            Ok::<_, crate::store::StoreError>((r, p))
        })
        .await
        .map_err(|e| store_error(&user, e))?;
    let requests: Vec<_> = requests
        .into_iter()
        .filter(|r| scope.owns_groups(&r.groups))
        .collect();
    let can_decide = user.role >= Role::Technician;
    let (pending, decided): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.status == "pending");
    let (rep_pending, rep_decided): (Vec<_>, Vec<_>) =
        reports.iter().partition(|r| r.status == "pending");
    let body = html! {
        section aria-labelledby="pending" {
            h2 id="pending" { "Unblock requests waiting (" (pending.len()) ")" }
            @if pending.is_empty() { p { "None." } }
            @for r in &pending { (request_card(&a, &user, r, can_decide)) }
        }
        section aria-labelledby="decided" {
            h2 id="decided" { "Decided requests" }
            (decided_requests(&a, &decided))
        }
        @if trust {
            section aria-labelledby="reports" id="reports" {
                h2 id="reports-h" { "Site reports waiting (" (rep_pending.len()) ")" }
                @if rep_pending.is_empty() { p { "None." } }
                @for r in &rep_pending { (report_card(&a, &user, r, can_decide)) }
                h2 { "Decided reports" }
                (decided_reports(&a, &rep_decided))
            }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Requests and reports", Some(&user), body),
    ))
}

fn request_card(a: &Admin, user: &ConsoleUser, r: &RequestRow, can_decide: bool) -> Markup {
    let id = r.id;
    html! {
        article.card aria-labelledby={ "req-" (id) } {
            h3 id={ "req-" (id) } { "Request #" (id) ": " (r.domain) }
            dl {
                dt { "Asked by" } dd { (r.requester) }
                dt { "When" } dd { (local_time(a, &r.created)) }
                dt { "Why" } dd { (r.reason) }
                dt { "For" } dd { (groups_text(&r.groups)) ", " (r.days) " day(s)" }
                @if let Some(c) = &r.category { dt { "Blocked as" } dd { (c) } }
            }
            @if can_decide {
                form method="post" action={ "/console/requests/" (id) "/approve" } {
                    input type="hidden" name="csrf" value=(user.csrf);
                    label for={ "days-" (id) } { "Days" }
                    input id={ "days-" (id) } name="days" type="number" min="1" value=(r.days) required;
                    label for={ "groups-" (id) } { "Groups (comma-separated)" }
                    input id={ "groups-" (id) } name="groups" type="text" value=(r.groups.join(", "));
                    label for={ "approve-reason-" (id) } { "Reason for approving" }
                    input id={ "approve-reason-" (id) } name="reason" type="text" required;
                    p { button type="submit" { "Approve request #" (id) } }
                }
                form method="post" action={ "/console/requests/" (id) "/decline" } {
                    input type="hidden" name="csrf" value=(user.csrf);
                    label for={ "decline-reason-" (id) } { "Reason for declining" }
                    input id={ "decline-reason-" (id) } name="reason" type="text" required;
                    p { button type="submit" { "Decline request #" (id) } }
                }
            }
        }
    }
}

fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        "every group".to_owned()
    } else {
        groups.join(", ")
    }
}

fn decided_requests(a: &Admin, rows: &[&RequestRow]) -> Markup {
    html! {
        @if rows.is_empty() { p { "None yet." } } @else {
            table {
                caption { "Decided unblock requests, newest first" }
                thead { tr { th scope="col" { "Request" } th scope="col" { "Site" } th scope="col" { "Asked by" }
                    th scope="col" { "Decision" } th scope="col" { "By" } th scope="col" { "When" } th scope="col" { "Why" } } }
                tbody { @for r in rows.iter().rev().take(DECIDED_SHOWN) { tr {
                    td { "#" (r.id) } td { (r.domain) } td { (r.requester) } td { (r.status) }
                    td { (r.decided_by.as_deref().unwrap_or("")) }
                    td { (r.decided.as_deref().map(|t| local_time(a, t)).unwrap_or_default()) }
                    td { (r.decision_reason.as_deref().unwrap_or("")) }
                } } }
            }
        }
    }
}

fn report_card(a: &Admin, user: &ConsoleUser, r: &ReportRow, can_decide: bool) -> Markup {
    let id = r.id;
    html! {
        article.card aria-labelledby={ "rep-" (id) } {
            h3 id={ "rep-" (id) } { "Report #" (id) ": " (r.domain) }
            dl {
                dt { "Address" } dd { (r.url) }
                dt { "Reported by" } dd { (r.reporter) }
                dt { "When" } dd { (local_time(a, &r.created)) }
                @if !r.comment.is_empty() { dt { "Comment" } dd { (r.comment) } }
            }
            @if can_decide {
                form method="post" action={ "/console/reports/" (id) "/approve" } {
                    input type="hidden" name="csrf" value=(user.csrf);
                    label for={ "category-" (id) } { "Block it in category" }
                    input id={ "category-" (id) } name="category" type="text" value="local" required;
                    label for={ "rep-approve-reason-" (id) } { "Reason" }
                    input id={ "rep-approve-reason-" (id) } name="reason" type="text";
                    p { button type="submit" { "Block " (r.domain) } }
                }
                form method="post" action={ "/console/reports/" (id) "/dismiss" } {
                    input type="hidden" name="csrf" value=(user.csrf);
                    label for={ "dismiss-reason-" (id) } { "Reason for dismissing" }
                    input id={ "dismiss-reason-" (id) } name="reason" type="text";
                    p { button type="submit" { "Dismiss report #" (id) } }
                }
            }
        }
    }
}

fn decided_reports(a: &Admin, rows: &[&ReportRow]) -> Markup {
    html! {
        @if rows.is_empty() { p { "None yet." } } @else {
            table {
                caption { "Decided site reports, newest first" }
                thead { tr { th scope="col" { "Report" } th scope="col" { "Site" } th scope="col" { "Decision" }
                    th scope="col" { "By" } th scope="col" { "When" } th scope="col" { "Category" } } }
                tbody { @for r in rows.iter().rev().take(DECIDED_SHOWN) { tr {
                    td { "#" (r.id) } td { (r.domain) } td { (r.status) }
                    td { (r.decided_by.as_deref().unwrap_or("")) }
                    td { (r.decided.as_deref().map(|t| local_time(a, t)).unwrap_or_default()) }
                    td { (r.category.as_deref().unwrap_or("")) }
                } } }
            }
        }
    }
}

#[derive(Deserialize)]
struct Decision {
    #[serde(default)]
    reason: String,
    days: Option<u32>,
    #[serde(default)]
    groups: String,
    category: Option<String>,
}

/// "a, b" → ["a", "b"].
fn split_groups(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn approve(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<Decision>,
) -> Response {
    if let Err(r) = user.require(Role::Technician) {
        return r;
    }
    let scope = user.scope(&a);
    let groups = Some(split_groups(&f.groups));
    let done = crate::admin::approve_request_as(
        &a, &user.name, user.role, &scope, id, &f.reason, f.days, groups,
    )
    .await;
    match done {
        Ok(_) => see_other("/console/requests"),
        Err(r) => refused(&user, r).await,
    }
}

async fn decline(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<Decision>,
) -> Response {
    if let Err(r) = user.require(Role::Technician) {
        return r;
    }
    let scope = user.scope(&a);
    match crate::admin::decline_request_as(&a, &user.name, user.role, &scope, id, &f.reason).await {
        Ok(()) => see_other("/console/requests"),
        Err(r) => refused(&user, r).await,
    }
}

async fn approve_report(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<Decision>,
) -> Response {
    if let Err(r) = user.require(Role::Technician) {
        return r;
    }
    let scope = user.scope(&a);
    let done = crate::admin::approve_report_as(
        &a, &user.name, user.role, &scope, id, &f.reason, f.category,
    )
    .await;
    match done {
        Ok(()) => see_other("/console/requests#reports"),
        Err(r) => refused(&user, r).await,
    }
}

async fn dismiss_report(
    State(a): State<Admin>,
    user: ConsoleUser,
    Path(id): Path<i64>,
    Form(f): Form<Decision>,
) -> Response {
    if let Err(r) = user.require(Role::Technician) {
        return r;
    }
    let scope = user.scope(&a);
    match crate::admin::dismiss_report_as(&a, &user.name, user.role, &scope, id, &f.reason).await {
        Ok(()) => see_other("/console/requests#reports"),
        Err(r) => refused(&user, r).await,
    }
}

/// The request and report routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/requests", get(page))
        .route("/console/requests/{id}/approve", post(approve))
        .route("/console/requests/{id}/decline", post(decline))
        .route("/console/reports/{id}/approve", post(approve_report))
        .route("/console/reports/{id}/dismiss", post(dismiss_report))
}
