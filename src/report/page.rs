//! The report as HTML: maud writes it and escapes every value; the only raw markup is
//! the two charts ([`super::svg`]), which carry no text a caller sent. One inline style
//! sheet, allowed by its hash in the `Content-Security-Policy`; no script, no request to
//! any other host.

use std::sync::LazyLock;

use base64::Engine;
use chrono::Duration;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use super::{OUTCOMES, Period, Report, Totals, svg};

const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0 auto;max-width:1100px;padding:12px;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#fff}\
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .5em}\
.muted{color:#555}\
nav.periods{display:flex;flex-wrap:wrap;gap:6px;margin:.6em 0}\
nav.periods a{padding:4px 10px;border:1px solid #bbb;border-radius:14px;text-decoration:none;color:#1a1a1a}\
nav.periods a.on{background:#1565c0;color:#fff;border-color:#1565c0}\
form.custom{display:flex;flex-wrap:wrap;gap:6px;align-items:end;margin:.4em 0}\
form.custom label{display:flex;flex-direction:column;font-size:.85em}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}\
.card{border:1px solid #ddd;border-radius:8px;padding:8px 10px}\
.card b{display:block;font-size:1.5em}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;width:100%;font-size:.92em}\
th,td{padding:5px 6px;border-bottom:1px solid #e3e3e3;text-align:right;vertical-align:top;white-space:nowrap}\
th:first-child,td:first-child,td.text{text-align:left}\
td.text,td.who{min-width:7em;max-width:16em;white-space:normal;overflow-wrap:anywhere;word-break:break-word}\
@media (max-width:640px){#call-back-list thead{display:none}#call-back-list tr{display:block;padding:6px 0;border-bottom:1px solid #ccc}#call-back-list td{display:block;max-width:none;border:0;padding:1px 6px;text-align:left}}\
bdi{unicode-bidi:isolate}\
svg.chart{width:100%;height:auto;display:block}\
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:.85em;margin:.3em 0}\
.legend svg{margin-right:4px;vertical-align:-1px}\
.downloads a{margin-right:12px}\
@media print{nav.periods,form.custom,.downloads{display:none}body{max-width:none}}";

/// The page's `Content-Security-Policy`: nothing but its own inline style sheet (by
/// hash), its inline SVG, and forms back to itself.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
});

/// Where the page's links go: the query that keeps its scope (a share link's signed
/// fields, or the filters), and the downloads of the same calls.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Query pairs every link of the page keeps (besides `from` and `to`).
    pub keep: Vec<(String, String)>,
    /// The CSV of the same calls.
    pub csv: String,
    /// The workbook of the same calls.
    pub xlsx: String,
}

fn query(keep: &[(String, String)], p: &Period) -> String {
    let mut pairs: Vec<(&str, String)> =
        keep.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    pairs.push(("from", p.from.format("%Y-%m-%d").to_string()));
    pairs.push(("to", p.to.format("%Y-%m-%d").to_string()));
    format!(
        "?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |p| format!("{p:.0}%"))
}

fn duration(v: Option<i64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) => format!("{}:{:02} min", s / 60, s % 60),
    }
}

fn totals_row(name: &str, t: &Totals) -> Markup {
    html! {
        tr {
            td.text { bdi { (if name.is_empty() { "(none)" } else { name }) } }
            td { (t.calls) } td { (t.answered) } td { (t.missed) } td { (t.voicemail) }
            td { (t.qualified) } td { (t.first_time) } td { (pct(t.qualified_rate())) }
            td { (duration(t.average_talk())) }
        }
    }
}

fn table(title: &str, first: &str, rows: &[(String, Totals)]) -> Markup {
    html! {
        h2 { (title) }
        div.scroll {
            table {
                thead { tr {
                    th { (first) } th { "Calls" } th { "Answered" } th { "Missed" }
                    th { "Voicemail" } th { "Qualified" } th { "First-time" }
                    th { "Qualified rate" } th { "Avg talk" }
                } }
                tbody { @for (name, t) in rows { (totals_row(name, t)) } }
            }
        }
    }
}

/// The whole page. `today` is the current local day (for the period links).
pub fn render(r: &Report, links: &Links, today: chrono::NaiveDate) -> String {
    let presets = [
        ("This month", Period::this_month(today)),
        ("Last month", Period::last_month(today)),
        ("Last 7 days", Period::last_days(today, 7)),
        ("Last 30 days", Period::last_days(today, 30)),
        ("Last 90 days", Period::last_days(today, 90)),
    ];
    let last_day = r.period.to - Duration::days(1);
    let t = &r.totals;
    let scope = match (&r.user, &r.source) {
        (Some(u), Some(s)) => format!("{u}, {s}"),
        (Some(u), None) => u.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => "all users".to_owned(),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { "Calls – " (scope) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "Calls – " bdi { (scope) } }
                p.muted id="period" {
                    (r.period.from.format("%Y-%m-%d")) " to " (last_day.format("%Y-%m-%d"))
                    " (" (r.tz.name()) ")"
                }
                nav.periods {
                    @for (name, p) in &presets {
                        a class=(if *p == r.period { "on" } else { "" }) href=(query(&links.keep, p)) { (name) }
                    }
                }
                form.custom method="get" action="" {
                    @for (k, v) in &links.keep { input type="hidden" name=(k) value=(v); }
                    label { "From" input type="date" name="from" value=(r.period.from.format("%Y-%m-%d")) required; }
                    label { "Up to (not included)" input type="date" name="to" value=(r.period.to.format("%Y-%m-%d")) required; }
                    button type="submit" { "Show" }
                }
                div.cards id="totals" {
                    div.card { b id="total-calls" { (t.calls) } "calls" }
                    div.card { b id="total-answered" { (t.answered) } "answered" }
                    div.card { b id="total-missed" { (t.missed) } "missed or abandoned" }
                    div.card { b id="total-voicemail" { (t.voicemail) } "voicemail" }
                    div.card { b id="total-qualified" { (t.qualified) } "qualified" }
                    div.card { b id="total-first-time" { (t.first_time) } "first-time callers" }
                    div.card { b id="total-rate" { (pct(t.qualified_rate())) } "qualified rate" }
                    div.card { b id="total-talk" { (duration(t.average_talk())) } "average talk" }
                }
                (table("By source", "Source", &r.by_source))
                @if !r.by_user.is_empty() { (table("By user", "User", &r.by_user)) }
                h2 { "Calls per day" }
                div.legend {
                    @for (i, o) in OUTCOMES.iter().enumerate() {
                        span { (PreEscaped(svg::swatch(svg::COLOURS[i]))) (o) }
                    }
                }
                (PreEscaped(svg::per_day(&r.per_day)))
                h2 { "When calls come in" }
                (PreEscaped(svg::heat(&r.heat)))
                h2 id="call-back" { "Call these people back" }
                @if r.call_back.is_empty() {
                    p.muted { "Nobody is waiting for a call back in this period." }
                } @else {
                    div.scroll {
                        table id="call-back-list" {
                            thead { tr {
                                th { "When" } th { "Caller" } th { "Name" } th { "Where" }
                                th { "Source" } th { "What happened" } th { "Voicemail" }
                            } }
                            tbody {
                                @for c in &r.call_back {
                                    tr {
                                        td.text { (chrono::DateTime::from_timestamp(c.started_at, 0).unwrap_or_default().with_timezone(&r.tz).format("%Y-%m-%d %H:%M")) }
                                        td.who { a href=(format!("tel:{}", c.caller)) { bdi { (c.caller) } } }
                                        td.who { bdi { (c.caller_name) } }
                                        td.who { bdi { (c.caller_city) } @if !c.caller_state.is_empty() { ", " bdi { (c.caller_state) } } }
                                        td.text { bdi { (c.source) } }
                                        td.text { (c.outcome) @if c.calls > 1 { " (" (c.calls) " calls)" } }
                                        td.text {
                                            @if c.voicemail_url.starts_with("https://") {
                                                a href=(c.voicemail_url) rel="noreferrer" { "listen" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.downloads {
                    "The same calls as " a id="csv" href=(links.csv) { "CSV" } " or " a id="xlsx" href=(links.xlsx) { "Excel" } "."
                }
            }
        }
    };
    page.into_string()
}
