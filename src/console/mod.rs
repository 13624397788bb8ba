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

pub mod auth;
pub mod checks;
pub mod layout;
pub mod policy;
pub mod search;

use axum::Router;

use crate::admin::Admin;

pub use auth::ConsoleUser;

/// The console's routes, all under `/console/`; merged into the admin router.
pub fn router() -> Router<Admin> {
    Router::new()
        .merge(auth::routes())
        .merge(search::routes())
        .merge(policy::routes())
        .merge(checks::routes())
}
