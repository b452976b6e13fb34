//! Walking one rules file's spanned TOML tree into a [`Site`], collecting every problem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::*;
use crate::rewrite::check_selector;

const TOP_KEYS: &[&str] = &[
    "hosts",
    "upstream",
    "upstream_ca",
    "connect_timeout",
    "response_timeout",
    "country",
    "numbers",
    "exclude",
    "attribution",
    "bots",
    "capture",
    "consent",
    "telephony",
    "pool",
    "offline",
    "webhook",
];
const CONSENT_KEYS: &[&str] = &["mode", "cookie", "without"];
const TELEPHONY_KEYS: &[&str] = &[
    "dialect",
    "auth_token_env",
    "public_key_env",
    "forward_to",
    "record",
    "whisper",
];
const POOL_KEYS: &[&str] = &[
    "name",
    "mode",
    "when",
    "numbers",
    "idle_timeout",
    "match_window",
    "exhausted",
    "overflow",
];
const WHEN_KEYS: &[&str] = &["channel", "source", "medium", "campaign"];
const OFFLINE_KEYS: &[&str] = &["number", "campaign", "source", "medium"];
const WEBHOOK_KEYS: &[&str] = &["url", "secret_env", "events"];

/// Always in `exclude`, besides what a site lists: the opt-out attribute, and CallRail's, so a
/// site moving from CallRail keeps its opt-outs.
const DEFAULT_EXCLUDE: &[&str] = &["[data-telswap-ignore]", "[data-calltrk-noswap]"];

struct Walker<'a> {
    file: &'a Path,
    /// Byte offsets of every newline, for line numbers in O(log n) (pools can hold 100,000 numbers).
    newlines: Vec<usize>,
    problems: Vec<Problem>,
}

type Table<'i> = DeTable<'i>;
type Val<'i> = Spanned<DeValue<'i>>;

impl<'a> Walker<'a> {
    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < offset) + 1
    }

    fn err(&mut self, offset: usize, message: impl Into<String>) {
        let line = self.line(offset);
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn check_keys(&mut self, table: &Table<'_>, allowed: &[&str], context: &str) {
        for (k, _) in table.iter() {
            if !allowed.contains(&k.get_ref().as_ref()) {
                let hint = closest(k.get_ref(), allowed)
                    .map(|c| format!(" (did you mean {c:?}?)"))
                    .unwrap_or_default();
                self.err(
                    k.span().start,
                    format!("unknown key {:?} in {context}{hint}", k.get_ref().as_ref()),
                );
            }
        }
    }

    fn get<'t, 'i>(&self, table: &'t Table<'i>, key: &str) -> Option<&'t Val<'i>> {
        table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
    }

    fn string(&mut self, table: &Table<'_>, key: &str) -> Option<(String, usize)> {
        let v = self.get(table, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span().start)),
            _ => {
                self.err(v.span().start, format!("{key} must be a string"));
                None
            }
        }
    }

    fn bool(&mut self, table: &Table<'_>, key: &str) -> Option<bool> {
        let v = self.get(table, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.err(v.span().start, format!("{key} must be true or false"));
                None
            }
        }
    }

    fn strings(&mut self, table: &Table<'_>, key: &str) -> Option<Vec<(String, usize)>> {
        let v = self.get(table, key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                v.span().start,
                format!("{key} must be a list of strings, e.g. {key} = [\"...\"]"),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span().start)),
                _ => self.err(item.span().start, format!("{key} must hold only strings")),
            }
        }
        Some(out)
    }

    fn table<'t, 'i>(&mut self, table: &'t Table<'i>, key: &str) -> Option<&'t Table<'i>> {
        let v = self.get(table, key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.err(v.span().start, format!("{key} must be a table ([{key}])"));
                None
            }
        }
    }

    fn tables<'t, 'i>(&mut self, table: &'t Table<'i>, key: &str) -> Vec<(&'t Table<'i>, usize)> {
        let Some(v) = self.get(table, key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(v.span().start, format!("{key} must be an array of tables ([[{key}]])"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((t, item.span().start)),
                _ => self.err(
                    item.span().start,
                    format!("{key} must be an array of tables ([[{key}]])"),
                ),
            }
        }
        out
    }

    fn phone(&mut self, s: &str, at: usize, country: &str) -> Option<PhoneNumber> {
        match PhoneNumber::parse(s, country) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(at, e.to_string());
                None
            }
        }
    }

    fn duration(&mut self, table: &Table<'_>, key: &str, default: Duration) -> Duration {
        match self.string(table, key) {
            Some((s, at)) => match parse_duration(&s) {
                Ok(d) => d,
                Err(e) => {
                    self.err(at, format!("{key}: {e}"));
                    default
                }
            },
            None => default,
        }
    }

    fn choice<T: Copy>(&mut self, table: &Table<'_>, key: &str, options: &[(&str, T)], default: T) -> T {
        let Some((s, at)) = self.string(table, key) else {
            return default;
        };
        match options.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<_> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.err(at, format!("{key} must be one of {}, not {s:?}", names.join(", ")));
                default
            }
        }
    }

    fn regex(&mut self, table: &Table<'_>, key: &str) -> Option<Regex> {
        let (s, at) = self.string(table, key)?;
        // Case-insensitive: utm values arrive in any case ("Google", "CPC").
        match Regex::new(&format!("(?i){s}")) {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
                self.err(at, format!("bad regex in when.{key} {s:?}: {msg}"));
                None
            }
        }
    }
}

/// The offset of the innermost array or inline-table bracket (`[`, `{`) still open at `at`, if
/// any: strings, comments and table headers (`[pool]`, `[[pool]]` at a line's start) are
/// skipped.
fn unclosed_bracket(src: &str, at: usize) -> Option<usize> {
    let b = src.as_bytes();
    let end = at.min(b.len());
    let mut open: Vec<usize> = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < end {
        let c = b[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < end && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' if line_start && open.is_empty() => {
                // A table header: to the end of its line.
                while i < end && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                // A string (one line; a multi-line one's quotes pair up the same way).
                i += 1;
                while i < end && b[i] != c && b[i] != b'\n' {
                    if c == b'"' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => open.push(i),
            b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
        line_start = false;
        i += 1;
    }
    open.last().copied()
}

/// Parses one file. `name` is the site name (the file stem).
/// The result always carries the hosts and tracking numbers it could read, so the checks across
/// files can report a host claimed twice even when one of the files has other problems.
pub fn parse_site(name: &str, file: &Path, src: &str) -> ParsedSite {
    let newlines = src
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let mut w = Walker {
        file,
        newlines,
        problems: Vec::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(src);
    // The first syntax error only: the parser's recovery from one mistake (a missing `]`)
    // reports every line after it, none of them the line to fix.
    if let Some(e) = syntax.first() {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().lines().next().unwrap_or("syntax error").to_string();
        match unclosed_bracket(src, at).filter(|open| w.line(*open) < w.line(at)) {
            Some(open) => {
                let (o, c) = if src.as_bytes()[open] == b'{' {
                    ('{', '}')
                } else {
                    ('[', ']')
                };
                w.err(
                    open,
                    format!(
                        "TOML syntax: this `{o}` is not closed (a missing `{c}`?); the parser stopped later with: {msg}"
                    ),
                )
            }
            None => w.err(at, format!("TOML syntax: {msg}")),
        }
    }
    if !w.problems.is_empty() {
        return ParsedSite {
            site: None,
            host_lines: Vec::new(),
            own_lines: Vec::new(),
            tracking_lines: Vec::new(),
            problems: w.problems,
        };
    }
    let doc = doc.into_inner();
    w.check_keys(&doc, TOP_KEYS, "the site");

    let country = match w.string(&doc, "country") {
        Some((c, at)) => {
            if crate::rewrite::phone::region(&c).is_none() {
                w.err(
                    at,
                    format!("unknown country {c:?} (use an ISO 3166 code such as US, GB, DE, FR, AU)"),
                );
            }
            c.to_ascii_uppercase()
        }
        None => "US".to_string(),
    };

    let mut host_lines = Vec::new();
    match w.strings(&doc, "hosts") {
        Some(hosts) if !hosts.is_empty() => {
            for (h, at) in hosts {
                let norm = normalize_host(&h);
                if norm.is_empty() || norm.contains(['/', ' ', '*']) {
                    w.err(at, format!("bad host {h:?}: a host name such as \"www.example.com\""));
                } else {
                    let line = w.line(at);
                    host_lines.push((norm, line));
                }
            }
        }
        _ => w.err(
            0,
            "missing hosts: the Host names this site serves, e.g. hosts = [\"www.example.com\"]",
        ),
    }

    let upstream = match w.string(&doc, "upstream") {
        Some((u, at)) => match u.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty())
                    && uri.authority().is_some_and(|a| port_ok(a.as_str()))
                    && uri
                        .path_and_query()
                        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty()) =>
            {
                Some(uri)
            }
            Ok(_) => {
                w.err(
                    at,
                    format!("bad upstream URL {u:?}: expected http:// or https://, a host, a port from 1 to 65535 if any, and no path"),
                );
                None
            }
            Err(e) => {
                w.err(at, format!("bad upstream URL {u:?}: {e}"));
                None
            }
        },
        None => {
            w.err(
                0,
                "missing upstream: the real site, e.g. upstream = \"http://127.0.0.1:8000\"",
            );
            None
        }
    };
    let upstream_ca = match w.string(&doc, "upstream_ca") {
        Some((p, at)) => {
            let path = resolve(file, &p);
            if !path.is_file() {
                w.err(at, format!("upstream_ca {p:?}: no such file"));
            }
            Some(path)
        }
        None => None,
    };
    let connect_timeout = w.duration(&doc, "connect_timeout", Duration::from_secs(5));
    let response_timeout = w.duration(&doc, "response_timeout", Duration::from_secs(30));

    let mut numbers = Vec::new();
    match w.strings(&doc, "numbers") {
        Some(list) if !list.is_empty() => {
            for (s, at) in list {
                if let Some(n) = w.phone(&s, at, &country) {
                    // Every format of a number is swapped already: a second listing is a slip
                    // (or a different number was meant).
                    if numbers.iter().any(|(m, _)| *m == n) {
                        w.err(
                            at,
                            format!(
                                "number {} is listed twice (in any format it is the same number)",
                                n.e164()
                            ),
                        );
                    }
                    numbers.push((n, at));
                }
            }
        }
        Some(_) => w.err(0, "numbers is empty: list the site's own phone number(s)"),
        None => w.err(
            0,
            "missing numbers: the site's own phone number(s), e.g. numbers = [\"+1 555-010-0000\"]",
        ),
    }

    // The opt-out attributes hold whatever else is listed: a site that adds `.legal` still
    // expects its `data-telswap-ignore` elements left alone.
    let mut exclude: Vec<String> = Vec::new();
    for (s, at) in w.strings(&doc, "exclude").unwrap_or_default() {
        match check_selector(&s) {
            Ok(()) => exclude.push(s),
            Err(e) => w.err(at, format!("bad CSS selector in exclude {s:?}: {e}")),
        }
    }
    for d in DEFAULT_EXCLUDE {
        if !exclude.iter().any(|s| s == d) {
            exclude.push(d.to_string());
        }
    }

    let attribution = w.choice(
        &doc,
        "attribution",
        &[
            ("last_non_direct", Attribution::LastNonDirect),
            ("first", Attribution::First),
        ],
        Attribution::LastNonDirect,
    );
    let bots = w.choice(
        &doc,
        "bots",
        &[("original", BotPolicy::Original), ("track", BotPolicy::Track)],
        BotPolicy::Original,
    );
    let capture = w
        .strings(&doc, "capture")
        .unwrap_or_default()
        .into_iter()
        .map(|(s, _)| s)
        .collect();

    let consent = match w.table(&doc, "consent") {
        Some(t) => {
            w.check_keys(t, CONSENT_KEYS, "[consent]");
            let mode = w.choice(
                t,
                "mode",
                &[
                    ("none", ConsentMode::None),
                    ("gpc", ConsentMode::Gpc),
                    ("cookie", ConsentMode::Cookie),
                ],
                ConsentMode::None,
            );
            let cookie = match w.string(t, "cookie") {
                Some((c, at)) => match c.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => Some((k.trim().to_string(), v.trim().to_string())),
                    _ => {
                        w.err(
                            at,
                            format!("consent.cookie {c:?} must be name=value, e.g. \"consent=yes\""),
                        );
                        None
                    }
                },
                None => None,
            };
            if mode == ConsentMode::Cookie && cookie.is_none() && w.get(t, "cookie").is_none() {
                let at = w.get(t, "mode").map(|v| v.span().start).unwrap_or(0);
                w.err(at, "consent mode \"cookie\" needs cookie = \"name=value\"");
            }
            let without = w.choice(
                t,
                "without",
                &[
                    ("source", WithoutConsent::Source),
                    ("original", WithoutConsent::Original),
                ],
                WithoutConsent::Source,
            );
            Consent { mode, cookie, without }
        }
        None => Consent {
            mode: ConsentMode::None,
            cookie: None,
            without: WithoutConsent::Source,
        },
    };

    let own: Vec<PhoneNumber> = numbers.iter().map(|(n, _)| n.clone()).collect();
    // Past the matcher's bound the shortest forms (the national ones) would go unmatched, in
    // silence.
    let forms = crate::rewrite::matcher::NumberMatcher::forms_of(&own);
    if forms > crate::rewrite::matcher::MAX_FORMS
        && let Some((_, at)) = numbers.last()
    {
        w.err(
            *at,
            format!(
                "too many numbers: their {forms} formats are more than the {} one site can match (a US number has 4, a UK one 8)",
                crate::rewrite::matcher::MAX_FORMS
            ),
        );
    }
    let telephony = {
        let empty = Table::default();
        let t = w.table(&doc, "telephony").unwrap_or(&empty);
        w.check_keys(t, TELEPHONY_KEYS, "[telephony]");
        let dialect = w.choice(
            t,
            "dialect",
            &[
                ("twilio", Dialect::Twilio),
                ("signalwire", Dialect::SignalWire),
                ("telnyx", Dialect::Telnyx),
            ],
            Dialect::Twilio,
        );
        let auth_token_env = w
            .string(t, "auth_token_env")
            .map(|(s, _)| s)
            .unwrap_or_else(|| "TWILIO_AUTH_TOKEN".into());
        let public_key_env = w.string(t, "public_key_env").map(|(s, _)| s);
        let forward_to = match w.string(t, "forward_to") {
            Some((s, at)) => w.phone(&s, at, &country),
            None => own.first().cloned(),
        };
        let record = w.bool(t, "record").unwrap_or(false);
        let whisper = w.bool(t, "whisper").unwrap_or(false);
        forward_to.map(|forward_to| Telephony {
            dialect,
            auth_token_env,
            public_key_env,
            forward_to,
            record,
            whisper,
        })
    };

    let mut tracking_lines: Vec<(PhoneNumber, usize, String)> = Vec::new();
    // Overflow numbers, checked against the other pools' once all are read.
    let mut overflow_lines: Vec<(PhoneNumber, usize, String)> = Vec::new();
    let mut pools = Vec::new();
    let mut pool_names: Vec<String> = Vec::new();
    for (t, at) in w.tables(&doc, "pool") {
        w.check_keys(t, POOL_KEYS, "[[pool]]");
        let name = match w.string(t, "name") {
            Some((n, nat)) => {
                // Two pools with the same name would be indistinguishable in reports.
                if !n.is_empty() && pool_names.contains(&n) {
                    w.err(nat, format!("pool name {n:?} is used twice"));
                }
                pool_names.push(n.clone());
                n
            }
            None => {
                w.err(at, "a [[pool]] needs a name");
                String::new()
            }
        };
        let owner = format!("pool {name:?}");
        let mode = w.choice(
            t,
            "mode",
            &[("session", PoolMode::Session), ("source", PoolMode::Source)],
            PoolMode::Session,
        );
        let when = match w.table(t, "when") {
            Some(wt) => {
                w.check_keys(wt, WHEN_KEYS, "when");
                let mut channel = Vec::new();
                for (c, cat) in w.strings(wt, "channel").unwrap_or_default() {
                    match Channel::parse(&c) {
                        Some(ch) => channel.push(ch),
                        None => {
                            w.err(cat, format!("unknown channel {c:?}; channels are {}", Channel::names()));
                        }
                    }
                }
                When {
                    channel,
                    source: w.regex(wt, "source"),
                    medium: w.regex(wt, "medium"),
                    campaign: w.regex(wt, "campaign"),
                }
            }
            None => When::default(),
        };
        let mut pool_numbers = Vec::new();
        let mut seen_in_pool = std::collections::HashSet::new();
        match w.strings(t, "numbers") {
            Some(list) if !list.is_empty() => {
                for (s, nat) in list {
                    if let Some(n) = w.phone(&s, nat, &country) {
                        if own.contains(&n) {
                            w.err(
                                nat,
                                format!("pool number {} is one of the site's own numbers", n.e164()),
                            );
                        } else if !seen_in_pool.insert(n.clone()) {
                            w.err(nat, format!("number {} is listed twice in {owner}", n.e164()));
                        } else {
                            let line = w.line(nat);
                            tracking_lines.push((n.clone(), line, owner.clone()));
                            pool_numbers.push(n);
                        }
                    }
                }
            }
            _ => w.err(
                at,
                format!("{owner} needs numbers = [...] with at least one tracking number"),
            ),
        }
        let idle_timeout = w.duration(t, "idle_timeout", Duration::from_secs(30 * 60));
        let match_window = w.duration(t, "match_window", Duration::from_secs(2 * 3600));
        let exhausted = w.choice(
            t,
            "exhausted",
            &[
                ("reuse_oldest", Exhausted::ReuseOldest),
                ("overflow", Exhausted::Overflow),
                ("original", Exhausted::Original),
            ],
            Exhausted::ReuseOldest,
        );
        let overflow = match w.string(t, "overflow") {
            Some((s, oat)) => {
                let n = w.phone(&s, oat, &country);
                if let Some(n) = &n {
                    if own.contains(n) {
                        w.err(
                            oat,
                            format!("overflow number {} is one of the site's own numbers", n.e164()),
                        );
                    } else if pool_numbers.contains(n) {
                        w.err(
                            oat,
                            format!("overflow number {} is also in the pool's numbers", n.e164()),
                        );
                    } else {
                        overflow_lines.push((n.clone(), w.line(oat), owner.clone()));
                    }
                }
                n
            }
            None => None,
        };
        if exhausted == Exhausted::Overflow && overflow.is_none() && w.get(t, "overflow").is_none() {
            w.err(
                at,
                format!("{owner} has exhausted = \"overflow\" but no overflow number"),
            );
        }
        pools.push(Pool {
            name,
            mode,
            when,
            numbers: pool_numbers,
            idle_timeout,
            match_window,
            exhausted,
            overflow,
        });
    }

    let mut offline = Vec::new();
    for (t, at) in w.tables(&doc, "offline") {
        w.check_keys(t, OFFLINE_KEYS, "[[offline]]");
        let number = match w.string(t, "number") {
            Some((s, nat)) => w.phone(&s, nat, &country).map(|n| (n, nat)),
            None => {
                w.err(at, "an [[offline]] entry needs number = \"...\"");
                None
            }
        };
        let campaign = w.string(t, "campaign").map(|(s, _)| s).unwrap_or_default();
        if let Some((n, nat)) = number {
            if own.contains(&n) {
                w.err(
                    nat,
                    format!("offline number {} is one of the site's own numbers", n.e164()),
                );
            } else {
                let line = w.line(nat);
                tracking_lines.push((n.clone(), line, format!("offline {campaign:?}")));
            }
            offline.push(Offline {
                number: n,
                campaign,
                source: w.string(t, "source").map(|(s, _)| s),
                medium: w.string(t, "medium").map(|(s, _)| s),
            });
        }
    }
    // Within the file, a number in two pools (or a pool and offline) is caught here too.
    let mut first: std::collections::HashMap<&PhoneNumber, (usize, &String)> = std::collections::HashMap::new();
    let mut dups = Vec::new();
    for (n, line, owner) in &tracking_lines {
        match first.get(n) {
            Some((oline, oowner)) if *oowner != owner => {
                let message = format!(
                    "number {} of {owner} is already listed in {oowner} at line {oline}",
                    n.e164()
                );
                dups.push(Problem {
                    file: file.to_path_buf(),
                    line: *line,
                    message,
                });
            }
            Some(_) => {}
            None => {
                first.insert(n, (*line, owner));
            }
        }
    }
    // An overflow number that is another pool's (or offline) number: a call to it would be
    // credited to whoever holds it there, and the overflow's visitors' calls swell that channel.
    for (n, line, owner) in &overflow_lines {
        if let Some((_, oline, oowner)) = tracking_lines.iter().find(|(t, _, o)| t == n && o != owner) {
            dups.push(Problem {
                file: file.to_path_buf(),
                line: *line,
                message: format!(
                    "overflow number {} of {owner} is already a number of {oowner} at line {oline}: its calls could not be told apart",
                    n.e164()
                ),
            });
        }
    }
    // One overflow number shared by two pools: its calls could be either pool's visitors', and
    // would all be credited to the first pool's channel. Each pool needs its own.
    for (i, (n, line, owner)) in overflow_lines.iter().enumerate() {
        if let Some((_, oline, oowner)) = overflow_lines[..i].iter().find(|(o, _, _)| o == n) {
            dups.push(Problem {
                file: file.to_path_buf(),
                line: *line,
                message: format!(
                    "overflow number {} of {owner} is also the overflow of {oowner} at line {oline}: its calls could not be told apart; give each pool its own",
                    n.e164()
                ),
            });
        }
    }
    w.problems.extend(dups);
    tracking_lines.dedup_by(|a, b| a.0 == b.0);
    // Overflow numbers too, for the checks across files: another site's number (or overflow)
    // as this site's overflow would take that site's calls. (Within this file they were
    // checked above.)
    tracking_lines.extend(
        overflow_lines
            .into_iter()
            .map(|(n, line, owner)| (n, line, format!("the overflow of {owner}"))),
    );

    let mut webhooks: Vec<Webhook> = Vec::new();
    for (t, at) in w.tables(&doc, "webhook") {
        w.check_keys(t, WEBHOOK_KEYS, "[[webhook]]");
        let url = match w.string(t, "url") {
            Some((u, uat)) => {
                match check_webhook_url(&u) {
                    Ok(()) => {}
                    Err(why) => w.err(uat, format!("bad webhook url {u:?}: {why}")),
                }
                if webhooks.iter().any(|other| other.url == u) {
                    w.err(uat, format!("webhook url {u:?} is listed twice in this site"));
                }
                u
            }
            None => {
                w.err(at, "a [[webhook]] needs url = \"https://...\"");
                String::new()
            }
        };
        let secret_env = match w.string(t, "secret_env") {
            Some((s, sat)) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    w.err(
                        sat,
                        format!("secret_env {s:?} must name an environment variable (letters, digits, _)"),
                    );
                }
                s
            }
            None => {
                w.err(at, "a [[webhook]] needs secret_env = \"NAME_OF_ENV_VAR\"");
                String::new()
            }
        };
        let events = match w.strings(t, "events") {
            None => WebhookEvent::ALL.to_vec(),
            Some(list) => {
                let mut events = Vec::new();
                for (name, eat) in list {
                    match WebhookEvent::ALL.iter().find(|e| e.as_str() == name) {
                        Some(e) if !events.contains(e) => events.push(*e),
                        Some(_) => w.err(eat, format!("event {name:?} is listed twice")),
                        None => {
                            let names: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                            let hint = closest(&name, &names)
                                .map(|c| format!(" (did you mean {c:?}?)"))
                                .unwrap_or_default();
                            w.err(
                                eat,
                                format!("unknown webhook event {name:?}{hint}: expected one of {names:?}"),
                            );
                        }
                    }
                }
                events
            }
        };
        webhooks.push(Webhook {
            url,
            secret_env,
            events,
        });
    }

    let own_lines: Vec<(PhoneNumber, usize)> = numbers.iter().map(|(n, at)| (n.clone(), w.line(*at))).collect();
    let (Some(upstream), Some(telephony)) = (upstream, telephony) else {
        w.problems.sort_by_key(|p| p.line);
        return ParsedSite {
            site: None,
            host_lines,
            own_lines,
            tracking_lines,
            problems: w.problems,
        };
    };
    if !w.problems.is_empty() {
        w.problems.sort_by_key(|p| p.line);
        return ParsedSite {
            site: None,
            host_lines,
            own_lines,
            tracking_lines,
            problems: w.problems,
        };
    }
    let own_numbers: Vec<PhoneNumber> = numbers.into_iter().map(|(n, _)| n).collect();
    let page = PageRules::for_site(&own_numbers, &exclude);
    let mut site = Site {
        name: name.to_string(),
        file: file.to_path_buf(),
        hosts: host_lines.iter().map(|(h, _)| h.clone()).collect(),
        upstream,
        upstream_ca,
        connect_timeout,
        response_timeout,
        country,
        numbers: own_numbers,
        exclude,
        attribution,
        bots,
        capture,
        consent,
        telephony,
        pools,
        offline,
        webhooks,
        page,
        replacements: Default::default(),
    };
    site.prepare_replacements();
    ParsedSite {
        site: Some(site),
        host_lines,
        own_lines,
        tracking_lines,
        problems: Vec::new(),
    }
}

/// Whether an authority's port, if it has one, is 1 to 65535 (`http::Uri` takes any digits
/// there, and then reports no port at all).
fn port_ok(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.parse::<u16>().is_ok_and(|n| n > 0),
        _ => true,
    }
}

/// An outbound webhook URL: absolute http(s) with a host; a path and query are allowed, a
/// fragment or credentials are not (the secret belongs in `secret_env`, not in the URL).
fn check_webhook_url(u: &str) -> Result<(), String> {
    let uri = u.parse::<http::Uri>().map_err(|e| e.to_string())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("expected http:// or https://".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("credentials in the URL: sign with secret_env instead".into());
    }
    Ok(())
}

fn resolve(file: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        file.parent().map(|d| d.join(&path)).unwrap_or(path)
    }
}

/// The allowed key nearest to a misspelt one, when it is close enough to be a typo.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .copied()
        .map(|a| (edit_distance(key, a), a))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
