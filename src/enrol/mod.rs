//! Enrolment outputs: what a device needs to send its enrolment ID with every query, one
//! file per kind of device (Apple profile, ChromeOS policy, Android Private DNS name,
//! Windows 11 DoH registration), made from `[enrolment]` and the enrolment.
//!
//! This module only formats: it does no I/O, never reads the store and never decides
//! who may have a profile (the admin API does both).

pub mod android;
pub mod apple;
pub mod chromeos;
pub mod windows;

use crate::config::EnrolmentConfig;

/// The device an output is made for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Enrolment ID.
    pub id: &'a str,
    /// Device name (shown in profiles).
    pub name: &'a str,
    /// Policy group (shown in profiles).
    pub group: &'a str,
}

/// The kinds of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// iOS, iPadOS and macOS configuration profile.
    Apple,
    /// ChromeOS / Google Admin policy.
    Chromeos,
    /// Android Private DNS hostname.
    Android,
    /// Windows 11 PowerShell.
    Windows,
}

impl Kind {
    /// The names `?kind=` and `--kind` take.
    pub const NAMES: &'static str = "apple, chromeos, android or windows";

    /// By name.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "apple" | "ios" | "macos" => Some(Kind::Apple),
            "chromeos" | "chromebook" => Some(Kind::Chromeos),
            "android" => Some(Kind::Android),
            "windows" => Some(Kind::Windows),
            _ => None,
        }
    }
}

/// An output ready to send.
#[derive(Debug, Clone)]
pub struct Output {
    /// HTTP content type.
    pub content_type: &'static str,
    /// A file name to save it as.
    pub filename: String,
    /// The bytes.
    pub body: Vec<u8>,
}

/// Why an output cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// A key it needs is not set.
    #[error("set {0} in the config first: the device needs it")]
    NotConfigured(&'static str),
    /// The plist writer failed.
    #[error("cannot write the Apple profile: {0}")]
    Plist(#[from] plist::Error),
}

/// The per-device DoH URL, `{doh_url}/{id}`.
pub fn doh_url(cfg: &EnrolmentConfig, id: &str) -> Result<String, EnrolError> {
    let base = cfg
        .doh_url
        .as_deref()
        .ok_or(EnrolError::NotConfigured("enrolment.doh_url"))?;
    Ok(format!("{base}/{id}"))
}

/// The per-device DoT name, `{id}.{dot_name}`.
pub fn dot_name(cfg: &EnrolmentConfig, id: &str) -> Result<String, EnrolError> {
    let base = cfg
        .dot_name
        .as_deref()
        .ok_or(EnrolError::NotConfigured("enrolment.dot_name"))?;
    Ok(format!("{id}.{base}"))
}

/// Make the output of `kind` for `target`.
pub fn output(kind: Kind, cfg: &EnrolmentConfig, target: Target<'_>) -> Result<Output, EnrolError> {
    match kind {
        Kind::Apple => apple::profile(cfg, target),
        Kind::Chromeos => chromeos::policy(cfg, target),
        Kind::Android => android::private_dns(cfg, target),
        Kind::Windows => windows::script(cfg, target),
    }
}

/// Everything a technician needs to set a device up, as JSON fields added to the
/// enrolment: the DoH URL and DoT name with the ID, and where to fetch each output.
/// Fields whose `[enrolment]` key is not set are left out.
pub fn summary(cfg: &EnrolmentConfig, id: &str) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut m = serde_json::Map::new();
    if let Ok(u) = doh_url(cfg, id) {
        m.insert("doh_url".into(), Value::String(u));
    }
    if let Ok(n) = dot_name(cfg, id) {
        m.insert("dot_name".into(), Value::String(n.clone()));
        m.insert("android_private_dns".into(), Value::String(n));
    }
    if let Ok(t) = chromeos::template(cfg, id) {
        m.insert("chromeos_template".into(), Value::String(t));
    }
    for kind in ["apple", "chromeos", "android", "windows"] {
        m.insert(
            format!("{kind}_profile"),
            Value::String(format!("/devices/{id}/profile?kind={kind}")),
        );
    }
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cfg() -> EnrolmentConfig {
        EnrolmentConfig {
            doh_url: Some("https://dns.example-school.org.uk/dns-query".into()),
            dot_name: Some("dns.example-school.org.uk".into()),
            chromeos_salt: Some("salt-for-tests".into()),
            organisation: "Example School".into(),
        }
    }

    pub(crate) const TARGET: Target<'static> = Target {
        id: "k3x9abcdefghijklmnop2345",
        name: "ks2-ipad-14",
        group: "pupils",
    };

    #[test]
    fn every_kind_needs_its_keys() {
        let empty = EnrolmentConfig::default();
        for kind in [Kind::Apple, Kind::Chromeos, Kind::Android, Kind::Windows] {
            let e = output(kind, &empty, TARGET).unwrap_err().to_string();
            assert!(e.contains("enrolment."), "{kind:?}: {e}");
            assert!(output(kind, &cfg(), TARGET).is_ok(), "{kind:?}");
        }
        assert_eq!(Kind::from_name("chromeos"), Some(Kind::Chromeos));
        assert_eq!(Kind::from_name("palm"), None);
    }

    #[test]
    fn the_summary_has_the_urls_with_the_id() {
        let s = summary(&cfg(), TARGET.id);
        assert_eq!(
            s["doh_url"],
            "https://dns.example-school.org.uk/dns-query/k3x9abcdefghijklmnop2345"
        );
        assert_eq!(
            s["android_private_dns"],
            "k3x9abcdefghijklmnop2345.dns.example-school.org.uk"
        );
        assert!(
            summary(&EnrolmentConfig::default(), "x")
                .get("doh_url")
                .is_none()
        );
    }
}
