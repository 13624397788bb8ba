//! The ChromeOS / Google Admin policy: one enrolment (a "fleet" ID, e.g. "Year 7
//! Chromebooks") serves a whole fleet, because Chrome fills `${USER_EMAIL}` and
//! `${DEVICE_DIRECTORY_ID}` into `DnsOverHttpsTemplatesWithIdentifiers` itself, hashed.
//!
//! How Chrome fills them in (Chromium, `chrome/browser/ash/net/dns_over_https/
//! templates_uri_resolver_impl.cc`, `FormatVariable`): each identifier becomes
//! `HexEncode(SHA256(salt + value))`, upper-case hex of SHA-256 over the salt followed by
//! the value, with the `DnsOverHttpsSalt` policy as the salt (8 to 32 characters, else the
//! whole policy is ignored). Device identifiers are only given to users affiliated with
//! the device's domain; others get the hash of `VALUE_NOT_AVAILABLE`. The server side,
//! mapping a hash back to a user or device, is [`crate::identity::ChromeIdentifiers`].
//!
//! `DnsOverHttpsTemplates` (plain, with the fleet ID only) is included too: Chrome on
//! other systems ignores the identifiers policy and uses it, and ChromeOS uses it when
//! the identifiers policy is not applied.

use serde_json::{Map, Value, json};

use super::{EnrolError, Output, Target, doh_url};
use crate::config::EnrolmentConfig;

/// The templated URL: `{doh_url}/{id}/${USER_EMAIL}/${DEVICE_DIRECTORY_ID}`.
pub fn template(cfg: &EnrolmentConfig, id: &str) -> Result<String, EnrolError> {
    Ok(format!(
        "{}/${{USER_EMAIL}}/${{DEVICE_DIRECTORY_ID}}",
        doh_url(cfg, id)?
    ))
}

/// The policy values as JSON (the names Google Admin and Chrome's managed policy files
/// use).
pub fn policy(cfg: &EnrolmentConfig, target: Target<'_>) -> Result<Output, EnrolError> {
    let plain = doh_url(cfg, target.id)?;
    let mut p = Map::new();
    p.insert("DnsOverHttpsMode".into(), json!("secure"));
    p.insert("DnsOverHttpsTemplates".into(), Value::String(plain));
    if let Some(salt) = &cfg.chromeos_salt {
        p.insert(
            "DnsOverHttpsTemplatesWithIdentifiers".into(),
            Value::String(template(cfg, target.id)?),
        );
        p.insert("DnsOverHttpsSalt".into(), Value::String(salt.clone()));
    }
    let mut body = serde_json::to_vec_pretty(&Value::Object(p)).unwrap_or_default();
    body.push(b'\n');
    Ok(Output {
        content_type: "application/json",
        filename: format!("{}-chromeos-policy.json", target.name_for_file()),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TARGET, cfg};
    use super::*;
    use crate::identity::{Credential, EnrolledDevice, Identities, StoredEnrolment, chrome_hash};

    fn parsed(c: &EnrolmentConfig) -> Map<String, Value> {
        let out = policy(c, TARGET).unwrap();
        assert_eq!(out.content_type, "application/json");
        match serde_json::from_slice(&out.body).unwrap() {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_policy_parses_back_with_every_field() {
        let p = parsed(&cfg());
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(p["DnsOverHttpsMode"], "secure");
        assert_eq!(
            p["DnsOverHttpsTemplates"],
            "https://dns.example-school.org.uk/dns-query/k3x9abcdefghijklmnop2345"
        );
        assert_eq!(
            p["DnsOverHttpsTemplatesWithIdentifiers"],
            "https://dns.example-school.org.uk/dns-query/k3x9abcdefghijklmnop2345/${USER_EMAIL}/${DEVICE_DIRECTORY_ID}"
        );
        assert_eq!(p["DnsOverHttpsSalt"], "salt-for-tests");
        let no_salt = parsed(&EnrolmentConfig {
            chromeos_salt: None,
            ..cfg()
        });
        assert_eq!(
            no_salt.len(),
            2,
            "no identifiers without a salt: {no_salt:?}"
        );
    }

    /// Chromium's own vectors (templates_uri_resolver_impl_unittest.cc): salt
    /// "test-salt", user "test-user@testdomain.com", directory ID
    /// "85729104-ef7a-5718d62e72ca", and an unaffiliated user's device placeholder.
    #[test]
    fn the_hash_matches_chromiums_test_vectors() {
        assert_eq!(
            chrome_hash("test-salt", "test-user@testdomain.com"),
            "EAE2DCB2164EB64B695BC555C4EC45D01C8F0DF73CCD3321E45E5B49F22A22DF"
        );
        assert_eq!(
            chrome_hash("test-salt", "85729104-ef7a-5718d62e72ca"),
            "542BD404A979AB36D342019A18FFE0691B7763C1D145F2D7119FC1DCBBB7B248"
        );
        assert_eq!(
            chrome_hash("test-salt", "VALUE_NOT_AVAILABLE"),
            "9AB270C9961EBBDF728F43396B0A25A1F198EA5F1F31719758C64E78839B928B"
        );
        assert_eq!(
            chrome_hash("", "test-user@testdomain.com"),
            "B07D2C5D119EB1881671C3B8D84CBE4FE3595C0C9ECBBF7670B18DDFDA072F66"
        );
    }

    /// The documented recipe, computed here independently of `chrome_hash`.
    #[test]
    fn the_hash_is_sha256_of_salt_then_value_in_upper_hex() {
        use sha2::{Digest, Sha256};
        let salt = "salt-for-tests";
        let value = "j.smith@pupils.example-school.org.uk";
        let digest = Sha256::digest(format!("{salt}{value}").as_bytes());
        let want: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(chrome_hash(salt, value), want);
    }

    /// What Chrome would send for a signed-in pupil on an enrolled Chromebook is mapped
    /// back to the fleet enrolment, the pupil and the Chromebook.
    #[test]
    fn a_filled_in_template_names_the_user_and_the_chromebook() {
        let c = cfg();
        let salt = c.chromeos_salt.as_deref().unwrap();
        let device = |id: &str, name: &str, group: &str| EnrolledDevice {
            id: id.into(),
            name: name.into(),
            owner: "school".into(),
            group: group.into(),
            expires: None,
        };
        let ids = Identities::default();
        ids.set_stored(
            vec![
                StoredEnrolment {
                    device: device(TARGET.id, "year-7-chromebooks", "pupils"),
                    directory_id: None,
                },
                StoredEnrolment {
                    device: device("cb17", "cb-17", "pupils"),
                    directory_id: Some("dir-17".into()),
                },
                StoredEnrolment {
                    device: device("staffcb", "staff-cb", "staff"),
                    directory_id: Some("dir-staff".into()),
                },
            ],
            &[],
        );
        ids.rebuild_chrome(Some(salt), ["j.smith@pupils.example-school.org.uk"]);
        let template = template(&c, TARGET.id).unwrap();
        let fill = |user: &str, dir: &str| {
            template
                .replace("${USER_EMAIL}", &chrome_hash(salt, user))
                .replace("${DEVICE_DIRECTORY_ID}", &chrome_hash(salt, dir))
        };
        let path_of = |url: &str| url.split("/dns-query/").nth(1).unwrap().to_owned();

        let path = path_of(&fill("j.smith@pupils.example-school.org.uk", "dir-17"));
        let named = ids.resolve(Credential::Path(&path), 0).unwrap();
        assert_eq!(
            named.user.as_deref(),
            Some("j.smith@pupils.example-school.org.uk")
        );
        assert_eq!(&*named.device.name, "cb-17");

        // An unknown user and an unaffiliated device: the fleet, nobody named.
        let path = path_of(&fill("visitor@example.org", "VALUE_NOT_AVAILABLE"));
        let named = ids.resolve(Credential::Path(&path), 0).unwrap();
        assert_eq!(named.user, None);
        assert_eq!(&*named.device.name, "year-7-chromebooks");

        // A hash never moves the query to another group.
        let path = path_of(&fill("x@example.org", "dir-staff"));
        let named = ids.resolve(Credential::Path(&path), 0).unwrap();
        assert_eq!(&*named.device.group, "pupils");

        // Unknown fleet, or a segment that is not a hash: refused.
        let bad_fleet = path.replacen(TARGET.id, "nope", 1);
        assert!(ids.resolve(Credential::Path(&bad_fleet), 0).is_none());
        let not_hash = format!("{}/not-a-hash", TARGET.id);
        assert!(ids.resolve(Credential::Path(&not_hash), 0).is_none());
        let too_many = format!("{}{}", path, "/".repeat(6));
        assert!(ids.resolve(Credential::Path(&too_many), 0).is_none());
        // Chrome strips placeholders it does not know, leaving an empty segment.
        let stripped = format!("{}//{}", TARGET.id, chrome_hash(salt, "dir-17"));
        assert_eq!(
            &*ids
                .resolve(Credential::Path(&stripped), 0)
                .unwrap()
                .device
                .name,
            "cb-17"
        );
        // Lower-case hex is accepted too.
        let lower = format!(
            "{}/{}",
            TARGET.id,
            chrome_hash(salt, "dir-17").to_lowercase()
        );
        assert_eq!(
            &*ids
                .resolve(Credential::Path(&lower), 0)
                .unwrap()
                .device
                .name,
            "cb-17"
        );
    }
}
