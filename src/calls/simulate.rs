//! `telswap call`: plays the telephony provider. Sends an inbound-call webhook signed exactly as
//! Twilio signs it (and, with a duration, the status callback that ends the call), so a person
//! can watch a call being attributed without a phone line.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::signature::twilio_signature;

/// What to send.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Base URL of the public listener, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// `Host` to present (the site's host); defaults to the server URL's.
    pub host: Option<String>,
    pub to: String,
    pub from: String,
    pub token: String,
    /// With a duration, the call also ends (`completed`) after being answered.
    pub duration_s: Option<u32>,
    pub from_city: Option<String>,
    pub from_state: Option<String>,
    pub from_country: Option<String>,
}

/// One webhook exchange: the status code and body of the answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub body: String,
}

/// Sends the call (and its end): returns the voice answer and, with a duration, the status one.
pub async fn place_call(o: &CallOptions) -> Result<(String, Exchange, Option<Exchange>), String> {
    let sid = format!("CA{}", hex_id());
    let mut params = vec![
        ("AccountSid".to_string(), format!("AC{}", hex_id())),
        ("ApiVersion".to_string(), "2010-04-01".to_string()),
        ("CallSid".to_string(), sid.clone()),
        ("CallStatus".to_string(), "ringing".to_string()),
        ("Called".to_string(), o.to.clone()),
        ("Caller".to_string(), o.from.clone()),
        ("Direction".to_string(), "inbound".to_string()),
        ("From".to_string(), o.from.clone()),
        ("To".to_string(), o.to.clone()),
    ];
    for (k, v) in [
        ("FromCity", &o.from_city),
        ("FromState", &o.from_state),
        ("FromCountry", &o.from_country),
    ] {
        if let Some(v) = v {
            params.push((k.to_string(), v.clone()));
        }
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::proxy::upstream::tls_client_config(None)?)
        .https_or_http()
        .enable_http1()
        .build();
    let client: CallClient = Client::builder(TokioExecutor::new()).build(https);
    let voice = post(&client, o, "/_telswap/voice", &params).await?;
    let mut ended = None;
    if let Some(d) = o.duration_s
        && voice.status == 200
    {
        let status = vec![
            ("AccountSid".to_string(), params[0].1.clone()),
            ("CallSid".to_string(), sid.clone()),
            ("CallStatus".to_string(), "completed".to_string()),
            ("CallDuration".to_string(), d.to_string()),
            (
                "DialCallStatus".to_string(),
                if d > 0 { "completed" } else { "no-answer" }.to_string(),
            ),
            ("DialCallDuration".to_string(), d.to_string()),
            ("From".to_string(), o.from.clone()),
            ("To".to_string(), o.to.clone()),
        ];
        ended = Some(post(&client, o, "/_telswap/status", &status).await?);
    }
    Ok((sid, voice, ended))
}

/// 32 random hex digits, the shape of a Twilio SID's body.
fn hex_id() -> String {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

type CallClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

async fn post(
    client: &CallClient,
    o: &CallOptions,
    path: &str,
    params: &[(String, String)],
) -> Result<Exchange, String> {
    let base = o.server.trim_end_matches('/');
    let uri: http::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| format!("bad --server URL {base:?}: {e}"))?;
    let host = match &o.host {
        Some(h) => h.clone(),
        None => uri
            .authority()
            .map(|a| a.to_string())
            .ok_or("the --server URL needs a host")?,
    };
    // The provider signs the URL it calls, which is the site's host, not necessarily the address.
    let scheme = uri.scheme_str().unwrap_or("http");
    let signed_url = format!("{scheme}://{host}{path}");
    let signature = twilio_signature(&o.token, &signed_url, params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let req = http::Request::post(uri)
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .header("user-agent", "TwilioProxy/1.1 (telswap call)")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Exchange {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
