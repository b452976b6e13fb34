//! Header hygiene for a forwarding proxy: pure functions over `http::HeaderMap`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::body::Coding;

/// Hop-by-hop headers, RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
/// `Proxy-Connection` and `Keep-Alive` are the legacy spellings still sent by some clients.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The items of a comma-separated list field, across all its lines (one list, RFC 9110
/// §5.3), trimmed, in order; a line that is not text is skipped.
fn list_items<'a>(
    headers: &'a HeaderMap,
    name: impl http::header::AsHeaderName,
) -> impl DoubleEndedIterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes hop-by-hop headers, including every header the `Connection` header names
/// (RFC 9110 §7.6.1). With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive so a
/// WebSocket handshake can be relayed (RFC 9110 §7.8).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = list_items(headers, header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(&name);
    }
    // By `HeaderName`, not by string: every request and response passes here, and a string
    // key is parsed again on each lookup.
    for name in &HOP_BY_HOP {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether a request asks to switch protocols (WebSocket): `Connection: upgrade` + `Upgrade`.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Joins the `cookie` fields an HTTP/2 client sends one per cookie (for header compression) into
/// one `a=1; b=2`, as RFC 9113 §8.2.3 requires before an HTTP/1.1 hop: many origins read only
/// the first `Cookie` header.
pub fn join_cookie_crumbs(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let crumbs: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&crumbs.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// The load balancers and CDNs in front of telswap (`serve --trusted-proxies`): addresses and
/// networks whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed. Empty by default:
/// telswap is then the edge, and what a visitor writes in those fields says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

/// Who a request is from, as the trusted hops in front of telswap saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visitor {
    pub ip: std::net::IpAddr,
    /// Whether the visitor's own connection is HTTPS (at telswap, or at a trusted balancer).
    pub https: bool,
    /// Whether the request came through a trusted balancer (else telswap is the edge).
    pub proxied: bool,
}

impl TrustedProxies {
    /// A comma-separated list of addresses (`10.0.0.7`, `::1`) and networks (`10.0.0.0/8`,
    /// `2001:db8::/32`); empty entries are ignored.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<ipnet::IpNet>()
                    .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("{e:?} is no IP address or network (like 10.0.0.0/8)"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 balancer may reach a dual-stack listener as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The visitor of a request that came from `peer` on a connection that is (`tls`) HTTPS.
    ///
    /// From a trusted peer: the client is the rightmost `X-Forwarded-For` address that is not
    /// itself trusted (each trusted hop appended the address it saw; what is left of the first
    /// untrusted one, the visitor could have written), and the scheme is the peer's last
    /// `X-Forwarded-Proto`. An entry that is no address ends the walk at the last trusted hop.
    /// From any other peer the headers are ignored.
    pub fn visitor(&self, peer: std::net::IpAddr, tls: bool, headers: &HeaderMap) -> Visitor {
        let mut v = Visitor {
            ip: peer.to_canonical(),
            https: tls,
            proxied: false,
        };
        if self.0.is_empty() || !self.trusts(peer) {
            return v;
        }
        v.proxied = true;
        for hop in list_items(headers, "x-forwarded-for").rev() {
            let Some(ip) = forwarded_ip(hop) else { break };
            v.ip = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        match list_items(headers, "x-forwarded-proto").next_back() {
            Some(p) if p.eq_ignore_ascii_case("https") => v.https = true,
            Some(p) if p.eq_ignore_ascii_case("http") => v.https = false,
            _ => {}
        }
        v
    }
}

/// One `X-Forwarded-For` entry: an address, bracketed or with a port as some balancers write
/// them (`[2001:db8::1]:443`, `203.0.113.9:5123`).
fn forwarded_ip(entry: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, SocketAddr};
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
        .map(|ip| ip.to_canonical())
}

/// Adds the de-facto `X-Forwarded-*` headers and `Via` (RFC 9110 §7.6.3). `peer` is the address
/// this connection came from, which `X-Forwarded-For` and `Forwarded` append; `client` the
/// visitor's (the peer, or what trusted balancers said), which `X-Real-IP` holds. `proto` is
/// `http` or `https`. With `proxied` (the peer is a trusted balancer) the chain it sent is
/// kept; otherwise telswap is the edge and what the visitor wrote in `X-Forwarded-For` and
/// `Forwarded` is dropped, as Caddy and Traefik do: an origin that reads the first entry would
/// believe it.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    (peer, client, proxied): (&str, &str, bool),
    proto: &'static str,
    host: &str,
    version: http::Version,
) {
    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    // A list field sent on several lines is one list (RFC 9110 §5.3): all of it is kept.
    let joined = |headers: &HeaderMap, name: &HeaderName| {
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        lines.join(", ")
    };
    if !proxied {
        headers.remove(X_FORWARDED_FOR);
        headers.remove(header::FORWARDED);
    }
    let prev = joined(headers, &X_FORWARDED_FOR);
    let xff = if prev.is_empty() {
        peer.to_string()
    } else {
        format!("{prev}, {peer}")
    };
    set(headers, X_FORWARDED_FOR, &xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    set(headers, X_FORWARDED_HOST, host);
    // `X-Real-IP` holds one address, which origins take as the client's: the visitor must not
    // choose it. `Forwarded` (RFC 7239) gets this hop's element appended, as `X-Forwarded-For`
    // does.
    set(headers, X_REAL_IP, client);
    let node = if peer.contains(':') {
        format!("\"[{peer}]\"")
    } else {
        peer.to_string()
    };
    let hop = format!("for={node};proto={proto};host=\"{host}\"");
    let prev = joined(headers, &header::FORWARDED);
    let forwarded = if prev.is_empty() { hop } else { format!("{prev}, {hop}") };
    set(headers, header::FORWARDED, &forwarded);
    add_via(headers, version);
}

/// Appends this hop to `Via` (RFC 9110 §7.6.3): `1.1 telswap`, `2 telswap`.
pub fn add_via(headers: &mut HeaderMap, version: http::Version) {
    let hop = match version {
        http::Version::HTTP_10 => "1.0 telswap",
        http::Version::HTTP_2 => "2 telswap",
        http::Version::HTTP_3 => "3 telswap",
        _ => "1.1 telswap",
    };
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let via = format!("{prev}, {hop}");
            set(headers, header::VIA, &via);
        }
        None => {
            headers.insert(header::VIA, HeaderValue::from_static(hop));
        }
    }
}

/// Sets a header to a computed value. Names are `HeaderName`s (constants where they are not
/// standard): a `&str` name is parsed again on every call, and these run on every request.
fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Content codings the rewriter can decode and re-encode.
pub const CODINGS: &[&str] = &["gzip", "deflate", "br", "zstd"];

/// Narrows the visitor's `Accept-Encoding` to codings we can decode, so the origin never sends
/// an HTML body we would have to pass through unrewritten. Returns the value to send upstream.
pub fn upstream_accept_encoding(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let kept: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|t| {
            let name = t.split(';').next().unwrap_or("").trim();
            CODINGS.iter().any(|c| c.eq_ignore_ascii_case(name)) || name.eq_ignore_ascii_case("identity")
        })
        .collect();
    if kept.is_empty() {
        return Some(HeaderValue::from_static("identity"));
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// The content codings a visitor accepts (RFC 9110 §12.5.3), of those a rewritten page can be
/// sent in. The upstream request asks for no others, but an origin may answer in a coding it
/// was not asked for (a pre-compressed file served as is); its rewrite then goes out decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts(u8);

impl Accepts {
    const ALL: u8 = 0b1_1111;

    fn bit(c: Coding) -> u8 {
        1 << c as u8
    }

    /// From the request's `Accept-Encoding` fields: none means any coding is acceptable.
    pub fn of(headers: &HeaderMap) -> Accepts {
        let mut fields = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
        if fields.peek().is_none() {
            return Accepts(Self::ALL);
        }
        let (mut listed, mut ok, mut star) = (0u8, 0u8, None);
        for item in fields.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                    && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            });
            if name == "*" {
                star = Some(!q_zero);
            } else if let Some(c) = Coding::from_header(Some(name)) {
                listed |= Self::bit(c);
                if !q_zero {
                    ok |= Self::bit(c);
                }
            }
        }
        if star == Some(true) {
            ok |= Self::ALL & !listed;
        }
        // Identity is acceptable unless refused by name or by `*;q=0`.
        let identity = Self::bit(Coding::Identity);
        if listed & identity == 0 && star != Some(false) {
            ok |= identity;
        }
        Accepts(ok)
    }

    pub fn allows(self, c: Coding) -> bool {
        self.0 & Self::bit(c) != 0
    }
}

/// Makes a cache policy private: shared caches must not keep a page personalised for one
/// visitor (RFC 9111 §5.2.2.7). `public`, `s-maxage` and `proxy-revalidate` only concern shared
/// caches and go; `immutable` goes too (RFC 8246: not even a reload would ask again, and the
/// number the page shows follows the visitor's source, which changes); `max-age`, `no-store`
/// and the rest stay.
///
/// The fields that speak to one kind of shared cache over `Cache-Control` go too: a CDN that
/// honours `CDN-Cache-Control` (RFC 9213), `Surrogate-Control` or its own
/// `<Name>-CDN-Cache-Control` reads it *instead of* `Cache-Control`, and nginx's `proxy_cache`
/// obeys `X-Accel-Expires` first. Left in, any of them would cache one visitor's number for all.
pub fn make_private(headers: &mut HeaderMap) {
    let targeted: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.ends_with("cdn-cache-control") || matches!(k, "surrogate-control" | "edge-control" | "x-accel-expires")
        })
        .cloned()
        .collect();
    for k in targeted {
        headers.remove(k);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let existing: Vec<String> = list_items(headers, header::CACHE_CONTROL)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    let mut kept: Vec<String> = existing
        .into_iter()
        .filter(|d| !is_directive(d, &["public", "s-maxage", "proxy-revalidate", "private", "immutable"]))
        .collect();
    kept.insert(0, "private".to_string());
    set(headers, header::CACHE_CONTROL, &kept.join(", "));
}

/// Whether a `Cache-Control` directive (`max-age=60`) is one of `names` (any case).
fn is_directive(directive: &str, names: &[&str]) -> bool {
    let name = directive.split('=').next().unwrap_or("").trim();
    names.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Points the origin's own address in `Location`, `Content-Location` and `Refresh` at the
/// address the visitor used (nginx's `proxy_redirect default`): a redirect to
/// `http://10.0.0.5:8080/login` would send the visitor past the proxy (no tracking number), to
/// an address that is internal, and from HTTPS down to HTTP. Relative and other hosts' URLs stay
/// as they are.
pub fn public_locations(headers: &mut HeaderMap, upstream: &http::Uri, scheme: &str, host: &str) {
    const FIELDS: [HeaderName; 3] = [header::LOCATION, header::CONTENT_LOCATION, header::REFRESH];
    // Most responses carry none: nothing to build for them.
    let Some(up_authority) = upstream
        .authority()
        .filter(|_| FIELDS.iter().any(|f| headers.contains_key(f)))
    else {
        return;
    };
    let up_scheme = upstream.scheme_str().unwrap_or("http");
    let origin = format!("{up_scheme}://{}", up_authority.as_str());
    let relative = format!("//{}", up_authority.as_str());
    // The URL with the origin's own prefix replaced, if it has it.
    let public = |url: &str| -> Option<String> {
        for (prefix, to) in [
            (&origin, format!("{scheme}://{host}")),
            (&relative, format!("//{host}")),
        ] {
            let Some(head) = url.get(..prefix.len()) else { continue };
            let rest = &url[prefix.len()..];
            // Only the origin itself: `http://origin:8080` must not match `http://origin:80801/`.
            if head.eq_ignore_ascii_case(prefix) && (rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                let rest = if rest.is_empty() { "/" } else { rest };
                return Some(format!("{to}{rest}"));
            }
        }
        None
    };
    for name in FIELDS {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let new = if name == header::REFRESH {
            // `5; url=http://origin/next`
            let Some(at) = value.to_ascii_lowercase().find("url=").map(|i| i + 4) else {
                continue;
            };
            let url = value[at..].trim_matches(['\'', '"']);
            public(url).map(|u| format!("{}{u}", &value[..at]))
        } else {
            public(value)
        };
        if let Some(v) = new.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    }
}

/// Adds `no-cache` to a page's (private) cache policy and drops `Expires`: a browser may keep
/// the page, but must ask again before showing it, since the number it shows may have been
/// released and leased to another visitor since, or no longer be the one for the visitor's
/// source. (Conditional requests are not forwarded for such pages, so asking again brings the
/// visitor's number of the moment.)
pub fn revalidate_always(headers: &mut HeaderMap) {
    headers.remove(header::EXPIRES);
    let policy = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Only a bare `no-cache` makes a browser ask again: one naming fields
    // (`no-cache="Set-Cookie"`) is read by browsers as no directive at all.
    if policy
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache") || is_directive(d, &["no-store"]))
    {
        return;
    }
    let value = if policy.trim().is_empty() {
        "no-cache".to_string()
    } else {
        format!("{policy}, no-cache")
    };
    set(headers, header::CACHE_CONTROL, &value);
}

/// Headers that describe the exact bytes of a body and so stop being true once it is rewritten:
/// `Content-Length` (now streamed), a strong `ETag` (a weak one still holds: same meaning), the
/// digests (`Content-MD5`, `Digest`, RFC 9530's `Content-Digest` and `Repr-Digest`), and
/// `Accept-Ranges` (byte ranges of the original do not address the rewrite). `Last-Modified`
/// goes as nginx's `sub_filter` drops it: the rewrite is new at every response, and a client
/// would send the date back as an `If-Range` for bytes of another body.
pub fn drop_representation_headers(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    for digest in ["content-md5", "digest", "content-digest", "repr-digest"] {
        headers.remove(digest);
    }
    headers.remove(header::ACCEPT_RANGES);
    headers.remove(header::LAST_MODIFIED);
    let strong = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.starts_with("W/"));
    if strong {
        headers.remove(header::ETAG);
    }
}

/// What a request says of wanting an HTML page: `Some(true)` for a navigation (`Sec-Fetch-Dest`
/// `document`, `iframe`, `frame`), a script's fetch naming HTML in `Accept` (Turbo, pjax), or an
/// `Accept` naming HTML; `Some(false)` for another destination, or an `Accept` naming neither
/// HTML nor `*/*`; `None` when it does not say (no `Sec-Fetch-Dest`, `Accept` absent or `*/*`:
/// curl, a media player, a download manager).
pub fn asks_for_html(headers: &HeaderMap) -> Option<bool> {
    if let Some(dest) = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok()) {
        return Some(match dest {
            "document" | "iframe" | "frame" => true,
            "empty" => accepts_html(headers),
            _ => false,
        });
    }
    asks_for_html_by_accept(headers)
}

/// [`asks_for_html`] from `Accept` alone: `Some(true)` naming HTML, `Some(false)` naming
/// neither HTML nor `*/*`, else `None`.
pub fn asks_for_html_by_accept(headers: &HeaderMap) -> Option<bool> {
    if accepts_html(headers) {
        return Some(true);
    }
    let mut accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
    match accept.next() {
        Some(first) if !first.contains("*/*") && !accept.any(|v| v.contains("*/*")) => Some(false),
        _ => None,
    }
}

/// Whether a request is a prefetch or prerender (the browser fills its cache or renders a page
/// the visitor may go to next): `Sec-Purpose: prefetch` (and `prefetch;prerender`), Chrome's
/// `Purpose: prefetch`, Firefox's `X-Moz: prefetch`, Safari's `X-Purpose: preview`.
pub fn is_speculative(headers: &HeaderMap) -> bool {
    let says = |name: &str, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    says("sec-purpose", "prefetch")
        || says("purpose", "prefetch")
        || says("x-moz", "prefetch")
        || says("x-purpose", "preview")
        || says("x-purpose", "prefetch")
}

/// Whether `Accept` names HTML (`text/html` or `application/xhtml+xml`).
pub fn accepts_html(headers: &HeaderMap) -> bool {
    list_items(headers, header::ACCEPT).any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t.eq_ignore_ascii_case("text/html") || t.eq_ignore_ascii_case("application/xhtml+xml")
    })
}

/// `text/html; charset=windows-1252` → (is HTML, charset label).
pub fn html_content_type(headers: &HeaderMap) -> (bool, Option<String>) {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return (false, None);
    };
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim();
    let html = mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml");
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    (html, charset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_addresses_and_networks_and_name_a_bad_entry() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,,2001:db8::/32, ::1").unwrap();
        assert_eq!(t.0.len(), 4);
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, lb.internal").unwrap_err(),
            "\"lb.internal\" is no IP address or network (like 10.0.0.0/8)"
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        // Host bits are dropped: 10.1.2.3/8 is 10.0.0.0/8.
        assert!(
            TrustedProxies::parse("10.1.2.3/8")
                .unwrap()
                .trusts("10.200.0.1".parse().unwrap())
        );
    }

    #[test]
    fn a_trusted_peers_headers_name_the_visitor_and_scheme() {
        let t = TrustedProxies::parse("10.0.0.0/8, 2001:db8::/32").unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let visitor = |peer: &str, tls: bool, fields: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in fields {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            let v = t.visitor(ip(peer), tls, &h);
            (v.ip.to_string(), v.https)
        };
        let who = |s: &str, https: bool| (s.to_string(), https);
        // Untrusted peer: its claims are ignored.
        let claims = [("x-forwarded-for", "198.51.100.4"), ("x-forwarded-proto", "https")];
        assert_eq!(visitor("203.0.113.9", false, &claims), who("203.0.113.9", false));
        // Trusted peer: the rightmost untrusted hop, across lines; the last proto.
        assert_eq!(visitor("10.0.0.2", false, &claims), who("198.51.100.4", true));
        let chain = [
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-forwarded-proto", "HTTP, https"),
        ];
        assert_eq!(visitor("10.0.0.2", false, &chain), who("198.51.100.4", true));
        // A balancer that ends TLS itself and says http is believed, and TLS here stays https
        // when it says nothing.
        assert_eq!(
            visitor("10.0.0.2", true, &[("x-forwarded-proto", "http")]),
            who("10.0.0.2", false)
        );
        assert_eq!(visitor("10.0.0.2", true, &[]), who("10.0.0.2", true));
        // Ports and brackets as some balancers write them; IPv4-mapped peers.
        assert_eq!(
            visitor("::ffff:10.0.0.2", false, &[("x-forwarded-for", "198.51.100.4:5123")]),
            who("198.51.100.4", false)
        );
        assert_eq!(
            visitor("2001:db8::5", false, &[("x-forwarded-for", "[2001:db9::1]:443")]),
            who("2001:db9::1", false)
        );
        // Garbage ends the walk at the last trusted hop; all trusted: the leftmost.
        assert_eq!(
            visitor(
                "10.0.0.2",
                false,
                &[("x-forwarded-for", "198.51.100.4, unknown, 10.0.0.3")]
            ),
            who("10.0.0.3", false)
        );
        assert_eq!(
            visitor("10.0.0.2", false, &[("x-forwarded-for", "10.0.0.4, 10.0.0.3")]),
            who("10.0.0.4", false)
        );
        // An unknown scheme changes nothing.
        assert_eq!(
            visitor("10.0.0.2", false, &[("x-forwarded-proto", "wss")]),
            who("10.0.0.2", false)
        );
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("accept", "text/html"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn cache_control_becomes_private() {
        let mut h = map(&[("cache-control", "public, max-age=600, s-maxage=3600")]);
        make_private(&mut h);
        assert_eq!(h["cache-control"], "private, max-age=600");
        let mut h = map(&[("cache-control", "public, max-age=31536000, Immutable")]);
        make_private(&mut h);
        assert_eq!(h["cache-control"], "private, max-age=31536000");
        let mut h = HeaderMap::new();
        make_private(&mut h);
        assert_eq!(h["cache-control"], "private");
        // What a CDN or nginx would read instead of Cache-Control goes.
        let mut h = map(&[
            ("x-accel-expires", "3600"),
            ("cdn-cache-control", "public, max-age=86400"),
            ("cloudflare-cdn-cache-control", "max-age=86400"),
            ("surrogate-control", "max-age=86400"),
            ("edge-control", "cache-maxage=1d"),
            ("surrogate-key", "home"),
        ]);
        make_private(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["surrogate-key", "cache-control"]);
    }

    #[test]
    fn the_origins_own_redirects_point_at_the_public_address() {
        let up: http::Uri = "http://10.0.0.5:8080".parse().unwrap();
        for (location, want) in [
            ("http://10.0.0.5:8080/login?x=1", "https://www.example.com/login?x=1"),
            ("HTTP://10.0.0.5:8080", "https://www.example.com/"),
            ("http://10.0.0.5:80801/x", "http://10.0.0.5:80801/x"),
            ("https://10.0.0.5:8080/x", "https://10.0.0.5:8080/x"),
            ("/relative", "/relative"),
            ("https://accounts.example.org/", "https://accounts.example.org/"),
            ("//10.0.0.5:8080/x", "//www.example.com/x"),
        ] {
            let mut h = map(&[("location", location)]);
            public_locations(&mut h, &up, "https", "www.example.com");
            assert_eq!(h["location"], want, "{location}");
        }
        let mut h = map(&[("refresh", "0; url=http://10.0.0.5:8080/next")]);
        public_locations(&mut h, &up, "https", "www.example.com");
        assert_eq!(h["refresh"], "0; url=https://www.example.com/next");
    }

    #[test]
    fn what_a_request_says_of_wanting_html() {
        let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
        for (headers, said) in [
            (&[("sec-fetch-dest", "document"), ("accept", "*/*")][..], Some(true)),
            (&[("sec-fetch-dest", "frame")], Some(true)),
            (&[("sec-fetch-dest", "empty"), ("accept", "text/html, */*")], Some(true)),
            (&[("sec-fetch-dest", "empty"), ("accept", "*/*")], Some(false)),
            (&[("sec-fetch-dest", "image"), ("accept", browser)], Some(false)),
            (&[("accept", browser)], Some(true)),
            (&[("accept", "application/json")], Some(false)),
            (&[("accept", "*/*")], None),
            (&[], None),
        ] {
            assert_eq!(asks_for_html(&map(headers)), said, "{headers:?}");
        }
    }

    #[test]
    fn prefetches_and_prerenders_are_told() {
        for (headers, said) in [
            (&[("sec-purpose", "prefetch")][..], true),
            (&[("sec-purpose", "prefetch;prerender")], true),
            (&[("purpose", "Prefetch")], true),
            (&[("x-moz", "prefetch")], true),
            (&[("x-purpose", "preview")], true),
            (&[("sec-purpose", "anonymous-client-ip")], false),
            (&[], false),
        ] {
            assert_eq!(is_speculative(&map(headers)), said, "{headers:?}");
        }
    }

    #[test]
    fn a_dni_page_is_revalidated_every_time() {
        let mut h = map(&[
            ("cache-control", "private, max-age=3600"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ]);
        revalidate_always(&mut h);
        assert_eq!(h["cache-control"], "private, max-age=3600, no-cache");
        assert!(!h.contains_key("expires"));
        for kept in ["private, no-store", "private, No-Cache"] {
            let mut h = map(&[("cache-control", kept)]);
            revalidate_always(&mut h);
            assert_eq!(h["cache-control"], kept);
        }
        let mut h = HeaderMap::new();
        revalidate_always(&mut h);
        assert_eq!(h["cache-control"], "no-cache");
        // A `no-cache` naming fields is no `no-cache` to a browser: a bare one is added.
        let mut h = map(&[("cache-control", "private, max-age=3600, no-cache=\"Set-Cookie, X-A\"")]);
        revalidate_always(&mut h);
        assert_eq!(
            h["cache-control"],
            "private, max-age=3600, no-cache=\"Set-Cookie, X-A\", no-cache"
        );
    }

    #[test]
    fn weak_etag_survives_strong_does_not() {
        let mut h = map(&[("etag", "W/\"a\""), ("content-length", "10")]);
        drop_representation_headers(&mut h);
        assert!(h.contains_key("etag") && !h.contains_key("content-length"));
        let mut h = map(&[("etag", "\"a\"")]);
        drop_representation_headers(&mut h);
        assert!(!h.contains_key("etag"));
    }

    #[test]
    fn accept_encoding_is_narrowed() {
        let h = map(&[("accept-encoding", "gzip, deflate, br, zstd, compress;q=0.5, snappy")]);
        assert_eq!(upstream_accept_encoding(&h).unwrap(), "gzip, deflate, br, zstd");
        let h = map(&[("accept-encoding", "snappy")]);
        assert_eq!(upstream_accept_encoding(&h).unwrap(), "identity");
    }
}
