//! CSV exports: the call log, and offline click conversions for Google Ads and Microsoft Ads.
//!
//! The builders are pure (calls in, CSV text out); the `impl Admin` block at the end serves
//! them as downloads (`text/csv; charset=utf-8`, `Content-Disposition: attachment`).
//!
//! CSV is RFC 4180: comma separated, CRLF line ends, a field quoted (with doubled quotes inside)
//! when it holds a comma, a quote, CR or LF. Rows are oldest call first.
//!
//! # The call log (`calls.csv`)
//!
//! One row per call, the columns of [`CALL_COLUMNS`]. Text that came from visitors (campaign
//! tags, pages, parameters) could start with `=`, `+`, `-` or `@`, which spreadsheets run as a
//! formula (CSV injection): such a cell gets a leading `'`, except phone numbers in E.164
//! (`+` and digits only), which stay as they are.
//!
//! # Click conversions (`google-ads.csv`, `microsoft-ads.csv`)
//!
//! The offline click-conversion import format (REFERENCE.md §3): a `Parameters:TimeZone=+0000`
//! line, the header, then one row per call that
//!
//! - carries a click id of the platform (Google: `gclid`, else `gbraid`, else `wbraid`, exactly
//!   one per row; Microsoft: `msclkid`), made only of the characters click ids use
//!   (letters, digits, `-`, `_`, `.`, `~`);
//! - was attributed with confidence `exact` or `late`. A `shared` call may belong to another
//!   visitor's click, and a wrong conversion teaches the bidding the wrong lesson, so it is left
//!   out;
//! - was answered and lasted at least `min_duration` seconds (default 0: every answered call),
//!   which is what Google means by a call conversion;
//! - has no outcome saying it was no lead (`spam`, `not_a_lead`, ...: see
//!   `Outcome::disqualifies`).
//!
//! Calls without an outcome are exported too (the call itself is the conversion); the
//! conversion value and currency come from the outcome when it has a value, and are empty
//! otherwise (the platform then uses the conversion action's default value). The conversion
//! time is the call's start, `yyyy-MM-dd HH:mm:ss` in UTC.

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::reports::Period;
use super::{Admin, Resp};
use crate::clock::rfc3339;
use crate::store::CallRecord;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

/// The call log's columns, in order.
pub const CALL_COLUMNS: &[&str] = &[
    "id",
    "call_sid",
    "site",
    "started_at",
    "tracking_number",
    "caller",
    "caller_city",
    "caller_state",
    "caller_country",
    "status",
    "duration_s",
    "returning_caller",
    "earlier_calls",
    "confidence",
    "channel",
    "source",
    "medium",
    "campaign",
    "term",
    "content",
    "landing_page",
    "referrer",
    "device",
    "touches",
    "pages",
    "params",
    "gclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "fbclid",
    "outcome_kind",
    "outcome_value",
    "outcome_currency",
    "outcome_at",
    "recording_url",
];

/// The conversion name when the request names none (Google's usual name for call conversions).
pub const DEFAULT_CONVERSION: &str = "Phone call";

/// Longest conversion name accepted (Google allows 100 characters).
const MAX_CONVERSION_NAME: usize = 100;

/// One field, quoted when RFC 4180 needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One record with its CRLF.
pub fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Defuses a cell a spreadsheet would run as a formula.
fn cell(s: &str) -> String {
    let e164 = s
        .strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !e164 {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// A number as people write it: `120`, `99.5`.
fn number(v: f64) -> String {
    format!("{v}")
}

fn attr(c: &CallRecord, key: &str) -> String {
    match c.attribution.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The call log, header first.
pub fn calls_csv(calls: &[CallRecord]) -> String {
    let mut out = csv_line(CALL_COLUMNS);
    for c in calls {
        let a = &c.attribution;
        let pages: Vec<&str> = a
            .get("pages")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(|p| p.get("path").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        let params: Vec<String> = a
            .get("params")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let o = c.outcome.as_ref();
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            c.id.clone(),
            c.call_sid.clone(),
            c.site.clone(),
            rfc3339(c.started_at.max(0) as u64),
            c.tracking_number.clone(),
            c.caller.clone(),
            opt(&c.caller_city),
            opt(&c.caller_state),
            opt(&c.caller_country),
            c.status.clone(),
            c.duration_s.map(|d| d.to_string()).unwrap_or_default(),
            c.returning_caller.to_string(),
            c.earlier_calls.to_string(),
            c.confidence.clone(),
            attr(c, "channel"),
            attr(c, "source"),
            attr(c, "medium"),
            attr(c, "campaign"),
            attr(c, "term"),
            attr(c, "content"),
            attr(c, "landing_page"),
            attr(c, "referrer"),
            attr(c, "device"),
            attr(c, "touches"),
            pages.join(" > "),
            params.join("; "),
            attr(c, "gclid"),
            attr(c, "gbraid"),
            attr(c, "wbraid"),
            attr(c, "msclkid"),
            attr(c, "fbclid"),
            o.map(|o| o.kind.clone()).unwrap_or_default(),
            o.and_then(|o| o.value).map(number).unwrap_or_default(),
            o.and_then(|o| o.currency.clone()).unwrap_or_default(),
            o.map(|o| rfc3339(o.at.max(0) as u64)).unwrap_or_default(),
            opt(&c.recording_url),
        ];
        debug_assert_eq!(fields.len(), CALL_COLUMNS.len());
        out.push_str(&csv_line(&fields.iter().map(|f| cell(f)).collect::<Vec<_>>()));
    }
    out
}

/// The ad platform an export is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickPlatform {
    Google,
    Microsoft,
}

impl ClickPlatform {
    /// The attribution keys of its click ids, in order of preference.
    fn click_ids(self) -> &'static [&'static str] {
        match self {
            ClickPlatform::Google => &["gclid", "gbraid", "wbraid"],
            ClickPlatform::Microsoft => &["msclkid"],
        }
    }

    fn id_column(self) -> &'static str {
        match self {
            ClickPlatform::Google => "Google Click ID",
            ClickPlatform::Microsoft => "Microsoft Click ID",
        }
    }
}

/// What goes into a click-conversion export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickExport {
    pub platform: ClickPlatform,
    /// The conversion action's name in the ad account.
    pub conversion: String,
    /// Calls shorter than this many seconds are left out.
    pub min_duration: u32,
}

/// Click ids are URL-safe tokens; anything else is not one (and would not import).
fn plausible_click_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// `yyyy-MM-dd HH:mm:ss` in UTC.
fn conversion_time(ms: i64) -> String {
    rfc3339(ms.max(0) as u64).trim_end_matches('Z').replace('T', " ")
}

/// The click id a call's conversion is reported under, if it qualifies (see the module doc).
fn click_id(c: &CallRecord, e: &ClickExport) -> Option<String> {
    if !matches!(c.confidence.as_str(), "exact" | "late") || c.outcome.as_ref().is_some_and(|o| o.disqualifies()) {
        return None;
    }
    let duration = c.duration_s.unwrap_or(0);
    if c.status != "completed" || duration == 0 || duration < e.min_duration {
        return None;
    }
    e.platform
        .click_ids()
        .iter()
        .filter_map(|k| c.attribution.get(*k).and_then(Value::as_str))
        .find(|id| plausible_click_id(id))
        .map(str::to_string)
}

/// The offline click-conversion upload file.
pub fn click_conversions_csv(calls: &[CallRecord], e: &ClickExport) -> String {
    let mut out = String::from("Parameters:TimeZone=+0000\r\n");
    out.push_str(&csv_line(&[
        e.platform.id_column(),
        "Conversion Name",
        "Conversion Time",
        "Conversion Value",
        "Conversion Currency",
    ]));
    for c in calls {
        let Some(id) = click_id(c, e) else { continue };
        let (value, currency) = match c.outcome.as_ref().and_then(|o| Some((o.value?, o.currency.clone()))) {
            Some((v, cur)) => (number(v), cur.unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        out.push_str(&csv_line(&[
            id,
            e.conversion.clone(),
            conversion_time(c.started_at),
            value,
            currency,
        ]));
    }
    out
}

fn csv_resp(filename: &str, body: String) -> Resp {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}

fn bad(msg: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, msg)
}

impl Admin {
    /// `GET /api/export/{file}`: `calls.csv`, `google-ads.csv` or `microsoft-ads.csv`.
    pub(super) async fn export(&self, file: &str, req: &Request<Incoming>) -> Result<Resp, (StatusCode, String)> {
        let platform = match file {
            "calls.csv" => None,
            "google-ads.csv" => Some(ClickPlatform::Google),
            "microsoft-ads.csv" => Some(ClickPlatform::Microsoft),
            _ => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no export {file:?}; exports: calls.csv, google-ads.csv, microsoft-ads.csv"),
                ));
            }
        };
        let mut p = Period::default();
        let mut conversion = DEFAULT_CONVERSION.to_string();
        let mut min_duration = 0u32;
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            if p.take(&k, &v)? {
                continue;
            }
            match (k.as_ref(), platform) {
                ("conversion", Some(_)) => {
                    let name = v.trim();
                    if name.is_empty()
                        || name.chars().count() > MAX_CONVERSION_NAME
                        || name.chars().any(char::is_control)
                    {
                        return Err(bad(format!(
                            "bad conversion {v:?}: the conversion action's name, 1 to {MAX_CONVERSION_NAME} characters"
                        )));
                    }
                    conversion = name.to_string();
                }
                ("min_duration", Some(_)) => {
                    min_duration = v
                        .parse()
                        .map_err(|_| bad(format!("bad min_duration {v:?}: a whole number of seconds, such as 30")))?;
                }
                (other, _) => return Err(bad(format!("unknown parameter {other:?}"))),
            }
        }
        p.check()?;
        let calls = self.period_calls(&p).await?;
        Ok(match platform {
            None => csv_resp("calls.csv", calls_csv(&calls)),
            Some(platform) => {
                let e = ClickExport {
                    platform,
                    conversion,
                    min_duration,
                };
                csv_resp(file, click_conversions_csv(&calls, &e))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;
    use serde_json::json;

    /// 2026-11-27T14:03:11Z.
    const T: i64 = 1_795_788_191_000;

    fn call(id: &str, attribution: Value) -> CallRecord {
        CallRecord {
            id: id.into(),
            call_sid: format!("CA{id}"),
            site: "site".into(),
            tracking_number: "+15550101001".into(),
            caller: "+14155550123".into(),
            started_at: T,
            duration_s: Some(95),
            status: "completed".into(),
            caller_city: Some("SAN FRANCISCO".into()),
            caller_state: Some("CA".into()),
            caller_country: Some("US".into()),
            returning_caller: false,
            earlier_calls: 0,
            confidence: "exact".into(),
            attribution,
            recording_url: None,
            outcome: None,
        }
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_line(&["a", "", "b c"]), "a,,b c\r\n");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("+14155550123"), "+14155550123");
        assert_eq!(cell("+1 SUM(A1)"), "'+1 SUM(A1)");
        assert_eq!(cell("-x"), "'-x");
    }

    #[test]
    fn call_log_has_a_header_and_one_row_per_call() {
        let mut c = call(
            "c1",
            json!({"channel": "paid_search", "campaign": "spring, \"big\"", "term": "=cmd", "touches": 2,
                   "pages": [{"path": "/?a=1", "at": "x"}, {"path": "/contact", "at": "y"}], "params": {"cta": "header"},
                   "gclid": "Cj0"}),
        );
        c.outcome = Some(Outcome {
            kind: "sale".into(),
            value: Some(120.0),
            currency: Some("USD".into()),
            at: T + 60_000,
        });
        let csv = calls_csv(&[c]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 3, "header, one row, and the final CRLF: {csv}");
        assert_eq!(lines[0], CALL_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "c1,CAc1,site,2026-11-27T14:03:11Z,+15550101001,+14155550123,SAN FRANCISCO,CA,US,completed,95,false,0,\
             exact,paid_search,,,\"spring, \"\"big\"\"\",'=cmd,,,,,2,/?a=1 > /contact,cta=header,Cj0,,,,,sale,120,USD,\
             2026-11-27T14:04:11Z,"
        );
    }

    #[test]
    fn google_export_is_the_reference_format() {
        let mut sale = call("1", json!({"gclid": "CjwKCAjw", "gbraid": "GB"}));
        sale.outcome = Some(Outcome {
            kind: "sale".into(),
            value: Some(120.0),
            currency: Some("USD".into()),
            at: T,
        });
        let mut ios = call("2", json!({"gbraid": "0AAAAA-b_c"}));
        ios.started_at = T + 1000;
        ios.outcome = Some(Outcome {
            kind: "quote".into(),
            value: None,
            currency: None,
            at: T,
        });
        let mut short = call("3", json!({"gclid": "short"}));
        short.duration_s = Some(10);
        let mut missed = call("4", json!({"gclid": "missed"}));
        missed.status = "no-answer".into();
        let mut shared = call("5", json!({"gclid": "shared"}));
        shared.confidence = "shared".into();
        let junk = call("6", json!({"gclid": "=1+1", "wbraid": "WB"}));
        let bing = call("7", json!({"msclkid": "abc123"}));
        let mut spam = call("8", json!({"gclid": "spam"}));
        spam.outcome = Some(Outcome {
            kind: "Not a lead".into(),
            value: None,
            currency: None,
            at: T,
        });
        let calls = [sale, ios, short, missed, shared, junk, bing, spam];
        let g = ClickExport {
            platform: ClickPlatform::Google,
            conversion: DEFAULT_CONVERSION.into(),
            min_duration: 30,
        };
        assert_eq!(
            click_conversions_csv(&calls, &g),
            "Parameters:TimeZone=+0000\r\n\
             Google Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n\
             CjwKCAjw,Phone call,2026-11-27 14:03:11,120,USD\r\n\
             0AAAAA-b_c,Phone call,2026-11-27 14:03:12,,\r\n\
             WB,Phone call,2026-11-27 14:03:11,,\r\n"
        );
        let g0 = ClickExport {
            min_duration: 0,
            conversion: "Calls, qualified".into(),
            ..g
        };
        assert!(click_conversions_csv(&calls, &g0).contains("short,\"Calls, qualified\",2026-11-27 14:03:11,,\r\n"));
        let m = ClickExport {
            platform: ClickPlatform::Microsoft,
            conversion: DEFAULT_CONVERSION.into(),
            min_duration: 0,
        };
        assert_eq!(
            click_conversions_csv(&calls, &m),
            "Parameters:TimeZone=+0000\r\n\
             Microsoft Click ID,Conversion Name,Conversion Time,Conversion Value,Conversion Currency\r\n\
             abc123,Phone call,2026-11-27 14:03:11,,\r\n"
        );
    }
}
