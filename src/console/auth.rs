//! Console accounts and browser sessions: login (argon2 password, optional TOTP), the
//! session cookie, CSRF tokens, login rate limiting and the idle timeout.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::Admin;
use crate::config::Role;

/// The signed-in console user, from a valid session cookie.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// Account name (the audit log's actor).
    pub name: String,
    /// Role (viewer < technician < dsl).
    pub role: Role,
    /// The `[[school]]` the account is scoped to (None: trust-wide).
    pub school: Option<String>,
    /// This session's CSRF token, for every form the page renders.
    pub csrf: String,
}

impl ConsoleUser {
    /// Ok if the user has at least `role`, else a 403 page.
    pub fn require(&self, role: Role) -> Result<(), Response> {
        if self.role >= role {
            Ok(())
        } else {
            Err((
                axum::http::StatusCode::FORBIDDEN,
                "your account's role may not see this page",
            )
                .into_response())
        }
    }
}

impl FromRequestParts<Admin> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(_parts: &mut Parts, _admin: &Admin) -> Result<Self, Response> {
        // Sessions are built on top of this contract (issue 16, console core).
        Err(Redirect::to("/console/login").into_response())
    }
}

/// Login and logout routes.
pub fn routes() -> Router<Admin> {
    Router::new()
}
