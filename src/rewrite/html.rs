//! Streaming an HTML document through lol_html with the number handlers registered.
//!
//! Handlers, in the order lol_html runs them for one piece of input (registration order, and
//! element-content handlers before document handlers):
//! 1. for each `exclude` selector `S`, element and text handlers on `S` and `S *` that flag "this
//!    element / this text is excluded" (selector matching, unlike end-tag handlers, also follows
//!    implicitly closed elements);
//! 2. a text handler on JSON-LD scripts that flags "this script text may be rewritten";
//! 3. one element handler on `*` that rewrites the listed attributes (a selector cannot name
//!    `data-*` attributes, so it has to see every element) unless flagged;
//! 4. one document text handler that rewrites text nodes through a [`TextStream`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lol_html::errors::RewritingError;
use lol_html::html_content::{TextChunk, TextType};
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, DocumentContentHandlers, MemorySettings, Selector};

use super::matcher::{NumberMatcher, Replacement, TextStream};

/// Attributes whose values may carry a phone number, besides `data-*` and `tel:`-like `href`s.
const NUMBER_ATTRIBUTES: &[&str] = &["content", "title", "aria-label", "alt", "value", "placeholder"];

/// URL schemes whose `href` is a phone number.
const PHONE_SCHEMES: &[&str] = &["tel:", "sms:", "callto:", "facetime:", "facetime-audio:", "whatsapp:"];

/// lol_html's own buffers per response are capped here; past it the rest of the page passes
/// unmodified (graceful bail-out) rather than the response failing. 2 MiB holds any realistic
/// tag; only pathological markup (a multi-megabyte attribute) reaches it.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 20;

/// One site's compiled rewriting configuration, shared by all of its responses.
#[derive(Debug, Clone)]
pub struct PageRules {
    pub matcher: Arc<NumberMatcher>,
    pub exclude: Vec<String>,
    pub memory_limit: usize,
}

/// Checks a CSS selector the way lol_html will parse it (for rules validation).
pub fn check_selector(selector: &str) -> Result<(), String> {
    selector.parse::<Selector>().map(|_| ()).map_err(|e| e.to_string())
}

/// Counters of one response, read by the proxy for logs and metrics.
#[derive(Debug, Default)]
pub struct PageStats {
    pub swapped: AtomicUsize,
    pub bailed_out: AtomicBool,
}

#[derive(Default)]
struct Flags {
    element_excluded: AtomicBool,
    text_excluded: AtomicBool,
    json_ld: AtomicBool,
}

/// Where lol_html writes; drained by [`PageRewriter::take_output`].
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0.lock().expect("sink lock").extend_from_slice(chunk);
    }
}

/// Rewrites one HTML response as it streams: `write` each chunk, `take_output` what is ready.
pub struct PageRewriter {
    inner: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<std::sync::Mutex<Vec<u8>>>,
    stats: Arc<PageStats>,
}

impl PageRewriter {
    /// `encoding`: the charset from `Content-Type`, if any; without one, `<meta charset>` is
    /// honoured and UTF-8 assumed until then. Returns `None` for encodings lol_html cannot
    /// parse (UTF-16 and friends): such pages pass through untouched.
    pub fn new(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
    ) -> Option<PageRewriter> {
        let stats = Arc::new(PageStats::default());
        let flags = Arc::new(Flags::default());
        let mut settings = Settings::new_send()
            .with_strict(false)
            .with_graceful_bail_out_on_content_handler_error(true)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(rules.memory_limit)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            );
        match encoding {
            Some(enc) => settings = settings.with_encoding(AsciiCompatibleEncoding::new(enc)?),
            None => settings = settings.with_adjust_charset_on_meta_tag(true),
        }

        for selector in &rules.exclude {
            for sel in [selector.clone(), format!("{selector} *")] {
                let Ok(parsed) = sel.parse::<Selector>() else { continue };
                let (fe, ft) = (flags.clone(), flags.clone());
                let handlers = ElementContentHandlers::default()
                    .element(Box::new(move |_: &mut lol_html::send::Element<'_, '_>| {
                        fe.element_excluded.store(true, Ordering::Relaxed);
                        Ok(())
                    }) as lol_html::send::ElementHandler<'static>)
                    .text(Box::new(move |_: &mut TextChunk<'_>| {
                        ft.text_excluded.store(true, Ordering::Relaxed);
                        Ok(())
                    }) as lol_html::send::TextHandler<'static>);
                settings = settings.append_element_content_handler((std::borrow::Cow::Owned(parsed), handlers));
            }
        }

        let fj = flags.clone();
        let json_ld: Selector = r#"script[type="application/ld+json"]"#.parse().expect("static selector");
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Owned(json_ld),
            ElementContentHandlers::default().text(Box::new(move |_: &mut TextChunk<'_>| {
                fj.json_ld.store(true, Ordering::Relaxed);
                Ok(())
            }) as lol_html::send::TextHandler<'static>),
        ));

        let (fa, sa, ta, ma) = (flags.clone(), stats.clone(), to.clone(), rules.matcher.clone());
        let any: Selector = "*".parse().expect("static selector");
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Owned(any),
            ElementContentHandlers::default().element(Box::new(move |el: &mut lol_html::send::Element<'_, '_>| {
                if fa.element_excluded.swap(false, Ordering::Relaxed) {
                    return Ok(());
                }
                let mut changes: Vec<(String, String)> = Vec::new();
                let mut n = 0;
                for attr in el.attributes() {
                    let name = attr.name();
                    let value = attr.value();
                    if !value.bytes().any(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    let eligible = if name == "href" {
                        let v = value.trim_start();
                        PHONE_SCHEMES
                            .iter()
                            .any(|s| v.len() >= s.len() && v[..s.len()].eq_ignore_ascii_case(s))
                    } else {
                        name.starts_with("data-") || NUMBER_ATTRIBUTES.contains(&name.as_str())
                    };
                    if eligible && let Some(new) = ma.rewrite_value(&value, &ta, &mut n) {
                        changes.push((name, new));
                    }
                }
                for (name, value) in changes {
                    el.set_attribute(&name, &value)?;
                }
                sa.swapped.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }) as lol_html::send::ElementHandler<'static>),
        ));

        let (ft, st, matcher) = (flags, stats.clone(), rules.matcher.clone());
        let mut stream = TextStream::default();
        settings = settings.append_document_content_handler(DocumentContentHandlers::default().text(Box::new(
            move |t: &mut TextChunk<'_>| {
                let excluded = ft.text_excluded.swap(false, Ordering::Relaxed);
                let json_ld = ft.json_ld.swap(false, Ordering::Relaxed);
                let eligible = match t.text_type() {
                    TextType::Data | TextType::RCData => true,
                    TextType::ScriptData => json_ld,
                    _ => false,
                };
                if excluded || !eligible {
                    return Ok(());
                }
                let mut n = 0;
                if let Some(out) = stream.push(&matcher, t.as_str(), t.last_in_text_node(), &to, &mut n) {
                    t.set_str(out);
                }
                st.swapped.fetch_add(n, Ordering::Relaxed);
                Ok(())
            },
        )
            as lol_html::send::TextHandler<'static>));

        let out = Arc::new(std::sync::Mutex::new(Vec::with_capacity(16 * 1024)));
        let inner = HtmlRewriter::new(settings, Sink(out.clone()));
        Some(PageRewriter {
            inner: Some(inner),
            out,
            stats,
        })
    }

    /// Feeds the next chunk of the page. After a bail-out (memory limit) the rest passes as is.
    pub fn write(&mut self, chunk: &[u8]) {
        match &mut self.inner {
            Some(rw) => {
                if let Err(e) = rw.write(chunk) {
                    self.bail_out(e);
                }
            }
            None => self.out.lock().expect("sink lock").extend_from_slice(chunk),
        }
    }

    /// Ends the page, flushing anything lol_html still holds.
    pub fn end(&mut self) {
        if let Some(rw) = self.inner.take()
            && let Err(e) = rw.end()
        {
            self.bail_out(e);
        }
    }

    fn bail_out(&mut self, e: RewritingError) {
        // With graceful bail-out enabled lol_html has flushed every byte it held, unmodified.
        self.inner = None;
        self.stats.bailed_out.store(true, Ordering::Relaxed);
        tracing::warn!(error = %e, "rewrite bailed out; the rest of the page passes unmodified");
    }

    /// Takes the output produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().expect("sink lock"))
    }

    pub fn stats(&self) -> Arc<PageStats> {
        self.stats.clone()
    }
}

/// Rewrites a whole document in one call (tests, benches, small bodies).
pub fn rewrite_document(rules: &PageRules, to: Arc<Replacement>, html: &[u8], chunk: usize) -> Vec<u8> {
    let mut rw = PageRewriter::new(rules, to, None).expect("utf-8 is supported");
    let mut out = Vec::with_capacity(html.len() + 64);
    for piece in html.chunks(chunk.max(1)) {
        rw.write(piece);
        out.extend(rw.take_output());
    }
    rw.end();
    out.extend(rw.take_output());
    out
}
