//! Transparency: everything the proxy is not meant to change reaches the other side unchanged
//! (bodies, codings, charsets, statuses, request bodies, upgrades), the one thing it is meant to
//! change (the phone number, for a tracked visitor) changes with headers that stay truthful, and
//! what must never cross (hop-by-hop headers, reserved paths, internals in error pages) does not.
//!
//! Every test runs a real origin and the proxy on loopback ephemeral ports (see `common`).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

/// A page with the site's number in three shapes (text, `tel:` link, international).
const PAGE: &str = "<!doctype html>\n<html><head><title>Acme Plumbing</title></head>\n<body>\n\
    <p>Call us: (555) 010-0000</p>\n<a href=\"tel:+15550100000\">+1 555-010-0000</a>\n\
    <footer>Order 5550100000123, since 1999</footer>\n</body></html>\n";

/// [`PAGE`] as a tracked (organic search) visitor sees it: the same shapes, the pool's number.
/// The longer digit run in the footer merely contains the number and stays.
const REWRITTEN: &str = "<!doctype html>\n<html><head><title>Acme Plumbing</title></head>\n<body>\n\
    <p>Call us: (555) 010-2001</p>\n<a href=\"tel:+15550102001\">+1 555-010-2001</a>\n\
    <footer>Order 5550100000123, since 1999</footer>\n</body></html>\n";

const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");

/// Anything in error pages that would tell a visitor about the proxy's internals or the origin.
fn assert_reveals_nothing(resp: &RawResponse, origin: std::net::SocketAddr) {
    let wire = String::from_utf8_lossy(&resp.wire).to_ascii_lowercase();
    let body = resp.text().to_ascii_lowercase();
    for secret in [
        "hyper",
        "127.0.0.1",
        "refused",
        "timed out",
        "tcp",
        "os error",
        "error trying",
        "client error",
    ] {
        assert!(!wire.contains(secret), "the response mentions {secret:?}:\n{wire}");
    }
    assert!(
        !body.contains(&origin.port().to_string()),
        "the body mentions the upstream port:\n{body}"
    );
}

#[tokio::test]
async fn harness_websocket_accept_matches_rfc_6455_example() {
    // RFC 6455 §1.3: the sample nonce and its accept value; also pins the hand-rolled SHA-1.
    assert_eq!(
        websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(
        base64(&sha1(b"abc")),
        base64(&[
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0,
            0xd8, 0x9d
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Bodies that must not change

#[tokio::test]
async fn non_html_passes_byte_for_byte_with_its_length_and_etag() {
    let json = br#"{"phone":"+1 555-010-0000","tel":"5550100000"}"#.to_vec();
    // An "image" whose bytes include the number's digits and every byte value.
    let mut png = b"\x89PNG\r\n\x1a\n 555-010-0000 (555) 010-0000 ".to_vec();
    png.extend((0..=255u8).cycle().take(4096));
    let css = b"a[href=\"tel:+15550100000\"]::after { content: \"(555) 010-0000\"; }\n".to_vec();
    let origin = Origin::start(vec![
        (
            "/data.json",
            Route::page(
                200,
                &[
                    ("content-type", "application/json"),
                    ("etag", "\"j1\""),
                    ("cache-control", "public, max-age=60"),
                ],
                json.clone(),
            ),
        ),
        (
            "/logo.png",
            Route::page(200, &[("content-type", "image/png"), ("etag", "\"p1\"")], png.clone()),
        ),
        (
            "/site.css",
            Route::page(200, &[("content-type", "text/css"), ("etag", "\"c1\"")], css.clone()),
        ),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for (path, body, etag) in [
        ("/data.json", &json, "\"j1\""),
        ("/logo.png", &png, "\"p1\""),
        ("/site.css", &css, "\"c1\""),
    ] {
        let resp = get(proxy.http, "site.test", &tracked(path)).await;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(&resp.body, body, "{path}: body changed");
        assert_eq!(
            resp.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(resp.header("transfer-encoding"), None, "{path}");
        assert_eq!(resp.header("etag"), Some(etag), "{path}");
    }
    let resp = get(proxy.http, "site.test", &tracked("/data.json")).await;
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=60"),
        "non-HTML cache policy is the origin's"
    );
}

#[tokio::test]
async fn html_without_the_number_is_byte_identical_for_a_tracked_visitor() {
    // Odd but valid markup lol_html must not normalise: upper-case tags, unquoted and
    // single-quoted attributes, entities, comments, CDATA-ish script text, stray whitespace,
    // other phone numbers and digit runs.
    let page = "<!DOCTYPE html>\r\n<HTML lang=en><HEAD><META charset=utf-8>\r\n\
        <TITLE>Caf&eacute; &amp; co</TITLE>\n<script>var s = '<p>' + 5550100001 + \"</p>\";</script>\n\
        <style>p > a { color: red }</style></HEAD>\n<BODY class='x'   id=main>\n\
        <!-- call (555) 010-9999 -->\n<p>Call +1 555-010-9999 or 555.010.1234 &nbsp; &#x41;&#65;</p>\n\
        <a href=\"tel:+15550109999\" data-x = 'y'>Other line</a><br/><img src=a.png alt=\"\">\n\
        <p>Ünïcödé ✓ 5550100000123</p>\n</BODY></HTML>";
    let origin = Origin::start(vec![("/", Route::html(page))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), page);
}

#[tokio::test]
async fn numbers_only_in_excluded_elements_leave_the_page_byte_identical() {
    let page = "<html><body>\n<div data-telswap-ignore>Head office: (555) 010-0000 \
        <a href=\"tel:+15550100000\" title=\"+1 555-010-0000\">555-010-0000</a>\
        <span><b>5550100000</b></span></div>\n\
        <p data-telswap-ignore=\"\">+1&nbsp;555&#8209;010&#8209;0000</p>\n<p>No number here.</p>\n</body></html>";
    let origin = Origin::start(vec![("/", Route::html(page))]).await;
    let proxy = start_proxy(default_site(&origin.url(), r#"exclude = ["[data-telswap-ignore]"]"#)).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), page);
}

// ---------------------------------------------------------------------------------------------
// The rewrite and the headers that must follow it

#[tokio::test]
async fn tracked_html_is_rewritten_private_without_length_or_strong_etag() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[
                HTML,
                ("cache-control", "public, max-age=60"),
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
            ],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), REWRITTEN);
    // Private (one visitor's number), and asked for again before the browser shows it from its
    // cache: the number this visitor should see changes with their source and session.
    assert_eq!(resp.header("cache-control"), Some("private, max-age=60, no-cache"));
    assert!(!resp.has("content-length"), "a rewritten body has no known length");
    assert!(!resp.has("etag"), "a strong ETag no longer describes the bytes");
    assert!(
        !resp.has("accept-ranges"),
        "byte ranges of the original do not address the rewrite"
    );
    assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
}

#[tokio::test]
async fn weak_etag_survives_rewriting() {
    let origin = Origin::start(vec![("/", Route::page(200, &[HTML, ("etag", "W/\"v1\"")], PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.text(), REWRITTEN);
    assert_eq!(resp.header("etag"), Some("W/\"v1\""));
}

/// A client that stops reading a large page is let go after the send timeout (nginx's
/// `send_timeout`), with the origin's connection and the rewrite's buffers, instead of holding
/// them for as long as it stays connected. Time is paused: the clock moves only when every task
/// waits.
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_let_go_after_the_send_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let para = "<p>Ring (555) 010-0000 today.</p>\n";
    let page = para.repeat(32 * 1024 * 1024 / para.len());
    let origin = Origin::start(vec![("/", Route::html(&page))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let head = request_head("GET", "site.test", &tracked("/"), &[("Accept", "text/html")]);
    s.write_all(&head).await.unwrap();
    let open = || proxy.proxy.stats.connections_open.load(Ordering::Relaxed);
    tokio::time::sleep(telswap::proxy::conn::SEND_TIMEOUT - Duration::from_secs(1)).await;
    assert_eq!(open(), 1, "held while the timeout runs");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(open(), 0, "let go at the timeout");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got).await;
    assert!(got.len() < page.len(), "the page was cut, not sent whole");
}

/// Turbo, pjax and their kin navigate by fetching the next page (`Sec-Fetch-Dest: empty`,
/// `Accept` naming HTML) and swapping it in: the visitor must see their number there as on any
/// page. A fetch for anything else is no page.
#[tokio::test]
async fn a_script_fetching_the_next_page_gets_it_rewritten() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let turbo = [
        ("Sec-Fetch-Dest", "empty"),
        ("Sec-Fetch-Mode", "cors"),
        ("Accept", "text/vnd.turbo-stream.html, text/html, application/xhtml+xml"),
    ];
    let resp = send(proxy.http, "GET", "site.test", &tracked("/"), &turbo).await;
    assert_eq!(resp.text(), REWRITTEN);
    let json = [("Sec-Fetch-Dest", "empty"), ("Accept", "*/*")];
    let resp = send(proxy.http, "GET", "site.test", &tracked("/"), &json).await;
    assert_eq!(resp.text(), PAGE);
}

#[tokio::test]
async fn untracked_visitor_sees_the_page_unchanged_but_private() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[HTML, ("cache-control", "public, max-age=60"), ("etag", "\"v1\"")],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), PAGE);
    assert_eq!(resp.header("content-length"), Some(PAGE.len().to_string().as_str()));
    assert_eq!(resp.header("etag"), Some("\"v1\""));
    // The next visitor on the same URL may be tracked: shared caches must not keep it. Nor may
    // this browser show it again without asking: the visitor may come back from an ad, follow a
    // link here and have to see the ad's number.
    assert_eq!(resp.header("cache-control"), Some("private, max-age=60, no-cache"));
}

#[tokio::test]
async fn numbers_split_across_network_reads_are_still_rewritten() {
    // ~400 KB: many origin reads and decoder outputs, so some numbers straddle chunk edges.
    let para = "<p>Ring (555) 010-0000 today, or tel <a href=\"tel:5550100000\">here</a>.</p>\n";
    let page = format!("<html><body>\n{}</body></html>", para.repeat(5000));
    let want = page
        .replace("(555) 010-0000", "(555) 010-2001")
        .replace("tel:5550100000", "tel:5550102001");
    let gz = encode("gzip", page.as_bytes()).await;
    let origin = Origin::start(vec![
        ("/plain", Route::page(200, &[HTML], page.clone())),
        ("/gz", Route::page(200, &[HTML, ("content-encoding", "gzip")], gz)),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/plain")).await;
    assert!(resp.text() == want, "plain page not rewritten everywhere");
    assert!(
        get_gzip(proxy.http, &tracked("/gz")).await == want.as_bytes(),
        "gzip page not rewritten everywhere"
    );
}

async fn compressed_html_is_rewritten_in_the_origins_coding(coding: &str) {
    let encoded = encode(coding, PAGE.as_bytes()).await;
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[
                HTML,
                ("content-encoding", coding),
                ("vary", "Accept-Encoding"),
                ("etag", "\"z\""),
            ],
            encoded,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let accept = "gzip, br, zstd, deflate";
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        &tracked("/"),
        &[("Accept-Encoding", accept)],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), Some(coding));
    assert_eq!(resp.header("vary"), Some("Accept-Encoding"));
    assert!(!resp.has("content-length") && !resp.has("etag"));
    let body = decode(coding, &resp.body).await;
    assert_eq!(String::from_utf8(body).expect("UTF-8"), REWRITTEN, "{coding}");
    assert_eq!(origin.only_request().header("accept-encoding"), Some(accept));
}

/// GETs `target` of `site.test` accepting gzip; the body, decoded, after checking it came gzipped.
async fn get_gzip(proxy: std::net::SocketAddr, target: &str) -> Vec<u8> {
    let resp = send(proxy, "GET", "site.test", target, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    decode("gzip", &resp.body).await
}

/// A page with a fresh token in every response is answered from the first response's rewrite
/// around the token: the engine reads only the stretch around it, and the metrics count it.
#[tokio::test]
async fn a_page_with_a_fresh_token_in_every_response_is_replayed_around_it() {
    let rows: String = (0..150)
        .map(|k| format!("<p>Row {k}: call (555) 010-0000 today.</p>\n"))
        .collect();
    let page = format!(
        "<!doctype html>\n<html><body>\n<form><input type=hidden name=t value=\"{{n}}\"></form>\n{rows}</body></html>\n"
    );
    let origin = Origin::start(vec![("/", Route::Numbered(page.clone()))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    for n in 0..4 {
        let resp = get(proxy.http, "site.test", &tracked("/")).await;
        // The origin's count includes this request.
        let want = page
            .replace("{n}", &format!("{:08}", n + 1))
            .replace("(555) 010-0000", "(555) 010-2001");
        assert_eq!(resp.text(), want, "response {n}");
    }
    let stats = &proxy.proxy.stats;
    // The first response was recorded; each one after it differed at the token, and the rest was
    // the recording's again.
    tokio::time::timeout(DEADLINE, async {
        while stats.rewritten_resumed.load(Ordering::Relaxed) != 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "3 resumed responses expected, {} counted",
            stats.rewritten_resumed.load(Ordering::Relaxed)
        )
    });
    assert_eq!(stats.rewritten_replayed.load(Ordering::Relaxed), 0);
    let from_recording = stats.replayed_bytes.load(Ordering::Relaxed);
    assert!(
        from_recording as usize > 3 * (page.len() - 2048),
        "{from_recording} of 3 x {}",
        page.len()
    );
}

/// A page the origin sends byte for byte the same again is answered from the first response's
/// rewrite (`rewrite::replay`), plain or compressed, with the same bytes; the metric counts it.
#[tokio::test]
async fn the_same_page_again_is_replayed_with_the_same_bytes() {
    let gz = encode("gzip", PAGE.as_bytes()).await;
    let origin = Origin::start(vec![
        ("/", Route::page(200, &[HTML], PAGE)),
        ("/gz", Route::page(200, &[HTML, ("content-encoding", "gzip")], gz)),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let replayed = || proxy.proxy.stats.rewritten_replayed.load(Ordering::Relaxed);
    for n in 0..3 {
        let resp = get(proxy.http, "site.test", &tracked("/")).await;
        assert_eq!(resp.text(), REWRITTEN, "response {n}");
        let body = get_gzip(proxy.http, &tracked("/gz")).await;
        assert_eq!(String::from_utf8(body).expect("UTF-8"), REWRITTEN, "gzip response {n}");
    }
    // The first response of each page was recorded, the two after it replayed. (The compressed
    // page's figures are added when its rewriting task ends, just after the last bytes.)
    tokio::time::timeout(DEADLINE, async {
        while replayed() != 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("4 replayed responses expected, {} counted", replayed()));
    assert_eq!(proxy.proxy.stats.rewritten.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn gzip_html_is_rewritten_and_stays_gzip() {
    compressed_html_is_rewritten_in_the_origins_coding("gzip").await;
}

#[tokio::test]
async fn brotli_html_is_rewritten_and_stays_brotli() {
    compressed_html_is_rewritten_in_the_origins_coding("br").await;
}

#[tokio::test]
async fn deflate_html_is_rewritten_and_stays_deflate() {
    compressed_html_is_rewritten_in_the_origins_coding("deflate").await;
}

/// A charset label no browser knows is ignored, as browsers ignore it: the page is read as if
/// it had none (it passed unrewritten).
#[tokio::test]
async fn an_unknown_charset_label_is_ignored() {
    let origin = Origin::start(vec![
        (
            "/empty",
            Route::page(200, &[("content-type", "text/html; charset=")], PAGE),
        ),
        (
            "/none",
            Route::page(200, &[("content-type", "text/html; charset=none")], PAGE),
        ),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    for path in ["/empty", "/none"] {
        let resp = get(proxy.http, "site.test", &tracked(path)).await;
        assert_eq!(resp.text(), REWRITTEN, "{path}");
    }
}

/// An origin response with more header fields than hyper's default hundred (cookies, preloads,
/// security headers add up) is forwarded, not a 502.
#[tokio::test]
async fn a_response_with_many_header_fields_passes() {
    let names: Vec<(String, String)> = (0..200).map(|i| (format!("x-h-{i}"), format!("v{i}"))).collect();
    let mut fields: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fields.push(HTML);
    let origin = Origin::start(vec![("/", Route::page(200, &fields, PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-h-199"), Some("v199"));
    assert_eq!(resp.text(), REWRITTEN);
}

/// Raw deflate under the name `deflate` (old IIS and PHP servers; browsers read it): decoded as
/// what it is, rewritten, and sent on as proper (zlib) deflate. It was a cut, empty page.
#[tokio::test]
async fn raw_deflate_html_is_rewritten_too() {
    let encoded = encode("raw-deflate", PAGE.as_bytes()).await;
    assert_ne!(encoded, encode("deflate", PAGE.as_bytes()).await);
    let origin = Origin::start(vec![(
        "/",
        Route::page(200, &[HTML, ("content-encoding", "deflate")], encoded),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    for (accept, coding) in [("deflate", Some("deflate")), ("identity", None)] {
        let resp = send(
            proxy.http,
            "GET",
            "site.test",
            &tracked("/"),
            &[("Accept-Encoding", accept)],
        )
        .await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-encoding"), coding);
        let body = match coding {
            Some(c) => decode(c, &resp.body).await,
            None => resp.body.clone(),
        };
        assert_eq!(String::from_utf8(body).expect("UTF-8"), REWRITTEN, "{accept}");
    }
}

#[tokio::test]
async fn zstd_html_is_rewritten_and_stays_zstd() {
    compressed_html_is_rewritten_in_the_origins_coding("zstd").await;
}

/// An origin that answers gzip whatever it was asked (a pre-compressed file served as is): a
/// visitor who does not take gzip gets the rewrite decoded, one who does gets it gzipped, and a
/// HEAD says the same.
#[tokio::test]
async fn a_coding_the_visitor_does_not_accept_is_decoded() {
    let gz = encode("gzip", PAGE.as_bytes()).await;
    let origin = Origin::start(vec![("/", Route::page(200, &[HTML, ("content-encoding", "gzip")], gz))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for accept in [
        Some("identity"),
        Some("br"),
        Some("gzip;q=0, deflate"),
        Some("*;q=0, identity"),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept-Encoding", *a)).collect();
        let resp = send(proxy.http, "GET", "site.test", &tracked("/"), &headers).await;
        assert_eq!(resp.status, 200, "{accept:?}");
        assert!(!resp.has("content-encoding"), "{accept:?}: sent in a coding it refused");
        assert_eq!(resp.text(), REWRITTEN, "{accept:?}");
        let head = send(proxy.http, "HEAD", "site.test", &tracked("/"), &headers).await;
        assert!(
            !head.has("content-encoding") && !head.has("content-length"),
            "{accept:?}"
        );
    }
    for accept in [None, Some("gzip"), Some("br, *"), Some("GZIP;q=0.5")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept-Encoding", *a)).collect();
        let resp = send(proxy.http, "GET", "site.test", &tracked("/"), &headers).await;
        assert_eq!(resp.header("content-encoding"), Some("gzip"), "{accept:?}");
        let body = decode("gzip", &resp.body).await;
        assert_eq!(String::from_utf8(body).expect("UTF-8"), REWRITTEN, "{accept:?}");
    }
}

/// A windows-1252 page: é, ü, €, “ ” and © are single non-ASCII bytes, and the number is
/// written with no-break spaces (0xA0).
const CP1252_BODY: &[u8] = b"<html><head><title>Caf\xe9 M\xfcller</title></head><body>\n\
    <p>R\xe9servez au 555\xa0010\xa00000 \x80 \x93cit\xe9\x94 \xa9 2024</p>\n</body></html>\n";
const CP1252_REWRITTEN: &[u8] = b"<html><head><title>Caf\xe9 M\xfcller</title></head><body>\n\
    <p>R\xe9servez au 555\xa0010\xa02001 \x80 \x93cit\xe9\x94 \xa9 2024</p>\n</body></html>\n";

#[tokio::test]
async fn windows_1252_page_is_rewritten_and_its_other_bytes_unchanged() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(200, &[("content-type", "text/html; charset=windows-1252")], CP1252_BODY),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/html; charset=windows-1252"));
    assert_eq!(
        resp.body,
        CP1252_REWRITTEN,
        "got {:?}",
        String::from_utf8_lossy(&resp.body)
    );
}

#[tokio::test]
async fn windows_1252_declared_in_meta_is_rewritten_and_its_other_bytes_unchanged() {
    let body = [b"<meta charset=\"windows-1252\">".as_slice(), CP1252_BODY].concat();
    let want = [b"<meta charset=\"windows-1252\">".as_slice(), CP1252_REWRITTEN].concat();
    let origin = Origin::start(vec![("/", Route::page(200, &[("content-type", "text/html")], body))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, want, "got {:?}", String::from_utf8_lossy(&resp.body));
}

/// Until the head and the start of the body (de-chunked, decoded with `coding`) contain `want`.
async fn read_until_body_contains(s: &mut tokio::net::TcpStream, coding: Option<&str>, want: &str) -> String {
    let mut wire = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        loop {
            assert!(
                read_more(s, &mut wire).await,
                "closed early: {:?}",
                String::from_utf8_lossy(&wire)
            );
            let Some(end) = find(&wire, b"\r\n\r\n") else { continue };
            let (data, _) = dechunk_prefix(&wire[end + 4..]);
            let text = match coding {
                Some(c) => decode_prefix(c, &data).await,
                None => data,
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            if text.contains(want) {
                return text;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{want:?} did not arrive while the origin held the rest of the page; got {:?}",
            String::from_utf8_lossy(&wire)
        )
    })
}

const FIRST_PART: &str = "<html><body><p>Call (555) 010-0000</p>\n<p>The rest of the page is still on its way";

#[tokio::test]
async fn rewritten_page_streams_before_the_origin_finishes() {
    let origin = Origin::start(vec![("/", Route::stream_then_hang(&[HTML], vec![FIRST_PART.into()]))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let mut s = open(proxy.http, &request_head("GET", "site.test", &tracked("/"), &[])).await;
    let got = read_until_body_contains(&mut s, None, "<p>Call (555) 010-2001</p>").await;
    assert!(!got.contains("010-0000"), "{got}");
    let mut s = open(proxy.http, &request_head("GET", "site.test", "/", &[])).await;
    read_until_body_contains(&mut s, None, "<p>Call (555) 010-0000</p>").await;
}

#[tokio::test]
async fn compressed_rewritten_page_streams_before_the_origin_finishes() {
    for coding in ["gzip", "br", "deflate", "zstd"] {
        let first = encode_flushed_prefix(coding, FIRST_PART.as_bytes()).await;
        let origin = Origin::start(vec![(
            "/",
            Route::stream_then_hang(&[HTML, ("content-encoding", coding)], vec![first.into()]),
        )])
        .await;
        let proxy = start_proxy(default_site(&origin.url(), "")).await;

        let req = request_head("GET", "site.test", &tracked("/"), &[("Accept-Encoding", coding)]);
        let mut s = open(proxy.http, &req).await;
        read_until_body_contains(&mut s, Some(coding), "<p>Call (555) 010-2001</p>").await;
    }
}

/// Whether a response off the wire is complete by its own framing.
fn framed_complete(wire: &[u8]) -> bool {
    let end = find(wire, b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&wire[..end]).to_ascii_lowercase();
    let body = &wire[end + 4..];
    if head.contains("\r\ntransfer-encoding: chunked") {
        return dechunk_prefix(body).1;
    }
    match head.split("\r\ncontent-length: ").nth(1) {
        Some(rest) => rest.split("\r\n").next().unwrap().trim().parse::<usize>().unwrap() == body.len(),
        // Delimited by close: a cut is indistinguishable from the end, which must not happen here.
        None => true,
    }
}

#[tokio::test]
async fn origin_cut_short_is_never_presented_as_complete() {
    // The origin sends the head and the first paragraph, then closes before the framing says the
    // body ends: with a Content-Length, and with chunks but no last chunk.
    let first = &PAGE[..PAGE.find("</p>").unwrap()];
    let by_length =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5000\r\n\r\n{first}");
    let by_chunks = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
        first.len()
    );
    for (what, response) in [("Content-Length", by_length), ("chunked", by_chunks)] {
        let origin = raw_origin(response.into_bytes()).await;
        let proxy = start_proxy(default_site(&format!("http://{origin}"), "")).await;
        for target in ["/".to_string(), tracked("/")] {
            let wire = exchange_wire(proxy.http, &request_head("GET", "site.test", &target, &[])).await;
            assert!(
                wire.starts_with(b"HTTP/1.1 200") && !framed_complete(&wire),
                "{what} {target}: a truncated page was framed as complete: {:?}",
                String::from_utf8_lossy(&wire)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statuses the proxy owns, and what they must not reveal

#[tokio::test]
async fn unknown_host_is_421_and_never_reaches_an_origin() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for host in ["evil.test", "site.test.evil.test", "127.0.0.1"] {
        let resp = get(proxy.http, host, &tracked("/")).await;
        assert_eq!(resp.status, 421, "{host}");
        assert_reveals_nothing(&resp, origin.addr);
        assert!(!resp.text().contains(host), "the 421 page echoes the host {host}");
    }
    assert_eq!(origin.connections(), 0, "a misdirected request reached the origin");
    // Served hosts still work on the same proxy (port and case ignored).
    let resp = get(proxy.http, "SITE.test:8080", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn a_request_without_one_host_is_400_and_never_reaches_an_origin() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let none = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec();
    let two = request_head("GET", "site.test", "/", &[("Host", "other.test")]);
    for (what, request) in [("no Host", none), ("two Hosts", two)] {
        let resp = exchange(proxy.http, &request).await;
        assert_eq!(resp.status, 400, "{what}");
    }
    // HTTP/1.0 needs no Host: it is routed as any request (no site: 421).
    let resp = exchange(proxy.http, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 421);
    // An absolute target names the host itself.
    let resp = exchange(
        proxy.http,
        b"GET http://site.test/ HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn upstream_down_is_502_without_internal_details() {
    // A bound but not listening socket: connecting is refused, and no other test can take the port.
    let hold = tokio::net::TcpSocket::new_v4().expect("socket");
    hold.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let dead = hold.local_addr().expect("addr");
    let proxy = start_proxy(default_site(&format!("http://{dead}"), r#"connect_timeout = "2s""#)).await;

    let resp = get(proxy.http, "site.test", &tracked("/")).await;
    assert_eq!(resp.status, 502);
    assert_reveals_nothing(&resp, dead);
    drop(hold);
}

#[tokio::test]
async fn upstream_silent_past_response_timeout_is_504_without_internal_details() {
    let origin = Origin::start(vec![("/slow", Route::Hang)]).await;
    let proxy = start_proxy(default_site(&origin.url(), r#"response_timeout = "300ms""#)).await;

    let resp = get(proxy.http, "site.test", &tracked("/slow")).await;
    assert_eq!(resp.status, 504);
    assert_reveals_nothing(&resp, origin.addr);
    assert_eq!(origin.requests().len(), 1, "the request did reach the origin");
}

#[tokio::test]
async fn reserved_telswap_paths_are_answered_by_the_proxy_and_never_forwarded() {
    let origin = Origin::start(vec![("/_telswap/anything", Route::html("from the origin"))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "site.test", "/_telswap/anything").await;
    assert_eq!(resp.status, 404);
    assert!(!resp.text().contains("from the origin"));
    let post = [
        request_head(
            "POST",
            "site.test",
            "/_telswap/anything?x=1",
            &[("Content-Length", "3")],
        ),
        b"a=b".to_vec(),
    ]
    .concat();
    let resp = exchange(proxy.http, &post).await;
    assert_eq!(resp.status, 404);
    assert_eq!(origin.connections(), 0, "a reserved path reached the origin");
}

#[tokio::test]
async fn the_health_check_answers_for_any_host_and_never_reaches_an_origin() {
    let origin = Origin::start(vec![("/_telswap/health", Route::html("from the origin"))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    // A load balancer probes by address, a served host or none in particular.
    for host in ["site.test", "127.0.0.1", "anything.test"] {
        let resp = get(proxy.http, host, "/_telswap/health").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok: 1 sites\n"), "{host}");
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        let head = send(proxy.http, "HEAD", host, "/_telswap/health", &[]).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), resp.header("content-length"));
    }
    let post = [
        request_head("POST", "127.0.0.1", "/_telswap/health", &[("Content-Length", "0")]),
        Vec::new(),
    ]
    .concat();
    let resp = exchange(proxy.http, &post).await;
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(origin.connections(), 0, "the health check reached the origin");
    let stats = &proxy.proxy.stats;
    assert_eq!(
        stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "probes are not counted as requests"
    );
}

// ---------------------------------------------------------------------------------------------
// Conditional, partial and HEAD requests

#[tokio::test]
async fn head_of_an_html_page_has_get_headers_and_no_body() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[HTML, ("cache-control", "public, max-age=60"), ("etag", "W/\"v1\"")],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for target in [tracked("/"), "/".to_string()] {
        let get = send(proxy.http, "GET", "site.test", &target, &[]).await;
        let head = send(proxy.http, "HEAD", "site.test", &target, &[]).await;
        assert_eq!(head.status, get.status, "{target}");
        assert!(head.body.is_empty(), "{target}: HEAD carried a body");
        for name in ["content-type", "cache-control", "etag", "via", "content-length"] {
            assert_eq!(
                head.header(name),
                get.header(name),
                "{target}: {name} differs between HEAD and GET"
            );
        }
    }
    let methods: Vec<_> = origin.requests().iter().map(|s| s.method.to_string()).collect();
    assert_eq!(
        methods,
        ["GET", "HEAD", "GET", "HEAD"],
        "HEAD must reach the origin as HEAD"
    );
}

#[tokio::test]
async fn not_modified_passes_through() {
    let origin = Origin::start(vec![(
        "/site.css",
        Route::page(
            200,
            &[
                ("content-type", "text/css"),
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
            ],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        &tracked("/site.css"),
        &[("If-None-Match", "\"v1\""), ("Accept", "text/css")],
    )
    .await;
    assert_eq!(resp.status, 304);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("etag"), Some("\"v1\""));
    assert_eq!(origin.only_request().header("if-none-match"), Some("\"v1\""));
}

#[tokio::test]
async fn page_views_on_a_dni_site_are_never_revalidated() {
    // A 304 would show whatever number the browser's cached copy had, not this visitor's.
    let origin = Origin::start(vec![(
        "/",
        Route::page(200, &[HTML, ("cache-control", "max-age=60"), ("etag", "\"v1\"")], PAGE),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        &tracked("/"),
        &[
            ("If-None-Match", "\"v1\""),
            ("If-Modified-Since", "Sat, 28 Nov 2026 00:00:00 GMT"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.only_request();
    assert_eq!(seen.header("if-none-match"), None);
    assert_eq!(seen.header("if-modified-since"), None);
}

/// A byte range of a page view is not asked of the origin: a range of the origin's bytes does not
/// address the rewrite, and a download resumed with `If-Range` would splice the tracking number's
/// first digits to the original's last. The page comes whole (RFC 9110 §14.2 lets a server
/// ignore `Range`), without the validators a client would send back as `If-Range`. Ranges of
/// other files, and of anything asked for without naming HTML (a media player's `*/*`), pass as
/// they are.
#[tokio::test]
async fn a_page_view_is_answered_whole_and_a_files_range_untouched() {
    let validators = [
        HTML,
        ("etag", "\"v1\""),
        ("accept-ranges", "bytes"),
        ("last-modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ("content-digest", "sha-256=:AAAA:"),
    ];
    let origin = Origin::start(vec![
        ("/", Route::page(200, &validators, PAGE)),
        (
            "/price-list.pdf",
            Route::page(200, &[("content-type", "application/pdf"), ("etag", "\"v1\"")], PAGE),
        ),
        (
            "/media/clip",
            Route::page(200, &[("content-type", "video/quicktime"), ("etag", "\"v1\"")], PAGE),
        ),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let start = PAGE.find("(555)").unwrap() - 5;
    let end = start + 60;
    let range = format!("bytes={start}-{end}");
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        &tracked("/"),
        &[
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("Range", &range),
            ("If-Range", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), REWRITTEN);
    for gone in [
        "etag",
        "accept-ranges",
        "last-modified",
        "content-digest",
        "content-range",
    ] {
        assert_eq!(resp.header(gone), None, "{gone}");
    }
    let seen = origin.only_request();
    assert_eq!((seen.header("range"), seen.header("if-range")), (None, None));

    // A file, and a media player's `*/*` for a path that could be a page: ranges as asked.
    for path in ["/price-list.pdf", "/media/clip"] {
        let resp = send(
            proxy.http,
            "GET",
            "site.test",
            &tracked(path),
            &[("Accept", "*/*"), ("Range", &range)],
        )
        .await;
        assert_eq!(resp.status, 206, "{path}");
        assert_eq!(resp.body, &PAGE.as_bytes()[start..=end], "{path}");
    }
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        &tracked("/price-list.pdf"),
        &[("Range", &range)],
    )
    .await;
    assert_eq!(resp.status, 206);
    assert_eq!(resp.body, &PAGE.as_bytes()[start..=end]);
    assert_eq!(
        resp.header("content-range").unwrap(),
        format!("bytes {start}-{end}/{}", PAGE.len())
    );
    assert_eq!(resp.header("etag"), Some("\"v1\""));
}

// ---------------------------------------------------------------------------------------------
// What the origin sees

#[tokio::test]
async fn hop_by_hop_request_headers_never_reach_the_origin() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        "/",
        &[
            ("Connection", "close, X-Foo"),
            ("X-Foo", "connection-scoped secret"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.only_request();
    for name in [
        "x-foo",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.header(name).is_none(),
            "{name} reached the origin: {:?}",
            seen.headers
        );
    }
    let conn = seen.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(
        !conn.contains("x-foo") && !conn.contains("close"),
        "Connection reached the origin: {conn}"
    );
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_visitor() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[
                HTML,
                ("connection", "x-bar"),
                ("x-bar", "origin-hop secret"),
                ("keep-alive", "timeout=9"),
                ("x-kept", "1"),
            ],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for target in ["/".to_string(), tracked("/")] {
        let resp = get(proxy.http, "site.test", &target).await;
        assert_eq!(resp.status, 200);
        assert!(!resp.has("x-bar"), "{target}: {:?}", resp.headers);
        assert_ne!(resp.header("keep-alive"), Some("timeout=9"), "{target}");
        assert_eq!(resp.header("x-kept"), Some("1"));
        assert!(
            resp.header("via").is_some_and(|v| v.contains("telswap")),
            "{target}: Via"
        );
    }
}

#[tokio::test]
async fn repeated_end_to_end_headers_pass_intact() {
    let origin = Origin::start(vec![(
        "/",
        Route::page(
            200,
            &[
                HTML,
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "b=2; HttpOnly"),
                ("link", "</a.css>; rel=preload"),
            ],
            PAGE,
        ),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    for target in ["/".to_string(), tracked("/")] {
        let resp = get(proxy.http, "site.test", &target).await;
        let origin_cookies: Vec<&str> = resp
            .all("set-cookie")
            .into_iter()
            .filter(|c| !c.starts_with("tsw="))
            .collect();
        assert_eq!(origin_cookies, ["a=1; Path=/", "b=2; HttpOnly"], "{target}");
        assert_eq!(resp.all("link"), ["</a.css>; rel=preload"], "{target}");
    }
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        "/",
        &[("Accept-Language", "fr"), ("Accept-Language", "en;q=0.5")],
    )
    .await;
    assert_eq!(resp.status, 200);
    let langs: Vec<_> = origin.requests()[2]
        .headers
        .get_all("accept-language")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(langs, ["fr", "en;q=0.5"]);
}

#[tokio::test]
async fn origin_sees_the_visitors_host_and_forwarding_headers() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = get(proxy.http, "other.test", "/?q=1").await;
    assert_eq!(resp.status, 200);
    let seen = origin.only_request();
    assert_eq!(seen.target, "/?q=1");
    assert_eq!(seen.header("host"), Some("other.test"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("other.test"));
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"other.test\"")
    );
    assert!(
        seen.header("via").is_some_and(|v| v.contains("telswap")),
        "Via: {:?}",
        seen.header("via")
    );
}

/// telswap as the edge (no `--trusted-proxies`): what a visitor writes in the forwarding
/// fields says nothing to the origin; the chain starts here.
#[tokio::test]
async fn forwarding_headers_from_the_visitor_are_dropped_or_overwritten() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        "/",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "bank.example"),
            ("Via", "1.1 corp-proxy"),
            ("X-Real-IP", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1;host=evil.test"),
            ("Forwarded", "for=10.0.0.2"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.only_request();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("http"),
        "the visitor cannot claim HTTPS"
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("site.test"));
    assert_eq!(seen.header("via"), Some("1.1 corp-proxy, 1.1 telswap"));
    assert_eq!(
        seen.header("x-real-ip"),
        Some("127.0.0.1"),
        "the visitor cannot choose it"
    );
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"site.test\"")
    );
}

/// Behind a balancer named in `--trusted-proxies`: its `X-Forwarded-For` names the visitor
/// (the rightmost address that is no trusted hop), its `X-Forwarded-Proto` the scheme, so the
/// cookie is `Secure` and the origin is told `https`, as the visitor sees the site.
#[tokio::test]
async fn a_trusted_balancers_forwarding_headers_name_the_visitor_and_scheme() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    proxy
        .proxy
        .set_trusted_proxies(telswap::proxy::headers::TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap());
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        "/",
        &[
            // Left of the first untrusted hop, anything the visitor wrote.
            ("X-Forwarded-For", "203.0.113.50, 198.51.100.4"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let cookie = resp
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("tsw="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let seen = origin.only_request();
    assert_eq!(seen.header("x-real-ip"), Some("198.51.100.4"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.50, 198.51.100.4, 10.1.2.3, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;proto=https;host=\"site.test\"")
    );

    // The same headers from a peer that is not trusted say nothing.
    proxy
        .proxy
        .set_trusted_proxies(telswap::proxy::headers::TrustedProxies::parse("10.0.0.0/8").unwrap());
    let resp = send(
        proxy.http,
        "GET",
        "site.test",
        "/",
        &[("X-Forwarded-For", "198.51.100.4"), ("X-Forwarded-Proto", "https")],
    )
    .await;
    let cookie = resp
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("tsw="))
        .unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    let seen = &origin.requests()[1];
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

fn megabyte() -> Vec<u8> {
    (0..1024 * 1024u32).map(|i| (i.wrapping_mul(7) % 251) as u8).collect()
}

#[tokio::test]
async fn request_body_of_1mb_reaches_the_origin_intact() {
    let origin = Origin::start(vec![(
        "/upload",
        Route::page(200, &[("content-type", "text/plain")], "ok"),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let body = megabyte();
    let len = body.len().to_string();
    let req = [
        request_head(
            "POST",
            "site.test",
            "/upload",
            &[("Content-Type", "application/octet-stream"), ("Content-Length", &len)],
        ),
        body.clone(),
    ]
    .concat();
    let resp = exchange(proxy.http, &req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    let seen = origin.only_request();
    assert_eq!(seen.method, "POST");
    assert!(
        seen.body == body,
        "the origin got {} bytes, not the 1 MiB sent",
        seen.body.len()
    );
}

#[tokio::test]
async fn chunked_request_body_reaches_the_origin_intact() {
    let origin = Origin::start(vec![(
        "/upload",
        Route::page(200, &[("content-type", "text/plain")], "ok"),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let body = megabyte();
    let mut req = request_head("POST", "site.test", "/upload", &[("Transfer-Encoding", "chunked")]);
    for chunk in body.chunks(100_000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = exchange(proxy.http, &req).await;
    assert_eq!(resp.status, 200);
    let seen = origin.only_request();
    assert!(
        seen.body == body,
        "the origin got {} bytes, not the 1 MiB sent",
        seen.body.len()
    );
}

#[tokio::test]
async fn expect_100_continue_upload_reaches_the_origin() {
    use tokio::io::AsyncWriteExt;

    let origin = Origin::start(vec![(
        "/upload",
        Route::page(200, &[("content-type", "text/plain")], "ok"),
    )])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    // What curl does for large uploads: send the head, wait for `100 Continue`, then the body.
    let body = megabyte();
    let len = body.len().to_string();
    let head = request_head(
        "POST",
        "site.test",
        "/upload",
        &[("Content-Length", &len), ("Expect", "100-continue")],
    );
    let mut s = open(proxy.http, &head).await;
    let mut wire = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while find(&wire, b"\r\n\r\n").is_none() {
            assert!(read_more(&mut s, &mut wire).await, "closed before 100 Continue");
        }
    })
    .await
    .expect("100 Continue within the deadline");
    let end = find(&wire, b"\r\n\r\n").unwrap() + 4;
    assert!(
        wire.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&wire)
    );
    s.write_all(&body).await.expect("send the body");
    let mut rest = wire.split_off(end);
    tokio::time::timeout(DEADLINE, async { while read_more(&mut s, &mut rest).await {} })
        .await
        .expect("final response within the deadline");
    let resp = parse_response(rest, false);
    assert_eq!(resp.status, 200);
    assert!(
        origin.only_request().body == body,
        "the origin did not get the 1 MiB body intact"
    );
}

#[tokio::test]
async fn request_headers_over_64k_get_431() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let big = "a".repeat(70 * 1024);
    let resp = send(proxy.http, "GET", "site.test", "/", &[("X-Big", &big)]).await;
    assert_eq!(resp.status, 431);
    assert_eq!(origin.connections(), 0);
    // Well under the limit still passes.
    let ok = "a".repeat(16 * 1024);
    let resp = send(proxy.http, "GET", "site.test", "/", &[("Cookie", &format!("c={ok}"))]).await;
    assert_eq!(resp.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Upgrades

#[tokio::test]
async fn websocket_upgrade_is_relayed_and_tunnels_bytes_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = Origin::start(vec![("/ws", Route::WebSocketEcho)]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = request_head(
        "GET",
        "site.test",
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key),
        ],
    );
    tokio::time::timeout(DEADLINE, async {
        let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut byte).await.unwrap(),
                1,
                "closed during the handshake: {head:?}"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
        let accept = format!("\r\nsec-websocket-accept: {}\r\n", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").to_ascii_lowercase();
        assert!(head.contains(&accept), "{head}");

        for msg in [
            b"\x81\x05hello".as_slice(),
            &[0u8, 1, 2, 255, 254, 13, 10, 13, 10],
            &[b'x'; 20_000],
        ] {
            s.write_all(msg).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.unwrap();
            assert!(back == msg, "the tunnel changed the bytes");
        }
    })
    .await
    .expect("the tunnel answered within the deadline");

    let seen = origin.only_request();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("sec-websocket-key"), Some(key));
    assert_eq!(seen.header("host"), Some("site.test"));
}

/// An `Upgrade` that declares a body is no protocol switch: it is forwarded as a plain request
/// with its body (and no `Upgrade`), never with the body cut off under its `Content-Length`,
/// which the origin would then read from the next visitor's request on the pooled connection.
#[tokio::test]
async fn an_upgrade_with_a_body_is_forwarded_whole_as_a_plain_request() {
    let origin = Origin::start(vec![
        ("/attack", Route::html("ok")),
        ("/victim", Route::html("victim page")),
    ])
    .await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;

    let body = "Z".repeat(60);
    let req = [
        request_head(
            "POST",
            "site.test",
            "/attack",
            &[
                ("Connection", "Upgrade, close"),
                ("Upgrade", "websocket"),
                ("Content-Length", "60"),
            ],
        ),
        body.clone().into_bytes(),
    ]
    .concat();
    let resp = exchange(proxy.http, &req).await;
    assert_eq!(resp.status, 200);
    let victim = get(proxy.http, "site.test", "/victim").await;
    assert_eq!(victim.text(), "victim page");
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].body.as_ref(), seen[0].header("upgrade")),
        (body.as_bytes(), None)
    );
    assert_eq!(seen[1].target, "/victim");
}

/// `CONNECT` and `OPTIONS *` are this server's to answer: no origin sees them (an `OPTIONS *`
/// once went to port 80 of the upstream's host, a port nobody configured).
#[tokio::test]
async fn connect_and_options_star_are_answered_here() {
    let origin = Origin::start(vec![("/", Route::html(PAGE))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let connect = exchange(
        proxy.http,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(connect.status, 405);
    let options = exchange(
        proxy.http,
        b"OPTIONS * HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(options.status, 200);
    assert!(options.header("allow").is_some_and(|a| a.contains("GET")));
    assert_eq!(origin.connections(), 0);
}

/// An origin that stalls mid-page (virtual time) is given up `response_timeout` after its last
/// bytes: the visitor gets what came, framed as cut short, instead of a connection held open
/// until they give up. Both for a page that passes as it is and for one being rewritten.
#[tokio::test(start_paused = true)]
async fn an_origin_that_stalls_mid_body_is_given_up() {
    let origin = Origin::start(vec![("/", Route::stream_then_hang(&[HTML], vec![FIRST_PART.into()]))]).await;
    let proxy = start_proxy(default_site(&origin.url(), r#"response_timeout = "2s""#)).await;
    for target in ["/".to_string(), tracked("/")] {
        let started = tokio::time::Instant::now();
        let wire = exchange_wire(proxy.http, &request_head("GET", "site.test", &target, &[])).await;
        assert!(started.elapsed() >= std::time::Duration::from_secs(2), "{target}");
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{target}");
        let text = String::from_utf8_lossy(&wire);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("<p>Call (555) 010-"),
            "{text}"
        );
        assert!(
            !framed_complete(&wire),
            "{target}: a stalled page was framed as complete"
        );
    }
}

/// A visitor's malformed chunked body is their error (400), not the origin's (502), and is not
/// counted as an upstream failure.
#[tokio::test]
async fn a_malformed_request_body_is_400_not_the_origins_fault() {
    let origin = Origin::start(vec![("/echo", Route::html("ok"))]).await;
    let proxy = start_proxy(default_site(&origin.url(), "")).await;
    let req =
        b"POST /echo HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n";
    let resp = exchange(proxy.http, req).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(proxy.proxy.stats.upstream_errors.load(Ordering::Relaxed), 0);
}

/// `response_timeout` times the wait for the answer once the request is sent (virtual time):
/// an upload that flows for longer is not cut, one that stalls for that long is a 408, the
/// visitor's doing (not a 504, nor an upstream timeout).
#[tokio::test(start_paused = true)]
async fn a_slow_upload_is_not_cut_and_a_stalled_one_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(vec![("/upload", Route::html("stored"))]).await;
    let proxy = start_proxy(default_site(&origin.url(), r#"response_timeout = "2s""#)).await;
    let head = request_head("POST", "site.test", "/upload", &[("Content-Length", "1000")]);
    // 1,000 bytes over 10 s, a second apart.
    let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(&head).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        s.write_all(&[b'x'; 100]).await.unwrap();
    }
    let mut wire = Vec::new();
    s.read_to_end(&mut wire).await.unwrap();
    let resp = parse_response(wire, false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "stored"));
    assert_eq!(origin.only_request().body.len(), 1000);
    // Half a body, then silence.
    let mut s = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(&[b'x'; 500]).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut wire = Vec::new();
    s.read_to_end(&mut wire).await.unwrap();
    assert_eq!(parse_response(wire, false).status, 408);
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
    let stats = &proxy.proxy.stats;
    assert_eq!(stats.upstream_timeouts.load(Ordering::Relaxed), 0);
    assert_eq!(stats.upstream_errors.load(Ordering::Relaxed), 0);
}
