//! Ad spend uploads (`PUT /api/spend`): JSON or CSV in, validated [`SpendRow`]s out, stored
//! all or nothing.
//!
//! The parsers are pure; a bad row is an error naming the row (JSON, counted from 1) or the line
//! (CSV, counted from 1 with the header as line 1) and the field, and nothing is stored.
//!
//! - JSON: `{"spend": [{"site", "day", "channel", "campaign", "amount", "currency"}]}`
//!   (`campaign` may be left out or null: spend not split by campaign).
//! - CSV (`Content-Type: text/csv`, RFC 4180, comma separated, an optional UTF-8 BOM): a header
//!   naming the columns `site,day,channel,campaign,amount,currency` (any order; `campaign` may be
//!   left out), then one row per line.
//!
//! `channel` must be a channel name as attribution writes it (`paid_search`, ...), so that the
//! ROI reports can match spend to calls; `day` is `YYYY-MM-DD`; `amount` a number from 0 to a
//! trillion ([`MAX_AMOUNT`]) written with a dot (`1234.50`); `currency` an ISO 4217 code. Two rows with the same site,
//! day, channel and campaign in one upload are refused (which one was meant?); a row already
//! stored is replaced.

use std::collections::HashMap;

use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Admin, MAX_AMOUNT, Resp, internal, json_resp, parse_time, store_error};
use crate::store::SpendRow;
use crate::visitor::classify::Channel;

/// Largest upload: a year of daily spend for a few hundred campaigns.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Longest campaign name kept (utm_campaign values are short; this stops pasted junk).
const MAX_CAMPAIGN: usize = 200;

/// A row that cannot be stored: where it is, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {field}: {message}")]
pub struct SpendError {
    /// `row 3` (JSON) or `line 4` (CSV).
    pub place: String,
    pub field: String,
    pub message: String,
}

fn err(place: &str, field: &str, message: impl Into<String>) -> SpendError {
    SpendError {
        place: place.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The raw text fields of one row, before validation.
/// A spend row's fields, in JSON and as CSV columns.
const FIELDS: [&str; 6] = ["site", "day", "channel", "campaign", "amount", "currency"];

struct Raw<'a> {
    site: Option<&'a str>,
    day: Option<&'a str>,
    channel: Option<&'a str>,
    campaign: Option<&'a str>,
    amount: Result<Option<f64>, String>,
    currency: Option<&'a str>,
}

fn validate(place: &str, raw: Raw<'_>, is_site: &dyn Fn(&str) -> bool) -> Result<SpendRow, SpendError> {
    let required = |field: &str, v: Option<&str>| -> Result<String, SpendError> {
        v.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| err(place, field, "required"))
    };
    let site = required("site", raw.site)?;
    if !is_site(&site) {
        return Err(err(place, "site", format!("{site:?} is not a site in the rules")));
    }
    let day = required("day", raw.day)?;
    if !valid_day(&day) {
        return Err(err(place, "day", format!("{day:?} is not a date written YYYY-MM-DD")));
    }
    let channel = required("channel", raw.channel)?;
    if Channel::parse(&channel).is_none() {
        return Err(err(
            place,
            "channel",
            format!("{channel:?} is not a channel; use one of {}", Channel::names()),
        ));
    }
    let campaign = raw.campaign.map(str::trim).unwrap_or("").to_string();
    if campaign.chars().count() > MAX_CAMPAIGN {
        return Err(err(place, "campaign", format!("longer than {MAX_CAMPAIGN} characters")));
    }
    let amount = match raw.amount {
        Ok(Some(a)) if (0.0..=MAX_AMOUNT).contains(&a) => a,
        Ok(None) => return Err(err(place, "amount", "required")),
        Ok(Some(a)) => {
            return Err(err(
                place,
                "amount",
                format!("must be a number from 0 to {MAX_AMOUNT:e}, got {a}"),
            ));
        }
        Err(got) => {
            return Err(err(
                place,
                "amount",
                format!("must be a number from 0 to {MAX_AMOUNT:e}, got {got}"),
            ));
        }
    };
    let given = required("currency", raw.currency)?;
    let Some(currency) = super::currency(&given) else {
        return Err(err(
            place,
            "currency",
            format!("{given:?} is not an ISO 4217 code such as USD"),
        ));
    };
    Ok(SpendRow {
        site,
        day,
        channel,
        campaign,
        amount,
        currency,
    })
}

/// A real calendar day written `YYYY-MM-DD` (so `2026-02-30` is refused).
fn valid_day(s: &str) -> bool {
    s.len() == 10
        && parse_time(s).is_some_and(|ms| super::reports::day_of(ms, 0) == s)
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Refuses a second row with the key of an earlier one.
fn no_duplicates(rows: &[(String, SpendRow)]) -> Result<(), SpendError> {
    let mut seen: HashMap<(&str, &str, &str, &str), &str> = HashMap::new();
    for (place, r) in rows {
        let key = (r.site.as_str(), r.day.as_str(), r.channel.as_str(), r.campaign.as_str());
        if let Some(first) = seen.insert(key, place) {
            return Err(err(
                place,
                "day",
                format!("repeats {first} (same site, day, channel and campaign)"),
            ));
        }
    }
    Ok(())
}

/// Parses `{"spend": [...]}`.
pub fn parse_json(body: &[u8], is_site: &dyn Fn(&str) -> bool) -> Result<Vec<SpendRow>, SpendError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| err("body", "spend", format!("invalid JSON: {e}")))?;
    let Some(list) = v.get("spend").and_then(Value::as_array) else {
        return Err(err("body", "spend", "expected {\"spend\": [{\"site\", \"day\", ...}]}"));
    };
    let mut rows = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let place = format!("row {}", i + 1);
        let Some(fields) = item.as_object() else {
            return Err(err(&place, "spend", "expected an object"));
        };
        // A misspelt field would be dropped in silence (a campaign stored as `(all)`).
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(err(
                &place,
                unknown,
                format!("unknown field; expected {}", FIELDS.join(", ")),
            ));
        }
        let s = |k: &str| -> Result<Option<&str>, SpendError> {
            match item.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(err(&place, k, format!("must be a string, got {other}"))),
            }
        };
        let amount = match item.get("amount") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(other.to_string()),
        };
        let raw = Raw {
            site: s("site")?,
            day: s("day")?,
            channel: s("channel")?,
            campaign: s("campaign")?,
            amount,
            currency: s("currency")?,
        };
        rows.push((place.clone(), validate(&place, raw, is_site)?));
    }
    finish(rows)
}

fn finish(rows: Vec<(String, SpendRow)>) -> Result<Vec<SpendRow>, SpendError> {
    if rows.is_empty() {
        return Err(err("body", "spend", "no rows"));
    }
    no_duplicates(&rows)?;
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// Splits RFC 4180 text into records, each with the line it starts on (1-based). Quoted fields
/// may hold commas, doubled quotes and line breaks; blank lines are skipped.
pub fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, SpendError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => break,
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err(err(&format!("line {start}"), "csv", "a quoted field is not closed")),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    if !matches!(chars.peek(), None | Some(',' | '\r' | '\n')) {
                        return Err(err(&format!("line {line}"), "csv", "text after a closing quote"));
                    }
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            out.push((start, fields));
        }
    }
    Ok(out)
}

/// Parses a CSV upload with a header line.
pub fn parse_csv(text: &str, is_site: &dyn Fn(&str) -> bool) -> Result<Vec<SpendRow>, SpendError> {
    let records = csv_records(text)?;
    let Some((_, header)) = records.first() else {
        return Err(err(
            "line 1",
            "header",
            "empty upload; expected site,day,channel,campaign,amount,currency",
        ));
    };
    let names: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    if let Some(unknown) = names.iter().find(|n| !FIELDS.contains(&n.as_str())) {
        return Err(err(
            "line 1",
            "header",
            format!("unknown column {unknown:?}; expected site,day,channel,campaign,amount,currency"),
        ));
    }
    let idx = |name: &str| names.iter().position(|n| n == name);
    let mut cols = HashMap::new();
    for name in FIELDS {
        match idx(name) {
            Some(i) => {
                cols.insert(name, i);
            }
            None if name == "campaign" => {}
            None => {
                return Err(err(
                    "line 1",
                    "header",
                    format!("no {name:?} column; expected site,day,channel,campaign,amount,currency"),
                ));
            }
        }
    }
    let mut rows = Vec::with_capacity(records.len());
    for (line, fields) in &records[1..] {
        let place = format!("line {line}");
        if fields.len() != header.len() {
            return Err(err(
                &place,
                "csv",
                format!("{} fields where the header has {}", fields.len(), header.len()),
            ));
        }
        let get = |name: &str| cols.get(name).map(|&i| fields[i].as_str());
        let amount = match get("amount").map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(None),
            Some(a) => a.parse::<f64>().map(Some).map_err(|_| format!("{a:?}")),
        };
        let raw = Raw {
            site: get("site"),
            day: get("day"),
            channel: get("channel"),
            campaign: get("campaign"),
            amount,
            currency: get("currency"),
        };
        rows.push((place.clone(), validate(&place, raw, is_site)?));
    }
    finish(rows)
}

impl Admin {
    /// `PUT /api/spend` (JSON, or CSV with `Content-Type: text/csv`): `{"stored": n}`.
    pub(super) async fn put_spend(&self, req: Request<Incoming>) -> Result<Resp, (StatusCode, String)> {
        let ctype = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let csv = match ctype.as_str() {
            "text/csv" | "application/csv" => true,
            "application/json" | "" => false,
            other => {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type {other:?}: send application/json or text/csv"),
                ));
            }
        };
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_BODY} bytes"),
                )
            })?
            .to_bytes();
        let rules = self.proxy.rules();
        let is_site = |s: &str| rules.sites.iter().any(|site| site.name == s);
        let rows = if csv {
            let text = std::str::from_utf8(&body)
                .map_err(|_| (StatusCode::BAD_REQUEST, "the CSV is not UTF-8".to_string()))?;
            parse_csv(text, &is_site)
        } else {
            parse_json(&body, &is_site)
        }
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.put_spend(&rows))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        Ok(json_resp(StatusCode::OK, json!({"stored": stored})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> bool {
        s == "shop"
    }

    #[test]
    fn csv_upload_parses_with_quotes_bom_crlf_and_any_column_order() {
        let text = "\u{feff}day,site,channel,campaign,amount,currency\r\n\
                    2026-11-27,shop,paid_search,\"spring, \"\"big\"\"\",120.50,usd\r\n\
                    \r\n\
                    2026-11-27,shop,paid_social,,20,EUR\r\n";
        let rows = parse_csv(text, &site).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SpendRow {
                site: "shop".into(),
                day: "2026-11-27".into(),
                channel: "paid_search".into(),
                campaign: "spring, \"big\"".into(),
                amount: 120.5,
                currency: "USD".into(),
            }
        );
        assert_eq!(rows[1].campaign, "");
        // No campaign column at all.
        let rows = parse_csv("site,day,channel,amount,currency\nshop,2026-01-01,email,3,GBP", &site).unwrap();
        assert_eq!(rows[0].campaign, "");
    }

    #[test]
    fn csv_errors_name_the_line_and_field() {
        let head = "site,day,channel,campaign,amount,currency\n";
        let cases = [
            (
                "shop,2026-11-27,paid_search,a,12,USD\nshop,2026-11-27,paid_search,b,abc,USD\n",
                "line 3: amount",
            ),
            ("shop,2026-02-30,paid_search,a,12,USD\n", "line 2: day"),
            ("shop,2026-11-27,google,a,12,USD\n", "line 2: channel"),
            ("other,2026-11-27,paid_search,a,12,USD\n", "line 2: site"),
            ("shop,2026-11-27,paid_search,a,-1,USD\n", "line 2: amount"),
            ("shop,2026-11-27,paid_search,a,1,dollars\n", "line 2: currency"),
            ("shop,2026-11-27,paid_search,a,1,USS\n", "line 2: currency"),
            ("shop,2026-11-27,paid_search,a,1\n", "line 2: csv"),
            (
                "shop,2026-11-27,paid_search,a,1,USD\nshop,2026-11-27,paid_search,a,2,USD\n",
                "line 3: day: repeats line 2",
            ),
            (
                "\"multi\nline\",2026-11-27,paid_search,a,1,USD\nshop,x,paid_search,a,1,USD\n",
                "line 2: site",
            ),
            ("shop,2026-11-27,paid_search,\"open,1,USD\n", "line 2: csv"),
            ("", "body: spend: no rows"),
        ];
        for (body, want) in cases {
            let e = parse_csv(&format!("{head}{body}"), &site).unwrap_err().to_string();
            assert!(e.starts_with(want), "{body:?}: {e}");
        }
        // The line count follows quoted line breaks.
        let e = parse_csv(
            &format!("{head}shop,2026-11-27,paid_search,\"two\nlines\",1,USD\nshop,2026-11-27,paid_search,x,1,US\n"),
            &site,
        )
        .unwrap_err();
        assert_eq!(e.place, "line 4");
        let e = parse_csv("site,day,amount,currency\n", &site).unwrap_err().to_string();
        assert!(e.contains("no \"channel\" column"), "{e}");
    }

    #[test]
    fn json_upload_and_its_errors() {
        let ok = br#"{"spend":[{"site":"shop","day":"2026-11-27","channel":"paid_search","campaign":"spring","amount":10,"currency":"USD"},
                                {"site":"shop","day":"2026-11-27","channel":"paid_search","amount":5.5,"currency":"USD"}]}"#;
        let rows = parse_json(ok, &site).unwrap();
        assert_eq!((rows[1].campaign.as_str(), rows[1].amount), ("", 5.5));
        let bad = br#"{"spend":[{"site":"shop","day":"2026-11-27","channel":"paid_search","amount":10,"currency":"USD"},
                                 {"site":"shop","day":"2026-11-27","channel":"paid_search","amount":"10","currency":"USD"}]}"#;
        assert_eq!(
            parse_json(bad, &site).unwrap_err().to_string(),
            "row 2: amount: must be a number from 0 to 1e12, got \"10\""
        );
        assert!(
            parse_json(b"[]", &site)
                .unwrap_err()
                .to_string()
                .starts_with("body: spend")
        );
        assert!(
            parse_json(b"nope", &site)
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
        let e = parse_json(br#"{"spend":[{"site":"shop","day":"2026-11-27","channel":"paid_search","amount":1,"currency":"USD","campaign":7}]}"#, &site)
            .unwrap_err();
        assert_eq!((e.place.as_str(), e.field.as_str()), ("row 1", "campaign"));
        // A misspelt field or column is refused, not dropped (the row would count as campaign "").
        let e = parse_json(br#"{"spend":[{"site":"shop","day":"2026-11-27","channel":"paid_search","campain":"brand","amount":1,"currency":"USD"}]}"#, &site)
            .unwrap_err();
        assert_eq!((e.place.as_str(), e.field.as_str()), ("row 1", "campain"));
        let e = parse_csv(
            "site,day,channel,campain,amount,currency\nshop,2026-11-27,paid_search,brand,1,USD\n",
            &site,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown column \"campain\""), "{e}");
    }
}
