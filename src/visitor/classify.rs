//! Traffic classification: what kind of marketing touch brought a visitor here.
//!
//! Given what the proxy knows about one landing request (the query string, the `Referer`
//! header, the site's own host names), [`classify`] returns a [`Touch`]: the GA4 default channel
//! group ([`Channel`]), source, medium, campaign, keyword, click ids and captured parameters.
//! [`device`] and [`is_bot`] read the request's User-Agent (and `Sec-CH-UA-Mobile`).
//!
//! Pure logic: no I/O, no clock, no HTTP types; it may depend on `percent-encoding` only.
//! Everything here runs on every proxied request, so lookups are binary searches over static
//! sorted tables and User-Agent checks are substring scans of one (usually stack) lowercase copy.
//!
//! # Rules (REFERENCE.md §4, the GA4 default channel group)
//!
//! 1. **Direct**: no external referrer, no `utm_*` and no click id.
//! 2. Otherwise a `(source, medium, campaign)` triple is derived (see [`Touch::source`]) and
//!    [`channel_for`] evaluates GA4's rules top to bottom, first match wins: cross-network,
//!    paid shopping / search / social / video, display, paid other, organic shopping / social /
//!    video / search, referral, email, affiliates, audio, SMS, mobile push.
//! 3. GA4 would call anything left "Unassigned"; that group is not in SPEC.md's channel list,
//!    so it becomes [`Channel::Referral`] when there is a source, [`Channel::Direct`] when the
//!    source is `(direct)` (e.g. only `utm_term` on a typed-in URL).
//!
//! # Choices where GA4 is silent or differs
//!
//! - Sources are normalised to a brand name for known sites (`www.google.co.uk` → `google`,
//!   `l.facebook.com` → `facebook`, `t.co` and `x.com` → `twitter`, the name advertisers still
//!   put in `utm_source` and that `twclid` implies), webmail referrers keep their host
//!   (`mail.google.com`, as GA4 shows them), other sites their host without `www.`.
//! - A referrer with no `utm_*` gets medium `organic` (search engines), `social` (social
//!   networks), `email` (webmail) or `referral` (video, shopping and other sites). GA4 itself
//!   reports webmail referrers as Referral; a call-tracking user expects Email.
//! - Click ids are paid signals ([`ClickIdKind::implies_paid`]); without `utm_source` /
//!   `utm_medium` they imply a source and medium: `gclid`/`gbraid`/`wbraid` → `google/cpc`,
//!   `dclid` (Campaign Manager 360 / DV360 display ads) → `dv360/display` (Display),
//!   `msclkid` → `bing/cpc`, `ttclid` → `tiktok/cpc`, `li_fat_id` → `linkedin/cpc`,
//!   `twclid` → `twitter/cpc`, `yclid` → `yandex/cpc`, `fbclid` alone → `facebook/social`.
//!   A paid click arriving from a video or shopping site (YouTube, Google Shopping) keeps that
//!   site as source, standing in for GA4's "Google Ads ad network type" condition.
//!   Explicit `utm_source` / `utm_medium` always win over inferred values.
//! - Internal navigation: a referrer whose host is one of the site's own hosts (any port, any
//!   case, with or without `www.`) and no `utm_*` / click id is not a new touch ([`classify`]
//!   returns `None`). Other subdomains of the site count as referrals, as in GA4 without
//!   cross-domain configuration.
//! - Unparseable referrers (not `http`, `https` or `android-app`) are ignored.
//! - Every stored value is trimmed, stripped of control characters and capped at
//!   [`MAX_VALUE_LEN`] bytes.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode_str;

/// Longest value kept for any stored string (source, campaign, click id, referrer, parameter).
/// Touches live in the visitor cookie and the call store; real tags and click ids are far
/// shorter (a gclid is about 100 bytes), so anything longer is garbage or an attack.
pub const MAX_VALUE_LEN: usize = 512;

/// Raw (percent-encoded) bytes read for one value: each decoded byte takes at most three raw
/// ones, so this is enough for [`MAX_VALUE_LEN`] decoded bytes and bounds the work on huge input.
const MAX_RAW_LEN: usize = MAX_VALUE_LEN * 3;

// ---------------------------------------------------------------------------------------------
// Channels and click ids
// ---------------------------------------------------------------------------------------------

/// A GA4 default channel group, plus `Offline` for static numbers printed on radio, print or
/// billboards (never produced by [`classify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// No referrer and no campaign tags.
    #[default]
    Direct,
    /// Google Ads campaigns spanning networks (Performance Max, Demand Gen).
    CrossNetwork,
    /// Paid clicks on shopping sites or shopping campaigns.
    PaidShopping,
    /// Paid clicks on search engines.
    PaidSearch,
    /// Paid clicks on social networks.
    PaidSocial,
    /// Paid clicks on video sites.
    PaidVideo,
    /// Display advertising (banners, CPM).
    Display,
    /// Paid medium with no recognised source.
    PaidOther,
    /// Unpaid visits from shopping sites.
    OrganicShopping,
    /// Unpaid visits from social networks.
    OrganicSocial,
    /// Unpaid visits from video sites.
    OrganicVideo,
    /// Unpaid visits from search engines.
    OrganicSearch,
    /// Links on other sites.
    Referral,
    /// Email links (tagged, or from webmail).
    Email,
    /// Affiliate links.
    Affiliate,
    /// Ads on audio platforms.
    Audio,
    /// Text-message links.
    Sms,
    /// Mobile push notifications.
    MobilePush,
    /// Static tracking numbers used off-line.
    Offline,
}

impl Channel {
    /// Every channel, in GA4 evaluation order (Offline last).
    pub const ALL: [Channel; 19] = [
        Channel::Direct,
        Channel::CrossNetwork,
        Channel::PaidShopping,
        Channel::PaidSearch,
        Channel::PaidSocial,
        Channel::PaidVideo,
        Channel::Display,
        Channel::PaidOther,
        Channel::OrganicShopping,
        Channel::OrganicSocial,
        Channel::OrganicVideo,
        Channel::OrganicSearch,
        Channel::Referral,
        Channel::Email,
        Channel::Affiliate,
        Channel::Audio,
        Channel::Sms,
        Channel::MobilePush,
        Channel::Offline,
    ];

    /// The snake_case name used in rule files and the API (SPEC.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "direct",
            Channel::CrossNetwork => "cross_network",
            Channel::PaidShopping => "paid_shopping",
            Channel::PaidSearch => "paid_search",
            Channel::PaidSocial => "paid_social",
            Channel::PaidVideo => "paid_video",
            Channel::Display => "display",
            Channel::PaidOther => "paid_other",
            Channel::OrganicShopping => "organic_shopping",
            Channel::OrganicSocial => "organic_social",
            Channel::OrganicVideo => "organic_video",
            Channel::OrganicSearch => "organic_search",
            Channel::Referral => "referral",
            Channel::Email => "email",
            Channel::Affiliate => "affiliate",
            Channel::Audio => "audio",
            Channel::Sms => "sms",
            Channel::MobilePush => "mobile_push",
            Channel::Offline => "offline",
        }
    }

    /// Every channel's name, comma-separated: what an error about an unknown one lists.
    pub fn names() -> String {
        Channel::ALL.map(Channel::as_str).join(", ")
    }

    /// Inverse of [`Channel::as_str`] (exact match, so typos in rule files are caught).
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the visit came from an ad the site paid for: the GA4 paid groups, Display,
    /// Cross-network and Audio ("ads on audio platforms"). Affiliate, email, SMS, push and
    /// offline are not counted as paid clicks.
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Channel::CrossNetwork
                | Channel::PaidShopping
                | Channel::PaidSearch
                | Channel::PaidSocial
                | Channel::PaidVideo
                | Channel::Display
                | Channel::PaidOther
                | Channel::Audio
        )
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ad platform's click identifier, appended to the landing URL by auto-tagging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClickIdKind {
    /// Google Ads.
    Gclid,
    /// Google Ads, iOS app-to-web.
    Gbraid,
    /// Google Ads, iOS web-to-web.
    Wbraid,
    /// Campaign Manager 360 / Display & Video 360.
    Dclid,
    /// Microsoft Advertising.
    Msclkid,
    /// Meta (Facebook, Instagram); also added to organic clicks.
    Fbclid,
    /// TikTok Ads.
    Ttclid,
    /// LinkedIn Ads.
    LiFatId,
    /// X (Twitter) Ads.
    Twclid,
    /// Yandex Direct.
    Yclid,
}

impl ClickIdKind {
    /// Every kind; also the priority order when several paid click ids infer the source.
    pub const ALL: [ClickIdKind; 10] = [
        ClickIdKind::Gclid,
        ClickIdKind::Gbraid,
        ClickIdKind::Wbraid,
        ClickIdKind::Dclid,
        ClickIdKind::Msclkid,
        ClickIdKind::Fbclid,
        ClickIdKind::Ttclid,
        ClickIdKind::LiFatId,
        ClickIdKind::Twclid,
        ClickIdKind::Yclid,
    ];

    /// The URL parameter name.
    pub fn param(self) -> &'static str {
        match self {
            ClickIdKind::Gclid => "gclid",
            ClickIdKind::Gbraid => "gbraid",
            ClickIdKind::Wbraid => "wbraid",
            ClickIdKind::Dclid => "dclid",
            ClickIdKind::Msclkid => "msclkid",
            ClickIdKind::Fbclid => "fbclid",
            ClickIdKind::Ttclid => "ttclid",
            ClickIdKind::LiFatId => "li_fat_id",
            ClickIdKind::Twclid => "twclid",
            ClickIdKind::Yclid => "yclid",
        }
    }

    /// The kind for a URL parameter name (ASCII case-insensitive).
    pub fn from_param(name: &str) -> Option<ClickIdKind> {
        ClickIdKind::ALL
            .into_iter()
            .find(|k| k.param().eq_ignore_ascii_case(name))
    }

    /// Whether the id alone proves a paid click. `fbclid` is also appended to organic
    /// Facebook and Instagram links (REFERENCE.md §4), so it does not.
    pub fn implies_paid(self) -> bool {
        self != ClickIdKind::Fbclid
    }

    /// The source assumed when no `utm_source` says otherwise.
    pub fn source(self) -> &'static str {
        match self {
            ClickIdKind::Gclid | ClickIdKind::Gbraid | ClickIdKind::Wbraid => "google",
            ClickIdKind::Dclid => "dv360",
            ClickIdKind::Msclkid => "bing",
            ClickIdKind::Fbclid => "facebook",
            ClickIdKind::Ttclid => "tiktok",
            ClickIdKind::LiFatId => "linkedin",
            ClickIdKind::Twclid => "twitter",
            ClickIdKind::Yclid => "yandex",
        }
    }

    /// The medium assumed when no `utm_medium` says otherwise.
    pub fn medium(self) -> &'static str {
        match self {
            ClickIdKind::Dclid => "display",
            ClickIdKind::Fbclid => "social",
            _ => "cpc",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Landing and touch
// ---------------------------------------------------------------------------------------------

/// What the proxy knows about one landing request.
#[derive(Clone, Copy, Debug)]
pub struct Landing<'a> {
    /// Raw query string of the requested URL, without `?`; may be empty.
    pub query: &'a str,
    /// Raw `Referer` header.
    pub referrer: Option<&'a str>,
    /// The site's own host names (lowercase), for internal-navigation detection.
    pub own_hosts: &'a [String],
    /// Extra URL parameter names the site wants kept (e.g. `cta`), matched exactly.
    pub capture: &'a [String],
}

/// One marketing touch: where a visit came from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Touch {
    /// GA4 default channel group.
    pub channel: Channel,
    /// `utm_source` as given (lowercased); else the source implied by a click id; else the
    /// referring site (brand name for known sites, e.g. `google`, `facebook`, `twitter`; the
    /// host without `www.` otherwise); else `(direct)`. `(not set)` when only `utm_medium`
    /// is given and nothing else names a source.
    pub source: String,
    /// `utm_medium` (lowercased), else implied: `cpc` (click id), `organic`, `social`,
    /// `referral`, `email`, `(none)` (direct), `(not set)`.
    pub medium: String,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`, else the keyword in a search engine referrer.
    pub term: Option<String>,
    /// `utm_content`.
    pub content: Option<String>,
    /// Click ids in query order, one per kind (the first non-empty value).
    pub click_ids: Vec<(ClickIdKind, String)>,
    /// The raw referrer, if external.
    pub referrer: Option<String>,
    /// Captured custom parameters, in `capture` order (absent or empty ones skipped).
    pub params: Vec<(String, String)>,
}

impl Touch {
    /// The value of one click id, if the landing carried it.
    pub fn click_id(&self, kind: ClickIdKind) -> Option<&str> {
        self.click_ids.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.as_str())
    }
}

/// The site's captured parameters (`capture`) in a query string, as a landing's touch keeps them
/// ([`Touch::params`]): in `capture` order, absent or empty ones skipped, values decoded and
/// capped.
pub fn captured_params(query: &str, capture: &[String]) -> Vec<(String, String)> {
    if capture.is_empty() {
        return Vec::new();
    }
    Tags::parse(query, capture).params
}

/// Classifies a landing. `None` means internal navigation (the referrer is one of the site's
/// own hosts and there is no `utm_*` and no click id): not a new touch.
pub fn classify(landing: &Landing) -> Option<Touch> {
    let tags = Tags::parse(landing.query, landing.capture);
    let tagged = tags.has_utm() || !tags.click_ids.is_empty();

    let referrer = landing.referrer.and_then(Referrer::parse);
    let internal = referrer.as_ref().is_some_and(|r| r.is_own(landing.own_hosts));
    if internal && !tagged {
        return None;
    }
    let external = referrer.filter(|_| !internal);
    let ref_site = external.as_ref().and_then(Referrer::site);
    let ref_kind = ref_site.and_then(|s| s.kind);
    let from_referrer = external
        .as_ref()
        .map(|r| (r.source(ref_site), referrer_medium(ref_kind)));

    let paid_click = ClickIdKind::ALL
        .into_iter()
        .find(|k| k.implies_paid() && tags.has_click(*k));
    let inferred: Option<(String, &str)> = if let Some(kind) = paid_click {
        match (&from_referrer, ref_kind) {
            (Some((src, _)), Some(SiteKind::Video | SiteKind::Shopping)) => Some((src.clone(), kind.medium())),
            _ => Some((kind.source().to_owned(), kind.medium())),
        }
    } else if tags.has_click(ClickIdKind::Fbclid) {
        let fb = ClickIdKind::Fbclid;
        match (&from_referrer, ref_kind) {
            (Some((src, _)), Some(SiteKind::Social)) => Some((src.clone(), fb.medium())),
            _ => Some((fb.source().to_owned(), fb.medium())),
        }
    } else {
        None
    };

    let (source, medium) = if tags.source.is_some() || tags.medium.is_some() {
        let source = tags
            .source
            .clone()
            .or_else(|| inferred.as_ref().map(|(s, _)| s.clone()))
            .or_else(|| from_referrer.as_ref().map(|(s, _)| s.clone()))
            .unwrap_or_else(|| "(not set)".to_owned());
        let medium = tags
            .medium
            .clone()
            .or_else(|| inferred.as_ref().map(|(_, m)| (*m).to_owned()))
            .unwrap_or_else(|| "(not set)".to_owned());
        (source, medium)
    } else if let Some((s, m)) = inferred {
        (s, m.to_owned())
    } else if let Some((s, m)) = from_referrer {
        (s, m.to_owned())
    } else {
        ("(direct)".to_owned(), "(none)".to_owned())
    };

    let channel = if !tagged && external.is_none() {
        Channel::Direct
    } else {
        let campaign = tags.campaign.as_deref().unwrap_or("");
        channel_for(&source, &medium, campaign).unwrap_or(if source == "(direct)" {
            Channel::Direct
        } else {
            Channel::Referral
        })
    };

    let term = tags.term.or_else(|| {
        let r = external.as_ref()?;
        r.keyword(ref_site.filter(|s| s.kind == Some(SiteKind::Search))?)
    });

    Some(Touch {
        channel,
        source,
        medium,
        campaign: tags.campaign,
        term,
        content: tags.content,
        click_ids: tags.click_ids,
        referrer: external.map(|r| floor_boundary(r.raw, MAX_VALUE_LEN).to_owned()),
        params: tags.params,
    })
}

/// GA4 default channel group rules 2–10 of REFERENCE.md §4 for one `(source, medium,
/// campaign)` triple (compared case-insensitively). `None` is GA4's "Unassigned". The Direct
/// rule needs to know whether a referrer or tags were present, so [`classify`] applies it.
pub fn channel_for(source: &str, medium: &str, campaign: &str) -> Option<Channel> {
    let kind = site_kind(source);
    let source = source.trim();
    let paid = is_paid_medium(medium);
    let shopping_campaign = is_shopping_campaign(campaign);
    let medium_in = |set: &[&str]| set.iter().any(|m| medium.eq_ignore_ascii_case(m));
    let source_in = |set: &[&str]| set.iter().any(|s| source.eq_ignore_ascii_case(s));

    if contains_ci(campaign, "cross-network") {
        return Some(Channel::CrossNetwork);
    }
    if paid {
        if kind == Some(SiteKind::Shopping) || shopping_campaign {
            return Some(Channel::PaidShopping);
        }
        match kind {
            Some(SiteKind::Search) => return Some(Channel::PaidSearch),
            Some(SiteKind::Social) => return Some(Channel::PaidSocial),
            Some(SiteKind::Video) => return Some(Channel::PaidVideo),
            _ => {}
        }
    }
    if medium_in(&["display", "banner", "expandable", "interstitial", "cpm"]) {
        return Some(Channel::Display);
    }
    if paid {
        return Some(Channel::PaidOther);
    }
    if kind == Some(SiteKind::Shopping) || shopping_campaign {
        return Some(Channel::OrganicShopping);
    }
    if kind == Some(SiteKind::Social)
        || medium_in(&[
            "social",
            "social-network",
            "social-media",
            "sm",
            "social network",
            "social media",
        ])
    {
        return Some(Channel::OrganicSocial);
    }
    if kind == Some(SiteKind::Video) || contains_ci(medium, "video") {
        return Some(Channel::OrganicVideo);
    }
    if kind == Some(SiteKind::Search) || medium.eq_ignore_ascii_case("organic") {
        return Some(Channel::OrganicSearch);
    }
    if medium_in(&["referral", "app", "link"]) {
        return Some(Channel::Referral);
    }
    const EMAIL: [&str; 4] = ["email", "e-mail", "e_mail", "e mail"];
    if source_in(&EMAIL) || medium_in(&EMAIL) {
        return Some(Channel::Email);
    }
    if medium.eq_ignore_ascii_case("affiliate") {
        return Some(Channel::Affiliate);
    }
    if medium.eq_ignore_ascii_case("audio") {
        return Some(Channel::Audio);
    }
    if source.eq_ignore_ascii_case("sms") || medium.eq_ignore_ascii_case("sms") {
        return Some(Channel::Sms);
    }
    if ends_with_ci(medium, "push")
        || contains_ci(medium, "mobile")
        || contains_ci(medium, "notification")
        || source.eq_ignore_ascii_case("firebase")
    {
        return Some(Channel::MobilePush);
    }
    None
}

/// GA4's paid medium regex `^(.*cp.*|ppc|retargeting|paid.*)$`, case-insensitive.
pub fn is_paid_medium(medium: &str) -> bool {
    contains_ci(medium, "cp")
        || medium.eq_ignore_ascii_case("ppc")
        || medium.eq_ignore_ascii_case("retargeting")
        || starts_with_ci(medium, "paid")
}

/// GA4's shopping campaign regex `^(.*(([^a-df-z]|^)shop|shopping).*)$`, case-insensitive:
/// "shop" at the start or after anything but the letters a–d and f–z, or "shopping" anywhere.
pub fn is_shopping_campaign(campaign: &str) -> bool {
    let b = campaign.as_bytes();
    if contains_ci(campaign, "shopping") {
        return true;
    }
    (0..b.len().saturating_sub(3)).any(|i| {
        b[i..i + 4].eq_ignore_ascii_case(b"shop")
            && (i == 0 || {
                let p = b[i - 1].to_ascii_lowercase();
                !(p.is_ascii_lowercase() && p != b'e')
            })
    })
}

// ---------------------------------------------------------------------------------------------
// Query string
// ---------------------------------------------------------------------------------------------

/// The campaign parameters of one landing URL.
#[derive(Default)]
struct Tags {
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
    term: Option<String>,
    content: Option<String>,
    click_ids: Vec<(ClickIdKind, String)>,
    params: Vec<(String, String)>,
}

impl Tags {
    fn parse(query: &str, capture: &[String]) -> Tags {
        let mut tags = Tags::default();
        let mut captured: Vec<Option<String>> = vec![None; capture.len()];
        for (raw_key, raw_value) in pairs(query) {
            let key = decode_key(raw_key);
            let slot = match key.get(..4).zip(key.get(4..)) {
                Some((utm, field)) if utm.eq_ignore_ascii_case("utm_") => {
                    let fields = [
                        ("source", &mut tags.source),
                        ("medium", &mut tags.medium),
                        ("campaign", &mut tags.campaign),
                        ("term", &mut tags.term),
                        ("content", &mut tags.content),
                    ];
                    fields
                        .into_iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(field))
                        .map(|(_, slot)| slot)
                }
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.is_none() {
                    *slot = decode_value(raw_value);
                }
            } else if let Some(kind) = ClickIdKind::from_param(&key)
                && !tags.has_click(kind)
                && let Some(v) = decode_value(raw_value)
            {
                tags.click_ids.push((kind, v));
            }
            for (name, slot) in capture.iter().zip(captured.iter_mut()) {
                if slot.is_none() && *name == key {
                    *slot = decode_value(raw_value);
                }
            }
        }
        for field in [&mut tags.source, &mut tags.medium] {
            if let Some(v) = field.as_mut() {
                *v = cap(v.to_lowercase());
            }
        }
        tags.params = capture
            .iter()
            .zip(captured)
            .filter_map(|(name, v)| Some((cap_str(name).to_owned(), v?)))
            .collect();
        tags
    }

    fn has_utm(&self) -> bool {
        self.source.is_some()
            || self.medium.is_some()
            || self.campaign.is_some()
            || self.term.is_some()
            || self.content.is_some()
    }

    fn has_click(&self, kind: ClickIdKind) -> bool {
        self.click_ids.iter().any(|(k, _)| *k == kind)
    }
}

/// `key=value` pairs of a query (or fragment), still encoded. `&amp;` from HTML-escaped links
/// is tolerated, as browsers keep it literally in the URL.
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k.strip_prefix("amp;").unwrap_or(k), v)
    })
}

fn decode_key(raw: &str) -> Cow<'_, str> {
    if raw.contains(['%', '+']) {
        Cow::Owned(decode(raw))
    } else {
        Cow::Borrowed(raw)
    }
}

/// A decoded, cleaned value; `None` when empty.
fn decode_value(raw: &str) -> Option<String> {
    let v = decode(raw);
    (!v.is_empty()).then_some(v)
}

/// Form-decodes (`+` is a space, `%XX` a byte, bad escapes kept literally, invalid UTF-8
/// replaced), then [`clean`]s.
fn decode(raw: &str) -> String {
    let raw = floor_boundary(raw, MAX_RAW_LEN);
    let spaced: Cow<str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    clean(&percent_decode_str(&spaced).decode_utf8_lossy())
}

/// Trims, drops control characters (they would corrupt logs and CSV exports) and caps.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_LEN));
    for c in s.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_VALUE_LEN {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

fn cap(mut s: String) -> String {
    let len = floor_boundary(&s, MAX_VALUE_LEN).len();
    s.truncate(len);
    s
}

fn cap_str(s: &str) -> &str {
    floor_boundary(s, MAX_VALUE_LEN)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn floor_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Referrer
// ---------------------------------------------------------------------------------------------

/// A parsed `Referer` header.
struct Referrer<'a> {
    raw: &'a str,
    /// Lowercase host (no port, no trailing dot), or the package of an `android-app://` referrer.
    host: String,
    app: bool,
    query: &'a str,
    fragment: &'a str,
}

impl<'a> Referrer<'a> {
    fn parse(raw: &'a str) -> Option<Referrer<'a>> {
        let trimmed = raw.trim();
        let (scheme, rest) = trimmed.split_once("://")?;
        let app = scheme.eq_ignore_ascii_case("android-app");
        if !(app || scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if hostport.starts_with('[') {
            let close = hostport.find(']')?;
            &hostport[..=close]
        } else {
            hostport.split_once(':').map_or(hostport, |(h, _)| h)
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        let ipv6 = |b: u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'[' | b']');
        if host.is_empty()
            || host.len() > 253
            || !(host.bytes().all(valid) || (host.starts_with('[') && host.bytes().all(ipv6)))
        {
            return None;
        }
        let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
        let query = before_fragment.split_once('?').map_or("", |(_, q)| q);
        Some(Referrer {
            raw: trimmed,
            host: host.to_ascii_lowercase(),
            app,
            query,
            fragment,
        })
    }

    /// A page of the site itself (an app's referrer never is).
    fn is_own(&self, own_hosts: &[String]) -> bool {
        !self.app && is_own_host(&self.host, own_hosts)
    }

    fn site(&self) -> Option<&'static Site> {
        if self.app {
            lookup(APPS, &self.host)
        } else {
            lookup_host(&self.host)
        }
    }

    /// The source name: the site's brand, else the host without `www.`.
    fn source(&self, site: Option<&'static Site>) -> String {
        match site {
            Some(s) if !s.name.is_empty() => s.name.to_owned(),
            _ => cap(strip_www(&self.host).to_owned()),
        }
    }

    /// The search keyword carried in the query or fragment, if any.
    fn keyword(&self, site: &Site) -> Option<String> {
        let names = keyword_params(site.name);
        pairs(self.query)
            .chain(pairs(self.fragment))
            .filter(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .find_map(|(_, v)| decode_value(v))
    }
}

/// The medium implied by a referrer of this kind.
fn referrer_medium(kind: Option<SiteKind>) -> &'static str {
    match kind {
        Some(SiteKind::Search) => "organic",
        Some(SiteKind::Social) => "social",
        Some(SiteKind::Webmail) => "email",
        Some(SiteKind::Video | SiteKind::Shopping) | None => "referral",
    }
}

/// The query parameters search engines put the keyword in.
fn keyword_params(engine: &str) -> &'static [&'static str] {
    match engine {
        "yahoo" => &["p"],
        "yandex" => &["text"],
        "baidu" => &["wd", "word"],
        "naver" | "coccoc" | "rambler" => &["query"],
        "startpage" => &["query", "q"],
        "sogou" => &["query", "keyword"],
        "goo" => &["MT"],
        _ => &["q"],
    }
}

/// Whether a landing comes from one of the site's own pages (its referrer is an own host).
pub fn is_internal(landing: &Landing) -> bool {
    landing
        .referrer
        .and_then(Referrer::parse)
        .is_some_and(|r| r.is_own(landing.own_hosts))
}

/// The lowercase host of an `http(s)` referrer (port, user info and trailing dot removed).
pub fn referrer_host(referrer: &str) -> Option<String> {
    Referrer::parse(referrer).filter(|r| !r.app).map(|r| r.host)
}

/// The keyword in a search engine referrer (`q` for Google, Bing, DuckDuckGo..., `p` for
/// Yahoo, `text` for Yandex, `wd`/`word` for Baidu, `query` for Naver...), decoded.
/// Search engines rarely send it today; `utm_term` is the usual keyword source.
pub fn search_keyword(referrer: &str) -> Option<String> {
    let r = Referrer::parse(referrer)?;
    let site = r.site().filter(|s| s.kind == Some(SiteKind::Search))?;
    r.keyword(site)
}

fn strip_www(host: &str) -> &str {
    match host.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("www.") => &host[4..],
        _ => host,
    }
}

/// Whether `host` (lowercase, no port) is one of the site's hosts, ignoring `www.`, case, a
/// port or a trailing dot on either side.
fn is_own_host(host: &str, own_hosts: &[String]) -> bool {
    let host = strip_www(host);
    own_hosts.iter().any(|own| {
        let own = own.trim();
        let own = if own.starts_with('[') {
            own.find(']').map_or(own, |i| &own[..=i])
        } else {
            own.split_once(':').map_or(own, |(h, _)| h)
        };
        let own = own.strip_suffix('.').unwrap_or(own);
        strip_www(own).eq_ignore_ascii_case(host)
    })
}

// ---------------------------------------------------------------------------------------------
// Site lists
// ---------------------------------------------------------------------------------------------

/// What kind of site a source or referrer is, for GA4's source lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// Search engines.
    Search,
    /// Social networks, forums and messengers.
    Social,
    /// Video platforms.
    Video,
    /// Marketplaces and shopping engines.
    Shopping,
    /// Webmail (not a GA4 list: it makes referrers count as Email).
    Webmail,
}

/// The kind of site a `utm_source` value, a brand name or a host name refers to:
/// `google`, `Facebook`, `www.google.co.uk`, `l.facebook.com`, `https://t.co/x`...
pub fn site_kind(source_or_host: &str) -> Option<SiteKind> {
    lookup_source(source_or_host).and_then(|s| s.kind)
}

/// One entry of a site table. `kind: None` marks a host that is plainly a referral even though
/// its brand is listed (e.g. `accounts.google.com`). `name` is the normalised source; empty for
/// webmail and plain entries, whose source is their host.
struct Site {
    key: &'static str,
    kind: Option<SiteKind>,
    name: &'static str,
}

const fn site(key: &'static str, kind: Option<SiteKind>, name: &'static str) -> Site {
    Site { key, kind, name }
}

const SEARCH: Option<SiteKind> = Some(SiteKind::Search);
const SOCIAL: Option<SiteKind> = Some(SiteKind::Social);
const VIDEO: Option<SiteKind> = Some(SiteKind::Video);
const SHOP: Option<SiteKind> = Some(SiteKind::Shopping);
const MAIL: Option<SiteKind> = Some(SiteKind::Webmail);
const PLAIN: Option<SiteKind> = None;

fn lookup(table: &'static [Site], key: &str) -> Option<&'static Site> {
    table.binary_search_by(|s| s.key.cmp(key)).ok().map(|i| &table[i])
}

fn lookup_source(source: &str) -> Option<&'static Site> {
    let s = source.trim();
    if s.contains("://") {
        let r = Referrer::parse(s)?;
        return r.site();
    }
    let lower: Cow<str> = if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    };
    if lower.contains('.') {
        lookup_host(lower.strip_suffix('.').unwrap_or(&lower))
    } else {
        lookup(BRANDS, &lower).or_else(|| lookup(ALIASES, &lower))
    }
}

/// Second-level labels under which country domains register names (`google.co.uk`,
/// `google.com.au`, `yahoo.co.jp`, `goo.ne.jp`).
const GENERIC_SLDS: [&str; 14] = [
    "ac", "co", "com", "edu", "go", "gob", "gov", "ltd", "ne", "net", "nic", "or", "org", "plc",
];

/// The site of a lowercase host: the longest [`EXACT`] suffix, else the registrable label
/// (`google` in `www.google.co.uk`) or its `sub.label` form (`mail.google`) in [`BRANDS`].
/// A listed brand under someone else's domain (`google.evil.com`) does not match.
fn lookup_host(host: &str) -> Option<&'static Site> {
    let mut rest = host;
    loop {
        if let Some(site) = lookup(EXACT, rest) {
            return Some(site);
        }
        match rest.find('.') {
            Some(dot) => rest = &rest[dot + 1..],
            None => break,
        }
    }
    // Byte offsets of the last four dots, right to left.
    let mut dots = [None; 4];
    for (slot, (i, _)) in dots.iter_mut().zip(host.rmatch_indices('.')) {
        *slot = Some(i);
    }
    let start_after = |d: Option<usize>| d.map_or(0, |i| i + 1);
    let last_dot = dots[0]?;
    let sld = &host[start_after(dots[1])..last_dot];
    let country_sld = dots[1].is_some() && host.len() - last_dot == 3 && GENERIC_SLDS.contains(&sld);
    // (start of the registrable label, its end, the dot before it)
    let (start, end, before) = if country_sld {
        (start_after(dots[2]), dots[1]?, dots[2])
    } else {
        (start_after(dots[1]), last_dot, dots[1])
    };
    if before.is_some() {
        let index = if country_sld { 3 } else { 2 };
        let sub_start = start_after(dots[index]);
        if let Some(site) = lookup(BRANDS, &host[sub_start..end]) {
            return Some(site);
        }
    }
    lookup(BRANDS, &host[start..end])
}

/// Registrable labels (any TLD, any country domain) and `sub.label` forms, sorted by key.
/// Built from GA4's source category lists, trimmed to sites that send real traffic.
static BRANDS: &[Site] = &[
    site("accounts.google", PLAIN, ""),
    site("ads.google", PLAIN, ""),
    site("alibaba", SHOP, "alibaba"),
    site("aliexpress", SHOP, "aliexpress"),
    site("amazon", SHOP, "amazon"),
    site("analytics.google", PLAIN, ""),
    site("aol", SEARCH, "aol"),
    site("ask", SEARCH, "ask"),
    site("baidu", SEARCH, "baidu"),
    site("bestbuy", SHOP, "bestbuy"),
    site("bilibili", VIDEO, "bilibili"),
    site("bing", SEARCH, "bing"),
    site("blog.naver", SOCIAL, "blog.naver.com"),
    site("bluesky", SOCIAL, "bluesky"),
    site("bsky", SOCIAL, "bluesky"),
    site("business.google", PLAIN, ""),
    site("cafe.naver", SOCIAL, "cafe.naver.com"),
    site("calendar.google", PLAIN, ""),
    site("classroom.google", PLAIN, ""),
    site("coccoc", SEARCH, "coccoc"),
    site("dailymotion", VIDEO, "dailymotion"),
    site("daum", SEARCH, "daum"),
    site("discord", SOCIAL, "discord"),
    site("discordapp", SOCIAL, "discord"),
    site("disneyplus", VIDEO, "disneyplus"),
    site("disqus", SOCIAL, "disqus"),
    site("docs.google", PLAIN, ""),
    site("dogpile", SEARCH, "dogpile"),
    site("douban", SOCIAL, "douban"),
    site("drive.google", PLAIN, ""),
    site("duckduckgo", SEARCH, "duckduckgo"),
    site("ebay", SHOP, "ebay"),
    site("ecosia", SEARCH, "ecosia"),
    site("email.seznam", MAIL, ""),
    site("etsy", SHOP, "etsy"),
    site("facebook", SOCIAL, "facebook"),
    site("fastmail", MAIL, ""),
    site("fb", SOCIAL, "facebook"),
    site("flickr", SOCIAL, "flickr"),
    site("gemini.google", PLAIN, ""),
    site("gmail", MAIL, ""),
    site("gmx", MAIL, ""),
    site("goo", SEARCH, "goo"),
    site("google", SEARCH, "google"),
    site("hulu", VIDEO, "hulu"),
    site("icloud", MAIL, ""),
    site("idealo", SHOP, "idealo"),
    site("instagram", SOCIAL, "instagram"),
    site("iqiyi", VIDEO, "iqiyi"),
    site("kagi", SEARCH, "kagi"),
    site("kakao", SOCIAL, "kakao"),
    site("kelkoo", SHOP, "kelkoo"),
    site("linkedin", SOCIAL, "linkedin"),
    site("lnkd", SOCIAL, "linkedin"),
    site("lycos", SEARCH, "lycos"),
    site("mail.163", MAIL, ""),
    site("mail.aol", MAIL, ""),
    site("mail.daum", MAIL, ""),
    site("mail.google", MAIL, ""),
    site("mail.live", MAIL, ""),
    site("mail.naver", MAIL, ""),
    site("mail.proton", MAIL, ""),
    site("mail.protonmail", MAIL, ""),
    site("mail.qq", MAIL, ""),
    site("mail.yahoo", MAIL, ""),
    site("mail.yandex", MAIL, ""),
    site("mail.zoho", MAIL, ""),
    site("mastodon", SOCIAL, "mastodon"),
    site("medium", SOCIAL, "medium"),
    site("meet.google", PLAIN, ""),
    site("meetup", SOCIAL, "meetup"),
    site("mercadolibre", SHOP, "mercadolibre"),
    site("mercadolivre", SHOP, "mercadolivre"),
    site("messenger", SOCIAL, "messenger"),
    site("mojeek", SEARCH, "mojeek"),
    site("myaccount.google", PLAIN, ""),
    site("naver", SEARCH, "naver"),
    site("netflix", VIDEO, "netflix"),
    site("news.ycombinator", SOCIAL, "news.ycombinator.com"),
    site("nextdoor", SOCIAL, "nextdoor"),
    site("outlook", MAIL, ""),
    site("outlook.live", MAIL, ""),
    site("outlook.office", MAIL, ""),
    site("outlook.office365", MAIL, ""),
    site("pay.google", PLAIN, ""),
    site("pinterest", SOCIAL, "pinterest"),
    site("play.google", PLAIN, ""),
    site("presearch", SEARCH, "presearch"),
    site("pricerunner", SHOP, "pricerunner"),
    site("quora", SOCIAL, "quora"),
    site("qwant", SEARCH, "qwant"),
    site("rakuten", SHOP, "rakuten"),
    site("rambler", SEARCH, "rambler"),
    site("reddit", SOCIAL, "reddit"),
    site("rumble", VIDEO, "rumble"),
    site("search.brave", SEARCH, "brave"),
    site("seznam", SEARCH, "seznam"),
    site("shein", SHOP, "shein"),
    site("shopify", SHOP, "shopify"),
    site("shopping.google", SHOP, "shopping.google.com"),
    site("shopzilla", SHOP, "shopzilla"),
    site("sites.google", PLAIN, ""),
    site("slack", SOCIAL, "slack"),
    site("snapchat", SOCIAL, "snapchat"),
    site("sogou", SEARCH, "sogou"),
    site("startpage", SEARCH, "startpage"),
    site("stripe", SHOP, "stripe"),
    site("support.google", PLAIN, ""),
    site("tagmanager.google", PLAIN, ""),
    site("telegram", SOCIAL, "telegram"),
    site("temu", SHOP, "temu"),
    site("threads", SOCIAL, "threads"),
    site("tiktok", SOCIAL, "tiktok"),
    site("translate.google", PLAIN, ""),
    site("tripadvisor", SOCIAL, "tripadvisor"),
    site("tumblr", SOCIAL, "tumblr"),
    site("tuta", MAIL, ""),
    site("tutanota", MAIL, ""),
    site("twitch", VIDEO, "twitch"),
    site("twitter", SOCIAL, "twitter"),
    site("veoh", VIDEO, "veoh"),
    site("vimeo", VIDEO, "vimeo"),
    site("vk", SOCIAL, "vk"),
    site("vkontakte", SOCIAL, "vk"),
    site("walmart", SHOP, "walmart"),
    site("wayfair", SHOP, "wayfair"),
    site("wechat", SOCIAL, "wechat"),
    site("weibo", SOCIAL, "weibo"),
    site("weixin.qq", SOCIAL, "wechat"),
    site("whatsapp", SOCIAL, "whatsapp"),
    site("wistia", VIDEO, "wistia"),
    site("workspace.google", PLAIN, ""),
    site("xing", SOCIAL, "xing"),
    site("yahoo", SEARCH, "yahoo"),
    site("yandex", SEARCH, "yandex"),
    site("yelp", SOCIAL, "yelp"),
    site("youku", VIDEO, "youku"),
    site("youtube", VIDEO, "youtube"),
    site("youtube-nocookie", VIDEO, "youtube"),
    site("zalando", SHOP, "zalando"),
];

/// Domains recognised only with this exact suffix (short or generic labels), sorted by key.
static EXACT: &[Site] = &[
    site("dai.ly", VIDEO, "dailymotion"),
    site("e.mail.ru", MAIL, ""),
    site("fb.me", SOCIAL, "facebook"),
    site("go.mail.ru", SEARCH, "go.mail.ru"),
    site("iq.com", VIDEO, "iqiyi"),
    site("kick.com", VIDEO, "kick.com"),
    site("line.me", SOCIAL, "line"),
    site("m.me", SOCIAL, "messenger"),
    site("mail.com", MAIL, ""),
    site("ok.ru", SOCIAL, "ok.ru"),
    site("pin.it", SOCIAL, "pinterest"),
    site("redd.it", SOCIAL, "reddit"),
    site("shop.app", SHOP, "shop.app"),
    site("so.com", SEARCH, "so.com"),
    site("t.co", SOCIAL, "twitter"),
    site("t.me", SOCIAL, "telegram"),
    site("target.com", SHOP, "target.com"),
    site("ted.com", VIDEO, "ted.com"),
    site("wa.me", SOCIAL, "whatsapp"),
    site("web.de", MAIL, ""),
    site("wish.com", SHOP, "wish.com"),
    site("x.com", SOCIAL, "twitter"),
    site("ya.ru", SEARCH, "yandex"),
    site("youtu.be", VIDEO, "youtube"),
];

/// Source names that are not domains (as advertisers write them in `utm_source`), sorted.
static ALIASES: &[Site] = &[
    site("adwords", SEARCH, "google"),
    site("brave", SEARCH, "brave"),
    site("google ads", SEARCH, "google"),
    site("google shopping", SHOP, "google shopping"),
    site("google_ads", SEARCH, "google"),
    site("googleads", SEARCH, "google"),
    site("ig", SOCIAL, "instagram"),
    site("igshopping", SHOP, "igshopping"),
    site("line", SOCIAL, "line"),
    site("meta", SOCIAL, "facebook"),
    site("x", SOCIAL, "twitter"),
    site("yt", VIDEO, "youtube"),
];

/// `android-app://<package>/` referrers (Chrome sends these for links opened from apps).
static APPS: &[Site] = &[
    site("com.facebook.katana", SOCIAL, "facebook"),
    site("com.facebook.lite", SOCIAL, "facebook"),
    site("com.facebook.orca", SOCIAL, "messenger"),
    site("com.google.android.apps.maps", SEARCH, "google"),
    site("com.google.android.gm", MAIL, "gmail"),
    site("com.google.android.googlequicksearchbox", SEARCH, "google"),
    site("com.google.android.youtube", VIDEO, "youtube"),
    site("com.instagram.android", SOCIAL, "instagram"),
    site("com.linkedin.android", SOCIAL, "linkedin"),
    site("com.microsoft.office.outlook", MAIL, "outlook"),
    site("com.pinterest", SOCIAL, "pinterest"),
    site("com.reddit.frontpage", SOCIAL, "reddit"),
    site("com.slack", SOCIAL, "slack"),
    site("com.snapchat.android", SOCIAL, "snapchat"),
    site("com.twitter.android", SOCIAL, "twitter"),
    site("com.whatsapp", SOCIAL, "whatsapp"),
    site("com.zhiliaoapp.musically", SOCIAL, "tiktok"),
    site("jp.naver.line.android", SOCIAL, "line"),
    site("org.telegram.messenger", SOCIAL, "telegram"),
];

// ---------------------------------------------------------------------------------------------
// Device and bots
// ---------------------------------------------------------------------------------------------

/// The visitor's device class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Desktop and laptop browsers (and anything unrecognised).
    Desktop,
    /// Phones.
    Mobile,
    /// Tablets.
    Tablet,
}

impl Device {
    /// `desktop`, `mobile` or `tablet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device class. `Sec-CH-UA-Mobile: ?1` means mobile (REFERENCE.md §4; Chromium over
/// HTTPS only); otherwise the User-Agent decides: iPad, Kindle/Silk, PlayBook, "Tablet" and
/// Android without "Mobile" are tablets; iPhone, iPod, Android with "Mobile", Windows Phone,
/// BlackBerry, Opera Mini/Mobi, KaiOS and other "Mobi" agents are phones. iPadOS 13+ Safari
/// presents itself as a Mac and is counted as desktop; the headers cannot tell them apart.
pub fn device(user_agent: Option<&str>, ch_ua_mobile: Option<&str>) -> Device {
    if ch_ua_mobile.is_some_and(|v| v.trim() == "?1") {
        return Device::Mobile;
    }
    let Some(ua) = user_agent else {
        return Device::Desktop;
    };
    with_ascii_lowercase(ua, |ua| {
        let has = |tokens: &[&str]| tokens.iter().any(|t| ua.contains(t));
        if ua.contains("ipad") {
            Device::Tablet
        } else if has(&[
            "iphone",
            "ipod",
            "windows phone",
            "iemobile",
            "opera mini",
            "opera mobi",
            "blackberry",
            "bb10",
            "kaios",
            "symbian",
        ]) {
            Device::Mobile
        } else if has(&["kindle", "silk/", "playbook"]) || (ua.contains("tablet") && !ua.contains("tablet pc")) {
            Device::Tablet
        } else if ua.contains("android") {
            if ua.contains("mobile") {
                Device::Mobile
            } else {
                Device::Tablet
            }
        } else if ua.contains("mobi") {
            Device::Mobile
        } else {
            Device::Desktop
        }
    })
}

/// Crawler tokens that contain none of the generic "bot", "crawl", "spider" (lowercase).
const BOT_TOKENS: &[&str] = &[
    "apis-google",
    "bingpreview",
    "chatgpt-user",
    "datadogsynthetics",
    "daumoa",
    "embedly",
    "facebookcatalog",
    "facebookexternalhit",
    "feedfetcher-google",
    "google favicon",
    "google web preview",
    "google-adwords-instant",
    "google-inspectiontool",
    "google-pagerenderer",
    "google-read-aloud",
    "google-site-verification",
    "googleother",
    "gtmetrix",
    "headlesschrome",
    "ia_archiver",
    "iframely",
    "lighthouse",
    "mediapartners-google",
    "meta-externalagent",
    "meta-externalfetcher",
    "newrelicpinger",
    "phantomjs",
    "pingdom",
    "prerender",
    "site24x7",
    "skypeuripreview",
    "slurp",
    "statuscake",
    "vkshare",
    "yeti/",
];

/// Whether the User-Agent is a search, social-preview, SEO, AI or monitoring crawler (these
/// must see the site's own number: `bots = "original"` keeps NAP data consistent).
///
/// Matches the generic tokens "bot" (Googlebot, AdsBot-Google, Storebot-Google, bingbot,
/// msnbot, DuckDuckBot, YandexBot, Exabot, Twitterbot, LinkedInBot, Pinterestbot, Slackbot,
/// Discordbot, TelegramBot, Applebot, AhrefsBot, SemrushBot, MJ12bot, DotBot, PetalBot, GPTBot,
/// ClaudeBot, CCBot, UptimeRobot, but not the Cubot phone brand), "crawl" and "spider"
/// (Baiduspider, Sogou web spider, Bytespider, Screaming Frog), plus named agents without those
/// tokens: facebookexternalhit, meta-externalagent, Mediapartners-Google, Google-InspectionTool,
/// APIs-Google, GoogleOther, BingPreview, Slurp, ia_archiver, WhatsApp's link previewer,
/// HeadlessChrome, Lighthouse and uptime monitors.
///
/// Generic HTTP clients (`curl`, `Wget`, `python-requests`) are deliberately *not* bots: they
/// are operators checking the proxy by hand, and they should see what a visitor sees. An empty
/// or missing User-Agent is not a bot either.
pub fn is_bot(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent else {
        return false;
    };
    with_ascii_lowercase(ua.trim(), |ua| {
        ua.match_indices("bot").any(|(i, _)| !ua[..i].ends_with("cu"))
            || ua.contains("crawl")
            || ua.contains("spider")
            || ua.starts_with("whatsapp/")
            || BOT_TOKENS.iter().any(|t| ua.contains(t))
    })
}

/// Runs `f` on an ASCII-lowercased copy of `s`, kept on the stack for ordinary lengths.
fn with_ascii_lowercase<R>(s: &str, f: impl FnOnce(&str) -> R) -> R {
    /// Real browser User-Agents are 100–300 bytes; longer ones take the heap path.
    const STACK: usize = 512;
    if s.len() <= STACK {
        let mut buf = [0u8; STACK];
        let lower = &mut buf[..s.len()];
        lower.copy_from_slice(s.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII lowercasing keeps UTF-8 valid, so this never falls back.
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&s.to_ascii_lowercase())
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn own() -> Vec<String> {
        vec!["example.com".to_owned(), "shop.example.net".to_owned()]
    }

    fn landing<'a>(query: &'a str, referrer: Option<&'a str>, own: &'a [String], capture: &'a [String]) -> Landing<'a> {
        Landing {
            query,
            referrer,
            own_hosts: own,
            capture,
        }
    }

    fn touch(query: &str, referrer: Option<&str>) -> Option<Touch> {
        let own = own();
        let capture = vec!["cta".to_owned(), "loc".to_owned()];
        classify(&landing(query, referrer, &own, &capture))
    }

    /// (query, referrer, channel, source, medium, term)
    type Case = (
        &'static str,
        Option<&'static str>,
        Channel,
        &'static str,
        &'static str,
        Option<&'static str>,
    );

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Direct
        ("", None, Channel::Direct, "(direct)", "(none)", None),
        ("cta=hero", None, Channel::Direct, "(direct)", "(none)", None),
        ("", Some(""), Channel::Direct, "(direct)", "(none)", None),
        ("utm_term=plumber", None, Channel::Direct, "(direct)", "(none)", Some("plumber")),
        // Cross-network (Performance Max campaigns)
        ("utm_source=google&utm_medium=cpc&utm_campaign=pmax_Cross-Network_spring", Some("https://www.google.com/"), Channel::CrossNetwork, "google", "cpc", None),
        ("gclid=Cj0KCQ&utm_campaign=cross-network", None, Channel::CrossNetwork, "google", "cpc", None),
        ("utm_campaign=cross-network", None, Channel::CrossNetwork, "(direct)", "(none)", None),
        // Paid shopping
        ("utm_source=google&utm_medium=cpc&utm_campaign=Shopping%20-%20Spring", None, Channel::PaidShopping, "google", "cpc", None),
        ("utm_source=amazon&utm_medium=ppc", None, Channel::PaidShopping, "amazon", "ppc", None),
        ("gclid=abc", Some("https://shopping.google.com/"), Channel::PaidShopping, "shopping.google.com", "cpc", None),
        // Paid search
        ("utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=emergency+plumber", Some("https://www.google.com/"), Channel::PaidSearch, "google", "cpc", Some("emergency plumber")),
        ("gclid=Cj0KCQjw", Some("https://www.google.com/"), Channel::PaidSearch, "google", "cpc", None),
        ("gbraid=0AAAAA", None, Channel::PaidSearch, "google", "cpc", None),
        ("wbraid=CjkKCQ", None, Channel::PaidSearch, "google", "cpc", None),
        ("msclkid=7f3a9c", Some("https://www.bing.com/"), Channel::PaidSearch, "bing", "cpc", None),
        ("yclid=123456", Some("https://yandex.ru/"), Channel::PaidSearch, "yandex", "cpc", None),
        ("utm_source=Bing&utm_medium=PPC", None, Channel::PaidSearch, "bing", "ppc", None),
        ("utm_source=google&utm_medium=cpm", None, Channel::PaidSearch, "google", "cpm", None),
        // Paid social
        ("utm_source=facebook&utm_medium=paid_social", None, Channel::PaidSocial, "facebook", "paid_social", None),
        ("fbclid=IwAR2x&utm_medium=paid", Some("https://l.facebook.com/"), Channel::PaidSocial, "facebook", "paid", None),
        ("fbclid=IwAR2x&utm_source=instagram&utm_medium=cpc", None, Channel::PaidSocial, "instagram", "cpc", None),
        ("ttclid=E.C.P.abc", None, Channel::PaidSocial, "tiktok", "cpc", None),
        ("li_fat_id=3f6a-11", None, Channel::PaidSocial, "linkedin", "cpc", None),
        ("twclid=2-abc", Some("https://t.co/xyz"), Channel::PaidSocial, "twitter", "cpc", None),
        ("utm_source=ig&utm_medium=retargeting", None, Channel::PaidSocial, "ig", "retargeting", None),
        // Paid video
        ("utm_source=youtube&utm_medium=cpv", None, Channel::PaidVideo, "youtube", "cpv", None),
        ("gclid=abc", Some("https://www.youtube.com/watch?v=1"), Channel::PaidVideo, "youtube", "cpc", None),
        // Display
        ("utm_source=gdn&utm_medium=display", None, Channel::Display, "gdn", "display", None),
        ("utm_source=partner&utm_medium=banner", None, Channel::Display, "partner", "banner", None),
        ("utm_source=dsp&utm_medium=cpm", None, Channel::Display, "dsp", "cpm", None),
        ("dclid=CJ2l", None, Channel::Display, "dv360", "display", None),
        // Paid other
        ("utm_source=local-directory&utm_medium=ppc", None, Channel::PaidOther, "local-directory", "ppc", None),
        ("utm_medium=paid", None, Channel::PaidOther, "(not set)", "paid", None),
        // Organic shopping
        ("", Some("https://www.amazon.com/dp/B0001"), Channel::OrganicShopping, "amazon", "referral", None),
        ("", Some("https://www.etsy.com/listing/123"), Channel::OrganicShopping, "etsy", "referral", None),
        ("", Some("https://shopping.google.com/"), Channel::OrganicShopping, "shopping.google.com", "referral", None),
        ("utm_source=ebay&utm_medium=listing", None, Channel::OrganicShopping, "ebay", "listing", None),
        ("utm_source=newsletter&utm_campaign=eshop", None, Channel::OrganicShopping, "newsletter", "(not set)", None),
        // Organic social
        ("", Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com%2F&h=AT0"), Channel::OrganicSocial, "facebook", "social", None),
        ("", Some("https://lm.facebook.com/"), Channel::OrganicSocial, "facebook", "social", None),
        ("", Some("https://m.facebook.com/"), Channel::OrganicSocial, "facebook", "social", None),
        ("", Some("https://t.co/abc"), Channel::OrganicSocial, "twitter", "social", None),
        ("", Some("https://x.com/someone/status/1"), Channel::OrganicSocial, "twitter", "social", None),
        ("", Some("https://www.linkedin.com/feed/"), Channel::OrganicSocial, "linkedin", "social", None),
        ("", Some("https://lnkd.in/eXaMpLe"), Channel::OrganicSocial, "linkedin", "social", None),
        ("", Some("https://l.instagram.com/"), Channel::OrganicSocial, "instagram", "social", None),
        ("", Some("https://out.reddit.com/t3_abc"), Channel::OrganicSocial, "reddit", "social", None),
        ("", Some("https://www.pinterest.co.uk/pin/1/"), Channel::OrganicSocial, "pinterest", "social", None),
        ("", Some("https://www.threads.net/@x"), Channel::OrganicSocial, "threads", "social", None),
        ("", Some("https://news.ycombinator.com/item?id=1"), Channel::OrganicSocial, "news.ycombinator.com", "social", None),
        ("", Some("android-app://com.linkedin.android/"), Channel::OrganicSocial, "linkedin", "social", None),
        ("fbclid=IwAR0abc", None, Channel::OrganicSocial, "facebook", "social", None),
        ("fbclid=IwAR0abc", Some("https://l.facebook.com/"), Channel::OrganicSocial, "facebook", "social", None),
        ("fbclid=IwAR0abc", Some("https://l.instagram.com/"), Channel::OrganicSocial, "instagram", "social", None),
        ("utm_source=newsletter&utm_medium=social-network", None, Channel::OrganicSocial, "newsletter", "social-network", None),
        // Organic video
        ("", Some("https://www.youtube.com/watch?v=1"), Channel::OrganicVideo, "youtube", "referral", None),
        ("", Some("https://m.youtube.com/"), Channel::OrganicVideo, "youtube", "referral", None),
        ("", Some("https://vimeo.com/123"), Channel::OrganicVideo, "vimeo", "referral", None),
        ("", Some("https://www.twitch.tv/x"), Channel::OrganicVideo, "twitch", "referral", None),
        ("utm_source=blog&utm_medium=video", None, Channel::OrganicVideo, "blog", "video", None),
        // Organic search
        ("", Some("https://www.google.co.uk/"), Channel::OrganicSearch, "google", "organic", None),
        ("", Some("https://www.google.com.au/"), Channel::OrganicSearch, "google", "organic", None),
        ("", Some("https://google.de/"), Channel::OrganicSearch, "google", "organic", None),
        ("", Some("https://www.google.com/search?q=emergency+plumber&oq=x"), Channel::OrganicSearch, "google", "organic", Some("emergency plumber")),
        ("", Some("https://duckduckgo.com/?q=plumber+near+me&t=h_"), Channel::OrganicSearch, "duckduckgo", "organic", Some("plumber near me")),
        ("", Some("https://www.bing.com/search?q=24%2F7+plumber&form=QBLH"), Channel::OrganicSearch, "bing", "organic", Some("24/7 plumber")),
        ("", Some("https://search.yahoo.co.jp/search?p=%E6%B0%B4%E9%81%93&ei=UTF-8"), Channel::OrganicSearch, "yahoo", "organic", Some("水道")),
        ("", Some("https://search.yahoo.com/search?p=plumber"), Channel::OrganicSearch, "yahoo", "organic", Some("plumber")),
        ("", Some("https://yandex.ru/search/?text=%D1%81%D0%B0%D0%BD%D1%82%D0%B5%D1%85%D0%BD%D0%B8%D0%BA"), Channel::OrganicSearch, "yandex", "organic", Some("сантехник")),
        ("", Some("https://www.baidu.com/s?wd=plumber"), Channel::OrganicSearch, "baidu", "organic", Some("plumber")),
        ("", Some("https://m.baidu.com/s?word=plumber"), Channel::OrganicSearch, "baidu", "organic", Some("plumber")),
        ("", Some("https://search.naver.com/search.naver?query=plumber"), Channel::OrganicSearch, "naver", "organic", Some("plumber")),
        ("", Some("https://www.ecosia.org/search?q=plumber"), Channel::OrganicSearch, "ecosia", "organic", Some("plumber")),
        ("", Some("https://www.ask.com/web?q=plumber"), Channel::OrganicSearch, "ask", "organic", Some("plumber")),
        ("", Some("https://search.aol.com/aol/search?q=plumber"), Channel::OrganicSearch, "aol", "organic", Some("plumber")),
        ("", Some("https://search.seznam.cz/?q=instalater"), Channel::OrganicSearch, "seznam", "organic", Some("instalater")),
        ("", Some("https://www.startpage.com/"), Channel::OrganicSearch, "startpage", "organic", None),
        ("", Some("https://search.brave.com/search?q=plumber"), Channel::OrganicSearch, "brave", "organic", Some("plumber")),
        ("", Some("https://www.qwant.com/?q=plombier"), Channel::OrganicSearch, "qwant", "organic", Some("plombier")),
        ("", Some("android-app://com.google.android.googlequicksearchbox/"), Channel::OrganicSearch, "google", "organic", None),
        ("utm_source=google", Some("https://www.google.com/"), Channel::OrganicSearch, "google", "(not set)", None),
        ("utm_source=local&utm_medium=organic", None, Channel::OrganicSearch, "local", "organic", None),
        // Referral
        ("", Some("https://blog.example.org/best-plumbers"), Channel::Referral, "blog.example.org", "referral", None),
        ("", Some("https://www.yelp-clone.io/"), Channel::Referral, "yelp-clone.io", "referral", None),
        ("", Some("https://accounts.google.com/"), Channel::Referral, "accounts.google.com", "referral", None),
        ("", Some("https://google.evil.com/search?q=x"), Channel::Referral, "google.evil.com", "referral", None),
        ("", Some("https://blog.example.com/"), Channel::Referral, "blog.example.com", "referral", None),
        ("", Some("android-app://com.example.reader/"), Channel::Referral, "com.example.reader", "referral", None),
        ("utm_source=partner&utm_medium=link", None, Channel::Referral, "partner", "link", None),
        ("utm_source=partner&utm_medium=unknown-thing", None, Channel::Referral, "partner", "unknown-thing", None),
        // Email
        ("", Some("https://mail.google.com/"), Channel::Email, "mail.google.com", "email", None),
        ("", Some("https://outlook.live.com/mail/0/"), Channel::Email, "outlook.live.com", "email", None),
        ("", Some("https://mail.yahoo.com/d/folders/1"), Channel::Email, "mail.yahoo.com", "email", None),
        ("", Some("android-app://com.google.android.gm/"), Channel::Email, "gmail", "email", None),
        ("utm_source=newsletter&utm_medium=email&utm_campaign=may", None, Channel::Email, "newsletter", "email", None),
        ("utm_source=crm&utm_medium=e-mail", None, Channel::Email, "crm", "e-mail", None),
        ("utm_source=email", None, Channel::Email, "email", "(not set)", None),
        // Affiliate
        ("utm_source=partner&utm_medium=affiliate", None, Channel::Affiliate, "partner", "affiliate", None),
        // Audio
        ("utm_source=spotify&utm_medium=audio", None, Channel::Audio, "spotify", "audio", None),
        // SMS
        ("utm_source=twilio&utm_medium=sms", None, Channel::Sms, "twilio", "sms", None),
        ("utm_source=sms&utm_medium=text", None, Channel::Sms, "sms", "text", None),
        // Mobile push
        ("utm_source=app&utm_medium=push", None, Channel::MobilePush, "app", "push", None),
        ("utm_source=app&utm_medium=mobile+push", None, Channel::MobilePush, "app", "mobile push", None),
        ("utm_source=firebase&utm_medium=notification", None, Channel::MobilePush, "firebase", "notification", None),
        ("utm_source=firebase&utm_medium=inapp", None, Channel::MobilePush, "firebase", "inapp", None),
    ];

    #[test]
    fn channel_table() {
        for (query, referrer, channel, source, medium, term) in CASES {
            let t = touch(query, *referrer).unwrap_or_else(|| panic!("{query} {referrer:?}"));
            let got = (t.channel, t.source.as_str(), t.medium.as_str(), t.term.as_deref());
            assert_eq!(
                got,
                (*channel, *source, *medium, *term),
                "query {query:?}, referrer {referrer:?}"
            );
        }
    }

    #[test]
    fn every_channel_but_offline_is_reachable() {
        let covered: HashSet<Channel> = CASES.iter().map(|c| c.2).collect();
        for c in Channel::ALL {
            assert_eq!(covered.contains(&c), c != Channel::Offline, "{c}");
        }
    }

    #[test]
    fn referrer_only_cases_use_real_referrers_for_each_web_channel() {
        // Each channel a bare referrer can produce has at least one untagged referrer case.
        let by_referrer: HashSet<Channel> = CASES
            .iter()
            .filter(|c| c.0.is_empty() && c.1.is_some_and(|r| !r.is_empty()))
            .map(|c| c.2)
            .collect();
        for c in [
            Channel::OrganicShopping,
            Channel::OrganicSocial,
            Channel::OrganicVideo,
            Channel::OrganicSearch,
            Channel::Referral,
            Channel::Email,
        ] {
            assert!(by_referrer.contains(&c), "{c}");
        }
    }

    #[test]
    fn campaign_fields_and_click_ids_are_kept() {
        let t = touch(
            "utm_source=Google&utm_medium=CPC&utm_campaign=Spring%20Sale&utm_term=boiler+repair\
             &utm_content=ad_b&gclid=Cj0KCQ%3D%3D&msclkid=abc&cta=hero&loc=nyc&cta=second",
            Some("https://www.google.com/"),
        )
        .unwrap();
        assert_eq!(t.channel, Channel::PaidSearch);
        assert_eq!(t.source, "google");
        assert_eq!(t.medium, "cpc");
        assert_eq!(t.campaign.as_deref(), Some("Spring Sale"));
        assert_eq!(t.term.as_deref(), Some("boiler repair"));
        assert_eq!(t.content.as_deref(), Some("ad_b"));
        assert_eq!(
            t.click_ids,
            vec![
                (ClickIdKind::Gclid, "Cj0KCQ==".to_owned()),
                (ClickIdKind::Msclkid, "abc".to_owned())
            ]
        );
        assert_eq!(t.click_id(ClickIdKind::Gclid), Some("Cj0KCQ=="));
        assert_eq!(t.click_id(ClickIdKind::Fbclid), None);
        assert_eq!(t.referrer.as_deref(), Some("https://www.google.com/"));
        assert_eq!(
            t.params,
            vec![
                ("cta".to_owned(), "hero".to_owned()),
                ("loc".to_owned(), "nyc".to_owned())
            ]
        );
    }

    #[test]
    fn params_follow_capture_order_not_query_order() {
        let own = own();
        let capture = vec!["b".to_owned(), "a".to_owned(), "missing".to_owned()];
        let t = classify(&landing("a=1&b=2&utm_source=x", None, &own, &capture)).unwrap();
        assert_eq!(
            t.params,
            vec![("b".to_owned(), "2".to_owned()), ("a".to_owned(), "1".to_owned())]
        );
    }

    #[test]
    fn every_click_id_is_recognised_and_infers_a_source() {
        for kind in ClickIdKind::ALL {
            let query = format!("{}=value123", kind.param());
            let t = touch(&query, None).unwrap();
            assert_eq!(t.click_ids, vec![(kind, "value123".to_owned())], "{query}");
            assert_eq!(t.source, kind.source(), "{query}");
            assert_eq!(t.medium, kind.medium(), "{query}");
            let expected = match kind {
                ClickIdKind::Gclid
                | ClickIdKind::Gbraid
                | ClickIdKind::Wbraid
                | ClickIdKind::Msclkid
                | ClickIdKind::Yclid => Channel::PaidSearch,
                ClickIdKind::Dclid => Channel::Display,
                ClickIdKind::Ttclid | ClickIdKind::LiFatId | ClickIdKind::Twclid => Channel::PaidSocial,
                ClickIdKind::Fbclid => Channel::OrganicSocial,
            };
            assert_eq!(t.channel, expected, "{query}");
            assert_eq!(t.channel.is_paid(), kind.implies_paid(), "{query}");
            assert_eq!(ClickIdKind::from_param(kind.param()), Some(kind));
            assert_eq!(ClickIdKind::from_param(&kind.param().to_uppercase()), Some(kind));
        }
        assert_eq!(ClickIdKind::from_param("utm_source"), None);
    }

    #[test]
    fn explicit_utm_wins_over_click_id_inference() {
        let t = touch("gclid=abc&utm_source=bing&utm_medium=cpc", None).unwrap();
        assert_eq!((t.channel, t.source.as_str()), (Channel::PaidSearch, "bing"));
        let t = touch("gclid=abc&utm_medium=email", None).unwrap();
        assert_eq!((t.source.as_str(), t.medium.as_str()), ("google", "email"));
        // GA4 order: a search-engine source is Organic Search before Email is considered.
        assert_eq!(t.channel, Channel::OrganicSearch);
        let t = touch("utm_source=partner&gclid=abc", None).unwrap();
        assert_eq!((t.source.as_str(), t.medium.as_str()), ("partner", "cpc"));
        assert_eq!(t.channel, Channel::PaidOther);
    }

    #[test]
    fn several_click_ids_infer_from_the_google_one_first() {
        let t = touch("msclkid=m&gclid=g&fbclid=f", None).unwrap();
        assert_eq!(t.source, "google");
        assert_eq!(t.click_ids.len(), 3);
        assert_eq!(t.click_ids[0].0, ClickIdKind::Msclkid);
        // Repeated ids keep the first non-empty value.
        let t = touch("gclid=&gclid=one&gclid=two", None).unwrap();
        assert_eq!(t.click_ids, vec![(ClickIdKind::Gclid, "one".to_owned())]);
    }

    #[test]
    fn internal_navigation_is_not_a_touch() {
        for referrer in [
            "https://example.com/services",
            "http://EXAMPLE.com:8080/",
            "https://www.example.com/about?x=1",
            "https://user@example.com./",
            "https://shop.example.net/cart",
            "https://www.shop.example.net/",
        ] {
            assert_eq!(touch("", Some(referrer)), None, "{referrer}");
            assert_eq!(touch("cta=footer", Some(referrer)), None, "{referrer}");
        }
        // A look-alike host is somebody else's site.
        let t = touch("", Some("https://example.com.evil.test/")).unwrap();
        assert_eq!(
            (t.channel, t.source.as_str()),
            (Channel::Referral, "example.com.evil.test")
        );
        // Own hosts given with `www.`, a port or in capitals still match.
        let own = vec!["WWW.Plumber.test:443".to_owned()];
        let l = landing("", Some("https://plumber.test/"), &own, &[]);
        assert_eq!(classify(&l), None);
    }

    #[test]
    fn tagged_internal_landing_is_a_touch_without_referrer() {
        let t = touch("utm_source=newsletter&utm_medium=email", Some("https://example.com/")).unwrap();
        assert_eq!(t.channel, Channel::Email);
        assert_eq!(t.referrer, None);
        let t = touch("gclid=abc", Some("https://www.example.com/")).unwrap();
        assert_eq!(t.channel, Channel::PaidSearch);
        let t = touch("utm_campaign=spring", Some("https://example.com/")).unwrap();
        assert_eq!(t.channel, Channel::Direct);
        assert_eq!(t.campaign.as_deref(), Some("spring"));
    }

    #[test]
    fn utm_term_wins_over_referrer_keyword() {
        let t = touch(
            "utm_source=bing&utm_medium=cpc&utm_term=from+utm",
            Some("https://www.bing.com/search?q=from+referrer"),
        )
        .unwrap();
        assert_eq!(t.term.as_deref(), Some("from utm"));
    }

    #[test]
    fn keyword_only_from_search_referrers() {
        assert_eq!(search_keyword("https://example.org/?q=nope"), None);
        assert_eq!(search_keyword("https://www.google.com/"), None);
        assert_eq!(search_keyword("https://www.google.com/search?q="), None);
        assert_eq!(
            search_keyword("https://www.google.com/#q=hash+keyword").as_deref(),
            Some("hash keyword")
        );
        assert_eq!(
            search_keyword("https://www.google.com/search?q=a%ZZb").as_deref(),
            Some("a%ZZb")
        );
        let t = touch("", Some("https://blog.example.org/?q=not+a+keyword")).unwrap();
        assert_eq!(t.term, None);
    }

    #[test]
    fn referrer_host_normalises() {
        assert_eq!(
            referrer_host("HTTPS://User:Pw@WWW.Google.CO.UK.:443/x").as_deref(),
            Some("www.google.co.uk")
        );
        assert_eq!(referrer_host("http://[::1]:8080/").as_deref(), Some("[::1]"));
        for bad in [
            "",
            "not a url",
            "http://",
            "https:///path",
            "ftp://example.com/",
            "https://exa mple.com/",
            "https://[::1",
            "javascript://alert(1)",
            "android-app://com.google.android.gm/",
            "//example.com/",
        ] {
            assert_eq!(referrer_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn site_lists_match_subdomains_and_country_domains() {
        let cases: &[(&str, Option<SiteKind>)] = &[
            ("www.google.co.uk", Some(SiteKind::Search)),
            ("google.de", Some(SiteKind::Search)),
            ("www.google.com.br", Some(SiteKind::Search)),
            ("search.yahoo.co.jp", Some(SiteKind::Search)),
            ("goo.ne.jp", Some(SiteKind::Search)),
            ("cn.bing.com", Some(SiteKind::Search)),
            ("l.facebook.com", Some(SiteKind::Social)),
            ("lm.facebook.com", Some(SiteKind::Social)),
            ("m.youtube.com", Some(SiteKind::Video)),
            ("music.youtube.com", Some(SiteKind::Video)),
            ("youtu.be", Some(SiteKind::Video)),
            ("www.amazon.co.uk", Some(SiteKind::Shopping)),
            ("shopping.google.de", Some(SiteKind::Shopping)),
            ("checkout.shopify.com", Some(SiteKind::Shopping)),
            ("mail.google.com", Some(SiteKind::Webmail)),
            ("mail.yahoo.co.jp", Some(SiteKind::Webmail)),
            ("outlook.office365.com", Some(SiteKind::Webmail)),
            ("e.mail.ru", Some(SiteKind::Webmail)),
            ("go.mail.ru", Some(SiteKind::Search)),
            ("mail.ru", None),
            ("gmail.com", Some(SiteKind::Webmail)),
            ("docs.google.com", None),
            ("google.evil.com", None),
            ("notgoogle.com", None),
            ("google", Some(SiteKind::Search)),
            ("Facebook", Some(SiteKind::Social)),
            ("IG", Some(SiteKind::Social)),
            ("yt", Some(SiteKind::Video)),
            ("Google Shopping", Some(SiteKind::Shopping)),
            ("https://t.co/x", Some(SiteKind::Social)),
            ("localhost", None),
            ("", None),
            (".", None),
            ("..", None),
            ("a..b", None),
            ("co.uk", None),
        ];
        for (input, kind) in cases {
            assert_eq!(site_kind(input), *kind, "{input}");
        }
    }

    #[test]
    fn site_tables_are_sorted_and_names_resolve_to_their_kind() {
        for table in [BRANDS, EXACT, ALIASES, APPS] {
            for pair in table.windows(2) {
                assert!(pair[0].key < pair[1].key, "{} >= {}", pair[0].key, pair[1].key);
            }
            for s in table {
                assert_eq!(s.key, s.key.to_ascii_lowercase());
                if !s.name.is_empty() && s.kind != Some(SiteKind::Webmail) {
                    assert_eq!(site_kind(s.name), s.kind, "{} -> {}", s.key, s.name);
                }
            }
        }
        for s in APPS.iter().filter(|s| !s.name.is_empty()) {
            assert_eq!(site_kind(s.name), s.kind, "{}", s.name);
        }
    }

    #[test]
    fn derived_touch_reclassifies_to_the_same_channel() {
        // The stored (source, medium) re-run through GA4's rules gives the stored channel, so
        // reports built from the store agree with what the proxy decided.
        for (query, referrer, ..) in CASES {
            let t = touch(query, *referrer).unwrap();
            if t.channel == Channel::Direct {
                continue;
            }
            let again =
                channel_for(&t.source, &t.medium, t.campaign.as_deref().unwrap_or("")).unwrap_or(Channel::Referral);
            assert_eq!(again, t.channel, "{query} {referrer:?}");
        }
    }

    #[test]
    fn ga4_regexes() {
        for m in [
            "cpc",
            "CPC",
            "cpm",
            "cpv",
            "ppc",
            "retargeting",
            "paid",
            "paid_social",
            "xcpx",
        ] {
            assert!(is_paid_medium(m), "{m}");
        }
        for m in ["", "organic", "email", "display", "social-paid", "pp", "(none)", "ppc2"] {
            assert!(!is_paid_medium(m), "{m}");
        }
        for c in ["shop", "Shopping", "pmax_shop", "eshop", "2024-shop", "workshopping"] {
            assert!(is_shopping_campaign(c), "{c}");
        }
        for c in ["", "workshop", "bishop", "sho", "spring"] {
            assert!(!is_shopping_campaign(c), "{c}");
        }
    }

    #[test]
    fn channel_names_round_trip() {
        let names: HashSet<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Channel::ALL.len());
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        for spec in [
            "direct",
            "paid_search",
            "organic_search",
            "paid_social",
            "organic_social",
            "paid_video",
            "organic_video",
            "paid_shopping",
            "organic_shopping",
            "display",
            "paid_other",
            "email",
            "affiliate",
            "referral",
            "sms",
            "audio",
            "cross_network",
            "offline",
            "mobile_push",
        ] {
            assert!(Channel::parse(spec).is_some(), "{spec}");
        }
        assert_eq!(Channel::parse("Paid Search"), None);
        assert_eq!(Channel::parse(""), None);
        assert_eq!(Channel::default(), Channel::Direct);
        assert_eq!(Touch::default().channel, Channel::Direct);
        let paid: Vec<Channel> = Channel::ALL.into_iter().filter(|c| c.is_paid()).collect();
        assert_eq!(
            paid,
            [
                Channel::CrossNetwork,
                Channel::PaidShopping,
                Channel::PaidSearch,
                Channel::PaidSocial,
                Channel::PaidVideo,
                Channel::Display,
                Channel::PaidOther,
                Channel::Audio
            ]
        );
    }

    #[test]
    fn malformed_input_never_panics_and_is_capped() {
        let huge = "a".repeat(100_000);
        let huge_escaped = "%E2%82%AC".repeat(10_000);
        let queries = [
            "%".to_owned(),
            "%%%&&&===".to_owned(),
            "utm_source=%ZZ&utm_medium=%E2%82".to_owned(),
            "utm_source&utm_medium=&=cpc&gclid".to_owned(),
            "utm_%E2%82%AC=1&%FF%FE=2&utm_\u{e9}x=3&\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}=4".to_owned(),
            format!("utm_source={huge}&gclid={huge}&cta={huge}"),
            format!("utm_campaign={huge_escaped}&utm_term=%0D%0Aevil%00"),
            "utm_source=a&amp;utm_medium=cpc".to_owned(),
            "+=+&+".to_owned(),
        ];
        let referrers = [
            None,
            Some(String::new()),
            Some("garbage".to_owned()),
            Some("https://".to_owned()),
            Some("https://@:/".to_owned()),
            Some("https://[".to_owned()),
            Some("https://\u{e9}x.com/".to_owned()),
            Some(format!("https://{huge}.com/?q={huge}")),
            Some(format!("https://www.google.com/search?q={huge_escaped}")),
            Some("https://www.bing.com/search?q=%".to_owned()),
            Some("android-app://".to_owned()),
        ];
        let own = own();
        let capture = vec!["cta".to_owned(), "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}".to_owned()];
        for q in &queries {
            for r in &referrers {
                let Some(t) = classify(&landing(q, r.as_deref(), &own, &capture)) else {
                    continue;
                };
                let values = [Some(&t.source), Some(&t.medium)]
                    .into_iter()
                    .flatten()
                    .chain(t.campaign.iter())
                    .chain(t.term.iter())
                    .chain(t.content.iter())
                    .chain(t.referrer.iter())
                    .chain(t.click_ids.iter().map(|(_, v)| v))
                    .chain(t.params.iter().map(|(_, v)| v));
                for v in values {
                    assert!(v.len() <= MAX_VALUE_LEN, "{} bytes", v.len());
                    assert!(!v.chars().any(char::is_control), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn malformed_values_decode_leniently() {
        let t = touch("utm_source=a%ZZb&utm_medium=%E2%82&utm_campaign=%E2%82%AC+5", None).unwrap();
        assert_eq!(t.source, "a%zzb");
        assert_eq!(t.medium, "\u{fffd}");
        assert_eq!(t.campaign.as_deref(), Some("€ 5"));
        // HTML-escaped `&amp;` in a pasted link still separates parameters.
        let t = touch("utm_source=google&amp;utm_medium=cpc", None).unwrap();
        assert_eq!(t.channel, Channel::PaidSearch);
        // Encoded and upper-case parameter names are recognised.
        let t = touch("UTM_SOURCE=Facebook&utm%5Fmedium=Paid_Social", None).unwrap();
        assert_eq!((t.source.as_str(), t.medium.as_str()), ("facebook", "paid_social"));
        // A value cut at the cap keeps whole characters.
        let t = touch(&format!("utm_campaign={}", "€".repeat(400)), None).unwrap();
        let campaign = t.campaign.unwrap();
        assert_eq!(campaign.len(), 510);
        assert!(campaign.chars().all(|c| c == '€'));
        let long_ref = format!("https://blog.example.org/{}", "x".repeat(2000));
        let t = touch("", Some(&long_ref)).unwrap();
        assert_eq!(t.referrer.unwrap().len(), MAX_VALUE_LEN);
    }

    #[test]
    fn garbage_referrer_counts_as_none() {
        let t = touch("", Some("not a url")).unwrap();
        assert_eq!(t.channel, Channel::Direct);
        assert_eq!(t.referrer, None);
        let t = touch("", Some("about:blank")).unwrap();
        assert_eq!(t.channel, Channel::Direct);
    }

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const WINDOWS_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const WINDOWS_EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51";
    const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
    const LINUX_FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const SAMSUNG: &str = "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36";
    const CUBOT: &str = "Mozilla/5.0 (Linux; Android 9; CUBOT_X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.181 Mobile Safari/537.36";
    const FB_IN_APP: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.38.109;FBBV/550712331;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]";
    const INSTAGRAM_IN_APP: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UD1A.230803.041; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 Instagram 312.1.0.34.111 Android (34/14; 420dpi; 1080x2400; Google/google; Pixel 8; shiba; shiba; en_US; 548323757)";
    const OPERA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0";
    const YANDEX_BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36";
    const GOOGLE_APP: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/311.0.622810089 Mobile/15E148 Safari/604.1";

    #[test]
    fn device_table() {
        let cases: &[(Option<&str>, Option<&str>, Device)] = &[
            (Some(IPHONE), None, Device::Mobile),
            (Some(IPAD), None, Device::Tablet),
            (Some(ANDROID_PHONE), None, Device::Mobile),
            (Some(ANDROID_TABLET), None, Device::Tablet),
            (Some(WINDOWS_CHROME), None, Device::Desktop),
            (Some(MAC_SAFARI), None, Device::Desktop),
            (Some(LINUX_FIREFOX), None, Device::Desktop),
            (Some(SAMSUNG), None, Device::Mobile),
            (Some(FB_IN_APP), None, Device::Mobile),
            (
                Some("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"),
                None,
                Device::Mobile,
            ),
            (
                Some("Mozilla/5.0 (Android 14; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0"),
                None,
                Device::Tablet,
            ),
            (
                Some(
                    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.1 like Chrome/120.0.6099.230 Safari/537.36",
                ),
                None,
                Device::Tablet,
            ),
            (
                Some(
                    "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977",
                ),
                None,
                Device::Mobile,
            ),
            (
                Some(
                    "Mozilla/5.0 (BB10; Touch) AppleWebKit/537.10+ (KHTML, like Gecko) Version/10.0.9.2372 Mobile Safari/537.10+",
                ),
                None,
                Device::Mobile,
            ),
            (
                Some(
                    "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
                ),
                None,
                Device::Mobile,
            ),
            (
                Some("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; Tablet PC 2.0)"),
                None,
                Device::Desktop,
            ),
            // Client hints: `?1` is a phone whatever the (reduced) UA says; `?0` defers to it.
            (Some(ANDROID_TABLET), Some("?1"), Device::Mobile),
            (Some(WINDOWS_CHROME), Some("?1"), Device::Mobile),
            (None, Some("?1"), Device::Mobile),
            (Some(ANDROID_TABLET), Some("?0"), Device::Tablet),
            (Some(WINDOWS_CHROME), Some("?0"), Device::Desktop),
            (Some(ANDROID_PHONE), Some("garbage"), Device::Mobile),
            (None, None, Device::Desktop),
            (Some(""), None, Device::Desktop),
        ];
        for (ua, ch, expected) in cases {
            assert_eq!(device(*ua, *ch), *expected, "{ua:?} {ch:?}");
        }
        assert_eq!(Device::Tablet.as_str(), "tablet");
        assert_eq!(Device::Mobile.to_string(), "mobile");
        assert_eq!(
            device(Some(&format!("{} iPhone", "x".repeat(5000))), None),
            Device::Mobile
        );
    }

    #[test]
    fn crawlers_are_bots() {
        let bots = [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
            "AdsBot-Google (+http://www.google.com/adsbot.html)",
            "Mediapartners-Google",
            "APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)",
            "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.88 Safari/537.36",
            "GoogleOther",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "msnbot/2.0b (+http://search.msn.com/msnbot.htm)",
            "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b",
            "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
            "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
            "Mozilla/5.0 (compatible; Exabot/3.0; +http://www.exabot.com/go/robot)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
            "Twitterbot/1.0",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "WhatsApp/2.23.20.0 A",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
            "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
            "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
            "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
            "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; +https://openai.com/gptbot)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "CCBot/2.0 (https://commoncrawl.org/faq/)",
            "ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)",
            "Screaming Frog SEO Spider/19.0",
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
            "SomeCompanyCrawler/1.0",
        ];
        for ua in bots {
            assert!(is_bot(Some(ua)), "{ua}");
        }
    }

    #[test]
    fn browsers_and_http_clients_are_not_bots() {
        let humans = [
            IPHONE,
            IPAD,
            ANDROID_PHONE,
            ANDROID_TABLET,
            WINDOWS_CHROME,
            WINDOWS_EDGE,
            MAC_SAFARI,
            LINUX_FIREFOX,
            SAMSUNG,
            CUBOT,
            FB_IN_APP,
            INSTAGRAM_IN_APP,
            OPERA,
            YANDEX_BROWSER,
            GOOGLE_APP,
            // Scripted clients are operators checking the proxy, not crawlers (see `is_bot`).
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "",
            "   ",
        ];
        for ua in humans {
            assert!(!is_bot(Some(ua)), "{ua}");
        }
        assert!(!is_bot(None));
        // A long User-Agent takes the heap path and still works.
        assert!(is_bot(Some(&format!("{} Googlebot/2.1", "x".repeat(2000)))));
    }
}
