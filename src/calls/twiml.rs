//! TwiML answers to the telephony webhooks (REFERENCE.md §2): the `<Dial>` that forwards a tracked
//! call to the business line, the whisper `<Say>`, `<Reject/>` and the empty `<Response/>`.
//!
//! TwiML is also what SignalWire (cXML) and Telnyx TeXML read, so the same strings serve every
//! dialect. Every answer starts with the XML declaration; text and attribute values go through
//! [`xml_escape`].

/// The XML declaration every answer starts with.
pub const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// What [`dial`] needs to forward a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialAnswer<'a> {
    /// The business line, E.164 (`+15557654321`).
    pub forward_to: &'a str,
    /// The caller's number (`From`), passed through so the business sees who calls.
    pub caller_id: &'a str,
    /// `record="record-from-answer"` when true, `record="do-not-record"` when false.
    pub record: bool,
    /// Seconds the business line may ring before `<Dial>` gives up (Twilio's default is 30).
    pub timeout_s: u32,
    /// `<Dial action=...>`: where the provider posts `DialCallStatus` and friends when the leg ends.
    pub action_url: &'a str,
    /// `<Number url=...>`: TwiML played to the business (the whisper) before the two are connected.
    pub whisper_url: Option<&'a str>,
}

/// `<Response><Dial callerId=".." record=".." timeout=".." action="..">`
/// `<Number url="..">+1..</Number></Dial></Response>`; `url` is left out without a whisper.
pub fn dial(a: &DialAnswer) -> String {
    let record = if a.record {
        "record-from-answer"
    } else {
        "do-not-record"
    };
    let number_attrs = a
        .whisper_url
        .map(|u| format!(" url=\"{}\"", xml_escape(u)))
        .unwrap_or_default();
    format!(
        "{XML_DECL}<Response><Dial callerId=\"{}\" record=\"{record}\" timeout=\"{}\" action=\"{}\">\
         <Number{number_attrs}>{}</Number></Dial></Response>",
        xml_escape(a.caller_id),
        a.timeout_s,
        xml_escape(a.action_url),
        xml_escape(a.forward_to),
    )
}

/// `<Response><Say>text</Say></Response>`, e.g. the whisper telling the business where a call came from.
pub fn say(text: &str) -> String {
    format!("{XML_DECL}<Response><Say>{}</Say></Response>", xml_escape(text))
}

/// `<Response><Reject/></Response>`: refuse the call (the caller hears busy/not in service).
pub fn reject() -> String {
    format!("{XML_DECL}<Response><Reject/></Response>")
}

/// `<Response/>`: nothing to do (the answer to status and `<Dial action>` callbacks).
pub fn empty() -> String {
    format!("{XML_DECL}<Response/>")
}

/// Escapes `& < > " '` for use in XML text and attribute values, and drops the characters XML 1.0
/// cannot carry at all (C0 controls other than tab, newline and carriage return; U+FFFE, U+FFFF),
/// so caller-supplied text can never make the document ill-formed.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> DialAnswer<'static> {
        DialAnswer {
            forward_to: "+15557654321",
            caller_id: "+14158675309",
            record: true,
            timeout_s: 20,
            action_url: "https://www.example.com/_telswap/status",
            whisper_url: Some("https://www.example.com/_telswap/whisper"),
        }
    }

    #[test]
    fn dial_with_whisper_and_recording() {
        assert_eq!(
            dial(&answer()),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
             <Dial callerId=\"+14158675309\" record=\"record-from-answer\" timeout=\"20\" \
             action=\"https://www.example.com/_telswap/status\">\
             <Number url=\"https://www.example.com/_telswap/whisper\">+15557654321</Number>\
             </Dial></Response>"
        );
    }

    #[test]
    fn dial_without_whisper_or_recording() {
        let a = DialAnswer {
            record: false,
            whisper_url: None,
            timeout_s: 30,
            ..answer()
        };
        assert_eq!(
            dial(&a),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
             <Dial callerId=\"+14158675309\" record=\"do-not-record\" timeout=\"30\" \
             action=\"https://www.example.com/_telswap/status\">\
             <Number>+15557654321</Number></Dial></Response>"
        );
    }

    #[test]
    fn dial_escapes_query_strings_and_quotes() {
        let a = DialAnswer {
            action_url: "https://x.example/_telswap/status?site=a&leg=dial",
            whisper_url: Some("https://x.example/w?a=1&b=\"2\"&c='3'"),
            caller_id: "<anonymous>",
            ..answer()
        };
        let xml = dial(&a);
        assert!(
            xml.contains("action=\"https://x.example/_telswap/status?site=a&amp;leg=dial\""),
            "{xml}"
        );
        assert!(
            xml.contains("<Number url=\"https://x.example/w?a=1&amp;b=&quot;2&quot;&amp;c=&apos;3&apos;\">"),
            "{xml}"
        );
        assert!(xml.contains("callerId=\"&lt;anonymous&gt;\""), "{xml}");
        assert!(!xml.contains("&leg"), "{xml}");
    }

    #[test]
    fn say_reject_empty() {
        assert_eq!(
            say("Call from Google Ads & Bing <paid>"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Call from Google Ads &amp; Bing &lt;paid&gt;</Say></Response>"
        );
        assert_eq!(
            reject(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Reject/></Response>"
        );
        assert_eq!(empty(), "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
    }

    #[test]
    fn escape() {
        assert_eq!(xml_escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(xml_escape("plain +1 555 café"), "plain +1 555 café");
        assert_eq!(xml_escape("&amp;"), "&amp;amp;");
        assert_eq!(
            xml_escape("tab\tnl\ncr\r nul\u{0} bell\u{7} \u{fffe}"),
            "tab\tnl\ncr\r nul bell "
        );
        assert_eq!(xml_escape(""), "");
    }
}
