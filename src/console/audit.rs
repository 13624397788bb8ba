//! Audit: the audit trail, newest first, a page at a time, and a button that verifies the
//! hash chain (as `GET /audit/verify` does). DSL with a trust-wide account only, as in the
//! JSON API (the log is the trust's).

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::ops::ControlFlow;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Form, error_page};
use super::{ConsoleUser, layout, local_time, store_error};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::audit::{self, Stored};
use crate::store::{StoreError, from_micros};

/// Records per page.
const PAGE: usize = 50;
/// Deepest page (the walk keeps at most this many pages of records in memory).
const MAX_PAGE: usize = 200;

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    page: usize,
}

/// The records of page `page` (0: newest), newest first, and whether older ones exist.
fn newest_page(
    c: &mut dyn crate::store::Store,
    page: usize,
) -> Result<(Vec<Stored>, bool), StoreError> {
    let keep = (page + 1) * PAGE;
    let mut last: VecDeque<Stored> = VecDeque::with_capacity(keep + 1);
    let mut total = 0usize;
    c.audit_walk(&mut |row| {
        total += 1;
        if last.len() == keep {
            last.pop_front();
        }
        last.push_back(row);
        ControlFlow::Continue(())
    })?;
    let older = total > keep;
    let mut rows: Vec<Stored> = last.into_iter().rev().skip(page * PAGE).collect();
    rows.truncate(PAGE);
    Ok((rows, older))
}

fn allowed(a: &Admin, user: &ConsoleUser) -> Result<(), Response> {
    user.require(Role::Dsl)?;
    if !user.scope(a).is_trust() {
        return Err(error_page(
            Some(user),
            StatusCode::FORBIDDEN,
            "The audit log is the trust's: a school's account may not see it.",
        ));
    }
    Ok(())
}

async fn page(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(q): Query<PageQuery>,
) -> Result<Response, Response> {
    allowed(&a, &user)?;
    let n = q.page.min(MAX_PAGE);
    let (rows, older) = a
        .with_db(move |c| newest_page(c, n))
        .await
        .map_err(|e| store_error(&user, e))?;
    let body = html! {
        (verify_form(&user))
        (table(&a, &rows))
        nav aria-label="Pages" {
            @if n > 0 { a href={ "/console/audit?page=" (n - 1) } { "Newer records" } " " }
            @if older && n < MAX_PAGE { a href={ "/console/audit?page=" (n + 1) } { "Older records" } }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Audit", Some(&user), body),
    ))
}

fn verify_form(user: &ConsoleUser) -> Markup {
    html! {
        form method="post" action="/console/audit/verify" {
            input type="hidden" name="csrf" value=(user.csrf);
            p { "Every change is recorded here and chained by hashes, so a record altered or removed later shows up when the chain is checked. "
                button type="submit" { "Verify the audit log" } }
        }
    }
}

fn table(a: &Admin, rows: &[Stored]) -> Markup {
    html! {
        table {
            caption { "Audit records, newest first" }
            thead { tr { th scope="col" { "Record" } th scope="col" { "Time" } th scope="col" { "Who" }
                th scope="col" { "Role" } th scope="col" { "Action" } th scope="col" { "Subject" } th scope="col" { "Detail" } } }
            tbody { @for r in rows { tr {
                td { (r.id) }
                td { (local_time(a, &from_micros(r.ts_us).to_string())) }
                td { (r.fields[0]) } td { (r.fields[1]) } td { (r.fields[2]) } td { (r.fields[3]) }
                td.detail { (r.fields[4]) }
            } } }
        }
    }
}

#[derive(Deserialize)]
struct Nothing {}

async fn verify(
    State(a): State<Admin>,
    user: ConsoleUser,
    Form(_): Form<Nothing>,
) -> Result<Response, Response> {
    allowed(&a, &user)?;
    let published = a.chain.published().map_err(|e| {
        error_page(
            Some(&user),
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )
    })?;
    let chain = a.chain.clone();
    let result = a
        .with_db(move |c| {
            let expect = audit::Expect {
                key: Some(chain.key()),
                published,
                ..Default::default()
            };
            audit::verify(c, &expect)
        })
        .await
        .map_err(|e| store_error(&user, e))?;
    let (status, verdict) = match result {
        audit::Verification::Intact(n) => (
            StatusCode::OK,
            html! { p.ok role="status" id="verdict" { "Intact: all " (n) " records check out." } },
        ),
        audit::Verification::Broken { id, reason } => (
            StatusCode::CONFLICT,
            html! { p.error role="alert" id="verdict" { "Broken at record " (id) ": " (reason) } },
        ),
        audit::Verification::Unverifiable(reason) => (
            StatusCode::CONFLICT,
            html! { p.error role="alert" id="verdict" { "Cannot be verified: " (reason) } },
        ),
    };
    let (rows, _) = a
        .with_db(|c| newest_page(c, 0))
        .await
        .map_err(|e| store_error(&user, e))?;
    let body = html! { (verdict) (verify_form(&user)) (table(&a, &rows)) };
    Ok(layout::render(
        status,
        layout::page("Audit", Some(&user), body),
    ))
}

/// The audit routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/audit", get(page))
        .route("/console/audit/verify", post(verify))
}
