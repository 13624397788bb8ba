//! `[console]` and `[[console.user]]`: the web console's address, session lifetimes and
//! accounts.
//!
//! Accounts are checked here, at load, so a mistyped hash or TOTP secret is a config error
//! naming `console.user[N].…` rather than an account nobody can sign in to. They live in
//! the config snapshot (like `[[admin.token]]`), so adding or removing one takes a reload.
//! This module must not verify passwords: that happens per login in `console::auth`.

use std::time::Duration;

use serde::Deserialize;

use super::school::Schools;
use super::{Problem, Role};

/// `[console]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// The address people reach the console at, with the trailing slash (e.g.
    /// `https://filter.school.example:8053/console/`): alerts link to it unless
    /// `[alerts] console_url` says otherwise. With `https`, the cookie is marked `Secure`.
    pub url: Option<String>,
    /// Minutes without a request before a session ends. Default 30.
    #[serde(default = "default_idle")]
    pub idle_timeout_mins: u32,
    /// Hours a session may last however active it is. Default 12.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// Accounts.
    #[serde(default)]
    pub user: Vec<RawConsoleUser>,
}

fn default_idle() -> u32 {
    30
}

fn default_session_hours() -> u32 {
    12
}

/// `[[console.user]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleUser {
    /// Sign-in name (and the audit log's actor).
    pub name: String,
    /// "viewer", "technician" or "dsl".
    pub role: String,
    /// Scope the account to one `[[school]]` id. Default: trust-wide.
    pub school: Option<String>,
    /// argon2id PHC string; make one with `chaperone passwd`.
    pub password_hash: String,
    /// Base32 TOTP secret (`chaperone passwd --totp`); when set, sign-in asks for a code.
    pub totp_secret: Option<String>,
}

/// `[console]`, resolved.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Base URL of the console, for links in alerts (None: not configured).
    pub url: Option<String>,
    /// Mark the session cookie `Secure` (the URL is https).
    pub secure_cookie: bool,
    /// A session ends after this long without a request.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever.
    pub session_lifetime: Duration,
    /// Accounts.
    pub users: Vec<ConsoleUserConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            url: None,
            secure_cookie: false,
            idle_timeout: Duration::from_secs(u64::from(default_idle()) * 60),
            session_lifetime: Duration::from_secs(u64::from(default_session_hours()) * 3_600),
            users: Vec::new(),
        }
    }
}

impl ConsoleConfig {
    /// The account named `name`.
    pub fn user(&self, name: &str) -> Option<&ConsoleUserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// One console account, checked.
#[derive(Debug, Clone)]
pub struct ConsoleUserConfig {
    /// Sign-in name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The `[[school]]` it is scoped to (None: trust-wide).
    pub school: Option<String>,
    /// argon2id PHC string (parsed once at load, so it is known to be well-formed).
    pub password_hash: String,
    /// Decoded TOTP secret.
    pub totp_secret: Option<Vec<u8>>,
}

/// Longest idle timeout and session, so the arithmetic stays small.
const MAX_IDLE_MINS: u32 = 24 * 60;
const MAX_SESSION_HOURS: u32 = 24 * 30;
/// Most accounts (each login scans them).
const MAX_USERS: usize = 1_000;

/// Resolve `[console]`, adding a problem per bad key.
pub(super) fn console(
    raw: Option<RawConsole>,
    schools: &Schools,
    problems: &mut Vec<Problem>,
) -> ConsoleConfig {
    let Some(raw) = raw else {
        return ConsoleConfig::default();
    };
    let mut add = |k: &str, m: String| problems.push(Problem::new(k, m));
    let url = raw.url.filter(|u| !u.trim().is_empty());
    if let Some(u) = &url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        add(
            "console.url",
            format!("{u:?} must start with http:// or https://"),
        );
    }
    if !(1..=MAX_IDLE_MINS).contains(&raw.idle_timeout_mins) {
        add(
            "console.idle_timeout_mins",
            format!("must be from 1 to {MAX_IDLE_MINS}"),
        );
    }
    if !(1..=MAX_SESSION_HOURS).contains(&raw.session_hours) {
        add(
            "console.session_hours",
            format!("must be from 1 to {MAX_SESSION_HOURS}"),
        );
    }
    if raw.user.len() > MAX_USERS {
        add("console.user", format!("at most {MAX_USERS} accounts"));
    }
    let mut users: Vec<ConsoleUserConfig> = Vec::new();
    for (i, u) in raw.user.into_iter().enumerate() {
        let key = format!("console.user[{i}]");
        match user(u, schools, &key) {
            Ok(u) if users.iter().any(|o| o.name == u.name) => add(
                &format!("{key}.name"),
                format!("{:?} is used twice", u.name),
            ),
            Ok(u) => users.push(u),
            Err(errs) => errs.into_iter().for_each(|(k, m)| add(&k, m)),
        }
    }
    ConsoleConfig {
        secure_cookie: url.as_deref().is_some_and(|u| u.starts_with("https://")),
        url,
        idle_timeout: Duration::from_secs(u64::from(raw.idle_timeout_mins) * 60),
        session_lifetime: Duration::from_secs(u64::from(raw.session_hours) * 3_600),
        users,
    }
}

/// One account, or the (key, message) of each problem with it.
fn user(
    u: RawConsoleUser,
    schools: &Schools,
    key: &str,
) -> Result<ConsoleUserConfig, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let name_ok = !u.name.trim().is_empty()
        && u.name.chars().count() <= 64
        && !u.name.chars().any(char::is_control);
    if !name_ok {
        errs.push((
            format!("{key}.name"),
            "required, at most 64 characters, no control characters".to_owned(),
        ));
    }
    let role = parse_role(&u.role).map_err(|m| errs.push((format!("{key}.role"), m)));
    if let Some(id) = &u.school
        && schools.get(id).is_none()
    {
        errs.push((
            format!("{key}.school"),
            format!("no [[school]] has id {id:?}"),
        ));
    }
    if let Err(m) = check_hash(&u.password_hash) {
        errs.push((format!("{key}.password_hash"), m));
    }
    let totp = match u.totp_secret.as_deref().map(decode_totp).transpose() {
        Ok(t) => t,
        Err(m) => {
            errs.push((format!("{key}.totp_secret"), m));
            None
        }
    };
    match role {
        Ok(role) if errs.is_empty() => Ok(ConsoleUserConfig {
            name: u.name,
            role,
            school: u.school,
            password_hash: u.password_hash,
            totp_secret: totp,
        }),
        _ => Err(errs),
    }
}

/// "viewer", "technician" or "dsl".
pub fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "viewer" => Ok(Role::Viewer),
        "technician" => Ok(Role::Technician),
        "dsl" => Ok(Role::Dsl),
        other => Err(format!(
            "unknown role {other:?} (use viewer, technician or dsl)"
        )),
    }
}

/// A well-formed argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
fn check_hash(s: &str) -> Result<(), String> {
    let h = argon2::PasswordHash::new(s).map_err(|e| {
        format!("not an argon2id PHC string ({e}); make one with `chaperone passwd`")
    })?;
    if h.algorithm.as_str() != "argon2id" || h.hash.is_none() {
        return Err(format!(
            "algorithm {:?}: only argon2id hashes are accepted; make one with `chaperone passwd`",
            h.algorithm.as_str()
        ));
    }
    argon2::Params::try_from(&h).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}

/// A base32 TOTP secret of at least 128 bits, decoded.
pub fn decode_totp(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = totp_rs::Secret::Encoded(clean.to_ascii_uppercase())
        .to_bytes()
        .map_err(|_| "not base32; make one with `chaperone passwd --totp`".to_owned())?;
    if bytes.len() < 16 {
        return Err(format!(
            "{} bits: at least 128 are needed; make one with `chaperone passwd --totp`",
            bytes.len() * 8
        ));
    }
    Ok(bytes)
}

/// An argon2id PHC hash of `password` with a fresh random salt (for `chaperone passwd`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new random 160-bit TOTP secret in base32 (for `chaperone passwd --totp`).
pub fn new_totp_secret() -> String {
    totp_rs::Secret::Raw(rand::random::<[u8; 20]>().to_vec())
        .to_encoded()
        .to_string()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn load(console: &str) -> Result<Config, String> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"192.0.2.53\"]\n[[network]]\ncidrs = [\"10.0.0.0/8\"]\ngroup = \"pupils\"\n[group.pupils]\n{console}"
        );
        Config::from_str(Path::new("/tmp/console.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn accounts_are_checked_at_load() {
        let hash = super::hash_password("correct horse").unwrap();
        let secret = super::new_totp_secret();
        let good = format!(
            "[console]\nurl = \"https://f.example/\"\n[[console.user]]\nname = \"dsl\"\nrole = \"dsl\"\npassword_hash = \"{hash}\"\ntotp_secret = \"{secret}\"\n"
        );
        let c = load(&good).unwrap().console;
        assert!(c.secure_cookie);
        assert_eq!(c.users[0].totp_secret.as_ref().unwrap().len(), 20);
        let bad = good.replace(&hash, "$argon2id$nonsense");
        let err = load(&bad).unwrap_err();
        assert!(err.contains("console.user[0].password_hash"), "{err}");
        let bad = good.replace(&secret, "not*base32");
        let err = load(&bad).unwrap_err();
        assert!(err.contains("console.user[0].totp_secret"), "{err}");
        let bad = good.replace("role = \"dsl\"", "role = \"head\"");
        assert!(load(&bad).unwrap_err().contains("console.user[0].role"));
    }
}
