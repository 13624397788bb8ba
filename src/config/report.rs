//! `[report]`: settings of `chaperone report` (the governors' report). Named terms let a
//! governor ask for "Autumn 2026" rather than typing dates: `[[report.term]] name, from,
//! to` (dates in the school's time zone, both days included).

use serde::Deserialize;

use super::Problem;

/// Longest term name.
const MAX_NAME: usize = 100;
/// Most terms (six a year for a decade).
const MAX_TERMS: usize = 60;

/// `[report]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Named periods for `chaperone report --term NAME`.
    #[serde(default)]
    pub term: Vec<RawTerm>,
}

/// `[[report.term]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTerm {
    /// "Autumn 2026".
    pub name: String,
    /// First day, YYYY-MM-DD.
    pub from: String,
    /// Last day (included), YYYY-MM-DD.
    pub to: String,
}

/// A named report period, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTerm {
    /// Its name.
    pub name: String,
    /// First day (school time).
    pub from: jiff::civil::Date,
    /// Last day, included (school time).
    pub to: jiff::civil::Date,
}

/// Check `[report]`; problems name `report.term[i].KEY`.
pub fn report(raw: Option<RawReport>, problems: &mut Vec<Problem>) -> Vec<ReportTerm> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.term.len() > MAX_TERMS {
        problems.push(Problem::new(
            "report.term",
            format!("at most {MAX_TERMS} terms"),
        ));
    }
    let mut terms: Vec<ReportTerm> = Vec::new();
    for (i, t) in raw.term.into_iter().enumerate().take(MAX_TERMS) {
        let key = |k: &str| format!("report.term[{i}].{k}");
        let name = t.name.trim().to_owned();
        if name.is_empty() || name.len() > MAX_NAME {
            problems.push(Problem::new(key("name"), format!("1 to {MAX_NAME} bytes")));
        } else if terms.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            problems.push(Problem::new(
                key("name"),
                format!("{name:?} is used by another term"),
            ));
        }
        let date = |k: &str, v: &str, problems: &mut Vec<Problem>| {
            v.parse::<jiff::civil::Date>()
                .map_err(|_| {
                    problems.push(Problem::new(
                        key(k),
                        format!("{v:?} is not a date (YYYY-MM-DD)"),
                    ))
                })
                .ok()
        };
        let (Some(from), Some(to)) = (date("from", &t.from, problems), date("to", &t.to, problems))
        else {
            continue;
        };
        if to < from {
            problems.push(Problem::new(
                key("to"),
                format!("{to} is before from ({from})"),
            ));
            continue;
        }
        terms.push(ReportTerm { name, from, to });
    }
    terms
}
