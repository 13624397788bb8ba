//! The safeguarding lead's web console at `/console/` on the admin listener: server-rendered
//! HTML (maud) with progressive enhancement, no JavaScript build chain.
//!
//! It owns the pages and the browser session (login, CSRF, idle timeout); it must not own
//! safeguarding logic: every action goes through the same store calls and audit records as
//! the JSON API in [`crate::admin`], so the console and `curl` can never disagree.
//!
//! | page | file | role |
//! |---|---|---|
//! | login, logout | [`auth`] | none |
//! | Today | `today.rs` | viewer |
//! | Incidents (list, detail, acknowledge) | `incidents.rs` | dsl |
//! | Requests and reports | `requests.rs` | viewer (decide: technician) |
//! | Exceptions | `exceptions.rs` | viewer (revoke: technician) |
//! | Query log search, CSV | `search.rs` | dsl |
//! | Policy in words, explain | `policy.rs` | viewer |
//! | Checks log, annual review | `checks.rs` | viewer (record: technician) |
//! | Audit | `audit.rs` | dsl |

pub mod audit;
pub mod auth;
pub mod checks;
pub mod exceptions;
pub mod incidents;
pub mod layout;
pub mod policy;
pub mod requests;
pub mod search;
pub mod today;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin::Admin;
use crate::store::StoreError;

pub use auth::ConsoleUser;

/// The console's routes, all under `/console/`; merged into the admin router.
pub fn router() -> Router<Admin> {
    Router::new()
        .merge(auth::routes())
        .merge(today::routes())
        .merge(incidents::routes())
        .merge(requests::routes())
        .merge(exceptions::routes())
        .merge(audit::routes())
        .merge(search::routes())
        .merge(policy::routes())
        .merge(checks::routes())
}

/// A storage error as a page (details in the server log only).
pub fn store_error(user: &ConsoleUser, e: StoreError) -> Response {
    match e {
        StoreError::Invalid(m) => auth::error_page(Some(user), StatusCode::CONFLICT, &m),
        other => {
            tracing::error!("console storage error: {other}");
            auth::error_page(
                Some(user),
                StatusCode::INTERNAL_SERVER_ERROR,
                "The database could not be read or written (see the server log).",
            )
        }
    }
}

/// A refusal from the JSON API's shared decision code (a JSON `{"error": …}` body) as a
/// console page with the same status and message.
pub async fn refused(user: &ConsoleUser, resp: Response) -> Response {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    auth::error_page(Some(user), status, &message)
}

/// An RFC 3339 time as the school reads it: in `[server] timezone`, e.g.
/// "Mon 23 Nov 2026 10:05". Unparseable text is shown as it is.
pub fn local_time(a: &Admin, rfc3339: &str) -> String {
    let tz = a.pipeline.state().load().config.server.timezone.clone();
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.to_zoned(tz).strftime("%a %-d %b %Y %H:%M").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// A 303 redirect to a console page after a form post (so reload does not re-post).
pub fn see_other(path: &str) -> Response {
    axum::response::Redirect::to(path).into_response()
}
