//! The bundled demo: a small origin site (a plumber's) whose pages carry the business number in
//! the shapes real sites use, and the embedded rules that put telswap in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The demo site's rules, embedded so `telswap demo` needs no files.
pub const RULES: &str = include_str!("../../rules/demo.toml");

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
header,footer{border-bottom:1px solid #ddd;padding:.5rem 0}footer{border-top:1px solid #ddd;border-bottom:0;margin-top:2rem}\
a.call{display:inline-block;background:#0a6;color:#fff;padding:.5rem 1rem;border-radius:.3rem;text-decoration:none}\
nav a{margin-right:1rem}.muted{color:#777;font-size:.9rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} | Acme Plumbing, call (555) 010-0000</title>
<meta name="description" content="24/7 emergency plumbing. Call 555-010-0000.">
<style>{STYLE}</style>
<script type="application/ld+json">
{{"@context":"https://schema.org","@type":"Plumber","name":"Acme Plumbing","telephone":"+1-555-010-0000",
"address":{{"@type":"PostalAddress","streetAddress":"12 Main St","addressLocality":"Springfield"}}}}
</script>
</head>
<body>
<header>
<strong>Acme Plumbing</strong> &middot; Call us: <a class="call" href="tel:+15550100000" aria-label="Call (555) 010-0000">(555) 010-0000</a>
<nav><a href="/">Home</a><a href="/services">Services</a><a href="/contact">Contact</a></nav>
</header>
<main>
{body}
</main>
<footer>
<p>Acme Plumbing &middot; 12 Main St, Springfield &middot; +1&nbsp;(555)&nbsp;010&#8209;0000</p>
<p class="muted" data-telswap-ignore>Our registered office line, never swapped: (555) 010-0000</p>
<p class="muted">Order ref 5550100000123 &middot; licence 555-010-0000-77 &middot; est. 03/27/2011</p>
</footer>
</body>
</html>
"#
    )
}

fn home() -> String {
    page(
        "Home",
        r#"<h1>Burst pipe? We're on our way.</h1>
<p>Emergency line, open all night: <b>555-010-0000</b>. Prefer dots? 555.010.0000.</p>
<p>Calling from abroad: <a href="tel:+1-555-010-0000">+1 555 010 0000</a> or 001 555 010 0000.</p>
<p><a class="call" href="tel:5550100000" data-phone="5550100000" data-cta="hero">Tap to call</a>
<a href="sms:+15550100000">Text us</a></p>
<p><a class="call" href="/contact?cta=hero-quote">Get a free quote</a></p>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="Call 1-555-010-0000">"#,
    )
}

fn services() -> String {
    page(
        "Services",
        r#"<h1>Services</h1>
<ul><li>Leak repair &ndash; from $89</li><li>Water heaters &ndash; call (555)&nbsp;010-0000</li>
<li>Drain cleaning &ndash; 555&#8209;010&#8209;0000</li></ul>
<form><input name="phone" value="(555) 010-0000" title="Our number: 555 010 0000"></form>"#,
    )
}

fn contact() -> String {
    page(
        "Contact",
        r#"<h1>Contact</h1>
<p>Office: 555/010-0000 &middot; Fax: (555) 010-0099</p>
<p><a href="callto:+15550100000">Skype</a> &middot; <a href="tel:%2B1%20555%20010%200000">Call</a></p>"#,
    )
}

/// The demo site's HTML pages by path.
pub fn page_for(path: &str) -> Option<String> {
    match path {
        "/" => Some(home()),
        "/services" => Some(services()),
        "/contact" => Some(contact()),
        _ => None,
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let html = |s: String| {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(header::CACHE_CONTROL, "public, max-age=60")
            .body(Full::new(Bytes::from(s)))
    };
    let resp = match req.uri().path() {
        "/" => html(home()),
        "/services" => html(services()),
        "/contact" => html(contact()),
        "/hours.json" => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"phone":"555-010-0000","open":"24/7"}"#,
            ))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(page(
                "Not found",
                "<h1>Not found</h1><p>Call (555) 010-0000.</p>",
            )))),
    };
    Ok(resp.expect("static response"))
}

/// Starts the demo origin on `addr` (port 0 for any) and returns the bound address.
pub async fn start_origin(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    Ok(local)
}
