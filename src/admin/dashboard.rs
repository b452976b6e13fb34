//! The dashboard's pages: server-rendered HTML with inline SVG charts, readable with JavaScript
//! off. Pure: each function takes the figures (already read from the store, the pools or a
//! report) and returns markup; `admin` does the reading and the routing.
//!
//! Figures a test or a person may want to check against the API carry `data-figure="<key>"`.

use std::fmt::Write;

use serde_json::Value;

use super::DAY_MS;
use super::charts::{self, Series};
use super::reports::day_of;
use crate::clock::rfc3339;
use crate::pool::Confidence;
use crate::store::CallRecord;
use crate::visitor::classify::Channel;

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The date range (and site) every page is filtered by: whole UTC days, `to` inclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub from_day: String,
    pub to_day: String,
    pub site: Option<String>,
    /// Inclusive, milliseconds.
    pub from_ms: i64,
    /// Exclusive: the end of `to_day`.
    pub to_ms: i64,
    /// Days (and the reports' hours and weekdays) are at this UTC offset, minutes (`tz`).
    pub tz_offset_min: i32,
}

impl Range {
    /// From the query string; the default is the 30 days ending today. A malformed date is an
    /// error message (the page shows it) rather than a silently different range.
    pub fn from_query(query: &str, now_ms: i64) -> Result<Range, String> {
        let mut from = None;
        let mut to = None;
        let mut site = None;
        let mut tz = 0;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "from" if !v.is_empty() => from = Some(v.into_owned()),
                "to" if !v.is_empty() => to = Some(v.into_owned()),
                "site" if !v.is_empty() => site = Some(v.into_owned()),
                "tz" if !v.is_empty() => {
                    tz = super::reports::tz_of(&v)?;
                }
                _ => {}
            }
        }
        // A date is a local day: its midnight at the offset.
        let shift = i64::from(tz) * 60_000;
        let day = |s: Option<String>, default: i64| -> Result<i64, String> {
            match s {
                None => Ok(default),
                Some(s) => match super::parse_time(&s) {
                    Some(ms) if super::is_date(&s) => Ok(ms),
                    _ => Err(format!("bad date {s:?}: use YYYY-MM-DD")),
                },
            }
        };
        let today = (now_ms + shift).div_euclid(DAY_MS) * DAY_MS;
        let to_ms = day(to, today)?;
        let from_ms = day(from, to_ms - 29 * DAY_MS)?;
        if from_ms > to_ms {
            return Err("the range starts after it ends".into());
        }
        Ok(Range {
            from_day: day_of(from_ms, 0),
            to_day: day_of(to_ms, 0),
            site,
            from_ms: from_ms - shift,
            to_ms: to_ms + DAY_MS - shift,
            tz_offset_min: tz,
        })
    }

    /// The range as a query string, for links that keep it.
    pub fn query(&self) -> String {
        let q = format!("from={}&to={}", self.from_day, self.to_day);
        self.with_site_and_tz(q)
    }

    /// `q` with the range's site and UTC offset, as both queries carry them.
    fn with_site_and_tz(&self, mut q: String) -> String {
        if let Some(s) = &self.site {
            let _ = write!(q, "&site={}", enc(s));
        }
        if self.tz_offset_min != 0 {
            let _ = write!(q, "&tz={}", enc(&super::reports::format_tz(self.tz_offset_min)));
        }
        q
    }

    /// The same range as the API's `from`/`to` (RFC 3339 instants).
    pub fn api_query(&self) -> String {
        let q = format!(
            "from={}&to={}",
            rfc3339(self.from_ms.max(0) as u64),
            rfc3339(self.to_ms.max(0) as u64)
        );
        self.with_site_and_tz(q)
    }

    /// The range as the reports read it (days, hours and weekdays at `tz`).
    pub fn period(&self) -> super::reports::Period {
        super::reports::Period {
            from: Some(self.from_ms),
            to: Some(self.to_ms),
            site: self.site.clone(),
            tz_offset_min: self.tz_offset_min,
            ..Default::default()
        }
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1a202c;background:#f7fafc}\
header{background:#1a365d;color:#fff;padding:.6rem 1.2rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}\
header a{color:#e2e8f0;text-decoration:none;margin-right:.8rem}header a.on{color:#fff;font-weight:600;text-decoration:underline}\
header form{margin-left:auto}main{padding:1rem 1.2rem;max-width:1100px}\
form.range{background:#fff;border:1px solid #e2e8f0;padding:.5rem .8rem;margin-bottom:1rem;display:flex;gap:.8rem;flex-wrap:wrap;align-items:end}\
label{font-size:.85rem;color:#4a5568}input,select{font:inherit;padding:.2rem .3rem}\
table{border-collapse:collapse;background:#fff;width:100%;margin:.5rem 0 1.5rem}\
th,td{border-bottom:1px solid #e2e8f0;padding:.35rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin-bottom:1rem}\
.card{background:#fff;border:1px solid #e2e8f0;padding:.6rem 1rem;min-width:9rem}\
.card b{display:block;font-size:1.6rem}.card span{color:#4a5568;font-size:.85rem}\
svg.chart{width:100%;max-width:760px;height:auto;background:#fff;border:1px solid #e2e8f0}\
.legend span{margin-right:1rem;font-size:.85rem}.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}\
.muted{color:#718096;font-size:.85rem}.err{background:#fed7d7;padding:.5rem;border:1px solid #feb2b2}\
dl{display:grid;grid-template-columns:12rem 1fr;gap:.2rem 1rem;background:#fff;padding:.8rem;border:1px solid #e2e8f0}\
dt{color:#4a5568}dd{margin:0}.exact{color:#276749}.none{color:#9b2c2c}";

/// One entry of the navigation bar: (path, label).
pub const NAV: &[(&str, &str)] = &[("/", "Overview"), ("/calls", "Calls"), ("/pools", "Pools")];

/// The page frame: navigation, the range form (with `sites` to choose from), and `body`.
pub fn layout(
    title: &str,
    active: &str,
    range: Option<&Range>,
    sites: &[String],
    reports: &[&str],
    body: &str,
) -> String {
    let mut nav = String::new();
    let q = range.map(|r| format!("?{}", r.query())).unwrap_or_default();
    for (path, label) in NAV {
        let on = if *path == active { " class=\"on\"" } else { "" };
        let _ = write!(nav, r#"<a href="{path}{q}"{on}>{label}</a>"#);
    }
    // The overview is the dashboard's home page, already in `NAV`.
    for name in reports.iter().filter(|n| **n != "overview") {
        let path = format!("/reports/{name}");
        let on = if path == active { " class=\"on\"" } else { "" };
        let _ = write!(nav, r#"<a href="{path}{q}"{on}>{}</a>"#, esc(&nav_label(name)));
    }
    let form = match range {
        Some(r) => {
            let mut opts = String::from(r#"<option value="">all sites</option>"#);
            for s in sites {
                let sel = if r.site.as_deref() == Some(s) { " selected" } else { "" };
                let _ = write!(opts, r#"<option{sel}>{}</option>"#, esc(s));
            }
            format!(
                r#"<form class="range" method="get"><label>From<br><input type="date" name="from" value="{}"></label><label>To<br><input type="date" name="to" value="{}"></label><label>Site<br><select name="site">{opts}</select></label><label>UTC offset<br><input name="tz" size="6" placeholder="+00:00" value="{}"></label><button>Show</button></form>"#,
                r.from_day,
                r.to_day,
                super::reports::format_tz(r.tz_offset_min)
            )
        }
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{} · telswap</title><style>{CSS}</style></head>
<body><header><strong>telswap</strong><nav>{nav}</nav><form method="post" action="/logout"><button>Log out</button></form></header>
<main><h1>{}</h1>{form}{body}</main></body></html>
"#,
        esc(title),
        esc(title)
    )
}

/// A report's name as a menu label: `channels` -> `Channels`; an acronym stays one (`roi` -> `ROI`).
fn nav_label(name: &str) -> String {
    match name {
        "roi" => "ROI".into(),
        _ => title_case(name),
    }
}

pub fn title_case(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub fn login_page(error: Option<&str>, next: &str) -> String {
    let err = error
        .map(|e| format!(r#"<p class="err">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · telswap</title><style>{CSS}</style></head>
<body><main><h1>telswap</h1>{err}<form method="post" action="/login">
<input type="hidden" name="next" value="{}">
<label>Admin token<br><input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button>Log in</button></form>
<p class="muted">The token is <code>TELSWAP_ADMIN_TOKEN</code>; <code>telswap demo</code> prints it.</p></main></body></html>
"#,
        esc(next)
    )
}

pub fn error_body(message: &str) -> String {
    format!(r#"<p class="err">{}</p>"#, esc(message))
}

/// A report value formatted by its column kind.
pub fn cell(v: &Value, kind: &str) -> String {
    match (v, kind) {
        (Value::Null, _) => "–".into(),
        (Value::Number(n), "percent") => format!("{:.1}%", n.as_f64().unwrap_or(0.0) * 100.0),
        (Value::Number(n), "money") => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        (Value::Number(n), "seconds") => {
            let s = n.as_f64().unwrap_or(0.0).round() as i64;
            format!("{}:{:02}", s / 60, s % 60)
        }
        (Value::Number(n), _) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        },
        (Value::String(s), _) if s.is_empty() => "(none)".into(),
        (Value::String(s), _) => s.clone(),
        (Value::Bool(b), _) => if *b { "yes" } else { "no" }.into(),
        (other, _) => other.to_string(),
    }
}

fn columns(report: &Value) -> Vec<(String, String, String)> {
    report
        .get("columns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("key"), s("label"), s("kind"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rows(report: &Value) -> &[Value] {
    report
        .get("rows")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_numeric(kind: &str) -> bool {
    matches!(kind, "count" | "money" | "percent" | "seconds")
}

/// A report's rows as a table, with its totals as the last row.
pub fn report_table(report: &Value) -> String {
    let cols = columns(report);
    // Money says its currency; values in several are added as numbers, and say so.
    let currency = match report.get("currency").and_then(Value::as_str) {
        Some("mixed") => " (mixed currencies, added as numbers)".to_string(),
        Some(code) => format!(" ({code})"),
        None => String::new(),
    };
    let mut out = String::from("<table><thead><tr>");
    for (_, label, kind) in &cols {
        let class = if is_numeric(kind) { " class=\"n\"" } else { "" };
        let unit = if kind == "money" { currency.as_str() } else { "" };
        let _ = write!(out, "<th{class}>{}{}</th>", esc(label), esc(unit));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows(report) {
        out.push_str("<tr>");
        for (key, _, kind) in &cols {
            let class = if is_numeric(kind) { " class=\"n\"" } else { "" };
            let v = row.get(key).unwrap_or(&Value::Null);
            let _ = write!(out, "<td{class}>{}</td>", esc(&cell(v, kind)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody>");
    if let Some(totals) = report
        .get("totals")
        .and_then(Value::as_object)
        .filter(|t| !t.is_empty())
    {
        out.push_str("<tfoot><tr>");
        for (i, (key, _, kind)) in cols.iter().enumerate() {
            let class = if is_numeric(kind) { " class=\"n\"" } else { "" };
            let text = match totals.get(key) {
                Some(v) => esc(&cell(v, kind)),
                None if i == 0 => "<b>Total</b>".into(),
                None => String::new(),
            };
            let _ = write!(out, "<th{class} data-total=\"{}\">{text}</th>", esc(key));
        }
        out.push_str("</tr></tfoot>");
    }
    out.push_str("</table>");
    out
}

/// How a total that no column has (`answer_rate`, `returning_share`, `spend`) is labelled and
/// written: `Answer rate`, as a percentage, as the columns of the same name are.
fn total_label_and_kind(key: &str) -> (String, String) {
    let kind = if key.ends_with("_rate") || key.ends_with("share") {
        "percent"
    } else if key == "spend" || key.ends_with("value") {
        "money"
    } else if key.ends_with("duration") {
        "seconds"
    } else {
        ""
    };
    let mut label = key.replace('_', " ");
    if let Some(first) = label.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    (label, kind.to_string())
}

/// The totals of a report as cards (`data-figure` = the total's key).
pub fn total_cards(report: &Value) -> String {
    let cols = columns(report);
    let Some(totals) = report.get("totals").and_then(Value::as_object) else {
        return String::new();
    };
    let mut out = String::from(r#"<div class="cards">"#);
    for (key, v) in totals {
        let (label, kind) = cols
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, l, kind)| (l.clone(), kind.clone()))
            .unwrap_or_else(|| total_label_and_kind(key));
        if !v.is_number() {
            continue;
        }
        let _ = write!(
            out,
            r#"<div class="card"><b data-figure="{}">{}</b><span>{}</span></div>"#,
            esc(key),
            esc(&cell(v, &kind)),
            esc(&label)
        );
    }
    out.push_str("</div>");
    out
}

/// A report page: question, chart, table, JSON link.
pub fn report_body(report: &Value, api_link: &str) -> String {
    let mut out = String::new();
    if let Some(q) = report.get("question").and_then(Value::as_str) {
        let _ = write!(out, r#"<p class="muted">{}</p>"#, esc(q));
    }
    out.push_str(&total_cards(report));
    out.push_str(&report_chart(report));
    out.push_str(&report_table(report));
    let _ = write!(
        out,
        r#"<p class="muted">As JSON: <a href="{}">{}</a></p>"#,
        esc(api_link),
        esc(api_link)
    );
    out
}

/// The chart that suits a report: a heatmap for `times`, bars over days for `overview`, else
/// horizontal bars of the first numeric column by the first text column.
pub fn report_chart(report: &Value) -> String {
    let title = report.get("title").and_then(Value::as_str).unwrap_or("");
    if let Some(heat) = report.get("heatmap").and_then(Value::as_array) {
        let cells: Vec<Vec<f64>> = heat
            .iter()
            .map(|r| {
                r.as_array()
                    .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
                    .unwrap_or_default()
            })
            .collect();
        let names: Vec<String> = report
            .get("weekdays")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_else(|| {
                ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
        return charts::heatmap(title, &names, &cells);
    }
    let cols = columns(report);
    let rows = rows(report);
    if rows.is_empty() {
        return r#"<p class="muted" data-empty>Nothing to show for this range.</p>"#.into();
    }
    let label_key = cols.iter().find(|c| !is_numeric(&c.2)).map(|c| c.0.clone());
    let value_key = cols
        .iter()
        .find(|c| c.2 == "count")
        .or_else(|| cols.iter().find(|c| is_numeric(&c.2)));
    let (Some(label_key), Some((value_key, value_label, _))) = (label_key, value_key) else {
        return String::new();
    };
    let label_of = |r: &Value| cell(r.get(&label_key).unwrap_or(&Value::Null), "text");
    let value_of = |r: &Value, k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    if report.get("report").and_then(Value::as_str) == Some("overview") {
        let labels: Vec<String> = rows.iter().map(label_of).collect();
        let palette = ["#2b6cb0", "#38a169", "#d69e2e", "#805ad5"];
        let series: Vec<Series> = cols
            .iter()
            .filter(|c| c.2 == "count")
            .take(4)
            .zip(palette)
            .map(|(c, color)| Series {
                name: &c.1,
                color,
                values: rows.iter().map(|r| value_of(r, &c.0)).collect(),
            })
            .collect();
        let mut out = charts::bars(title, &labels, &series);
        if let Some(money) = cols.iter().find(|c| c.2 == "money") {
            out.push_str(&charts::bars(
                &money.1,
                &labels,
                &[Series {
                    name: &money.1,
                    color: "#38a169",
                    values: rows.iter().map(|r| value_of(r, &money.0)).collect(),
                }],
            ));
        }
        return out;
    }
    let top: Vec<(String, f64)> = rows
        .iter()
        .take(15)
        .map(|r| (label_of(r), value_of(r, value_key)))
        .collect();
    charts::hbars(&format!("{title}: {value_label}"), &top)
}

fn attr<'a>(c: &'a CallRecord, key: &str) -> Option<&'a str> {
    c.attribution.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The call log.
pub fn calls_table(calls: &[CallRecord], range: &Range) -> String {
    let mut out = format!(
        r#"<p><span data-figure="calls">{}</span> calls · <a href="/api/export/calls.csv?{}">CSV</a> · <a href="/api/export/google-ads.csv?{}">Google Ads conversions</a> · <a href="/api/export/microsoft-ads.csv?{}">Microsoft Ads conversions</a></p>"#,
        calls.len(),
        esc(&range.api_query()),
        esc(&range.api_query()),
        esc(&range.api_query())
    );
    out.push_str("<table><thead><tr><th>Started (UTC)</th><th>Caller</th><th>Tracking number</th><th>Channel</th><th>Source / medium</th><th>Campaign</th><th>Keyword</th><th class=\"n\">Duration</th><th>Status</th><th>Confidence</th><th>Outcome</th></tr></thead><tbody>");
    for c in calls {
        let when = rfc3339(c.started_at.max(0) as u64).replace('T', " ").replace('Z', "");
        let dur = c
            .duration_s
            .map(|d| format!("{}:{:02}", d / 60, d % 60))
            .unwrap_or_else(|| "–".into());
        let outcome = c
            .outcome
            .as_ref()
            .map(|o| match o.value {
                Some(v) => format!("{} {v:.2} {}", o.kind, o.currency.as_deref().unwrap_or("")),
                None => o.kind.clone(),
            })
            .unwrap_or_default();
        let caller = if c.returning_caller {
            format!("{} (returning)", c.caller)
        } else {
            c.caller.clone()
        };
        let _ = write!(
            out,
            r#"<tr data-call="{id}"><td><a href="/calls/{id}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td class="n">{dur}</td><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
            esc(&when),
            esc(&caller),
            esc(&c.tracking_number),
            esc(attr(c, "channel").unwrap_or("–")),
            esc(attr(c, "source").unwrap_or("–")),
            esc(attr(c, "medium").unwrap_or("–")),
            esc(attr(c, "campaign").unwrap_or("–")),
            esc(attr(c, "term").unwrap_or("–")),
            esc(&c.status),
            esc(&c.confidence),
            esc(&c.confidence),
            esc(&outcome),
            id = esc(&c.id),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Extra filters of the call log (beyond the range).
#[derive(Debug, Default, Clone)]
pub struct CallFilters {
    pub channel: Option<String>,
    pub confidence: Option<String>,
    pub status: Option<String>,
    pub q: Option<String>,
}

impl CallFilters {
    /// The filters in a query; a channel or confidence that no call can have is an error, as
    /// a bad date is, rather than an empty list that looks like no calls. A status is the
    /// provider's word, so any is taken.
    pub fn from_query(query: &str) -> Result<CallFilters, String> {
        let mut f = CallFilters::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            match k.as_ref() {
                "channel" => f.channel = v,
                "confidence" => f.confidence = v,
                "status" => f.status = v,
                "q" => f.q = v,
                _ => {}
            }
        }
        if let Some(c) = f.channel.as_deref().filter(|c| Channel::parse(c).is_none()) {
            return Err(format!("{c:?} is not a channel; use one of {}", Channel::names()));
        }
        let confidences = Confidence::ALL.map(Confidence::as_str);
        if let Some(c) = f.confidence.as_deref().filter(|c| !confidences.contains(c)) {
            return Err(format!(
                "{c:?} is not a confidence; use one of {}",
                confidences.join(", ")
            ));
        }
        Ok(f)
    }

    pub fn keep(&self, c: &CallRecord) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        eq(&self.channel, attr(c, "channel"))
            && eq(&self.confidence, Some(&c.confidence))
            && eq(&self.status, Some(&c.status))
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                c.caller.contains(&q)
                    || c.tracking_number.contains(&q)
                    || ["campaign", "term", "source", "landing_page"]
                        .iter()
                        .any(|k| attr(c, k).is_some_and(|v| v.to_lowercase().contains(&q)))
            })
    }

    /// The filter form; the range travels in hidden fields.
    pub fn form(&self, range: &Range) -> String {
        let opt = |name: &str, label: &str, values: &[&str], cur: &Option<String>| {
            let mut s = format!(r#"<label>{label}<br><select name="{name}"><option value="">any</option>"#);
            for v in values {
                let sel = if cur.as_deref() == Some(v) { " selected" } else { "" };
                let _ = write!(s, "<option{sel}>{v}</option>");
            }
            s.push_str("</select></label>");
            s
        };
        let mut out = String::from(r#"<form class="range" method="get">"#);
        let _ = write!(
            out,
            r#"<input type="hidden" name="from" value="{}"><input type="hidden" name="to" value="{}">"#,
            range.from_day, range.to_day
        );
        if let Some(s) = &range.site {
            let _ = write!(out, r#"<input type="hidden" name="site" value="{}">"#, esc(s));
        }
        let _ = write!(
            out,
            r#"<input type="hidden" name="tz" value="{}">"#,
            super::reports::format_tz(range.tz_offset_min)
        );
        out.push_str(&opt(
            "channel",
            "Channel",
            &Channel::ALL.map(Channel::as_str),
            &self.channel,
        ));
        out.push_str(&opt(
            "confidence",
            "Confidence",
            &Confidence::ALL.map(Confidence::as_str),
            &self.confidence,
        ));
        out.push_str(&opt(
            "status",
            "Status",
            &[
                "completed",
                "in-progress",
                "ringing",
                "busy",
                "no-answer",
                "failed",
                "canceled",
            ],
            &self.status,
        ));
        let _ = write!(
            out,
            r#"<label>Search<br><input name="q" value="{}" placeholder="caller, campaign, keyword"></label><button>Filter</button></form>"#,
            esc(self.q.as_deref().unwrap_or(""))
        );
        out
    }
}

/// One call's journey.
pub fn call_page(c: &CallRecord) -> String {
    let a = &c.attribution;
    let s = |k: &str| a.get(k).map(|v| cell(v, "text")).unwrap_or_else(|| "–".into());
    let mut out = String::from("<dl>");
    let mut row = |k: &str, v: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    row("Started (UTC)", esc(&rfc3339(c.started_at.max(0) as u64)));
    row(
        "Caller",
        esc(&format!(
            "{}{}",
            c.caller,
            if c.returning_caller {
                format!(" (returning: {} earlier calls)", c.earlier_calls)
            } else {
                " (first call)".into()
            }
        )),
    );
    let location: Vec<&str> = [&c.caller_city, &c.caller_state, &c.caller_country]
        .into_iter()
        .filter_map(|x| x.as_deref())
        .collect();
    row(
        "Caller location",
        esc(&if location.is_empty() {
            "–".into()
        } else {
            location.join(", ")
        }),
    );
    row("Site", esc(&c.site));
    row("Tracking number", esc(&c.tracking_number));
    row(
        "Status",
        esc(&format!(
            "{}{}",
            c.status,
            c.duration_s.map(|d| format!(", {d} s")).unwrap_or_default()
        )),
    );
    row(
        "Confidence",
        format!(
            r#"<b class="{}" data-figure="confidence">{}</b>"#,
            esc(&c.confidence),
            esc(&c.confidence)
        ),
    );
    row("Channel", esc(&s("channel")));
    row("Source / medium", esc(&format!("{} / {}", s("source"), s("medium"))));
    row("Campaign", esc(&s("campaign")));
    row("Keyword (term)", esc(&s("term")));
    row("Content", esc(&s("content")));
    row("Landing page", esc(&s("landing_page")));
    row("Referrer", esc(&s("referrer")));
    row("Device", esc(&s("device")));
    let ids: Vec<String> = ["gclid", "gbraid", "wbraid", "msclkid", "fbclid"]
        .iter()
        .filter_map(|k| a.get(*k).and_then(Value::as_str).map(|v| format!("{k}={v}")))
        .chain(
            a.get("click_ids")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", cell(v, "text"))),
        )
        .collect();
    row(
        "Click ids",
        esc(&if ids.is_empty() { "–".into() } else { ids.join(" · ") }),
    );
    let params: Vec<String> = a
        .get("params")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", cell(v, "text")))
        .collect();
    row(
        "Captured parameters",
        esc(&if params.is_empty() {
            "–".into()
        } else {
            params.join(" · ")
        }),
    );
    let touches = a.get("touches").and_then(Value::as_u64).unwrap_or(0);
    let first = a
        .get("first_touch")
        .map(|f| {
            format!(
                "first: {} ({} / {}) at {}",
                cell(f.get("channel").unwrap_or(&Value::Null), "text"),
                cell(f.get("source").unwrap_or(&Value::Null), "text"),
                cell(f.get("medium").unwrap_or(&Value::Null), "text"),
                cell(f.get("at").unwrap_or(&Value::Null), "text"),
            )
        })
        .unwrap_or_default();
    row(
        "Touches",
        format!(
            r#"<span data-figure="touches">{touches}</span> {}"#,
            esc(&if first.is_empty() {
                String::new()
            } else {
                format!("· {first} · deciding: {}", s("channel"))
            })
        ),
    );
    // A source number's call: who was shown the number before it rang.
    if let Some(shown) = a.get("shown_to") {
        let rows = shown
            .get("sources")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut seen: Vec<String> = rows
            .iter()
            .map(|r| {
                let f = |k: &str| cell(r.get(k).unwrap_or(&Value::Null), "text");
                format!(
                    "{} ({}): {} visitors, last at {}",
                    f("channel"),
                    f("source"),
                    f("visitors"),
                    f("last_at")
                )
            })
            .collect();
        match shown.get("more_sources").and_then(Value::as_u64) {
            Some(more) if more > 0 => seen.push(format!("{more} more sources")),
            _ => {}
        }
        if shown.get("complete") == Some(&Value::Bool(false)) {
            seen.push("(not every visitor is known)".into());
        }
        row("Number shown to", esc(&seen.join(" · ")));
    }
    row(
        "Recording",
        match &c.recording_url {
            Some(u) => format!(r#"<a href="{}" rel="noreferrer">listen</a>"#, esc(u)),
            None => "–".into(),
        },
    );
    out.push_str("</dl><h2>Pages</h2>");
    let pages = a
        .get("pages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if pages.is_empty() {
        out.push_str(r#"<p class="muted">No page views known for this call.</p>"#);
    } else {
        out.push_str("<table><thead><tr><th>At (UTC)</th><th>Page</th></tr></thead><tbody>");
        for p in pages {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&cell(p.get("at").unwrap_or(&Value::Null), "text")),
                esc(&cell(p.get("path").unwrap_or(&Value::Null), "text"))
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Outcome</h2>");
    if let Some(o) = &c.outcome {
        let _ = write!(
            out,
            r#"<p>Recorded: <b data-figure="outcome">{}</b>{} at {}</p>"#,
            esc(&o.kind),
            esc(&o
                .value
                .map(|v| format!(", {v:.2} {}", o.currency.as_deref().unwrap_or("")))
                .unwrap_or_default()),
            esc(&rfc3339(o.at.max(0) as u64))
        );
        let _ = write!(
            out,
            r#"<form class="range" method="post" action="/calls/{}/outcome"><input type="hidden" name="remove" value="1"><button>Remove outcome</button></form>"#,
            esc(&c.id)
        );
    }
    let o = c.outcome.as_ref();
    let _ = write!(
        out,
        r#"<form class="range" method="post" action="/calls/{}/outcome"><label>Kind<br><select name="kind">{}</select></label><label>Value<br><input name="value" inputmode="decimal" value="{}"></label><label>Currency<br><input name="currency" size="3" value="{}"></label><button>Save outcome</button></form>"#,
        esc(&c.id),
        ["sale", "lead", "booking", "not_a_lead", "spam"]
            .iter()
            .map(|k| {
                let sel = if o.map(|o| o.kind.as_str()) == Some(*k) {
                    " selected"
                } else {
                    ""
                };
                format!("<option{sel}>{k}</option>")
            })
            .collect::<String>(),
        o.and_then(|o| o.value).map(|v| format!("{v}")).unwrap_or_default(),
        esc(o.and_then(|o| o.currency.as_deref()).unwrap_or("USD"))
    );
    out
}

/// One pool on the pools page, with its sizing.
pub struct PoolView {
    pub site: String,
    pub name: String,
    pub mode: &'static str,
    pub size: usize,
    pub leased: usize,
    pub peak_leased: usize,
    pub exhausted: u64,
    pub handed_over: u64,
    pub sizing: Option<super::sizing::Sizing>,
    /// (time label, leased, exhaustion events in the interval)
    pub series: Vec<(String, f64, f64)>,
}

pub fn pools_page(pools: &[PoolView]) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>Site</th><th>Pool</th><th>Mode</th><th class=\"n\">Size</th><th class=\"n\">Leased now</th><th class=\"n\">Peak leased</th><th class=\"n\">Exhausted (page views)</th><th class=\"n\">Recommended size</th></tr></thead><tbody>",
    );
    for p in pools {
        let rec = p
            .sizing
            .as_ref()
            .map(|s| s.recommended.to_string())
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            out,
            r#"<tr data-pool="{}/{}"><td>{}</td><td>{}</td><td>{}</td><td class="n" data-figure="size">{}</td><td class="n" data-figure="leased">{}</td><td class="n" data-figure="peak_leased">{}</td><td class="n" data-figure="exhausted">{}</td><td class="n" data-figure="recommended_size">{rec}</td></tr>"#,
            esc(&p.site),
            esc(&p.name),
            esc(&p.site),
            esc(&p.name),
            p.mode,
            p.size,
            p.leased,
            p.peak_leased,
            p.exhausted
        );
    }
    out.push_str("</tbody></table>");
    for p in pools {
        let _ = write!(out, "<h2>{} / {}</h2>", esc(&p.site), esc(&p.name));
        if p.series.len() > 1 {
            let labels: Vec<String> = p.series.iter().map(|s| s.0.clone()).collect();
            out.push_str(&charts::lines(
                "Leased numbers and exhaustion events",
                &labels,
                &[
                    Series {
                        name: "leased",
                        color: "#2b6cb0",
                        values: p.series.iter().map(|s| s.1).collect(),
                    },
                    Series {
                        name: "exhaustion events",
                        color: "#c53030",
                        values: p.series.iter().map(|s| s.2).collect(),
                    },
                ],
            ));
        } else {
            out.push_str(
                r#"<p class="muted">The occupancy chart fills in as the server runs (one sample a minute).</p>"#,
            );
        }
        match &p.sizing {
            Some(s) => out.push_str(&s.explain(p.size)),
            None if p.mode == "source" => out.push_str(
                r#"<p class="muted">A source pool keeps one number per traffic source: it needs as many numbers as sources it serves, whatever the traffic.</p>"#,
            ),
            None => out.push_str(r#"<p class="muted">No leases in the last 7 days to size this pool from.</p>"#),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn range_defaults_and_errors() {
        let now = super::super::parse_time("2026-11-27T14:00:00Z").unwrap();
        let r = Range::from_query("", now).unwrap();
        assert_eq!((r.from_day.as_str(), r.to_day.as_str()), ("2026-10-29", "2026-11-27"));
        assert_eq!(r.to_ms - r.from_ms, 30 * DAY_MS);
        let r = Range::from_query("from=2026-11-01&to=2026-11-02&site=a%20b", now).unwrap();
        assert_eq!(r.to_ms - r.from_ms, 2 * DAY_MS);
        assert_eq!(r.query(), "from=2026-11-01&to=2026-11-02&site=a+b");
        assert!(Range::from_query("from=yesterday", now).is_err());
        assert!(Range::from_query("from=2026-11-03&to=2026-11-02", now).is_err());
        // Local days at an offset: New York's 1 November starts at 05:00 UTC, and the reports
        // read hours and weekdays there too.
        let r = Range::from_query("from=2026-11-01&to=2026-11-01&tz=-05:00", now).unwrap();
        assert_eq!(r.from_ms, super::super::parse_time("2026-11-01T05:00:00Z").unwrap());
        assert_eq!(r.to_ms - r.from_ms, DAY_MS);
        assert_eq!(r.period().tz_offset_min, -300);
        assert_eq!(r.query(), "from=2026-11-01&to=2026-11-01&tz=-05%3A00");
        assert!(Range::from_query("tz=CET", now).is_err());
        // "Today" is the offset's: at 14:00 UTC it is already 28 November in Auckland.
        assert_eq!(Range::from_query("tz=%2B13:00", now).unwrap().to_day, "2026-11-28");
    }

    #[test]
    fn report_renders_rows_totals_and_escapes() {
        let r = json!({
            "report": "channels", "title": "Channels", "question": "Which channels drive calls?",
            "columns": [{"key":"channel","label":"Channel","kind":"text"},{"key":"calls","label":"Calls","kind":"count"},{"key":"rate","label":"Answered","kind":"percent"}],
            "rows": [{"channel":"<paid>","calls":3,"rate":0.5}],
            "totals": {"calls":3,"rate":0.5}
        });
        let body = report_body(&r, "/api/reports/channels");
        assert!(body.contains("&lt;paid&gt;"));
        assert!(body.contains(r#"data-figure="calls">3<"#));
        assert!(body.contains("50.0%"));
        assert!(body.contains("<svg"));
    }

    /// Totals that no column has are labelled and written as the columns of their name are.
    #[test]
    fn totals_without_a_column_read_as_their_kind() {
        let r = json!({
            "columns": [{"key":"calls","label":"Calls","kind":"count"}],
            "totals": {"calls": 7, "answer_rate": 0.2857, "returning_share": 0.4, "spend": 0.0, "leads": 3,
                       "average_duration": 66, "average_sale_value": 75}
        });
        let cards = total_cards(&r);
        for want in [
            r#"data-figure="answer_rate">28.6%</b><span>Answer rate<"#,
            r#"data-figure="returning_share">40.0%</b><span>Returning share<"#,
            r#"data-figure="spend">0.00</b><span>Spend<"#,
            r#"data-figure="leads">3</b><span>Leads<"#,
            r#"data-figure="average_duration">1:06</b><span>Average duration<"#,
            r#"data-figure="average_sale_value">75.00</b><span>Average sale value<"#,
        ] {
            assert!(cards.contains(want), "{want}: {cards}");
        }
    }
}
