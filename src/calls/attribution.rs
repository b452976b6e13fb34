//! Attributing a call: (called number, call time) → who held the number → the session's facts.
//!
//! Pure: the pool's answer ([`Held`]) and the session records come in, the `attribution` object
//! of SPEC.md's `CALL` and a confidence go out.

use serde_json::{Map, Value, json};

use crate::clock::{Millis, rfc3339};
use crate::pool::{Confidence, Held, LeaseRecord, grade_within, matching_pool};
use crate::rewrite::PhoneNumber;
use crate::rules::{Attribution, Pool, Site};
use crate::store::AudienceRow;
use crate::visitor::classify::captured_params;
use crate::visitor::identity::{StoredTouch, cap};
use crate::visitor::sessions::{MAX_PAGES_PER_SESSION, PageView, SessionRecord};

/// The outcome of attribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed {
    pub confidence: Confidence,
    pub attribution: Value,
}

/// Builds the attribution of a call to `number` at `t`. `held` is the pool's answer; `session`
/// looks a session record up by id (hot cache or store).
pub fn attribute(
    site: &Site,
    number: &PhoneNumber,
    t: Millis,
    held: &Held,
    session: &dyn Fn(&str) -> Option<SessionRecord>,
) -> Attributed {
    if let Some(o) = site.offline.iter().find(|o| &o.number == number) {
        let mut a = empty();
        a.insert("channel".into(), json!("offline"));
        a.insert("campaign".into(), json!(o.campaign));
        a.insert(
            "source".into(),
            json!(o.source.clone().unwrap_or_else(|| "offline".into())),
        );
        a.insert(
            "medium".into(),
            json!(o.medium.clone().unwrap_or_else(|| "offline".into())),
        );
        return Attributed {
            confidence: Confidence::Source,
            attribution: Value::Object(a),
        };
    }
    match held {
        Held::Source { pool, shown_to } => {
            let mut a = empty();
            a.insert("pool".into(), json!(pool));
            // The pool's one channel; else the one channel, and source, that every visitor shown
            // the number before the call came from, when all of them are known and all are the
            // pool's audience as its rules now stand (views from before the rules changed are
            // no answer).
            let p = site.pool(pool);
            let covered = p.is_some_and(|p| {
                shown_to.rows.iter().all(|r| {
                    (p.when.channel.is_empty() || p.when.channel.iter().any(|c| c.as_str() == r.channel))
                        && p.when.source.as_ref().is_none_or(|re| re.is_match(&r.source))
                })
            });
            let known = shown_to.complete && covered;
            let channel = p
                .and_then(pool_channel)
                .or_else(|| unanimous(&shown_to.rows, |r| &r.channel).filter(|_| known));
            if let Some(c) = channel {
                a.insert("channel".into(), json!(c));
            }
            if let Some(s) = unanimous(&shown_to.rows, |r| &r.source).filter(|_| known) {
                a.insert("source".into(), json!(s));
            }
            if !shown_to.rows.is_empty() {
                let sources: Vec<Value> = shown_to
                    .rows
                    .iter()
                    .take(SHOWN_TO_ROWS)
                    .map(|r| {
                        json!({"channel": r.channel, "source": r.source, "visitors": r.visitors,
                               "last_at": rfc3339(r.last_at.max(0) as Millis)})
                    })
                    .collect();
                let more = shown_to.rows.len().saturating_sub(SHOWN_TO_ROWS);
                a.insert(
                    "shown_to".into(),
                    json!({"complete": shown_to.complete, "sources": sources, "more_sources": more}),
                );
            }
            Attributed {
                confidence: Confidence::Source,
                attribution: Value::Object(a),
            }
        }
        Held::Overflow { pool } => {
            let mut a = empty();
            a.insert("pool".into(), json!(pool));
            // An overflow number is shown only to the pool's audience: its visitor is unknown,
            // not its channel.
            if let Some(c) = site.pool(pool).and_then(pool_channel) {
                a.insert("channel".into(), json!(c));
            }
            Attributed {
                confidence: Confidence::None,
                attribution: Value::Object(a),
            }
        }
        Held::Unknown => Attributed {
            confidence: Confidence::None,
            attribution: Value::Object(empty()),
        },
        Held::Session { pool, candidates } => {
            let idle = site
                .pool(pool)
                .map_or(Millis::MAX, |p| p.idle_timeout.as_millis() as Millis);
            let (confidence, ranked) = grade_within(candidates, t, idle);
            let mut a = match ranked.first().and_then(|c| session(&c.session)) {
                Some(rec) => from_session(&rec, site, Some(pool)),
                None => empty(),
            };
            a.insert("pool".into(), json!(pool));
            if let Some(best) = ranked.first() {
                a.insert("session".into(), json!(best.session));
                a.insert("visitor".into(), json!(best.visitor));
            }
            if ranked.len() > 1 || confidence == Confidence::Shared {
                let cands: Vec<Value> = ranked.iter().map(|c| candidate(c, site, pool, session)).collect();
                a.insert("candidates".into(), Value::Array(cands));
            }
            Attributed {
                confidence,
                attribution: Value::Object(a),
            }
        }
    }
}

/// The (channel, source) rows of a call's `shown_to` kept on the call, most visitors first:
/// `utm_source` is whatever a link says, and a call record must not grow with it.
pub const SHOWN_TO_ROWS: usize = 20;

/// The channel of a pool whose `when` names exactly one.
fn pool_channel(p: &Pool) -> Option<&str> {
    match p.when.channel.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    }
}

/// The value every row has, when they all have the same one (none for no rows).
fn unanimous<'r>(rows: &'r [AudienceRow], key: impl Fn(&'r AudienceRow) -> &'r String) -> Option<&'r str> {
    let first = key(rows.first()?);
    rows.iter()
        .all(|r| key(r) == first)
        .then_some(first.as_str())
        .filter(|v| !v.is_empty())
}

fn empty() -> Map<String, Value> {
    let mut a = Map::new();
    for k in [
        "channel",
        "source",
        "medium",
        "campaign",
        "term",
        "content",
        "gclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "fbclid",
        "landing_page",
        "referrer",
        "device",
    ] {
        a.insert(k.into(), Value::Null);
    }
    a.insert("params".into(), json!({}));
    a.insert("pages".into(), json!([]));
    a.insert("touches".into(), json!(0));
    a
}

/// The deciding touch's facts: the last non-direct touch, else the first.
fn touch_fields(a: &mut Map<String, Value>, t: &StoredTouch) {
    a.insert("channel".into(), json!(t.ch));
    a.insert("source".into(), json!(t.src));
    a.insert("medium".into(), json!(t.med));
    a.insert("campaign".into(), json!(t.cmp));
    a.insert("term".into(), json!(t.term));
    a.insert("content".into(), json!(t.cnt));
    for (k, v) in &t.ids {
        if ["gclid", "gbraid", "wbraid", "msclkid", "fbclid"].contains(&k.as_str()) {
            a.insert(k.clone(), json!(v));
        } else {
            a.entry("click_ids").or_insert_with(|| json!({}))[k] = json!(v);
        }
    }
    a.insert("landing_page".into(), json!(t.lp));
    a.insert("referrer".into(), json!(t.rf));
    let params: Map<String, Value> = t.prm.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    a.insert("params".into(), Value::Object(params));
}

/// The touch a call to a number of `pool` is credited to: of the session's touches, in the
/// site's attribution order (last non-direct then first, or first then last), the first that
/// leads to that pool; else the one the attribution model picks.
///
/// Why not always the model's pick: a visitor who landed from an ad (a number of the paid pool)
/// and came back from a search in the same session has a later organic touch, but a call to the
/// paid number is the ad's, with its click id. The number tells which touch showed it.
pub fn touch_for<'r>(rec: &'r SessionRecord, site: &Site, pool: Option<&str>) -> Option<&'r StoredTouch> {
    let order = match site.attribution {
        Attribution::First => [rec.first.as_ref(), rec.last.as_ref()],
        Attribution::LastNonDirect => [rec.last.as_ref(), rec.first.as_ref()],
    };
    let leads_to_pool =
        |t: &&StoredTouch| matching_pool(site, &t.audience(), true).is_some_and(|p| Some(p.name.as_str()) == pool);
    order
        .into_iter()
        .flatten()
        .find(leads_to_pool)
        .or_else(|| order.into_iter().flatten().next())
}

/// The attribution facts of one session, for a call to a number of `pool` ([`touch_for`]).
pub fn from_session(rec: &SessionRecord, site: &Site, pool: Option<&str>) -> Map<String, Value> {
    let mut a = empty();
    if let Some(t) = touch_for(rec, site, pool) {
        touch_fields(&mut a, t);
    }
    page_params(&mut a, &rec.pages, &site.capture);
    a.insert("device".into(), json!(rec.device.as_str()));
    let pages: Vec<Value> = rec
        .pages
        .iter()
        .map(|p| json!({"path": p.path, "at": rfc3339(p.at)}))
        .collect();
    a.insert("pages".into(), Value::Array(pages));
    a.insert("touches".into(), json!(rec.touches));
    if let Some(f) = &rec.first {
        a.insert(
            "first_touch".into(),
            json!({"channel": f.ch, "source": f.src, "medium": f.med, "at": rfc3339(f.t)}),
        );
    }
    a
}

/// Captured parameters on the session's pages, over the landing's: a button or placement is
/// tagged by a link inside the site (`/contact?cta=header`), after the visitor landed, so the
/// landing alone would never carry it. Pages are read in order and a later value replaces an
/// earlier one: the call carries the placement clicked last before it (the landing's own value
/// stays when no later page names that parameter).
fn page_params(a: &mut Map<String, Value>, pages: &[PageView], capture: &[String]) {
    if capture.is_empty() {
        return;
    }
    let Some(Value::Object(params)) = a.get_mut("params") else {
        return;
    };
    // The pages a session record keeps in memory (the first ones), also when it comes from the
    // store, which keeps them all: the answer must not depend on where the record was found.
    for page in pages.iter().take(MAX_PAGES_PER_SESSION) {
        let Some((_, query)) = page.path.split_once('?') else {
            continue;
        };
        for (k, v) in captured_params(query, capture) {
            // Cut as the landing's own values are in its touch, so the two read alike.
            params.insert(cap(&k), json!(cap(&v)));
        }
    }
}

fn candidate(c: &LeaseRecord, site: &Site, pool: &str, session: &dyn Fn(&str) -> Option<SessionRecord>) -> Value {
    let rec = session(&c.session);
    let touch = rec.as_ref().and_then(|r| touch_for(r, site, Some(pool)));
    json!({
        "session": c.session,
        "visitor": c.visitor,
        "leased_at": rfc3339(c.started),
        "last_seen": rfc3339(c.last_seen),
        "released_at": c.released.map(rfc3339),
        "shared": c.shared,
        "channel": touch.as_ref().map(|t| t.ch.clone()),
        "campaign": touch.as_ref().and_then(|t| t.cmp.clone()),
        "term": touch.as_ref().and_then(|t| t.term.clone()),
    })
}

/// Whether a `From` names no one: empty, a word (`Anonymous`, `Restricted`, ...), or the keypad
/// spelling of one that carriers and Twilio put in its place for withheld caller ids
/// (`+266696687` is ANONYMOUS). Such callers are neither first-time nor returning, and have no
/// location.
pub fn anonymous_caller(from: &str) -> bool {
    const WORDS: [&str; 8] = [
        "anonymous",
        "restricted",
        "unknown",
        "private",
        "unavailable",
        "blocked",
        "withheld",
        "no caller id",
    ];
    // ANONYMOUS, RESTRICTED, UNAVAILABLE, BLOCKED, UNKNOWN, PRIVATE on a keypad.
    const KEYPAD: [&str; 6] = [
        "266696687",
        "7378742833",
        "86282452253",
        "2562533",
        "8656696",
        "7748283",
    ];
    let from = from.trim();
    // A SIP URI names its user (`sip:anonymous@anonymous.invalid`, RFC 3323's form).
    let user = from
        .strip_prefix("sip:")
        .or_else(|| from.strip_prefix("sips:"))
        .map_or(from, |u| u.split(['@', ';']).next().unwrap_or(""));
    let word = user.to_ascii_lowercase();
    // "Private Number", "Unknown caller": the word, then only words that say "number".
    let mut words = word.split([' ', '_', '-']).filter(|w| !w.is_empty());
    let worded = words.next().is_some_and(|w| WORDS.contains(&w))
        && words.all(|w| ["number", "caller", "id", "name"].contains(&w));
    let digits = user.trim_start_matches('+');
    user.is_empty() || WORDS.contains(&word.as_str()) || worded || KEYPAD.contains(&digits)
}

/// Where a caller is: the provider's fields when present, else the country from the calling
/// code and, for North American numbers, the state from the area code.
pub fn caller_location(
    from: &str,
    city: Option<&str>,
    state: Option<&str>,
    country: Option<&str>,
) -> (Option<String>, Option<String>, Option<String>) {
    if anonymous_caller(from) {
        return (None, None, None);
    }
    let clean = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let (mut city, mut state, mut country) = (clean(city), clean(state), clean(country));
    if let Some(digits) = from.strip_prefix('+') {
        if country.is_none() {
            country = country_of(digits).map(str::to_string);
        }
        if state.is_none() && digits.starts_with('1') && digits.len() == 11 {
            state = nanp_region(&digits[1..4]).map(str::to_string);
        }
    }
    if city.as_deref() == Some("") {
        city = None;
    }
    (city, state, country)
}

fn country_of(digits: &str) -> Option<&'static str> {
    const CC: &[(&str, &str)] = &[
        ("1", "US"),
        ("44", "GB"),
        ("49", "DE"),
        ("33", "FR"),
        ("61", "AU"),
        ("353", "IE"),
        ("64", "NZ"),
        ("34", "ES"),
        ("39", "IT"),
        ("31", "NL"),
        ("32", "BE"),
        ("41", "CH"),
        ("43", "AT"),
        ("46", "SE"),
        ("47", "NO"),
        ("45", "DK"),
        ("48", "PL"),
        ("351", "PT"),
        ("91", "IN"),
        ("81", "JP"),
        ("52", "MX"),
        ("55", "BR"),
        ("27", "ZA"),
        ("65", "SG"),
    ];
    let mut best: Option<(&str, &str)> = None;
    for (cc, iso) in CC {
        if digits.starts_with(cc) && best.is_none_or(|(b, _)| b.len() < cc.len()) {
            best = Some((cc, iso));
        }
    }
    best.map(|(_, iso)| {
        // +1 is shared by the NANP; Canadian area codes are told apart below.
        if iso == "US" && digits.len() == 11 && nanp_region(&digits[1..4]).is_some_and(is_canadian) {
            "CA"
        } else {
            iso
        }
    })
}

fn is_canadian(region: &str) -> bool {
    matches!(
        region,
        "AB" | "BC" | "MB" | "NB" | "NL" | "NS" | "ON" | "PE" | "QC" | "SK" | "NT" | "NU" | "YT"
    )
}

/// The state or province of a North American area code (the largest ones; others unknown).
fn nanp_region(area: &str) -> Option<&'static str> {
    const AREAS: &[(&str, &str)] = &[
        ("201", "NJ"),
        ("202", "DC"),
        ("203", "CT"),
        ("205", "AL"),
        ("206", "WA"),
        ("207", "ME"),
        ("208", "ID"),
        ("210", "TX"),
        ("212", "NY"),
        ("213", "CA"),
        ("214", "TX"),
        ("215", "PA"),
        ("216", "OH"),
        ("217", "IL"),
        ("224", "IL"),
        ("225", "LA"),
        ("228", "MS"),
        ("229", "GA"),
        ("231", "MI"),
        ("234", "OH"),
        ("239", "FL"),
        ("240", "MD"),
        ("248", "MI"),
        ("251", "AL"),
        ("252", "NC"),
        ("253", "WA"),
        ("254", "TX"),
        ("256", "AL"),
        ("260", "IN"),
        ("262", "WI"),
        ("267", "PA"),
        ("269", "MI"),
        ("270", "KY"),
        ("281", "TX"),
        ("301", "MD"),
        ("302", "DE"),
        ("303", "CO"),
        ("304", "WV"),
        ("305", "FL"),
        ("307", "WY"),
        ("308", "NE"),
        ("309", "IL"),
        ("310", "CA"),
        ("312", "IL"),
        ("313", "MI"),
        ("314", "MO"),
        ("315", "NY"),
        ("316", "KS"),
        ("317", "IN"),
        ("318", "LA"),
        ("319", "IA"),
        ("320", "MN"),
        ("321", "FL"),
        ("323", "CA"),
        ("330", "OH"),
        ("334", "AL"),
        ("336", "NC"),
        ("337", "LA"),
        ("339", "MA"),
        ("347", "NY"),
        ("351", "MA"),
        ("352", "FL"),
        ("360", "WA"),
        ("361", "TX"),
        ("385", "UT"),
        ("386", "FL"),
        ("401", "RI"),
        ("402", "NE"),
        ("404", "GA"),
        ("405", "OK"),
        ("406", "MT"),
        ("407", "FL"),
        ("408", "CA"),
        ("409", "TX"),
        ("410", "MD"),
        ("412", "PA"),
        ("413", "MA"),
        ("414", "WI"),
        ("415", "CA"),
        ("416", "ON"),
        ("417", "MO"),
        ("419", "OH"),
        ("423", "TN"),
        ("424", "CA"),
        ("425", "WA"),
        ("430", "TX"),
        ("432", "TX"),
        ("434", "VA"),
        ("435", "UT"),
        ("440", "OH"),
        ("443", "MD"),
        ("469", "TX"),
        ("470", "GA"),
        ("475", "CT"),
        ("478", "GA"),
        ("479", "AR"),
        ("480", "AZ"),
        ("484", "PA"),
        ("501", "AR"),
        ("502", "KY"),
        ("503", "OR"),
        ("504", "LA"),
        ("505", "NM"),
        ("507", "MN"),
        ("508", "MA"),
        ("509", "WA"),
        ("510", "CA"),
        ("512", "TX"),
        ("513", "OH"),
        ("514", "QC"),
        ("515", "IA"),
        ("516", "NY"),
        ("517", "MI"),
        ("518", "NY"),
        ("520", "AZ"),
        ("530", "CA"),
        ("540", "VA"),
        ("541", "OR"),
        ("551", "NJ"),
        ("559", "CA"),
        ("561", "FL"),
        ("562", "CA"),
        ("563", "IA"),
        ("567", "OH"),
        ("570", "PA"),
        ("571", "VA"),
        ("573", "MO"),
        ("574", "IN"),
        ("580", "OK"),
        ("585", "NY"),
        ("586", "MI"),
        ("601", "MS"),
        ("602", "AZ"),
        ("603", "NH"),
        ("604", "BC"),
        ("605", "SD"),
        ("606", "KY"),
        ("607", "NY"),
        ("608", "WI"),
        ("609", "NJ"),
        ("610", "PA"),
        ("612", "MN"),
        ("613", "ON"),
        ("614", "OH"),
        ("615", "TN"),
        ("616", "MI"),
        ("617", "MA"),
        ("618", "IL"),
        ("619", "CA"),
        ("620", "KS"),
        ("623", "AZ"),
        ("626", "CA"),
        ("630", "IL"),
        ("631", "NY"),
        ("636", "MO"),
        ("641", "IA"),
        ("646", "NY"),
        ("647", "ON"),
        ("650", "CA"),
        ("651", "MN"),
        ("657", "CA"),
        ("660", "MO"),
        ("661", "CA"),
        ("662", "MS"),
        ("678", "GA"),
        ("682", "TX"),
        ("701", "ND"),
        ("702", "NV"),
        ("703", "VA"),
        ("704", "NC"),
        ("706", "GA"),
        ("707", "CA"),
        ("708", "IL"),
        ("712", "IA"),
        ("713", "TX"),
        ("714", "CA"),
        ("715", "WI"),
        ("716", "NY"),
        ("717", "PA"),
        ("718", "NY"),
        ("719", "CO"),
        ("720", "CO"),
        ("724", "PA"),
        ("727", "FL"),
        ("731", "TN"),
        ("732", "NJ"),
        ("734", "MI"),
        ("737", "TX"),
        ("740", "OH"),
        ("747", "CA"),
        ("754", "FL"),
        ("757", "VA"),
        ("760", "CA"),
        ("763", "MN"),
        ("765", "IN"),
        ("770", "GA"),
        ("772", "FL"),
        ("773", "IL"),
        ("774", "MA"),
        ("775", "NV"),
        ("778", "BC"),
        ("781", "MA"),
        ("785", "KS"),
        ("786", "FL"),
        ("801", "UT"),
        ("802", "VT"),
        ("803", "SC"),
        ("804", "VA"),
        ("805", "CA"),
        ("806", "TX"),
        ("808", "HI"),
        ("810", "MI"),
        ("812", "IN"),
        ("813", "FL"),
        ("814", "PA"),
        ("815", "IL"),
        ("816", "MO"),
        ("817", "TX"),
        ("818", "CA"),
        ("828", "NC"),
        ("830", "TX"),
        ("831", "CA"),
        ("832", "TX"),
        ("843", "SC"),
        ("845", "NY"),
        ("847", "IL"),
        ("848", "NJ"),
        ("850", "FL"),
        ("856", "NJ"),
        ("857", "MA"),
        ("858", "CA"),
        ("859", "KY"),
        ("860", "CT"),
        ("862", "NJ"),
        ("863", "FL"),
        ("864", "SC"),
        ("865", "TN"),
        ("870", "AR"),
        ("872", "IL"),
        ("878", "PA"),
        ("901", "TN"),
        ("903", "TX"),
        ("904", "FL"),
        ("905", "ON"),
        ("907", "AK"),
        ("908", "NJ"),
        ("909", "CA"),
        ("910", "NC"),
        ("912", "GA"),
        ("913", "KS"),
        ("914", "NY"),
        ("915", "TX"),
        ("916", "CA"),
        ("917", "NY"),
        ("918", "OK"),
        ("919", "NC"),
        ("920", "WI"),
        ("925", "CA"),
        ("928", "AZ"),
        ("931", "TN"),
        ("936", "TX"),
        ("937", "OH"),
        ("940", "TX"),
        ("941", "FL"),
        ("947", "MI"),
        ("949", "CA"),
        ("951", "CA"),
        ("952", "MN"),
        ("954", "FL"),
        ("956", "TX"),
        ("970", "CO"),
        ("971", "OR"),
        ("972", "TX"),
        ("973", "NJ"),
        ("978", "MA"),
        ("979", "TX"),
        ("980", "NC"),
        ("985", "LA"),
        ("989", "MI"),
    ];
    AREAS.binary_search_by(|(a, _)| (*a).cmp(area)).ok().map(|i| AREAS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SourceAudience;

    #[test]
    fn location_from_provider_or_number() {
        assert_eq!(
            caller_location("+14155550100", Some("SAN FRANCISCO"), Some("CA"), Some("US")),
            (Some("SAN FRANCISCO".into()), Some("CA".into()), Some("US".into()))
        );
        assert_eq!(
            caller_location("+14155550100", None, None, None),
            (None, Some("CA".into()), Some("US".into()))
        );
        assert_eq!(
            caller_location("+14165550100", None, None, Some("")),
            (None, Some("ON".into()), Some("CA".into()))
        );
        assert_eq!(
            caller_location("+442079460000", None, None, None),
            (None, None, Some("GB".into()))
        );
        assert_eq!(caller_location("anonymous", None, None, None), (None, None, None));
        assert_eq!(caller_location("+266696687", None, None, None), (None, None, None));
    }

    #[test]
    fn withheld_caller_ids_are_anonymous() {
        for from in [
            "",
            " ",
            "anonymous",
            "Anonymous",
            "RESTRICTED",
            "Unavailable",
            "+266696687",
            "266696687",
            "+7378742833",
            "sip:anonymous@anonymous.invalid",
            "Private Number",
            "unknown caller",
        ] {
            assert!(anonymous_caller(from), "{from:?}");
        }
        for from in [
            "+14155550100",
            "+442079460000",
            "sip:alice@example.com",
            "Unknown Plumbing Co",
        ] {
            assert!(!anonymous_caller(from), "{from:?}");
        }
    }

    #[test]
    fn a_placement_clicked_inside_the_site_is_captured_and_the_last_one_counts() {
        let capture = vec!["cta".to_owned(), "loc".to_owned()];
        let touch = StoredTouch {
            prm: vec![("cta".into(), "ad".into()), ("loc".into(), "nyc".into())],
            ..Default::default()
        };
        let page = |path: &str, at| PageView { path: path.into(), at };
        let rec = SessionRecord {
            site: "s".into(),
            visitor: "v".into(),
            session: "x".into(),
            started: 0,
            device: crate::visitor::classify::Device::Mobile,
            first: Some(touch.clone()),
            last: Some(touch),
            touches: 1,
            pages: vec![
                page("/?gclid=abc&cta=ad&loc=nyc", 1),
                page("/services?cta=header&other=1", 2),
                page("/about", 3),
                page("/contact?cta=hero%20button&cta=second", 4),
            ],
            pages_dropped: 0,
        };
        let mut site = site("last_non_direct");
        site.capture = capture;
        let a = from_session(&rec, &site, None);
        assert_eq!(a["params"], json!({"cta": "hero button", "loc": "nyc"}));
        // Without a capture list nothing is read from the pages.
        site.capture.clear();
        assert_eq!(
            from_session(&rec, &site, None)["params"],
            json!({"cta": "ad", "loc": "nyc"})
        );
    }

    fn site(attribution: &str) -> Site {
        let text = format!(
            r#"hosts = ["s.test"]
upstream = "http://127.0.0.1:1"
numbers = ["+1 555-010-0000"]
attribution = "{attribution}"

[[pool]]
name = "ads"
mode = "session"
when.channel = ["paid_search"]
numbers = ["+1 555-010-1001"]

[[pool]]
name = "organic"
mode = "source"
when.channel = ["organic_search"]
numbers = ["+1 555-010-2001"]

[[pool]]
name = "social"
mode = "source"
when.channel = ["organic_social", "paid_social"]
numbers = ["+1 555-010-2002"]
"#
        );
        let set = crate::rules::load_sources(&[("s.toml".into(), text)]).unwrap();
        Site::clone(&set.sites[0])
    }

    /// A visitor who landed from an ad (and was shown the paid pool's number) and came back from
    /// a search in the same session: a call to the ad's number is the ad's, click id and all,
    /// whatever the later touch; one to the organic number is the search's. With no touch
    /// leading to the called pool, the site's attribution model decides.
    #[test]
    fn a_call_is_credited_to_the_touch_that_showed_its_number() {
        let paid = StoredTouch {
            ch: "paid_search".into(),
            src: "google".into(),
            med: "cpc".into(),
            cmp: Some("spring".into()),
            ids: vec![("gclid".into(), "Cj0".into())],
            lp: "/?gclid=Cj0".into(),
            ..Default::default()
        };
        let organic = StoredTouch {
            ch: "organic_search".into(),
            src: "google".into(),
            med: "organic".into(),
            lp: "/pricing".into(),
            ..Default::default()
        };
        let email = StoredTouch {
            ch: "email".into(),
            src: "newsletter".into(),
            med: "email".into(),
            ..Default::default()
        };
        let rec = |first: &StoredTouch, last: &StoredTouch| SessionRecord {
            site: "s".into(),
            visitor: "v".into(),
            session: "x".into(),
            started: 0,
            device: crate::visitor::classify::Device::Desktop,
            first: Some(first.clone()),
            last: Some(last.clone()),
            touches: 2,
            pages: Vec::new(),
            pages_dropped: 0,
        };
        let last_model = site("last_non_direct");
        let r = rec(&paid, &organic);
        let a = from_session(&r, &last_model, Some("ads"));
        assert_eq!(
            (a["channel"].as_str(), a["gclid"].as_str()),
            (Some("paid_search"), Some("Cj0"))
        );
        assert_eq!(a["landing_page"], "/?gclid=Cj0");
        assert_eq!(
            from_session(&r, &last_model, Some("organic"))["channel"],
            "organic_search"
        );
        // No touch leads to the pool: the model's pick (last non-direct), or with "first", the first.
        assert_eq!(
            from_session(&rec(&paid, &email), &last_model, Some("gone"))["channel"],
            "email"
        );
        let first_model = site("first");
        assert_eq!(
            from_session(&rec(&paid, &email), &first_model, Some("gone"))["channel"],
            "paid_search"
        );
        assert_eq!(from_session(&rec(&paid, &email), &first_model, None)["gclid"], "Cj0");
        // Both lead to the pool: the model's order picks.
        let later_ad = StoredTouch {
            cmp: Some("summer".into()),
            ids: vec![("gclid".into(), "Cj1".into())],
            ..paid.clone()
        };
        assert_eq!(
            from_session(&rec(&paid, &later_ad), &last_model, Some("ads"))["gclid"],
            "Cj1"
        );
        assert_eq!(
            from_session(&rec(&paid, &later_ad), &first_model, Some("ads"))["gclid"],
            "Cj0"
        );
    }

    /// A source number shared by several channels is credited to a channel only when every
    /// visitor shown it in the window came from that one, and all of them are known; the
    /// audience is kept either way, its largest rows.
    #[test]
    fn a_shared_source_number_takes_the_channel_its_whole_audience_came_from() {
        let site = site("last_non_direct");
        let row = |channel: &str, source: &str, visitors: u32| AudienceRow {
            channel: channel.into(),
            source: source.into(),
            visitors,
            last_at: 1_000,
        };
        let call = |pool: &str, number: &str, rows: Vec<AudienceRow>, complete: bool| {
            let held = Held::Source {
                pool: pool.into(),
                shown_to: SourceAudience { rows, complete },
            };
            let number = PhoneNumber::parse(number, "US").unwrap();
            let got = attribute(&site, &number, 2_000, &held, &|_| None);
            assert_eq!(got.confidence, Confidence::Source);
            got.attribution
        };
        let social = "+1 555-010-2002";
        let a = call("social", social, vec![row("organic_social", "facebook", 3)], true);
        assert_eq!(
            (a["channel"].as_str(), a["source"].as_str()),
            (Some("organic_social"), Some("facebook"))
        );
        assert_eq!(
            a["shown_to"],
            json!({"complete": true, "more_sources": 0, "sources": [{"channel": "organic_social",
                   "source": "facebook", "visitors": 3, "last_at": "1970-01-01T00:00:01Z"}]})
        );
        // Not every viewer known (more views than read, or some without consent): no channel.
        let a = call("social", social, vec![row("organic_social", "facebook", 3)], false);
        assert_eq!((a["channel"].as_str(), a["source"].as_str()), (None, None));
        assert_eq!(a["shown_to"]["complete"], false);
        let a = call(
            "social",
            social,
            vec![row("organic_social", "facebook", 3), row("paid_social", "facebook", 1)],
            true,
        );
        assert_eq!((a["channel"].as_str(), a["source"].as_str()), (None, Some("facebook")));
        assert_eq!(a["shown_to"]["sources"].as_array().unwrap().len(), 2);
        // A channel the pool does not cover (views from before its rules changed) is no answer,
        // for the channel nor the source, even in a pool of one channel.
        let a = call("social", social, vec![row("email", "newsletter", 2)], true);
        assert_eq!((a["channel"].as_str(), a["source"].as_str()), (None, None));
        let a = call("organic", "+1 555-010-2001", vec![row("email", "newsletter", 2)], true);
        assert_eq!(
            (a["channel"].as_str(), a["source"].as_str()),
            (Some("organic_search"), None)
        );
        // Nobody seen: the pool's name and nothing more.
        let a = call("social", social, vec![], true);
        assert_eq!((a["channel"].as_str(), a["pool"].as_str()), (None, Some("social")));
        assert!(a.get("shown_to").is_none());
        // A pool of one channel keeps it, whatever the audience; the source comes from them.
        let a = call(
            "organic",
            "+1 555-010-2001",
            vec![row("organic_search", "google", 5), row("organic_search", "bing", 1)],
            true,
        );
        assert_eq!(
            (a["channel"].as_str(), a["source"].as_str()),
            (Some("organic_search"), None)
        );
        // Any number of sources: the largest are kept, the rest counted.
        let many = (0..30)
            .map(|i| row("organic_social", &format!("s{i}"), 30 - i))
            .collect();
        let a = call("social", social, many, true);
        assert_eq!(a["shown_to"]["sources"].as_array().unwrap().len(), SHOWN_TO_ROWS);
        assert_eq!(a["shown_to"]["sources"][0]["source"], "s0");
        assert_eq!(a["shown_to"]["more_sources"], 30 - SHOWN_TO_ROWS);
        assert_eq!(a["channel"], "organic_social");
    }
}
