//! The dashboard's reports: the calls of a period (and its ad spend) in, one JSON table per
//! marketer question out.
//!
//! The report functions are pure (no I/O, no clock): [`report`] takes a [`ReportInput`] and
//! returns the table; the `impl Admin` block at the end is the thin HTTP edge
//! (`GET /api/reports` and `GET /api/reports/{name}`) that reads the store and calls them.
//!
//! # Shape (every report)
//!
//! ```json
//! {"report": "channels", "title": "...", "question": "...", "from": "RFC 3339" | null,
//!  "to": "RFC 3339" | null, "tz": "+00:00", "currency": "USD" | "mixed" | null,
//!  "columns": [{"key": "calls", "label": "Calls", "kind": "count"}, ...],
//!  "rows": [{"channel": "paid_search", "calls": 3, ...}, ...],
//!  "totals": {"calls": 3, ...}}
//! ```
//!
//! `kind` is `text`, `count`, `money`, `percent` (a fraction: 0.25 is 25 %; ROAS is a percent
//! too, 3.2 being 320 %) or `seconds`. A rate whose denominator is zero is `null`. Rows come most
//! important first (most calls, or most value for `campaigns`), except where the rows have a
//! natural order (days, duration buckets, touch counts, call ordinals). Text keys that a call
//! does not carry are `"(not set)"`, as analytics tools show them. `times` adds `heatmap`
//! (7 × 24 call counts, weekday 0 = Monday) and `weekdays`.
//!
//! # Definitions (the same in every report)
//!
//! - **answered**: status `completed` with a duration above zero (a completed call of zero
//!   seconds never reached anyone).
//! - **missed**: a final status that is not answered (`no-answer`, `busy`, `failed`,
//!   `canceled`, or completed at zero seconds). **in progress**: `queued`, `ringing`,
//!   `in-progress` (no status callback yet).
//! - **conversion**: a call with an outcome, unless the outcome says it was no lead (`spam`,
//!   `not_a_lead`, `junk`, `wrong_number`, `solicitation`). **sale**: a conversion of kind
//!   `sale` (any case), or with a value above zero. **value**: the sum of conversions' values.
//!   Values are added as numbers whatever their currency; `currency` says which one they share
//!   (`"mixed"` when they do not, and then ROAS is `null`: a ratio across currencies means
//!   nothing).
//! - **first-time caller**: a call whose caller had not called the site before (the call's
//!   `returning_caller` is false); anonymous callers are neither first-time nor returning.
//! - **conversion rate**: sales ÷ calls.
//! - Days, hours and weekdays are in UTC, or at the offset given as `tz` (`+01:00`).
//! - Spend is matched to calls by channel and campaign (`utm_campaign`); spend rows without a
//!   campaign count for the channel as a whole. A period covers the whole days it touches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::{Admin, Resp, bad_time, internal, is_date, json_resp, parse_end, parse_time, store_error};
use crate::clock::{civil_from_days, rfc3339};
use crate::store::{CallFilter, CallRecord, SpendRow};

/// Every report, in dashboard order.
pub const REPORTS: &[&str] = &[
    "overview",
    "channels",
    "campaigns",
    "keywords",
    "pages",
    "placements",
    "devices",
    "times",
    "outcomes",
    "quality",
    "callers",
    "touchpoints",
    "roi",
];

/// (name, title, question): what the dashboard prints above each table.
const META: &[(&str, &str, &str)] = &[
    (
        "overview",
        "Overview",
        "How many calls came in each day, how many were answered and how many became sales?",
    ),
    (
        "channels",
        "Channels",
        "Which marketing channels drive phone calls and sales?",
    ),
    ("campaigns", "Campaigns", "Which campaigns bring the most value?"),
    ("keywords", "Keywords", "Which keywords (and ads) make people call?"),
    (
        "pages",
        "Pages",
        "Which landing pages bring calls, and which page were people on before calling?",
    ),
    (
        "placements",
        "Placements",
        "Which buttons and placements (captured parameters such as cta) lead to calls?",
    ),
    ("devices", "Devices", "Do callers come from mobile or desktop?"),
    ("times", "Times", "At what hours and on which days do people call?"),
    (
        "outcomes",
        "Outcomes",
        "How many calls became sales, and what were they worth?",
    ),
    (
        "quality",
        "Call quality",
        "How many calls are missed or too short to matter?",
    ),
    (
        "callers",
        "Callers",
        "Are callers new or returning, and how many calls come before the first sale?",
    ),
    (
        "touchpoints",
        "Touchpoints",
        "How many marketing touches come before a call, and before a sale?",
    ),
    (
        "roi",
        "Return on ad spend",
        "What does a call, and a sale, cost per channel and campaign, and what is the return on ad spend?",
    ),
];

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Shown for a grouping key a call does not carry.
const NOT_SET: &str = "(not set)";

/// Days filled in the overview; a longer period lists only the days with calls.
const MAX_FILLED_DAYS: i64 = 1_000;

/// What the reports read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportInput {
    /// The calls whose `started_at` is in [from, to) (any order).
    pub calls: Vec<CallRecord>,
    /// The spend of the days the period touches (only `roi` and `campaigns` read it).
    pub spend: Vec<SpendRow>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Offset from UTC, in minutes, for days, hours and weekdays.
    pub tz_offset_min: i32,
}

/// The named report, or `None` for a name not in [`REPORTS`].
pub fn report(name: &str, input: &ReportInput) -> Option<Value> {
    let (cols, rows, totals, extra): Table = match name {
        "overview" => overview(input),
        "channels" => by_key(input, &[("channel", "Channel")], |c| vec![text(c, "channel")]),
        "campaigns" => campaigns(input),
        "keywords" => keywords(input),
        "pages" => pages(input),
        "placements" => placements(input),
        "devices" => by_key(input, &[("device", "Device")], |c| vec![text(c, "device")]),
        "times" => times(input),
        "outcomes" => outcomes(input),
        "quality" => quality(input),
        "callers" => callers(input),
        "touchpoints" => touchpoints(input),
        "roi" => roi(input),
        _ => return None,
    };
    let (_, title, question) = META.iter().find(|(n, _, _)| *n == name)?;
    let currency = currency(input, name == "roi" || name == "campaigns");
    let (mut rows, mut totals) = (rows, totals);
    if currency == "mixed" {
        // Value in one currency over spend in another is no return on anything: the ratio is
        // left out (`null`) rather than shown as a figure.
        for obj in rows.iter_mut().filter_map(Value::as_object_mut).chain([&mut totals]) {
            if let Some(r) = obj.get_mut("roas") {
                *r = Value::Null;
            }
        }
    }
    let mut out = Map::new();
    out.insert("report".into(), json!(name));
    out.insert("title".into(), json!(title));
    out.insert("question".into(), json!(question));
    out.insert("from".into(), json!(input.from.map(|t| rfc3339(t.max(0) as u64))));
    out.insert("to".into(), json!(input.to.map(|t| rfc3339(t.max(0) as u64))));
    out.insert("tz".into(), json!(format_tz(input.tz_offset_min)));
    out.insert("currency".into(), currency);
    out.insert("columns".into(), Value::Array(cols));
    out.insert("rows".into(), Value::Array(rows));
    out.insert("totals".into(), Value::Object(totals));
    out.extend(extra);
    Some(Value::Object(out))
}

type Table = (Vec<Value>, Vec<Value>, Map<String, Value>, Map<String, Value>);

// ---------------------------------------------------------------------------------------------
// Facts about one call.

fn answered(c: &CallRecord) -> bool {
    c.status == "completed" && c.duration_s.unwrap_or(0) > 0
}

fn in_progress(c: &CallRecord) -> bool {
    matches!(c.status.as_str(), "queued" | "ringing" | "in-progress")
}

/// The call's outcome, unless it says the call was no lead ([`Outcome::disqualifies`]).
fn lead_outcome(c: &CallRecord) -> Option<&crate::store::Outcome> {
    c.outcome.as_ref().filter(|o| !o.disqualifies())
}

fn conversion(c: &CallRecord) -> bool {
    lead_outcome(c).is_some()
}

fn sale(c: &CallRecord) -> bool {
    lead_outcome(c).is_some_and(|o| o.kind.eq_ignore_ascii_case("sale") || o.value.is_some_and(|v| v > 0.0))
}

fn value(c: &CallRecord) -> f64 {
    lead_outcome(c)
        .and_then(|o| o.value)
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

fn anonymous(c: &CallRecord) -> bool {
    crate::calls::attribution::anonymous_caller(&c.caller)
}

fn first_time(c: &CallRecord) -> bool {
    !anonymous(c) && !c.returning_caller
}

/// An attribution string field, or `(not set)`.
fn text(c: &CallRecord, key: &str) -> String {
    attr_str(c, key).unwrap_or(NOT_SET).to_string()
}

fn attr_str<'a>(c: &'a CallRecord, key: &str) -> Option<&'a str> {
    c.attribution
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn touches(c: &CallRecord) -> u64 {
    c.attribution.get("touches").and_then(Value::as_u64).unwrap_or(0)
}

/// A page path without its query string or fragment (a landing URL carries a unique gclid).
fn page_path(p: &str) -> String {
    let end = p.find(['?', '#']).unwrap_or(p.len());
    let path = &p[..end];
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// The last page the caller's session viewed at or before the call.
fn last_page(c: &CallRecord) -> Option<String> {
    let pages = c.attribution.get("pages")?.as_array()?;
    pages
        .iter()
        .filter(|p| {
            p.get("at")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .is_none_or(|at| at <= c.started_at)
        })
        .filter_map(|p| p.get("path").and_then(Value::as_str))
        .next_back()
        .map(page_path)
}

// ---------------------------------------------------------------------------------------------
// Local time.

/// (days since 1970-01-01, second of the day) at the offset.
fn local(ms: i64, tz_offset_min: i32) -> (i64, i64) {
    let secs = ms.div_euclid(1000) + i64::from(tz_offset_min) * 60;
    (secs.div_euclid(86_400), secs.rem_euclid(86_400))
}

fn day_string(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The local day (`YYYY-MM-DD`) of an instant.
pub fn day_of(ms: i64, tz_offset_min: i32) -> String {
    day_string(local(ms, tz_offset_min).0)
}

/// 0 = Monday (1970-01-01 was a Thursday).
fn weekday(days: i64) -> usize {
    (days + 3).rem_euclid(7) as usize
}

pub fn format_tz(min: i32) -> String {
    let sign = if min < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", min.abs() / 60, min.abs() % 60)
}

/// [`parse_tz`], with the message a bad one gets.
pub fn tz_of(v: &str) -> Result<i32, String> {
    parse_tz(v).ok_or_else(|| format!("bad tz {v:?}: use an offset such as +01:00, -05:00 or Z"))
}

/// `Z`, `UTC`, `+01:00`, `-0530`, `+01`; a leading space is read as `+`, since an unencoded
/// `+` in a query string arrives as one. At most 14 hours either way.
pub fn parse_tz(s: &str) -> Option<i32> {
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' | b' ' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits = match rest.len() {
        2 | 4 => rest.to_string(),
        5 if rest.as_bytes()[2] == b':' => rest.replacen(':', "", 1),
        _ => return None,
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits.get(0..2)?.parse().ok()?;
    let m: i32 = if digits.len() == 4 {
        digits[2..4].parse().ok()?
    } else {
        0
    };
    if m >= 60 || h * 60 + m > 14 * 60 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn col(key: &str, label: &str, kind: &str) -> Value {
    json!({"key": key, "label": label, "kind": kind})
}

/// Rounds money to cents, so sums of floats print as people expect. An empty float sum is
/// `-0.0`, which would print as `-0.00`: adding `0.0` makes it `0`.
fn money(v: f64) -> Value {
    json!((v * 100.0).round() / 100.0 + 0.0)
}

/// A fraction rounded to four places, or null when there is nothing to divide by.
fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 {
        json!((a / b * 10_000.0).round() / 10_000.0)
    } else {
        Value::Null
    }
}

/// Money per unit, or null when there are no units.
fn per(a: f64, b: f64) -> Value {
    if b > 0.0 { money(a / b) } else { Value::Null }
}

/// The usual counts for a group of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    calls: u64,
    answered: u64,
    first_time: u64,
    conversions: u64,
    sales: u64,
    value: f64,
}

impl Tally {
    fn add(&mut self, c: &CallRecord) {
        self.calls += 1;
        self.answered += u64::from(answered(c));
        self.first_time += u64::from(first_time(c));
        self.conversions += u64::from(conversion(c));
        self.sales += u64::from(sale(c));
        self.value += value(c);
    }

    fn of<'a>(calls: impl IntoIterator<Item = &'a CallRecord>) -> Tally {
        let mut t = Tally::default();
        for c in calls {
            t.add(c);
        }
        t
    }

    /// The [`metric_columns`] of this tally.
    fn metrics(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("calls".into(), json!(self.calls));
        m.insert("answered".into(), json!(self.answered));
        m.insert("answer_rate".into(), ratio(self.answered as f64, self.calls as f64));
        m.insert("first_time".into(), json!(self.first_time));
        m.insert("sales".into(), json!(self.sales));
        m.insert("conversion_rate".into(), ratio(self.sales as f64, self.calls as f64));
        m.insert("value".into(), money(self.value));
        m
    }
}

fn metric_columns() -> Vec<Value> {
    vec![
        col("calls", "Calls", "count"),
        col("answered", "Answered", "count"),
        col("answer_rate", "Answer rate", "percent"),
        col("first_time", "First-time callers", "count"),
        col("sales", "Sales", "count"),
        col("conversion_rate", "Conversion rate", "percent"),
        col("value", "Value", "money"),
    ]
}

/// Most calls first, then most value, then by key.
fn by_importance(a: &(Vec<String>, Tally), b: &(Vec<String>, Tally)) -> std::cmp::Ordering {
    b.1.calls
        .cmp(&a.1.calls)
        .then(b.1.value.total_cmp(&a.1.value))
        .then_with(|| a.0.cmp(&b.0))
}

/// Groups calls by the key columns `keys` computes, each row the key plus the usual metrics.
fn group(input: &ReportInput, key: impl Fn(&CallRecord) -> Option<Vec<String>>) -> Vec<(Vec<String>, Tally)> {
    let mut groups: HashMap<Vec<String>, Tally> = HashMap::new();
    for c in &input.calls {
        if let Some(k) = key(c) {
            groups.entry(k).or_default().add(c);
        }
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(by_importance);
    rows
}

fn keyed_row(keys: &[(&str, &str)], k: &[String], t: &Tally) -> Value {
    let mut row = Map::new();
    for ((name, _), v) in keys.iter().zip(k) {
        row.insert((*name).into(), json!(v));
    }
    row.extend(t.metrics());
    Value::Object(row)
}

/// A report grouping every call by one or more text keys.
fn by_key(input: &ReportInput, keys: &[(&str, &str)], key: impl Fn(&CallRecord) -> Vec<String>) -> Table {
    let rows = group(input, |c| Some(key(c)));
    let mut cols: Vec<Value> = keys.iter().map(|(k, l)| col(k, l, "text")).collect();
    cols.extend(metric_columns());
    let out = rows.iter().map(|(k, t)| keyed_row(keys, k, t)).collect();
    (cols, out, Tally::of(&input.calls).metrics(), Map::new())
}

/// The currency shared by the outcome values (and, for the spend reports, the spend).
fn currency(input: &ReportInput, with_spend: bool) -> Value {
    let mut seen: BTreeSet<&str> = input
        .calls
        .iter()
        .filter_map(|c| lead_outcome(c).filter(|o| o.value.is_some())?.currency.as_deref())
        .collect();
    if with_spend {
        seen.extend(input.spend.iter().map(|s| s.currency.as_str()));
    }
    match seen.len() {
        0 => Value::Null,
        1 => json!(seen.first()),
        _ => json!("mixed"),
    }
}

/// Spend per (channel, campaign); campaign `""` is spend not split by campaign.
fn spend_by_campaign(input: &ReportInput) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for s in &input.spend {
        *out.entry((s.channel.clone(), s.campaign.clone())).or_insert(0.0) += s.amount;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The reports.

fn overview(input: &ReportInput) -> Table {
    let tz = input.tz_offset_min;
    let mut days: BTreeMap<i64, Tally> = BTreeMap::new();
    for c in &input.calls {
        days.entry(local(c.started_at, tz).0).or_default().add(c);
    }
    // Fill the days without calls so the series charts as a continuous line.
    let first = input.from.map(|f| local(f, tz).0).or(days.keys().next().copied());
    let last = input
        .to
        .map(|t| local(t - 1, tz).0)
        .or(days.keys().next_back().copied());
    if let (Some(a), Some(b)) = (first, last)
        && b >= a
        && b - a < MAX_FILLED_DAYS
    {
        for d in a..=b {
            days.entry(d).or_default();
        }
    }
    let cols = vec![
        col("day", "Day", "text"),
        col("calls", "Calls", "count"),
        col("answered", "Answered", "count"),
        col("first_time", "First-time callers", "count"),
        col("conversions", "Conversions", "count"),
        col("sales", "Sales", "count"),
        col("value", "Value", "money"),
    ];
    let row = |t: &Tally| {
        let mut m = Map::new();
        m.insert("calls".into(), json!(t.calls));
        m.insert("answered".into(), json!(t.answered));
        m.insert("first_time".into(), json!(t.first_time));
        m.insert("conversions".into(), json!(t.conversions));
        m.insert("sales".into(), json!(t.sales));
        m.insert("value".into(), money(t.value));
        m
    };
    let rows = days
        .iter()
        .map(|(d, t)| {
            let mut m = Map::new();
            m.insert("day".into(), json!(day_string(*d)));
            m.extend(row(t));
            Value::Object(m)
        })
        .collect();
    let all = Tally::of(&input.calls);
    let mut totals = row(&all);
    totals.insert("answer_rate".into(), ratio(all.answered as f64, all.calls as f64));
    totals.insert("conversion_rate".into(), ratio(all.sales as f64, all.calls as f64));
    (cols, rows, totals, Map::new())
}

fn campaigns(input: &ReportInput) -> Table {
    let spend = spend_by_campaign(input);
    let mut rows = group(input, |c| Some(vec![text(c, "campaign"), text(c, "channel")]));
    // A campaign that cost money and brought no call is an answer too: listed, with no calls.
    for (channel, campaign) in spend.keys() {
        let key = vec![campaign.clone(), channel.clone()];
        if !campaign.is_empty() && !rows.iter().any(|(k, _)| *k == key) {
            rows.push((key, Tally::default()));
        }
    }
    rows.sort_by(|a, b| {
        b.1.value
            .total_cmp(&a.1.value)
            .then(b.1.sales.cmp(&a.1.sales))
            .then(b.1.calls.cmp(&a.1.calls))
            .then_with(|| a.0.cmp(&b.0))
    });
    let cols = vec![
        col("campaign", "Campaign", "text"),
        col("channel", "Channel", "text"),
        col("calls", "Calls", "count"),
        col("answered", "Answered", "count"),
        col("sales", "Sales", "count"),
        col("conversion_rate", "Conversion rate", "percent"),
        col("value", "Value", "money"),
        col("spend", "Spend", "money"),
        col("roas", "ROAS", "percent"),
    ];
    let out = rows
        .iter()
        .map(|(k, t)| {
            let s = spend.get(&(k[1].clone(), k[0].clone())).copied().unwrap_or(0.0);
            json!({
                "campaign": k[0], "channel": k[1], "calls": t.calls, "answered": t.answered, "sales": t.sales,
                "conversion_rate": ratio(t.sales as f64, t.calls as f64), "value": money(t.value),
                "spend": money(s), "roas": ratio(t.value, s),
            })
        })
        .collect();
    let all = Tally::of(&input.calls);
    let campaigns = rows.iter().filter(|(k, _)| k[0] != NOT_SET).count();
    let mut totals = all.metrics();
    totals.insert("campaigns".into(), json!(campaigns));
    // All the period's spend, campaign or not, against all its value.
    let spent: f64 = input.spend.iter().map(|s| s.amount).sum();
    totals.insert("spend".into(), json!(money(spent)));
    totals.insert("roas".into(), json!(ratio(all.value, spent)));
    (cols, out, totals, Map::new())
}

fn keywords(input: &ReportInput) -> Table {
    let keys = [("term", "Keyword"), ("campaign", "Campaign"), ("content", "Ad content")];
    let with_keyword = |c: &CallRecord| attr_str(c, "term").is_some() || attr_str(c, "content").is_some();
    let rows = group(input, |c| {
        with_keyword(c).then(|| vec![text(c, "term"), text(c, "campaign"), text(c, "content")])
    });
    let mut cols: Vec<Value> = keys.iter().map(|(k, l)| col(k, l, "text")).collect();
    cols.extend(metric_columns());
    let out = rows.iter().map(|(k, t)| keyed_row(&keys, k, t)).collect();
    let tagged = Tally::of(input.calls.iter().filter(|c| with_keyword(c)));
    let mut totals = tagged.metrics();
    totals.insert(
        "calls_without_keyword".into(),
        json!(input.calls.len() as u64 - tagged.calls),
    );
    (cols, out, totals, Map::new())
}

fn pages(input: &ReportInput) -> Table {
    #[derive(Default)]
    struct P {
        landed: u64,
        landed_sales: u64,
        last: u64,
        last_sales: u64,
    }
    let mut pages: BTreeMap<String, P> = BTreeMap::new();
    let (mut with_landing, mut with_last) = (0u64, 0u64);
    for c in &input.calls {
        let s = u64::from(sale(c));
        if let Some(lp) = attr_str(c, "landing_page") {
            let p = pages.entry(page_path(lp)).or_default();
            p.landed += 1;
            p.landed_sales += s;
            with_landing += 1;
        }
        if let Some(last) = last_page(c) {
            let p = pages.entry(last).or_default();
            p.last += 1;
            p.last_sales += s;
            with_last += 1;
        }
    }
    let mut rows: Vec<(String, P)> = pages.into_iter().collect();
    rows.sort_by(|a, b| {
        (b.1.landed + b.1.last)
            .cmp(&(a.1.landed + a.1.last))
            .then_with(|| a.0.cmp(&b.0))
    });
    let cols = vec![
        col("page", "Page", "text"),
        col("landed", "Calls that landed here", "count"),
        col("landed_sales", "Sales that landed here", "count"),
        col("last_viewed", "Calls made from this page", "count"),
        col("last_viewed_sales", "Sales made from this page", "count"),
    ];
    let out = rows
        .iter()
        .map(|(page, p)| {
            json!({"page": page, "landed": p.landed, "landed_sales": p.landed_sales, "last_viewed": p.last,
                   "last_viewed_sales": p.last_sales})
        })
        .collect();
    let totals = json!({"calls": input.calls.len(), "landed": with_landing, "last_viewed": with_last});
    (cols, out, into_map(totals), Map::new())
}

fn placements(input: &ReportInput) -> Table {
    let mut groups: HashMap<Vec<String>, Tally> = HashMap::new();
    let mut with_params = Tally::default();
    for c in &input.calls {
        let Some(params) = c.attribution.get("params").and_then(Value::as_object) else {
            continue;
        };
        let mut any = false;
        for (k, v) in params {
            let Some(v) = v.as_str().filter(|v| !v.is_empty()) else {
                continue;
            };
            groups.entry(vec![k.clone(), v.to_string()]).or_default().add(c);
            any = true;
        }
        if any {
            with_params.add(c);
        }
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(by_importance);
    let keys = [("param", "Parameter"), ("placement", "Placement")];
    let mut cols: Vec<Value> = keys.iter().map(|(k, l)| col(k, l, "text")).collect();
    cols.extend(metric_columns());
    let out = rows.iter().map(|(k, t)| keyed_row(&keys, k, t)).collect();
    let mut totals = with_params.metrics();
    totals.insert(
        "calls_without_placement".into(),
        json!(input.calls.len() as u64 - with_params.calls),
    );
    (cols, out, totals, Map::new())
}

fn times(input: &ReportInput) -> Table {
    let mut heat = [[0u64; 24]; 7];
    let mut cells: HashMap<Vec<String>, Tally> = HashMap::new();
    let mut at: HashMap<Vec<String>, (usize, usize)> = HashMap::new();
    for c in &input.calls {
        let (days, secs) = local(c.started_at, input.tz_offset_min);
        let (w, h) = (weekday(days), (secs / 3600) as usize);
        heat[w][h] += 1;
        let k = vec![WEEKDAYS[w].to_string(), format!("{h:02}:00")];
        at.insert(k.clone(), (w, h));
        cells.entry(k).or_default().add(c);
    }
    let mut rows: Vec<_> = cells.into_iter().collect();
    // Busiest first; ties in calendar order rather than alphabetical.
    rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(at[&a.0].cmp(&at[&b.0])));
    let cols = vec![
        col("weekday", "Day of week", "text"),
        col("hour", "Hour", "text"),
        col("calls", "Calls", "count"),
        col("answered", "Answered", "count"),
        col("answer_rate", "Answer rate", "percent"),
        col("sales", "Sales", "count"),
        col("conversion_rate", "Conversion rate", "percent"),
    ];
    let out = rows
        .iter()
        .map(|(k, t)| {
            json!({"weekday": k[0], "hour": k[1], "calls": t.calls, "answered": t.answered,
                   "answer_rate": ratio(t.answered as f64, t.calls as f64), "sales": t.sales,
                   "conversion_rate": ratio(t.sales as f64, t.calls as f64)})
        })
        .collect();
    let busiest = |counts: &[u64]| -> Option<usize> {
        let max = *counts.iter().max()?;
        (max > 0).then(|| counts.iter().position(|&n| n == max)).flatten()
    };
    let by_day: Vec<u64> = heat.iter().map(|h| h.iter().sum()).collect();
    let by_hour: Vec<u64> = (0..24).map(|h| heat.iter().map(|d| d[h]).sum()).collect();
    let all = Tally::of(&input.calls);
    let totals = json!({
        "calls": all.calls, "answered": all.answered, "answer_rate": ratio(all.answered as f64, all.calls as f64),
        "sales": all.sales, "conversion_rate": ratio(all.sales as f64, all.calls as f64),
        "busiest_weekday": busiest(&by_day).map(|w| WEEKDAYS[w]),
        "busiest_hour": busiest(&by_hour).map(|h| format!("{h:02}:00")),
    });
    let mut extra = Map::new();
    extra.insert("heatmap".into(), json!(heat));
    extra.insert("weekdays".into(), json!(WEEKDAYS));
    (cols, out, into_map(totals), extra)
}

fn outcomes(input: &ReportInput) -> Table {
    const NONE: &str = "(no outcome)";
    let mut groups: HashMap<Vec<String>, Tally> = HashMap::new();
    for c in &input.calls {
        let kind = c.outcome.as_ref().map_or(NONE.to_string(), |o| o.kind.to_lowercase());
        groups.entry(vec![kind]).or_default().add(c);
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    // Outcomes first (most calls first), calls without one last.
    rows.sort_by(|a, b| {
        (a.0[0] == NONE)
            .cmp(&(b.0[0] == NONE))
            .then_with(|| by_importance(a, b))
    });
    let total = input.calls.len() as f64;
    let cols = vec![
        col("outcome", "Outcome", "text"),
        col("calls", "Calls", "count"),
        col("share", "Share of calls", "percent"),
        col("value", "Value", "money"),
        col("average_value", "Average value", "money"),
    ];
    let out = rows
        .iter()
        .map(|(k, t)| {
            json!({"outcome": k[0], "calls": t.calls, "share": ratio(t.calls as f64, total), "value": money(t.value),
                   "average_value": per(t.value, t.calls as f64)})
        })
        .collect();
    let all = Tally::of(&input.calls);
    let totals = json!({
        "calls": all.calls, "conversions": all.conversions, "sales": all.sales,
        "outcome_rate": ratio(all.conversions as f64, total), "conversion_rate": ratio(all.sales as f64, total),
        "value": money(all.value), "average_sale_value": per(all.value, all.sales as f64),
    });
    (cols, out, into_map(totals), Map::new())
}

/// Duration buckets for answered calls: (label, lowest second).
const BUCKETS: [(&str, u32); 6] = [
    ("0-9s", 0),
    ("10-29s", 10),
    ("30-59s", 30),
    ("60-179s", 60),
    ("180-599s", 180),
    ("600s+", 600),
];

/// The quality bucket of a call: a duration range, `missed` or `in progress`.
fn bucket(c: &CallRecord) -> &'static str {
    if answered(c) {
        let d = c.duration_s.unwrap_or(0);
        BUCKETS.iter().rev().find(|(_, lo)| d >= *lo).map_or("0-9s", |(l, _)| l)
    } else if in_progress(c) {
        "in progress"
    } else {
        "missed"
    }
}

fn quality(input: &ReportInput) -> Table {
    let labels: Vec<&str> = BUCKETS
        .iter()
        .map(|(l, _)| *l)
        .chain(["missed", "in progress"])
        .collect();
    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    // Talk time per bucket, for the chart.
    let mut talk: HashMap<&str, u64> = HashMap::new();
    for c in &input.calls {
        tallies.entry(bucket(c)).or_default().add(c);
        if answered(c) {
            *talk.entry(bucket(c)).or_default() += u64::from(c.duration_s.unwrap_or(0));
        }
    }
    let total = input.calls.len() as f64;
    let cols = vec![
        col("duration", "Duration", "text"),
        col("calls", "Calls", "count"),
        col("share", "Share of calls", "percent"),
        col("sales", "Sales", "count"),
        col("conversion_rate", "Conversion rate", "percent"),
        col("talk_time", "Talk time", "seconds"),
    ];
    let out = labels
        .iter()
        .map(|l| {
            let t = tallies.get(l).copied().unwrap_or_default();
            json!({"duration": l, "calls": t.calls, "share": ratio(t.calls as f64, total), "sales": t.sales,
                   "conversion_rate": ratio(t.sales as f64, t.calls as f64),
                   "talk_time": talk.get(l).copied().unwrap_or(0)})
        })
        .collect();
    let all = Tally::of(&input.calls);
    let count = |l: &str| tallies.get(l).map_or(0, |t| t.calls);
    let talk: u64 = talk.values().sum();
    let totals = json!({
        "calls": all.calls, "answered": all.answered, "missed": count("missed"), "in_progress": count("in progress"),
        "answer_rate": ratio(all.answered as f64, total), "talk_time": talk,
        // Rounded to the second, not truncated (656 s over 10 calls is 66, not 65).
        "average_duration": (all.answered > 0).then(|| (talk as f64 / all.answered as f64).round() as u64),
    });
    (cols, out, into_map(totals), Map::new())
}

/// "1st call", "2nd call", ... "5th+ call".
const ORDINALS: [&str; 5] = ["1st call", "2nd call", "3rd call", "4th call", "5th+ call"];
const ANONYMOUS: &str = "(anonymous)";

fn ordinal(c: &CallRecord) -> &'static str {
    if anonymous(c) {
        ANONYMOUS
    } else {
        ORDINALS[(c.earlier_calls as usize).min(ORDINALS.len() - 1)]
    }
}

fn callers(input: &ReportInput) -> Table {
    // A caller's first sale is their earliest sale in the period; the calls before it are all
    // their earlier calls to the site (`earlier_calls`, which reaches before the period).
    let mut by_caller: HashMap<(&str, &str), Vec<&CallRecord>> = HashMap::new();
    for c in input.calls.iter().filter(|c| !anonymous(c)) {
        by_caller.entry((&c.site, &c.caller)).or_default().push(c);
    }
    let mut first_sales: HashMap<&str, u64> = HashMap::new();
    let mut before_first_sale: Vec<u64> = Vec::new();
    for calls in by_caller.values_mut() {
        calls.sort_by_key(|c| (c.started_at, c.earlier_calls));
        if let Some(c) = calls.iter().find(|c| sale(c)) {
            *first_sales.entry(ordinal(c)).or_default() += 1;
            before_first_sale.push(u64::from(c.earlier_calls));
        }
    }
    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    for c in &input.calls {
        tallies.entry(ordinal(c)).or_default().add(c);
    }
    let cols = vec![
        col("call", "Caller's call", "text"),
        col("calls", "Calls", "count"),
        col("answered", "Answered", "count"),
        col("sales", "Sales", "count"),
        col("conversion_rate", "Conversion rate", "percent"),
        col("value", "Value", "money"),
        col("first_sales", "First sales", "count"),
    ];
    let mut labels: Vec<&str> = ORDINALS.to_vec();
    if tallies.contains_key(ANONYMOUS) {
        labels.push(ANONYMOUS);
    }
    let out = labels
        .iter()
        .map(|l| {
            let t = tallies.get(l).copied().unwrap_or_default();
            json!({"call": l, "calls": t.calls, "answered": t.answered, "sales": t.sales,
                   "conversion_rate": ratio(t.sales as f64, t.calls as f64), "value": money(t.value),
                   "first_sales": first_sales.get(l).copied().unwrap_or(0)})
        })
        .collect();
    let known = input.calls.iter().filter(|c| !anonymous(c)).count() as u64;
    let first = input.calls.iter().filter(|c| first_time(c)).count() as u64;
    let totals = json!({
        "calls": input.calls.len(), "first_time": first, "returning": known - first,
        "returning_share": ratio((known - first) as f64, known as f64),
        "anonymous": input.calls.len() as u64 - known,
        "callers": by_caller.len(), "callers_with_sale": before_first_sale.len(),
        "average_calls_before_first_sale":
            ratio(before_first_sale.iter().sum::<u64>() as f64, before_first_sale.len() as f64),
    });
    (cols, out, into_map(totals), Map::new())
}

/// Touch-count buckets: "1" ... "5+", and "(unknown)" for calls without a visitor session
/// (source and offline numbers, unattributed calls).
const TOUCH_BUCKETS: [&str; 6] = ["1", "2", "3", "4", "5+", "(unknown)"];

fn touch_bucket(c: &CallRecord) -> usize {
    match touches(c) {
        0 => 5,
        n => (n.min(5) - 1) as usize,
    }
}

fn touchpoints(input: &ReportInput) -> Table {
    let mut calls = [0u64; 6];
    let mut sales = [0u64; 6];
    for c in &input.calls {
        calls[touch_bucket(c)] += 1;
        sales[touch_bucket(c)] += u64::from(sale(c));
    }
    let (all_calls, all_sales) = (calls.iter().sum::<u64>() as f64, sales.iter().sum::<u64>() as f64);
    let cols = vec![
        col("touches", "Touches", "text"),
        col("calls", "Calls", "count"),
        col("call_share", "Share of calls", "percent"),
        col("sales", "Sales", "count"),
        col("sale_share", "Share of sales", "percent"),
    ];
    let out = TOUCH_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"touches": l, "calls": calls[i], "call_share": ratio(calls[i] as f64, all_calls),
                   "sales": sales[i], "sale_share": ratio(sales[i] as f64, all_sales)})
        })
        .collect();
    let average = |only_sales: bool| {
        let known: Vec<u64> = input
            .calls
            .iter()
            .filter(|c| touches(c) > 0 && (!only_sales || sale(c)))
            .map(touches)
            .collect();
        ratio(known.iter().sum::<u64>() as f64, known.len() as f64)
    };
    let totals = json!({
        "calls": all_calls as u64, "sales": all_sales as u64,
        "average_touches_before_call": average(false), "average_touches_before_sale": average(true),
    });
    (cols, out, into_map(totals), Map::new())
}

fn roi(input: &ReportInput) -> Table {
    const ALL: &str = "(all)";
    let spend = spend_by_campaign(input);
    let mut channel_spend: BTreeMap<&str, f64> = BTreeMap::new();
    for ((ch, _), amount) in &spend {
        *channel_spend.entry(ch.as_str()).or_default() += amount;
    }
    let mut channels: Vec<(&str, f64)> = channel_spend.into_iter().collect();
    channels.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let row = |channel: &str, campaign: &str, s: f64, t: &Tally| {
        json!({
            "channel": channel, "campaign": campaign, "spend": money(s), "calls": t.calls, "sales": t.sales,
            "value": money(t.value), "cost_per_call": per(s, t.calls as f64), "cost_per_sale": per(s, t.sales as f64),
            "roas": ratio(t.value, s),
        })
    };
    let mut out = Vec::new();
    let (mut all_spend, mut all) = (0.0, Tally::default());
    for (channel, s) in channels {
        let in_channel: Vec<&CallRecord> = input
            .calls
            .iter()
            .filter(|c| attr_str(c, "channel") == Some(channel))
            .collect();
        let t = Tally::of(in_channel.iter().copied());
        out.push(row(channel, ALL, s, &t));
        all_spend += s;
        all.calls += t.calls;
        all.sales += t.sales;
        all.value += t.value;
        let mut campaigns: Vec<(&str, f64)> = spend
            .iter()
            .filter(|((ch, cmp), _)| ch == channel && !cmp.is_empty())
            .map(|((_, cmp), a)| (cmp.as_str(), *a))
            .collect();
        campaigns.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        for (campaign, s) in campaigns {
            let t = Tally::of(
                in_channel
                    .iter()
                    .copied()
                    .filter(|c| attr_str(c, "campaign") == Some(campaign)),
            );
            out.push(row(channel, campaign, s, &t));
        }
    }
    let cols = vec![
        col("channel", "Channel", "text"),
        col("campaign", "Campaign", "text"),
        col("spend", "Spend", "money"),
        col("calls", "Calls", "count"),
        col("sales", "Sales", "count"),
        col("value", "Value", "money"),
        col("cost_per_call", "Cost per call", "money"),
        col("cost_per_sale", "Cost per sale", "money"),
        col("roas", "ROAS", "percent"),
    ];
    let Value::Object(mut totals) = row(ALL, ALL, all_spend, &all) else {
        unreachable!("row is an object")
    };
    totals.remove("channel");
    totals.remove("campaign");
    (cols, out, totals, Map::new())
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP edge.

/// The period and site of a report or export request.
///
/// `from` and `to` are instants (`to` excluded) once [`Period::check`] has run. A bare date is a
/// whole day in the report's `tz` (UTC by default), `to` included: `from=D&to=D` is day D, as on
/// the dashboard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub site: Option<String>,
    pub tz_offset_min: i32,
    /// Whether `from` / `to` were bare dates, still to be moved to local midnight by `check`
    /// (`tz` may come after them in the query).
    pub(super) from_date: bool,
    pub(super) to_date: bool,
}

impl Period {
    /// Reads `from`, `to`, `site` and `tz`; returns false for any other key (left to the caller).
    pub fn take(&mut self, key: &str, v: &str) -> Result<bool, (StatusCode, String)> {
        match key {
            "from" if !v.is_empty() => {
                self.from = Some(parse_time(v).ok_or((StatusCode::BAD_REQUEST, bad_time(v)))?);
                self.from_date = is_date(v);
            }
            "to" if !v.is_empty() => {
                self.to = Some(parse_end(v).ok_or((StatusCode::BAD_REQUEST, bad_time(v)))?);
                self.to_date = is_date(v);
            }
            "site" if !v.is_empty() => self.site = Some(v.to_string()),
            "tz" if !v.is_empty() => self.tz_offset_min = tz_of(v).map_err(|e| (StatusCode::BAD_REQUEST, e))?,
            "from" | "to" | "site" | "tz" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Ends the reading: bare dates become the local midnights of `tz`, and the period must not
    /// end before it starts.
    pub fn check(&mut self) -> Result<(), (StatusCode, String)> {
        let offset_ms = i64::from(self.tz_offset_min) * 60_000;
        for (t, date) in [(&mut self.from, &mut self.from_date), (&mut self.to, &mut self.to_date)] {
            if std::mem::take(date) {
                *t = t.map(|t| t - offset_ms);
            }
        }
        match (self.from, self.to) {
            (Some(f), Some(t)) if t <= f => Err((StatusCode::BAD_REQUEST, "to must be later than from".into())),
            _ => Ok(()),
        }
    }
}

impl Admin {
    /// The calls of the period, oldest first.
    pub(super) async fn period_calls(&self, p: &Period) -> Result<Vec<CallRecord>, (StatusCode, String)> {
        self.known_site(p.site.as_deref()).await?;
        let f = CallFilter {
            from: p.from,
            to: p.to,
            site: p.site.clone(),
            after: None,
            limit: 0,
        };
        let store = self.store.clone();
        let mut calls = tokio::task::spawn_blocking(move || store.calls(&f))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        calls.reverse();
        Ok(calls)
    }

    /// `GET /api/reports`: the reports the dashboard shows, in order.
    pub(super) fn report_list(&self) -> Resp {
        let list: Vec<Value> = META
            .iter()
            .map(|(name, title, question)| json!({"report": name, "title": title, "question": question}))
            .collect();
        json_resp(StatusCode::OK, json!({"reports": list}))
    }

    /// `GET /api/reports/{name}?from=&to=&site=&tz=`.
    pub(super) async fn report(&self, name: &str, req: &Request<Incoming>) -> Result<Resp, (StatusCode, String)> {
        if !REPORTS.contains(&name) {
            return Ok(json_resp(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no report {name:?}; reports: {}", REPORTS.join(", ")), "reports": REPORTS}),
            ));
        }
        let mut p = Period::default();
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            if !p.take(&k, &v)? {
                return Err((StatusCode::BAD_REQUEST, format!("unknown parameter {k:?}")));
            }
        }
        p.check()?;
        Ok(json_resp(StatusCode::OK, self.report_value(name, &p).await?))
    }

    /// One report of the period, for the API and the dashboard.
    pub(super) async fn report_value(&self, name: &str, p: &Period) -> Result<Value, (StatusCode, String)> {
        let calls = self.period_calls(p).await?;
        let spend = if matches!(name, "roi" | "campaigns") {
            let site = p.site.clone();
            let from_day = p.from.map(|f| day_of(f, p.tz_offset_min));
            let to_day = p.to.map(|t| day_of(t - 1, p.tz_offset_min));
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.spend(site.as_deref(), from_day.as_deref(), to_day.as_deref()))
                .await
                .map_err(internal)?
                .map_err(store_error)?
        } else {
            Vec::new()
        };
        let input = ReportInput {
            calls,
            spend,
            from: p.from,
            to: p.to,
            tz_offset_min: p.tz_offset_min,
        };
        report(name, &input).ok_or((StatusCode::NOT_FOUND, format!("no report {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(query: &str) -> Result<Period, (StatusCode, String)> {
        let mut p = Period::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            assert!(p.take(&k, &v)?, "{k}");
        }
        p.check()?;
        Ok(p)
    }

    #[test]
    fn money_of_nothing_is_zero_not_minus_zero() {
        let none: f64 = std::iter::empty::<f64>().sum();
        assert_eq!(money(none).to_string(), "0.0");
        assert_eq!(money(12.345).to_string(), "12.35");
    }

    #[test]
    fn a_period_of_bare_dates_is_whole_days_in_its_time_zone() {
        let day = parse_time("2026-11-27").unwrap();
        let hour = 3_600_000;
        let p = period("from=2026-11-27&to=2026-11-27").unwrap();
        assert_eq!((p.from, p.to), (Some(day), Some(day + 24 * hour)));
        let p = period("from=2026-11-26&to=2026-11-27&tz=%2B01:00").unwrap();
        assert_eq!((p.from, p.to), (Some(day - 25 * hour), Some(day + 23 * hour)));
        // `tz` may come first; times are instants whatever the zone.
        let p = period("tz=-05:00&from=2026-11-27T00:00:00Z&to=2026-11-27").unwrap();
        assert_eq!((p.from, p.to), (Some(day), Some(day + 29 * hour)));
        assert_eq!(
            period("from=2026-11-28&to=2026-11-27").unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            period("from=2026-11-27T12:00:00Z&to=2026-11-27T12:00:00Z")
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
    }
    use crate::store::Outcome;

    /// 2026-11-27T14:00:00Z, a Friday.
    const T0: i64 = 1_795_788_000_000;
    const HOUR: i64 = 3_600_000;

    struct C(CallRecord);

    fn call(id: &str, at: i64) -> C {
        C(CallRecord {
            id: id.into(),
            call_sid: format!("CA{id}"),
            site: "site".into(),
            tracking_number: "+15550101001".into(),
            caller: format!("+1415555{id:0>4}"),
            started_at: at,
            duration_s: Some(60),
            status: "completed".into(),
            caller_city: None,
            caller_state: None,
            caller_country: None,
            returning_caller: false,
            earlier_calls: 0,
            confidence: "exact".into(),
            attribution: json!({"params": {}, "pages": [], "touches": 1}),
            recording_url: None,
            outcome: None,
        })
    }

    impl C {
        fn attr(mut self, k: &str, v: Value) -> C {
            self.0.attribution[k] = v;
            self
        }
        fn ch(self, channel: &str, campaign: &str) -> C {
            self.attr("channel", json!(channel)).attr("campaign", json!(campaign))
        }
        fn status(mut self, s: &str, d: Option<u32>) -> C {
            self.0.status = s.into();
            self.0.duration_s = d;
            self
        }
        fn sold(mut self, kind: &str, v: Option<f64>) -> C {
            self.0.outcome = Some(Outcome {
                kind: kind.into(),
                value: v,
                currency: v.map(|_| "USD".into()),
                at: self.0.started_at + 1,
            });
            self
        }
        fn caller(mut self, caller: &str, earlier: u32) -> C {
            self.0.caller = caller.into();
            self.0.earlier_calls = earlier;
            self.0.returning_caller = earlier > 0;
            self
        }
    }

    fn input(calls: Vec<C>) -> ReportInput {
        ReportInput {
            calls: calls.into_iter().map(|c| c.0).collect(),
            ..ReportInput::default()
        }
    }

    fn rows(v: &Value) -> &Vec<Value> {
        v["rows"].as_array().unwrap()
    }

    #[test]
    fn every_report_has_the_contract_shape() {
        let inp = input(vec![call("1", T0).ch("paid_search", "spring").sold("sale", Some(10.0))]);
        assert_eq!(REPORTS.len(), META.len());
        for name in REPORTS {
            let v = report(name, &inp).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(v["report"], *name);
            assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
            assert!(v["question"].as_str().is_some_and(|q| q.ends_with('?')), "{name}");
            let cols = v["columns"].as_array().unwrap();
            let keys: Vec<&str> = cols.iter().map(|c| c["key"].as_str().unwrap()).collect();
            for c in cols {
                assert!(
                    ["text", "count", "money", "percent", "seconds"].contains(&c["kind"].as_str().unwrap()),
                    "{name}: {c}"
                );
            }
            for r in rows(&v) {
                for k in &keys {
                    assert!(r.get(*k).is_some(), "{name}: row {r} lacks {k}");
                }
            }
            assert!(v["totals"].is_object(), "{name}");
        }
        assert_eq!(report("nope", &inp), None);
    }

    #[test]
    fn overview_fills_days_and_counts_answered_first_time_conversions_sales_value() {
        let mut inp = input(vec![
            call("1", T0).sold("sale", Some(100.0)),
            call("2", T0 + HOUR).status("no-answer", None).caller("+14155550001", 1),
            call("3", T0 + 48 * HOUR)
                .status("completed", Some(0))
                .sold("booking", None),
            call("4", T0 + 48 * HOUR)
                .sold("quote", Some(20.5))
                .caller("anonymous", 0),
        ]);
        inp.from = Some(T0 - 14 * HOUR); // 2026-11-27T00:00Z
        inp.to = Some(T0 + 58 * HOUR); // 2026-11-30T00:00Z
        let v = report("overview", &inp).unwrap();
        let days: Vec<&str> = rows(&v).iter().map(|r| r["day"].as_str().unwrap()).collect();
        assert_eq!(days, ["2026-11-27", "2026-11-28", "2026-11-29"]);
        assert_eq!(
            rows(&v)[0],
            json!({"day": "2026-11-27", "calls": 2, "answered": 1, "first_time": 1, "conversions": 1, "sales": 1,
                   "value": 100.0})
        );
        assert_eq!(rows(&v)[1]["calls"], 0);
        assert_eq!(
            rows(&v)[2],
            json!({"day": "2026-11-29", "calls": 2, "answered": 1, "first_time": 1, "conversions": 2, "sales": 1,
                   "value": 20.5})
        );
        assert_eq!(v["totals"]["calls"], 4);
        assert_eq!(v["totals"]["answer_rate"], 0.5);
        assert_eq!(v["totals"]["conversion_rate"], 0.5);
        assert_eq!(v["from"], "2026-11-27T00:00:00Z");
        assert_eq!(v["currency"], "USD");
        // At +11:00 the first two calls fall on the 28th.
        inp.tz_offset_min = 11 * 60;
        let v = report("overview", &inp).unwrap();
        assert_eq!(v["tz"], "+11:00");
        let r = rows(&v).iter().find(|r| r["day"] == "2026-11-28").unwrap();
        assert_eq!(r["calls"], 2);
    }

    #[test]
    fn channels_sorted_by_calls_with_not_set() {
        let inp = input(vec![
            call("1", T0).ch("organic_search", "x"),
            call("2", T0).ch("paid_search", "a").sold("sale", Some(50.0)),
            call("3", T0).ch("paid_search", "b").status("busy", None),
            call("4", T0),
        ]);
        let v = report("channels", &inp).unwrap();
        let got: Vec<(&str, u64)> = rows(&v)
            .iter()
            .map(|r| (r["channel"].as_str().unwrap(), r["calls"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, [("paid_search", 2), ("(not set)", 1), ("organic_search", 1)]);
        assert_eq!(rows(&v)[0]["answer_rate"], 0.5);
        assert_eq!(rows(&v)[0]["conversion_rate"], 0.5);
        assert_eq!(rows(&v)[0]["value"], 50.0);
        assert_eq!(v["totals"]["calls"], 4);
    }

    #[test]
    fn campaigns_by_value_with_spend_and_roas() {
        let mut inp = input(vec![
            call("1", T0).ch("paid_search", "small"),
            call("2", T0).ch("paid_search", "small"),
            call("3", T0).ch("paid_search", "big").sold("sale", Some(300.0)),
        ]);
        let spent = |campaign: &str, amount| SpendRow {
            site: "site".into(),
            day: "2026-11-27".into(),
            channel: "paid_search".into(),
            campaign: campaign.into(),
            amount,
            currency: "USD".into(),
        };
        inp.spend = vec![spent("big", 100.0), spent("silent", 50.0)];
        let v = report("campaigns", &inp).unwrap();
        assert_eq!(rows(&v)[0]["campaign"], "big");
        assert_eq!(rows(&v)[0]["spend"], 100.0);
        assert_eq!(rows(&v)[0]["roas"], 3.0);
        assert_eq!(rows(&v)[1]["campaign"], "small");
        assert_eq!(rows(&v)[1]["roas"], Value::Null);
        // Spend and no call: listed all the same.
        assert_eq!(
            (
                &rows(&v)[2]["campaign"],
                &rows(&v)[2]["calls"],
                &rows(&v)[2]["spend"],
                &rows(&v)[2]["roas"]
            ),
            (&json!("silent"), &json!(0), &json!(50.0), &json!(0.0))
        );
        assert_eq!(v["totals"]["campaigns"], 3);
        assert_eq!(
            (&v["totals"]["spend"], &v["totals"]["roas"]),
            (&json!(150.0), &json!(2.0))
        );
    }

    #[test]
    fn keywords_group_term_campaign_content() {
        let inp = input(vec![
            call("1", T0).ch("paid_search", "spring").attr("term", json!("plumber")),
            call("2", T0)
                .ch("paid_search", "spring")
                .attr("term", json!("plumber"))
                .sold("sale", None),
            call("3", T0).ch("paid_social", "fb").attr("content", json!("video-a")),
            call("4", T0).ch("organic_search", "x"),
        ]);
        let v = report("keywords", &inp).unwrap();
        assert_eq!(rows(&v).len(), 2);
        assert_eq!(
            (
                &rows(&v)[0]["term"],
                &rows(&v)[0]["campaign"],
                &rows(&v)[0]["content"],
                &rows(&v)[0]["sales"]
            ),
            (&json!("plumber"), &json!("spring"), &json!("(not set)"), &json!(1))
        );
        assert_eq!(rows(&v)[1]["term"], "(not set)");
        assert_eq!(rows(&v)[1]["content"], "video-a");
        assert_eq!(v["totals"]["calls"], 3);
        assert_eq!(v["totals"]["calls_without_keyword"], 1);
    }

    #[test]
    fn pages_count_landing_and_last_page_before_the_call() {
        let pages = |ps: &[(&str, i64)]| {
            json!(
                ps.iter()
                    .map(|(p, at)| json!({"path": p, "at": rfc3339(*at as u64)}))
                    .collect::<Vec<_>>()
            )
        };
        let inp = input(vec![
            call("1", T0)
                .attr("landing_page", json!("/?gclid=abc"))
                .attr(
                    "pages",
                    pages(&[
                        ("/?gclid=abc", T0 - 60_000),
                        ("/pricing", T0 - 30_000),
                        ("/later", T0 + 60_000),
                    ]),
                )
                .sold("sale", None),
            call("2", T0)
                .attr("landing_page", json!("/?gclid=def"))
                .attr("pages", pages(&[("/?gclid=def", T0 - 60_000), ("/contact#form", T0)])),
            call("3", T0),
        ]);
        let v = report("pages", &inp).unwrap();
        assert_eq!(
            rows(&v)[0],
            json!({"page": "/", "landed": 2, "landed_sales": 1, "last_viewed": 0, "last_viewed_sales": 0})
        );
        let find = |p: &str| rows(&v).iter().find(|r| r["page"] == p).cloned().unwrap();
        assert_eq!(find("/pricing")["last_viewed_sales"], 1);
        assert_eq!(find("/contact")["last_viewed"], 1);
        assert!(
            rows(&v).iter().all(|r| r["page"] != "/later"),
            "a page after the call is not before it"
        );
        assert_eq!(v["totals"], json!({"calls": 3, "landed": 2, "last_viewed": 2}));
    }

    #[test]
    fn placements_from_captured_params() {
        let inp = input(vec![
            call("1", T0).attr("params", json!({"cta": "header", "loc": "nyc"})),
            call("2", T0)
                .attr("params", json!({"cta": "header"}))
                .sold("sale", Some(5.0)),
            call("3", T0).attr("params", json!({"cta": "footer"})),
            call("4", T0),
        ]);
        let v = report("placements", &inp).unwrap();
        let got: Vec<(String, String, u64)> = rows(&v)
            .iter()
            .map(|r| {
                (
                    r["param"].to_string(),
                    r["placement"].to_string(),
                    r["calls"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("\"cta\"".into(), "\"header\"".into(), 2),
                ("\"cta\"".into(), "\"footer\"".into(), 1),
                ("\"loc\"".into(), "\"nyc\"".into(), 1)
            ]
        );
        assert_eq!(rows(&v)[0]["sales"], 1);
        assert_eq!(v["totals"]["calls"], 3);
        assert_eq!(v["totals"]["calls_without_placement"], 1);
    }

    #[test]
    fn devices_group_by_device() {
        let inp = input(vec![
            call("1", T0).attr("device", json!("mobile")),
            call("2", T0).attr("device", json!("mobile")),
            call("3", T0).attr("device", json!("desktop")).sold("sale", Some(1.0)),
        ]);
        let v = report("devices", &inp).unwrap();
        assert_eq!(
            (&rows(&v)[0]["device"], &rows(&v)[0]["calls"]),
            (&json!("mobile"), &json!(2))
        );
        assert_eq!(
            (&rows(&v)[1]["device"], &rows(&v)[1]["sales"]),
            (&json!("desktop"), &json!(1))
        );
    }

    #[test]
    fn times_heatmap_by_weekday_and_hour() {
        let inp = input(vec![
            call("1", T0),
            call("2", T0 + 10 * 60_000),
            call("3", T0 + 24 * HOUR + 5 * HOUR),
        ]);
        let v = report("times", &inp).unwrap();
        assert_eq!(v["heatmap"][4][14], 2, "Friday 14:00");
        assert_eq!(v["heatmap"][5][19], 1, "Saturday 19:00");
        let sum: u64 = v["heatmap"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d.as_array().unwrap())
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(sum, 3);
        assert_eq!(v["weekdays"][0], "Monday");
        assert_eq!(
            (&rows(&v)[0]["weekday"], &rows(&v)[0]["hour"]),
            (&json!("Friday"), &json!("14:00"))
        );
        assert_eq!(v["totals"]["busiest_weekday"], "Friday");
        assert_eq!(v["totals"]["busiest_hour"], "14:00");
        // Eastern time: Friday 09:00.
        let mut inp = inp;
        inp.tz_offset_min = -5 * 60;
        let v = report("times", &inp).unwrap();
        assert_eq!(v["heatmap"][4][9], 2);
    }

    #[test]
    fn outcomes_by_kind_with_value() {
        let inp = input(vec![
            call("1", T0).sold("sale", Some(100.0)),
            call("2", T0).sold("Sale", Some(50.0)),
            call("3", T0).sold("quote", None),
            call("4", T0),
            call("5", T0).sold("spam", Some(10.0)),
        ]);
        let v = report("outcomes", &inp).unwrap();
        assert_eq!(
            rows(&v)[0],
            json!({"outcome": "sale", "calls": 2, "share": 0.4, "value": 150.0, "average_value": 75.0})
        );
        // Spam is an outcome of its own, but no conversion, sale or value.
        let spam = rows(&v).iter().find(|r| r["outcome"] == "spam").unwrap().clone();
        assert_eq!((spam["calls"].clone(), spam["value"].clone()), (json!(1), json!(0.0)));
        assert_eq!(v["totals"]["conversions"], 3);
        assert_eq!(v["totals"]["sales"], 2);
        assert_eq!(v["totals"]["conversion_rate"], 0.4);
        assert_eq!(v["totals"]["outcome_rate"], 0.6);
        assert_eq!(v["totals"]["value"], 150.0);
        assert_eq!(v["totals"]["average_sale_value"], 75.0);
    }

    #[test]
    fn quality_buckets_durations_and_missed() {
        let inp = input(vec![
            call("1", T0).status("completed", Some(5)),
            call("2", T0).status("completed", Some(10)),
            call("3", T0).status("completed", Some(45)),
            call("4", T0).status("completed", Some(600)),
            call("5", T0).status("no-answer", None),
            call("6", T0).status("completed", Some(0)),
            call("7", T0).status("ringing", None),
        ]);
        let v = report("quality", &inp).unwrap();
        let got: Vec<(&str, u64)> = rows(&v)
            .iter()
            .map(|r| (r["duration"].as_str().unwrap(), r["calls"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("0-9s", 1),
                ("10-29s", 1),
                ("30-59s", 1),
                ("60-179s", 0),
                ("180-599s", 0),
                ("600s+", 1),
                ("missed", 2),
                ("in progress", 1)
            ]
        );
        assert_eq!(v["totals"]["answered"], 4);
        assert_eq!(v["totals"]["missed"], 2);
        assert_eq!(v["totals"]["talk_time"], 660);
        assert_eq!(v["totals"]["average_duration"], 165);
        assert_eq!(rows(&v)[5]["talk_time"], 600);
    }

    #[test]
    fn callers_first_time_returning_and_calls_before_first_sale() {
        let inp = input(vec![
            call("1", T0).caller("+1A", 0),
            call("2", T0 + HOUR).caller("+1A", 1),
            call("3", T0 + 2 * HOUR).caller("+1A", 2).sold("sale", Some(10.0)),
            call("4", T0 + 3 * HOUR).caller("+1A", 3).sold("sale", Some(10.0)),
            call("5", T0).caller("+1B", 0).sold("sale", None),
            call("6", T0).caller("anonymous", 0),
        ]);
        let v = report("callers", &inp).unwrap();
        let r = rows(&v);
        assert_eq!(
            (&r[0]["call"], &r[0]["calls"], &r[0]["first_sales"]),
            (&json!("1st call"), &json!(2), &json!(1))
        );
        assert_eq!(
            (&r[2]["call"], &r[2]["first_sales"], &r[2]["sales"]),
            (&json!("3rd call"), &json!(1), &json!(1))
        );
        assert_eq!(r[3]["first_sales"], 0, "a second sale is not a first sale");
        assert_eq!(r[5]["call"], "(anonymous)");
        let t = &v["totals"];
        assert_eq!(
            (&t["first_time"], &t["returning"], &t["anonymous"]),
            (&json!(2), &json!(3), &json!(1))
        );
        assert_eq!((&t["callers"], &t["callers_with_sale"]), (&json!(2), &json!(2)));
        assert_eq!(t["average_calls_before_first_sale"], 1.0);
        assert_eq!(t["returning_share"], 0.6);
    }

    #[test]
    fn touchpoints_distribution_before_calls_and_sales() {
        let inp = input(vec![
            call("1", T0).attr("touches", json!(1)),
            call("2", T0).attr("touches", json!(3)).sold("sale", None),
            call("3", T0).attr("touches", json!(7)).sold("sale", None),
            call("4", T0).attr("touches", json!(0)),
        ]);
        let v = report("touchpoints", &inp).unwrap();
        let calls: Vec<u64> = rows(&v).iter().map(|r| r["calls"].as_u64().unwrap()).collect();
        let sales: Vec<u64> = rows(&v).iter().map(|r| r["sales"].as_u64().unwrap()).collect();
        assert_eq!(calls, [1, 0, 1, 0, 1, 1]);
        assert_eq!(sales, [0, 0, 1, 0, 1, 0]);
        assert_eq!(rows(&v)[4]["touches"], "5+");
        assert_eq!(rows(&v)[2]["sale_share"], 0.5);
        assert_eq!(v["totals"]["average_touches_before_call"], 3.6667);
        assert_eq!(v["totals"]["average_touches_before_sale"], 5.0);
    }

    #[test]
    fn roi_per_channel_and_campaign() {
        let spend = |channel: &str, campaign: &str, amount: f64| SpendRow {
            site: "site".into(),
            day: "2026-11-27".into(),
            channel: channel.into(),
            campaign: campaign.into(),
            amount,
            currency: "USD".into(),
        };
        let mut inp = input(vec![
            call("1", T0).ch("paid_search", "spring").sold("sale", Some(300.0)),
            call("2", T0).ch("paid_search", "spring"),
            call("3", T0).ch("paid_search", "brand"),
            call("4", T0).ch("paid_social", "fb"),
            call("5", T0).ch("organic_search", "x"),
        ]);
        inp.spend = vec![
            spend("paid_search", "spring", 60.0),
            spend("paid_search", "spring", 40.0),
            spend("paid_search", "", 50.0),
            spend("paid_social", "", 20.0),
        ];
        let v = report("roi", &inp).unwrap();
        assert_eq!(
            rows(&v)[0],
            json!({"channel": "paid_search", "campaign": "(all)", "spend": 150.0, "calls": 3, "sales": 1,
                   "value": 300.0, "cost_per_call": 50.0, "cost_per_sale": 150.0, "roas": 2.0})
        );
        assert_eq!(
            rows(&v)[1],
            json!({"channel": "paid_search", "campaign": "spring", "spend": 100.0, "calls": 2, "sales": 1,
                   "value": 300.0, "cost_per_call": 50.0, "cost_per_sale": 100.0, "roas": 3.0})
        );
        assert_eq!(
            rows(&v)[2],
            json!({"channel": "paid_social", "campaign": "(all)", "spend": 20.0, "calls": 1, "sales": 0,
                   "value": 0.0, "cost_per_call": 20.0, "cost_per_sale": null, "roas": 0.0})
        );
        assert_eq!(rows(&v).len(), 3, "organic has no spend");
        assert_eq!(v["totals"]["spend"], 170.0);
        assert_eq!(v["totals"]["calls"], 4);
        assert_eq!(v["totals"]["cost_per_call"], 42.5);
        assert_eq!(v["currency"], "USD");
        // Spend in euros beside values in dollars: no ROAS, anywhere.
        inp.spend.push(SpendRow {
            currency: "EUR".into(),
            ..spend("paid_search", "spring", 10.0)
        });
        let v = report("roi", &inp).unwrap();
        assert_eq!(v["currency"], "mixed");
        assert!(rows(&v).iter().all(|r| r["roas"].is_null()), "{v}");
        assert!(v["totals"].get("roas").is_none_or(Value::is_null));
        assert!(crate::admin::dashboard::report_table(&v).contains("Spend (mixed currencies, added as numbers)"));
    }

    #[test]
    fn tz_parsing() {
        assert_eq!(parse_tz("+01:00"), Some(60));
        assert_eq!(parse_tz(" 05:30"), Some(330));
        assert_eq!(parse_tz("-0800"), Some(-480));
        assert_eq!(parse_tz("+02"), Some(120));
        assert_eq!(parse_tz("Z"), Some(0));
        assert_eq!(parse_tz("UTC"), Some(0));
        for bad in ["", "1", "+1", "+15:00", "+01:60", "CET", "+01:0x", "+1:00"] {
            assert_eq!(parse_tz(bad), None, "{bad:?}");
        }
        assert_eq!(format_tz(-330), "-05:30");
    }
}
