//! A Windows DHCP server's leases, exported with
//! `Get-DhcpServerv4Lease -ScopeId … | Export-Csv leases.csv`: CSV with a header row
//! (`"IPAddress","ScopeId",…,"ClientId",…,"HostName",…,"AddressState",…,"LeaseExpiryTime"`),
//! often after a `#TYPE …` line (Windows PowerShell 5.1), in UTF-8 with or without a byte
//! order mark, or UTF-16 with `-Encoding Unicode` (decoded before this parser sees it).
//!
//! `ClientId` is the MAC with dashes; `AddressState` `Active` or `ActiveReservation` is a
//! lease in force, anything else (Declined, Expired, InactiveReservation…) is not.
//! `LeaseExpiryTime` is the server's local time in its culture's format: ISO 8601,
//! `29/11/2026 08:30:00` (day first, en-GB) or `11/29/2026 8:30:00 AM` (month first,
//! when AM/PM is present, en-US); it is read in this machine's time zone, and an empty or
//! unreadable one is a lease without expiry (the export is refreshed anyway).

use std::net::IpAddr;
use std::sync::Arc;

use super::{Lease, Parsed, clean_hostname, parse_mac};

struct Columns {
    ip: usize,
    client_id: Option<usize>,
    hostname: Option<usize>,
    state: Option<usize>,
    expiry: Option<usize>,
}

/// Parse an `Export-Csv` text.
pub fn parse(text: &str, source: &Arc<str>) -> Parsed {
    let mut out = Parsed::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let Some(cols) = reader.headers().ok().and_then(columns) else {
        out.bad += usize::from(!text.trim().is_empty());
        return out;
    };
    let tz = jiff::tz::TimeZone::system();
    for row in reader.records() {
        match row.ok().and_then(|r| parse_row(&r, &cols, &tz, source)) {
            Some((ip, lease)) => out.set(ip, lease),
            None => out.bad += 1,
        }
    }
    out
}

fn columns(h: &csv::StringRecord) -> Option<Columns> {
    let find = |name: &str| h.iter().position(|c| c.eq_ignore_ascii_case(name));
    Some(Columns {
        ip: find("IPAddress")?,
        client_id: find("ClientId"),
        hostname: find("HostName"),
        state: find("AddressState"),
        expiry: find("LeaseExpiryTime"),
    })
}

fn parse_row(
    r: &csv::StringRecord,
    c: &Columns,
    tz: &jiff::tz::TimeZone,
    source: &Arc<str>,
) -> Option<(IpAddr, Option<Lease>)> {
    let field = |i: Option<usize>| i.and_then(|i| r.get(i)).filter(|s| !s.is_empty());
    let ip: IpAddr = r.get(c.ip)?.parse().ok()?;
    let active = field(c.state).is_none_or(|s| s.starts_with("Active"));
    if !active {
        return Some((ip, None));
    }
    Some((
        ip,
        Some(Lease {
            mac: field(c.client_id).and_then(parse_mac),
            hostname: field(c.hostname).and_then(clean_hostname),
            expires: field(c.expiry).and_then(|t| parse_time(t, tz)),
            source: source.clone(),
        }),
    ))
}

/// A `LeaseExpiryTime` as Unix seconds, read in `tz`.
fn parse_time(s: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
    use jiff::civil::DateTime;
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_second());
    }
    let upper = s.to_ascii_uppercase();
    let civil = if upper.ends_with("AM") || upper.ends_with("PM") {
        DateTime::strptime("%m/%d/%Y %I:%M:%S %p", &upper).ok()
    } else {
        s.parse::<DateTime>()
            .ok()
            .or_else(|| DateTime::strptime("%d/%m/%Y %H:%M:%S", s).ok())
            .or_else(|| DateTime::strptime("%d/%m/%Y %H:%M", s).ok())
    }?;
    Some(civil.to_zoned(tz.clone()).ok()?.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = "#TYPE Microsoft.Management.Infrastructure.CimInstance#root/Microsoft/Windows/DHCP/DhcpServerv4Lease\r\n\
\"IPAddress\",\"ScopeId\",\"AddressState\",\"ClientId\",\"ClientType\",\"Description\",\"DnsRR\",\"DnsRegistration\",\"HostName\",\"LeaseExpiryTime\",\"ServerIP\"\r\n\
\"10.20.1.14\",\"10.20.0.0\",\"Active\",\"02-00-5e-10-00-0e\",\"Dhcp\",\"\",\"A\",\"Complete\",\"ks2-laptop-14.ad.school.internal\",\"29/11/2026 08:30:00\",\"10.20.0.2\"\r\n\
\"10.20.1.15\",\"10.20.0.0\",\"ActiveReservation\",\"02-00-5e-10-00-0f\",\"Both\",\"Printer\",\"A\",\"Complete\",\"printer-1\",\"\",\"10.20.0.2\"\r\n\
\"10.20.1.16\",\"10.20.0.0\",\"Declined\",\"02-00-5e-10-00-10\",\"Dhcp\",\"\",\"A\",\"Complete\",\"declined\",\"\",\"10.20.0.2\"\r\n\
\"10.20.1.17\",\"10.20.0.0\",\"Active\",\"02-00-5e-10-00-11\",\"Dhcp\",\"\",\"A\",\"Complete\",\"us-laptop\",\"11/29/2026 8:30:00 AM\",\"10.20.0.2\"\r\n\
\"not an ip\",\"10.20.0.0\",\"Active\",\"02-00-5e-10-00-11\",\"Dhcp\",\"\",\"A\",\"Complete\",\"x\",\"\",\"10.20.0.2\"\r\n";

    #[test]
    fn an_export_with_type_line_and_bom() {
        let with_bom = format!("\u{feff}{EXPORT}");
        let text = super::super::decode_text(with_bom.as_bytes());
        let p = parse(&text, &Arc::from("leases.csv"));
        assert_eq!(p.bad, 1);
        let get = |ip: &str| p.leases.get(&ip.parse::<IpAddr>().unwrap());
        let l = get("10.20.1.14").unwrap();
        assert_eq!(
            l.hostname.as_deref(),
            Some("ks2-laptop-14.ad.school.internal")
        );
        assert_eq!(l.mac, Some([2, 0, 0x5e, 0x10, 0, 0x0e]));
        assert!(l.expires.is_some());
        let printer = get("10.20.1.15").unwrap();
        assert_eq!(
            (printer.hostname.as_deref(), printer.expires),
            (Some("printer-1"), None)
        );
        assert!(get("10.20.1.16").is_none());
        assert!(get("10.20.1.17").unwrap().expires.is_some());
    }

    #[test]
    fn expiry_times_in_each_culture_agree() {
        let tz = jiff::tz::TimeZone::UTC;
        let want = Some(1_795_941_000);
        assert_eq!(parse_time("29/11/2026 08:30:00", &tz), want);
        assert_eq!(parse_time("11/29/2026 8:30:00 AM", &tz), want);
        assert_eq!(parse_time("2026-11-29T08:30:00", &tz), want);
        assert_eq!(parse_time("2026-11-29T08:30:00Z", &tz), want);
        assert_eq!(parse_time("yesterday", &tz), None);
    }
}
