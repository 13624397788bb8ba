//! Console accounts and browser sessions: login (argon2 password, optional TOTP), the
//! session cookie, CSRF tokens, login rate limiting and the idle timeout.
//!
//! Sessions live in memory only (a restart signs everyone out), bounded in number. Every
//! request re-reads the session and checks its account against the live config, so an
//! account removed or changed by a reload loses its sessions at once. Times come from the
//! pipeline's clock, so tests can move it. This module must not decide what a role may
//! see: pages call [`ConsoleUser::require`].

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::layout;
use crate::admin::Admin;
use crate::config::Role;

/// The session cookie's name.
pub const COOKIE: &str = "chaperone_console";
/// Sessions held at once; beyond that the least recently used one ends.
const MAX_SESSIONS: usize = 1_000;
/// Failed sign-ins per address or per account within [`FAILURE_WINDOW`] before refusing.
pub const MAX_FAILURES: u32 = 5;
/// The window failures are counted in.
const FAILURE_WINDOW: SignedDuration = SignedDuration::from_mins(15);
/// Addresses and accounts whose failures are remembered at once (oldest dropped first).
const MAX_TRACKED: usize = 4_096;
/// argon2 verifications at once: each takes ~19 MiB and a core for tens of milliseconds.
const VERIFY_TURNS: usize = 2;
/// Longest name, password or code accepted in the form (longer ones are refused unread).
const MAX_FIELD: usize = 256;

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
            Err(error_page(
                Some(self),
                StatusCode::FORBIDDEN,
                &format!(
                    "Your account ({}) may not see or do this: it needs the {} role.",
                    crate::admin::role_name(self.role),
                    crate::admin::role_name(role)
                ),
            ))
        }
    }

    /// The reach of this account, as the JSON API computes it for a token.
    pub fn scope(&self, a: &Admin) -> crate::admin::school::Scope {
        let caller = crate::admin::auth::Caller {
            who: Some((self.name.clone(), self.role)),
            school: self.school.clone(),
        };
        crate::admin::school::Scope::of(&caller, &a.pipeline.state().load().config)
    }
}

/// A whole error page with `status`.
pub fn error_page(user: Option<&ConsoleUser>, status: StatusCode, message: &str) -> Response {
    let body = html! { p.error role="alert" { (message) } };
    layout::render(status, layout::page("Not possible", user, body))
}

/// One browser session.
struct Session {
    user: String,
    role: Role,
    school: Option<String>,
    csrf: String,
    created: Timestamp,
    last: Timestamp,
}

/// The console's sessions and sign-in failure counts (one per admin listener).
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, (Timestamp, u32)>>,
    /// The last TOTP time step accepted per account: a code, once used, is spent (RFC 6238
    /// §5.2), so one read over a shoulder cannot sign in a second time. One entry per
    /// configured account at most.
    totp_used: Mutex<HashMap<String, u64>>,
    verify_turns: tokio::sync::Semaphore,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            failures: Mutex::default(),
            totp_used: Mutex::default(),
            verify_turns: tokio::sync::Semaphore::new(VERIFY_TURNS),
        }
    }
}

/// 256 random bits, hex.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// Spend TOTP step `step` of `account`: false if that step or a later one was used.
    fn spend_totp(&self, account: &str, step: u64) -> bool {
        let mut used = lock(&self.totp_used);
        match used.get(account) {
            Some(last) if *last >= step => false,
            _ => {
                used.insert(account.to_owned(), step);
                true
            }
        }
    }

    /// Start a session for `user`; its id.
    fn start(&self, user: &crate::config::console::ConsoleUserConfig, now: Timestamp) -> String {
        let mut live = lock(&self.live);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        let id = random_token();
        live.insert(
            id.clone(),
            Session {
                user: user.name.clone(),
                role: user.role,
                school: user.school.clone(),
                csrf: random_token(),
                created: now,
                last: now,
            },
        );
        id
    }

    /// End a session.
    fn end(&self, id: &str) {
        lock(&self.live).remove(id);
    }

    /// The user of session `id` if it is still valid under `console` at `now` (and mark it
    /// used); an invalid session is removed.
    fn touch(
        &self,
        id: &str,
        console: &crate::config::console::ConsoleConfig,
        now: Timestamp,
    ) -> Option<ConsoleUser> {
        let mut live = lock(&self.live);
        let s = live.get_mut(id)?;
        let idle = SignedDuration::try_from(console.idle_timeout).unwrap_or(SignedDuration::MAX);
        let life =
            SignedDuration::try_from(console.session_lifetime).unwrap_or(SignedDuration::MAX);
        let account = console.user(&s.user);
        let valid = now.duration_since(s.last) <= idle
            && now.duration_since(s.created) <= life
            && account.is_some_and(|a| a.role == s.role && a.school == s.school);
        if !valid {
            live.remove(id);
            return None;
        }
        s.last = now;
        Some(ConsoleUser {
            name: s.user.clone(),
            role: s.role,
            school: s.school.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Minutes until `keys` may try again, if any of them has [`MAX_FAILURES`] failures
    /// in the window.
    fn locked(&self, keys: &[String], now: Timestamp) -> Option<i64> {
        let failures = lock(&self.failures);
        keys.iter()
            .filter_map(|k| failures.get(k))
            .filter(|(start, n)| *n >= MAX_FAILURES && now.duration_since(*start) < FAILURE_WINDOW)
            .map(|(start, _)| {
                let left = FAILURE_WINDOW - now.duration_since(*start);
                (left.as_secs() + 59) / 60
            })
            .max()
    }

    /// Count one failure against each of `keys`.
    fn fail(&self, keys: &[String], now: Timestamp) {
        let mut failures = lock(&self.failures);
        for k in keys {
            if failures.len() >= MAX_TRACKED && !failures.contains_key(k) {
                failures.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
                if failures.len() >= MAX_TRACKED
                    && let Some(oldest) = failures
                        .iter()
                        .min_by_key(|(_, (s, _))| *s)
                        .map(|(k, _)| k.clone())
                {
                    failures.remove(&oldest);
                }
            }
            let e = failures.entry(k.clone()).or_insert((now, 0));
            if now.duration_since(e.0) >= FAILURE_WINDOW {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    /// Forget the failures of `keys` (after a successful sign-in).
    fn clear(&self, keys: &[String]) {
        let mut failures = lock(&self.failures);
        for k in keys {
            failures.remove(k);
        }
    }
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromRequestParts<Admin> for ConsoleUser {
    type Rejection = Response;

    /// A browser without a valid session gets the sign-in form (GET) or is sent to it.
    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Response> {
        let snap = admin.pipeline.state().load();
        let user = session_id(&parts.headers)
            .and_then(|id| admin.console.touch(&id, &snap.config.console, admin.now()));
        match user {
            Some(u) => Ok(u),
            None if parts.method == Method::GET => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
                Err(login_page(StatusCode::OK, None, safe_next(next)).into_response())
            }
            None => Err(Redirect::to("/console/login").into_response()),
        }
    }
}

/// `next` if it is a console path (never another site: `//evil.example` is refused).
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/console/") && !next.starts_with("//") && !next.contains('\\');
    if ok { next } else { "/console/" }
}

/// A form posted from a console page: the session must be valid and the form's `csrf`
/// field must be that session's token; then the body is parsed as `T`.
pub struct Form<T>(pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parse a url-encoded body as `T` (a 422 page naming the problem).
async fn parse_form<T: serde::de::DeserializeOwned>(
    bytes: &Bytes,
    user: Option<&ConsoleUser>,
) -> Result<T, Response> {
    let req = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(bytes.clone()))
        .map_err(|e| error_page(user, StatusCode::BAD_REQUEST, &e.to_string()))?;
    axum::Form::<T>::from_request(req, &())
        .await
        .map(|f| f.0)
        .map_err(|e| error_page(user, StatusCode::UNPROCESSABLE_ENTITY, &e.body_text()))
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<Admin> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, admin: &Admin) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = ConsoleUser::from_request_parts(&mut parts, admin).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), admin)
            .await
            .map_err(|e| e.into_response())?;
        let CsrfField { csrf } = parse_form(&bytes, Some(&user)).await?;
        if !constant_time_eq(csrf.as_bytes(), user.csrf.as_bytes()) {
            return Err(error_page(
                Some(&user),
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from the console. Go back, reload the page and try again.",
            ));
        }
        Ok(Form(parse_form(&bytes, Some(&user)).await?))
    }
}

/// The sign-in page.
fn login_page(status: StatusCode, message: Option<&str>, next: &str) -> Response {
    let body = html! {
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
        form method="post" action="/console/login" {
            input type="hidden" name="next" value=(next);
            label for="username" { "Name" }
            input id="username" name="username" type="text" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            label for="code" { "Code from your authenticator app (if your account has one)" }
            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}";
            p { button type="submit" { "Sign in" } }
        }
    };
    let mut resp = layout::render(status, layout::page("Sign in", None, body));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

async fn login_form(State(a): State<Admin>, headers: HeaderMap) -> Response {
    let snap = a.pipeline.state().load();
    // Already signed in: straight to Today.
    if session_id(&headers)
        .and_then(|id| a.console.touch(&id, &snap.config.console, a.now()))
        .is_some()
    {
        return Redirect::to("/console/").into_response();
    }
    login_page(StatusCode::OK, None, "/console/")
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

/// A hash to verify against when the account does not exist, so an unknown name takes as
/// long as a wrong password (no user enumeration by timing).
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| crate::config::console::hash_password(&random_token()).unwrap_or_default());

/// Does `password` match the PHC `hash`?
fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The 30-second time step whose code `code` is, trying `now`'s and one either side.
fn totp_step(secret: &[u8], code: &str, now: Timestamp) -> Option<u64> {
    let t = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec()).ok()?;
    let step = u64::try_from(now.as_second()).ok()? / 30;
    let code = code.trim();
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| t.generate(s * 30) == code)
}

/// The current TOTP code of `secret` at `now` (for tests and `chaperone passwd`).
pub fn totp_code(secret: &[u8], now: Timestamp) -> Option<String> {
    let t = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec()).ok()?;
    Some(t.generate(u64::try_from(now.as_second()).ok()?))
}

/// The `otpauth://` URL an authenticator app reads (as a QR code or pasted).
pub fn otpauth_url(account: &str, secret: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/Chaperone:{}?secret={secret}&issuer=Chaperone&algorithm=SHA1&digits=6&period=30",
        enc(account)
    )
}

/// The cookie that carries session `id` (`Secure` when the console is served over https).
fn session_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console{secure}")
}

/// The name as given, made safe for the audit log (bounded, one line).
fn typed_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(64)
        .collect()
}

async fn login(
    State(a): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let b: LoginBody = match parse_form(&body, None).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let next = safe_next(&b.next).to_owned();
    if [&b.username, &b.password, &b.code]
        .iter()
        .any(|f| f.len() > MAX_FIELD)
    {
        return login_page(StatusCode::BAD_REQUEST, Some("A field is too long."), &next);
    }
    let client: IpAddr = peer.ip().to_canonical();
    let name = b.username.trim().to_owned();
    let keys = [format!("ip:{client}"), format!("user:{name}")];
    let now = a.now();
    if let Some(mins) = a.console.locked(&keys, now) {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins. Try again in {mins} minute{}, or ask your technician to check your account.",
                if mins == 1 { "" } else { "s" }
            )),
            &next,
        );
    }
    match check_credentials(&a, &name, &b.password, &b.code, now).await {
        Ok(account) => {
            a.console.clear(&keys);
            let id = a.console.start(&account, now);
            let _ = a
                .audit(
                    &account.name,
                    account.role,
                    "console.login",
                    "console",
                    json!({ "client": client.to_string() }),
                )
                .await
                .inspect_err(|e| tracing::error!("audit of a console sign-in failed: {e}"));
            let secure = a.pipeline.state().load().config.console.secure_cookie;
            let mut resp = Redirect::to(&next).into_response();
            if let Ok(v) = header::HeaderValue::from_str(&session_cookie(&id, secure)) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(why) => {
            a.console.fail(&keys, now);
            let _ = a
                .audit_as(
                    &typed_name(&name),
                    "none",
                    "console.login_failed",
                    "console",
                    json!({ "client": client.to_string(), "reason": why }),
                )
                .await
                .inspect_err(|e| tracing::error!("audit of a failed console sign-in failed: {e}"));
            login_page(
                StatusCode::UNAUTHORIZED,
                Some("Wrong name, password or code."),
                &next,
            )
        }
    }
}

/// The account if name, password and (when it has a secret) code are right; else why not
/// (for the audit log only: the browser is told the same thing whatever failed).
async fn check_credentials(
    a: &Admin,
    name: &str,
    password: &str,
    code: &str,
    now: Timestamp,
) -> Result<crate::config::console::ConsoleUserConfig, &'static str> {
    let account = a.pipeline.state().load().config.console.user(name).cloned();
    let hash = account
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |u| u.password_hash.clone());
    let password = password.to_owned();
    let ok = {
        let _turn = a.console.verify_turns.acquire().await;
        tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false)
    };
    let account = account.ok_or("unknown account")?;
    if !ok {
        return Err("wrong password");
    }
    if let Some(secret) = &account.totp_secret {
        let Some(step) = totp_step(secret, code, now) else {
            return Err(if code.trim().is_empty() {
                "no authenticator code"
            } else {
                "wrong authenticator code"
            });
        };
        if !a.console.spend_totp(&account.name, step) {
            return Err("authenticator code already used");
        }
    }
    Ok(account)
}

#[derive(Deserialize)]
struct Nothing {}

async fn logout(
    State(a): State<Admin>,
    headers: HeaderMap,
    user: ConsoleUser,
    Form(_): Form<Nothing>,
) -> Response {
    if let Some(id) = session_id(&headers) {
        a.console.end(&id);
    }
    let _ = a
        .audit(
            &user.name,
            user.role,
            "console.logout",
            "console",
            json!({}),
        )
        .await
        .inspect_err(|e| tracing::error!("audit of a console sign-out failed: {e}"));
    let mut resp = login_page(StatusCode::OK, Some("You have signed out."), "/console/");
    let gone = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0");
    if let Ok(v) = header::HeaderValue::from_str(&gone) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Login and logout routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
}
