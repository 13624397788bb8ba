//! Android (9 and later) Private DNS: Settings → Network → Private DNS → "Private DNS
//! provider hostname" takes a DoT name, `{id}.{dot_name}`; the ID travels as the first
//! label of the TLS server name (SNI). Managed devices get the same name from the EMM's
//! `privateDnsSettings` (mode "PRIVATE_DNS_SPECIFIED_HOST").

use super::{EnrolError, Output, Target, dot_name};
use crate::config::EnrolmentConfig;

/// The hostname, on one line, so `profile --kind android` can be pasted or piped.
pub fn private_dns(cfg: &EnrolmentConfig, target: Target<'_>) -> Result<Output, EnrolError> {
    let mut body = dot_name(cfg, target.id)?.into_bytes();
    body.push(b'\n');
    Ok(Output {
        content_type: "text/plain; charset=utf-8",
        filename: format!("{}-android-private-dns.txt", target.name_for_file()),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TARGET, cfg};
    use super::*;

    #[test]
    fn the_hostname_is_the_id_under_the_dot_name() {
        let out = private_dns(&cfg(), TARGET).unwrap();
        let text = String::from_utf8(out.body).unwrap();
        assert_eq!(text, "k3x9abcdefghijklmnop2345.dns.example-school.org.uk\n");
        let first_label = text.trim().split('.').next().unwrap();
        assert!(first_label.len() <= 63 && first_label == TARGET.id);
    }
}
