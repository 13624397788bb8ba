//! Windows 11: a PowerShell script (run elevated) that registers the device's DoH
//! template for the service's addresses, with fallback to plain DNS off and automatic
//! upgrade on, and points the connected adapters at those addresses. Windows then sends
//! every query to `{doh_url}/{id}` over HTTPS, on site and off.
//!
//! Windows ties a DoH template to a server address, so the script looks the DoH host's
//! addresses up when it runs (the school's public address may change).

use super::{EnrolError, Output, Target, doh_url};
use crate::config::EnrolmentConfig;

/// A PowerShell single-quoted string literal (a quote inside is doubled).
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The host part of the DoH URL.
fn host(url: &str) -> &str {
    url.strip_prefix("https://")
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or(url)
}

/// The script for `target`.
pub fn script(cfg: &EnrolmentConfig, target: Target<'_>) -> Result<Output, EnrolError> {
    let template = doh_url(cfg, target.id)?;
    let one_line = |s: &str| s.replace(|c: char| c.is_control(), " ");
    let text = format!(
        r#"# Chaperone encrypted DNS for {name} (group {group}), enrolment {id}.
# Windows 11: run in PowerShell as administrator.
#Requires -RunAsAdministrator
$ErrorActionPreference = 'Stop'
$Template = {template}
$DohHost = {host}
$Addresses = @(Resolve-DnsName -Name $DohHost -Type A_AAAA | Where-Object {{ $_.IPAddress }} | ForEach-Object {{ $_.IPAddress }})
if ($Addresses.Count -eq 0) {{ throw "cannot find the addresses of $DohHost" }}
foreach ($Address in $Addresses) {{
    if (Get-DnsClientDohServerAddress -ServerAddress $Address -ErrorAction SilentlyContinue) {{
        Set-DnsClientDohServerAddress -ServerAddress $Address -DohTemplate $Template -AllowFallbackToUdp $false -AutoUpgrade $true
    }} else {{
        Add-DnsClientDohServerAddress -ServerAddress $Address -DohTemplate $Template -AllowFallbackToUdp $false -AutoUpgrade $true
    }}
}}
Get-NetAdapter -Physical | Where-Object {{ $_.Status -eq 'Up' }} | ForEach-Object {{
    Set-DnsClientServerAddress -InterfaceIndex $_.ifIndex -ServerAddresses $Addresses
}}
Clear-DnsClientCache
Get-DnsClientDohServerAddress | Where-Object {{ $_.DohTemplate -eq $Template }}
"#,
        name = one_line(target.name),
        group = one_line(target.group),
        id = target.id,
        template = quoted(&template),
        host = quoted(host(&template)),
    );
    Ok(Output {
        content_type: "text/plain; charset=utf-8",
        filename: format!("{}-windows-doh.ps1", target.name_for_file()),
        body: text.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TARGET, cfg};
    use super::*;

    #[test]
    fn the_script_registers_the_template_without_fallback() {
        let out = script(&cfg(), TARGET).unwrap();
        assert!(out.filename.ends_with(".ps1"));
        let text = String::from_utf8(out.body).unwrap();
        assert!(
            text.contains(
                "$Template = 'https://dns.example-school.org.uk/dns-query/k3x9abcdefghijklmnop2345'"
            ),
            "{text}"
        );
        assert!(
            text.contains("$DohHost = 'dns.example-school.org.uk'"),
            "{text}"
        );
        assert!(text.contains("Add-DnsClientDohServerAddress -ServerAddress $Address -DohTemplate $Template -AllowFallbackToUdp $false -AutoUpgrade $true"));
        assert!(text.contains(
            "Set-DnsClientServerAddress -InterfaceIndex $_.ifIndex -ServerAddresses $Addresses"
        ));
        assert!(text.starts_with("# Chaperone encrypted DNS for ks2-ipad-14 (group pupils)"));
    }

    #[test]
    fn names_cannot_break_out_of_the_comment_or_strings() {
        let t = Target {
            name: "x\nRemove-Item C:\\ -Recurse",
            ..TARGET
        };
        let text = String::from_utf8(script(&cfg(), t).unwrap().body).unwrap();
        assert!(
            !text.lines().any(|l| l.starts_with("Remove-Item")),
            "{text}"
        );
        assert_eq!(quoted("it's"), "'it''s'");
    }
}
