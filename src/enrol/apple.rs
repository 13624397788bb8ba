//! The Apple configuration profile (`.mobileconfig`, iOS/iPadOS 14+ and macOS 11+): one
//! `com.apple.dnsSettings.managed` payload that sends every DNS query over HTTPS to
//! `{doh_url}/{id}`. Written with the `plist` crate as an XML property list.
//!
//! The profile is unsigned: devices show it as "Not Verified" but install it. Signing
//! (CMS, e.g. `openssl smime -sign -nodetach -outform der`) is left to the school's MDM
//! or to that command. The UUIDs are derived from the enrolment ID, so downloading the
//! profile again and installing it replaces the earlier copy instead of adding a second.

use plist::{Dictionary, Value};
use sha2::{Digest, Sha256};

use super::{EnrolError, Output, Target, doh_url};
use crate::config::EnrolmentConfig;

/// The payload type of managed DNS settings.
pub const DNS_PAYLOAD: &str = "com.apple.dnsSettings.managed";

/// The profile for `target`.
pub fn profile(cfg: &EnrolmentConfig, target: Target<'_>) -> Result<Output, EnrolError> {
    let url = doh_url(cfg, target.id)?;
    let base = identifier_base(cfg);
    let dns_uuid = uuid(&["dns", target.id]);
    let mut dns = Dictionary::new();
    dns.insert("DNSProtocol".into(), Value::String("HTTPS".into()));
    dns.insert("ServerURL".into(), Value::String(url));
    let mut payload = Dictionary::new();
    payload.insert("DNSSettings".into(), Value::Dictionary(dns));
    payload.insert(
        "PayloadDisplayName".into(),
        Value::String(format!("{} encrypted DNS", cfg.organisation)),
    );
    payload.insert(
        "PayloadIdentifier".into(),
        Value::String(format!("{base}.dns.{}", target.id)),
    );
    payload.insert("PayloadType".into(), Value::String(DNS_PAYLOAD.into()));
    payload.insert("PayloadUUID".into(), Value::String(dns_uuid));
    payload.insert("PayloadVersion".into(), Value::Integer(1.into()));
    // Honoured on supervised devices only; elsewhere the user could turn it off.
    payload.insert("ProhibitDisablement".into(), Value::Boolean(true));

    let mut top = Dictionary::new();
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(payload)]),
    );
    top.insert(
        "PayloadDescription".into(),
        Value::String(format!(
            "Filters this device's DNS as the school's {} group, on and off site (device {}).",
            target.group, target.name
        )),
    );
    top.insert(
        "PayloadDisplayName".into(),
        Value::String(format!(
            "{} DNS filtering: {}",
            cfg.organisation, target.name
        )),
    );
    top.insert(
        "PayloadIdentifier".into(),
        Value::String(format!("{base}.{}", target.id)),
    );
    top.insert(
        "PayloadOrganization".into(),
        Value::String(cfg.organisation.clone()),
    );
    top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(false));
    top.insert("PayloadType".into(), Value::String("Configuration".into()));
    top.insert(
        "PayloadUUID".into(),
        Value::String(uuid(&["profile", target.id])),
    );
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));

    let mut body = Vec::new();
    Value::Dictionary(top).to_writer_xml(&mut body)?;
    Ok(Output {
        content_type: "application/x-apple-aspen-config",
        filename: format!("{}.mobileconfig", target.name_for_file()),
        body,
    })
}

impl Target<'_> {
    /// The device name reduced to characters safe in a file name.
    pub fn name_for_file(&self) -> String {
        let s: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if s.trim_matches('-').is_empty() {
            self.id.to_owned()
        } else {
            s
        }
    }
}

/// A reverse-DNS identifier prefix from the DoH host: `uk.org.example-school.dns.chaperone`.
fn identifier_base(cfg: &EnrolmentConfig) -> String {
    let host = cfg
        .doh_url
        .as_deref()
        .and_then(|u| u.strip_prefix("https://"))
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or("invalid");
    let mut labels: Vec<&str> = host.split('.').collect();
    labels.reverse();
    format!("{}.chaperone", labels.join("."))
}

/// A UUID made from `parts` (SHA-256, laid out as an RFC 9562 version 8 UUID), upper
/// case as Apple writes them. The same enrolment always gets the same UUIDs.
fn uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"chaperone-apple-profile");
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TARGET, cfg};
    use super::*;

    fn string<'a>(d: &'a Dictionary, key: &str) -> &'a str {
        d.get(key)
            .and_then(Value::as_string)
            .unwrap_or_else(|| panic!("{key} missing"))
    }

    fn is_uuid(s: &str) -> bool {
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
    }

    #[test]
    fn the_profile_parses_back_with_every_field() {
        let out = profile(&cfg(), TARGET).unwrap();
        assert_eq!(out.content_type, "application/x-apple-aspen-config");
        assert_eq!(out.filename, "ks2-ipad-14.mobileconfig");
        assert!(out.body.starts_with(b"<?xml"), "an XML plist");
        let v = Value::from_reader(std::io::Cursor::new(&out.body)).unwrap();
        let top = v.as_dictionary().unwrap();
        assert_eq!(string(top, "PayloadType"), "Configuration");
        assert_eq!(
            top.get("PayloadVersion").and_then(Value::as_signed_integer),
            Some(1)
        );
        assert_eq!(string(top, "PayloadOrganization"), "Example School");
        assert_eq!(
            string(top, "PayloadIdentifier"),
            "uk.org.example-school.dns.chaperone.k3x9abcdefghijklmnop2345"
        );
        assert!(is_uuid(string(top, "PayloadUUID")));
        assert!(string(top, "PayloadDisplayName").contains("ks2-ipad-14"));
        let content = top.get("PayloadContent").and_then(Value::as_array).unwrap();
        assert_eq!(content.len(), 1);
        let p = content[0].as_dictionary().unwrap();
        assert_eq!(string(p, "PayloadType"), "com.apple.dnsSettings.managed");
        assert_eq!(
            p.get("PayloadVersion").and_then(Value::as_signed_integer),
            Some(1)
        );
        assert!(is_uuid(string(p, "PayloadUUID")));
        assert_ne!(string(p, "PayloadUUID"), string(top, "PayloadUUID"));
        assert!(
            string(p, "PayloadIdentifier").starts_with(
                string(top, "PayloadIdentifier")
                    .split(".k3x9")
                    .next()
                    .unwrap()
            )
        );
        let dns = p.get("DNSSettings").and_then(Value::as_dictionary).unwrap();
        assert_eq!(string(dns, "DNSProtocol"), "HTTPS");
        assert_eq!(
            string(dns, "ServerURL"),
            "https://dns.example-school.org.uk/dns-query/k3x9abcdefghijklmnop2345"
        );
    }

    #[test]
    fn the_same_enrolment_gets_the_same_uuids_and_another_gets_others() {
        let a = profile(&cfg(), TARGET).unwrap().body;
        assert_eq!(a, profile(&cfg(), TARGET).unwrap().body);
        let other = Target {
            id: "zzzz",
            ..TARGET
        };
        assert_ne!(uuid(&["profile", TARGET.id]), uuid(&["profile", other.id]));
        assert_eq!(&uuid(&["x"])[14..15], "8", "version 8");
    }

    #[test]
    fn names_are_made_safe_for_files_and_xml() {
        let t = Target {
            name: "<Tom's> ipad/../",
            ..TARGET
        };
        assert_eq!(t.name_for_file(), "-Tom-s--ipad----");
        let out = profile(&cfg(), t).unwrap();
        let v = Value::from_reader(std::io::Cursor::new(&out.body)).unwrap();
        let top = v.as_dictionary().unwrap();
        assert!(string(top, "PayloadDisplayName").ends_with("<Tom's> ipad/../"));
    }
}
