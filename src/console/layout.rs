//! The page frame every console page shares: landmarks (header, nav, main), the
//! navigation, the stylesheet. Pages render only their `<main>` content.

use maud::{DOCTYPE, Markup, html};

use super::ConsoleUser;

/// The navigation: (path under `/console/`, label).
pub const NAV: &[(&str, &str)] = &[
    ("", "Today"),
    ("incidents", "Incidents"),
    ("requests", "Requests"),
    ("exceptions", "Exceptions"),
    ("search", "Query log"),
    ("policy", "Policy"),
    ("checks", "Checks and review"),
    ("audit", "Audit"),
];

/// A whole page: `title` in the `<title>` and `<h1>`, `body` inside `<main>`.
pub fn page(title: &str, user: Option<&ConsoleUser>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Chaperone" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "Chaperone" }
                    @if let Some(u) = user {
                        nav aria-label="Console" {
                            ul { @for (path, label) in NAV {
                                li { a href={ "/console/" (path) } { (label) } }
                            } }
                        }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(u.csrf);
                            button type="submit" { "Sign out " (u.name) }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// One small stylesheet: readable type, high contrast (WCAG AA), a focus ring, and tables
/// that scroll sideways on a phone instead of breaking the page.
const STYLE: &str = "
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#111;background:#fff}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;padding:.5rem 1rem;background:#0b3d2e;color:#fff}
header a{color:#fff}
header button{color:#fff;background:transparent;border:2px solid #fff;border-radius:4px;cursor:pointer}
nav ul{display:flex;flex-wrap:wrap;gap:.75rem;list-style:none;margin:0;padding:0}
main{padding:1rem;max-width:72rem}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;color:#000;padding:.5rem}
:focus-visible{outline:3px solid #f5a623;outline-offset:2px}
table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left;vertical-align:top}
label{display:block;margin-top:.5rem;font-weight:600}
input,select,textarea,button{font:inherit;padding:.25rem .5rem}
.cards{display:flex;flex-wrap:wrap;gap:1rem;list-style:none;padding:0}
.cards li{border:1px solid #999;padding:.75rem 1rem;min-width:12rem}
.card{border:1px solid #999;padding:.5rem 1rem;margin:1rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
td.detail{font-family:monospace;font-size:.85rem;word-break:break-all;min-width:12rem}
.error{color:#a00000;font-weight:600}.ok{color:#0b6b2e;font-weight:600}
@media print{header,nav,form{display:none}}
";

/// A rendered page as a response with `status` (maud's axum feature is not enabled).
pub fn render(status: axum::http::StatusCode, page: Markup) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::response::Html(page.into_string())).into_response()
}
