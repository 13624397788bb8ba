//! `GET /sessions`: the users RADIUS accounting says are signed in, by address. Personal
//! data (who was where), so technician and above only; read from the live index, never
//! from the listener's table.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::auth::Caller;
use crate::config::Role;
use crate::identity::MAX_SESSIONS;

/// Sessions answered when no `limit` is given.
const DEFAULT_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub struct SessionsQuery {
    /// Most sessions answered (default 1000), ordered by address.
    limit: Option<usize>,
}

/// The live sessions: `[{user, ip, mac, group, session, expires}]`, ordered by address.
pub async fn list_sessions(
    State(a): State<Admin>,
    caller: Caller,
    Query(q): Query<SessionsQuery>,
) -> Result<Response, Response> {
    caller.require(Role::Technician)?;
    super::school::Scope::of(&caller, &a.pipeline.state().load().config)
        .require_trust("signed-in users")?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_SESSIONS);
    let now = a.now().as_second();
    let index = a.pipeline.state().identities().sessions.load();
    let mut live: Vec<_> = index.iter().filter(|(_, s)| now < s.expires).collect();
    live.sort_by_key(|(ip, _)| **ip);
    let rows: Vec<_> = live
        .into_iter()
        .take(limit)
        .map(|(ip, s)| {
            json!({
                "user": &*s.user,
                "ip": ip.to_string(),
                "mac": s.mac.map(crate::leases::format_mac),
                "group": s.group.as_deref(),
                "session": &*s.session,
                "expires": jiff::Timestamp::from_second(s.expires).ok().map(|t| t.to_string()),
            })
        })
        .collect();
    Ok(Json(rows).into_response())
}
