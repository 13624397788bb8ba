//! `[enrolment]`: what the enrolment outputs (Apple profile, ChromeOS policy, Android
//! Private DNS name, Windows DoH registration) tell a device about the school's public
//! encrypted DNS service. The listeners themselves are configured in `[dot]`/`[doh]`/
//! `[tls]`; these keys only describe how devices reach them from outside (through the
//! school's public name and port forwarding), which Chaperone cannot work out itself.

use serde::Deserialize;

use super::Problem;
use crate::lists::key::normalize_domain;

/// Chrome ignores a `DnsOverHttpsSalt` outside 8 to 32 characters
/// (`kMinSaltSize`/`kMaxSaltSize` in Chromium's templates URI resolver).
const SALT_LEN: std::ops::RangeInclusive<usize> = 8..=32;

/// Longest organisation name shown in an Apple profile.
const MAX_ORGANISATION: usize = 100;

/// Longest DoH URL (the ID and the ChromeOS hashes are appended to it).
const MAX_URL: usize = 512;

/// `[enrolment]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrolment {
    /// The public DoH endpoint devices use, without the ID, e.g.
    /// "https://dns.example-school.org.uk/dns-query". The ID is appended as a path
    /// segment. Default none: the profiles cannot be made until it is set.
    pub doh_url: Option<String>,
    /// The public DoT name; a device uses `{id}.{dot_name}` (a wildcard certificate for
    /// `*.{dot_name}` is needed). Default none.
    pub dot_name: Option<String>,
    /// Google Admin `DnsOverHttpsSalt` (8 to 32 characters) Chrome hashes the user and
    /// device identifiers with. Default none: the ChromeOS policy then has no
    /// identifiers, only the enrolment ID.
    pub chromeos_salt: Option<String>,
    /// The organisation named in Apple profiles. Default "Chaperone".
    pub organisation: Option<String>,
}

/// `[enrolment]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrolmentConfig {
    /// DoH URL base, https, no trailing slash.
    pub doh_url: Option<String>,
    /// DoT name, normalised.
    pub dot_name: Option<String>,
    /// ChromeOS salt.
    pub chromeos_salt: Option<String>,
    /// Organisation for Apple profiles.
    pub organisation: String,
}

pub(super) fn enrolment(raw: RawEnrolment, problems: &mut Vec<Problem>) -> EnrolmentConfig {
    let doh_url = raw.doh_url.and_then(|u| match check_doh_url(&u) {
        Ok(u) => Some(u),
        Err(m) => {
            problems.push(Problem::new("enrolment.doh_url", m));
            None
        }
    });
    let dot_name = raw.dot_name.and_then(|n| match normalize_domain(&n) {
        Ok(n) if n.contains('.') => Some(n),
        Ok(_) => {
            problems.push(Problem::new(
                "enrolment.dot_name",
                "must be a full name such as dns.example-school.org.uk",
            ));
            None
        }
        Err(e) => {
            problems.push(Problem::new("enrolment.dot_name", e.to_string()));
            None
        }
    });
    let chromeos_salt = raw.chromeos_salt.filter(|s| {
        let ok = SALT_LEN.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            problems.push(Problem::new(
                "enrolment.chromeos_salt",
                "must be 8 to 32 printable characters without spaces (Chrome ignores the policy otherwise)",
            ));
        }
        ok
    });
    let organisation = match raw.organisation {
        Some(o) if o.chars().count() > MAX_ORGANISATION || o.chars().any(char::is_control) => {
            problems.push(Problem::new(
                "enrolment.organisation",
                format!("at most {MAX_ORGANISATION} characters on one line"),
            ));
            String::new()
        }
        Some(o) if !o.trim().is_empty() => o.trim().to_owned(),
        _ => "Chaperone".to_owned(),
    };
    EnrolmentConfig {
        doh_url,
        dot_name,
        chromeos_salt,
        organisation,
    }
}

/// An https URL with a host and a path, no query or fragment; returned without a trailing
/// slash so the ID can be appended as `/{id}`.
fn check_doh_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} characters"));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must start with https:// (DoH is HTTPS only)".into());
    };
    if url.contains(['?', '#', '{', '}', ' ', '"', '<', '>', '\\'])
        || url.chars().any(char::is_control)
    {
        return Err(
            "must be a plain URL such as https://dns.example-school.org.uk/dns-query (no query, template or spaces)"
                .into(),
        );
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if normalize_domain(host_name).is_err() {
        return Err(format!("{host_name:?} is not a host name"));
    }
    if path.trim_end_matches('/').is_empty() {
        return Err("needs the path of the DoH endpoint, e.g. /dns-query".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawEnrolment) -> (EnrolmentConfig, Vec<String>) {
        let mut p = Vec::new();
        let c = enrolment(raw, &mut p);
        (c, p.into_iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn good_keys_are_normalised() {
        let (c, p) = check(RawEnrolment {
            doh_url: Some("https://dns.example-school.org.uk/dns-query/".into()),
            dot_name: Some("DNS.Example-School.org.uk.".into()),
            chromeos_salt: Some("s3cret-salt".into()),
            organisation: None,
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            c.doh_url.as_deref(),
            Some("https://dns.example-school.org.uk/dns-query")
        );
        assert_eq!(c.dot_name.as_deref(), Some("dns.example-school.org.uk"));
        assert_eq!(c.organisation, "Chaperone");
    }

    #[test]
    fn bad_keys_are_named() {
        let (_, p) = check(RawEnrolment {
            doh_url: Some("http://dns.example.org/dns-query".into()),
            dot_name: Some("localhost".into()),
            chromeos_salt: Some("short".into()),
            organisation: Some("a\nb".into()),
        });
        let keys: Vec<&str> = p.iter().map(|m| m.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "enrolment.doh_url",
                "enrolment.dot_name",
                "enrolment.chromeos_salt",
                "enrolment.organisation"
            ],
            "{p:?}"
        );
        for url in [
            "https://dns.example.org",
            "https://dns.example.org/dns-query{?dns}",
            "https://dns.example.org/q?x=1",
        ] {
            assert!(check_doh_url(url).is_err(), "{url}");
        }
        assert!(check_doh_url("https://dns.example.org:8443/dns-query").is_ok());
    }
}
