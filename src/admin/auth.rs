//! Bearer-token authentication with roles.
//!
//! The presented token is hashed (SHA-256) and compared with the configured digests in
//! constant time, so neither the config file nor a timing side channel gives tokens away.

// Handlers return ready-made error responses (the axum idiom); they are built once per
// failed request, so their size does not matter.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::Admin;
use crate::config::Role;

/// Who is calling, if they presented a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token holder's name and role, or None without a valid token.
    pub who: Option<(String, Role)>,
    /// The `[[school]]` the token is scoped to (None: trust-wide, or no token).
    pub school: Option<String>,
}

impl Caller {
    /// Ok if the caller has at least `role` (viewer < technician < dsl), else the 401/403
    /// response to send.
    pub fn require(&self, role: Role) -> Result<(String, Role), Response> {
        match &self.who {
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            )),
            Some((_, have)) if *have < role => Err(error(
                StatusCode::FORBIDDEN,
                &format!(
                    "role {} may not do this; {} is required",
                    super::role_name(*have),
                    super::role_name(role)
                ),
            )),
            Some(who) => Ok(who.clone()),
        }
    }
}

/// A JSON error body.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// SHA-256 of a token, as stored in the config.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Admin> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = presented else {
            return Ok(Caller {
                who: None,
                school: None,
            });
        };
        let digest = hash_token(token);
        let snap = admin.pipeline.state().load();
        let token = snap.config.admin.as_ref().and_then(|a| {
            a.tokens
                .iter()
                .find(|t| constant_time_eq(&t.sha256, &digest))
        });
        Ok(Caller {
            who: token.map(|t| (t.name.clone(), t.role)),
            school: token.and_then(|t| t.school.clone()),
        })
    }
}
