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

use std::cell::RefCell;
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

thread_local! {
    /// The output buffer of the [`PageRewriter`] whose `write` or `end` is running on this thread.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads and clears a flag. The handlers of one rewriter run one at a time on one thread, so a
/// plain load and store do (and the store is skipped in the usual case, the flag being clear).
#[inline]
fn take(flag: &AtomicBool) -> bool {
    let set = flag.load(Ordering::Relaxed);
    if set {
        flag.store(false, Ordering::Relaxed);
    }
    set
}

/// Where lol_html writes: the running rewriter's buffer, lent to [`OUTPUT`] by [`Lend`].
///
/// lol_html hands over every token separately (tens of thousands per page); a thread-local
/// `RefCell` costs a fraction of an uncontended mutex per call, and lol_html only writes from
/// inside `write`/`end`, on the calling thread, so the rewriter itself stays `Send`.
struct Sink;

impl lol_html::OutputSink for Sink {
    #[inline]
    fn handle_chunk(&mut self, chunk: &[u8]) {
        OUTPUT.with_borrow_mut(|out| out.extend_from_slice(chunk));
    }
}

/// Lends a rewriter's output buffer to [`OUTPUT`] for one call into lol_html, and takes it back
/// when dropped, also on unwinding. Whatever the thread held before is put back, so it nests.
struct Lend<'a> {
    out: &'a mut Vec<u8>,
    prev: Vec<u8>,
}

impl<'a> Lend<'a> {
    fn new(out: &'a mut Vec<u8>) -> Lend<'a> {
        let prev = OUTPUT.with_borrow_mut(|o| std::mem::replace(o, std::mem::take(out)));
        Lend { out, prev }
    }
}

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        let prev = std::mem::take(&mut self.prev);
        *self.out = OUTPUT.with_borrow_mut(|o| std::mem::replace(o, prev));
    }
}

/// Rewrites one HTML response as it streams: `write` each chunk, `take_output` what is ready.
pub struct PageRewriter {
    inner: Option<HtmlRewriter<'static, Sink>>,
    out: Vec<u8>,
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
        // The attributes to set on the element at hand; the buffer is kept from one to the next.
        let mut changes: Vec<(String, String)> = Vec::new();
        let any: Selector = "*".parse().expect("static selector");
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Owned(any),
            ElementContentHandlers::default().element(Box::new(move |el: &mut lol_html::send::Element<'_, '_>| {
                if take(&fa.element_excluded) {
                    return Ok(());
                }
                let mut n = 0;
                for attr in el.attributes() {
                    // The name decides first: reading the value allocates.
                    let name = attr.name();
                    let href = name == "href";
                    if !href && !name.starts_with("data-") && !NUMBER_ATTRIBUTES.contains(&name.as_str()) {
                        continue;
                    }
                    // A value shorter (in the page's bytes) than the shortest form cannot hold it.
                    if attr
                        .value_source_location()
                        .is_some_and(|at| at.bytes().len() < ma.min_digits())
                    {
                        continue;
                    }
                    let value = attr.value();
                    if !value.bytes().any(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    if href {
                        let v = value.trim_start();
                        if !PHONE_SCHEMES
                            .iter()
                            .any(|s| v.len() >= s.len() && v[..s.len()].eq_ignore_ascii_case(s))
                        {
                            continue;
                        }
                    }
                    if let Some(new) = ma.rewrite_value(&value, &ta, &mut n) {
                        changes.push((name, new));
                    }
                }
                if !changes.is_empty() {
                    for (name, value) in changes.drain(..) {
                        el.set_attribute(&name, &value)?;
                    }
                }
                if n > 0 {
                    sa.swapped.fetch_add(n, Ordering::Relaxed);
                }
                Ok(())
            }) as lol_html::send::ElementHandler<'static>),
        ));

        let (ft, st, matcher) = (flags, stats.clone(), rules.matcher.clone());
        let mut stream = TextStream::default();
        settings = settings.append_document_content_handler(DocumentContentHandlers::default().text(Box::new(
            move |t: &mut TextChunk<'_>| {
                let excluded = take(&ft.text_excluded);
                let json_ld = take(&ft.json_ld);
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
                if n > 0 {
                    st.swapped.fetch_add(n, Ordering::Relaxed);
                }
                Ok(())
            },
        )
            as lol_html::send::TextHandler<'static>));

        let out = Vec::with_capacity(16 * 1024);
        let inner = HtmlRewriter::new(settings, Sink);
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
                // Room for the output at once, rather than growing the buffer token by token.
                self.out.reserve(chunk.len() + chunk.len() / 8);
                let result = {
                    let _lend = Lend::new(&mut self.out);
                    rw.write(chunk)
                };
                if let Err(e) = result {
                    self.bail_out(e);
                }
            }
            None => self.out.extend_from_slice(chunk),
        }
    }

    /// Ends the page, flushing anything lol_html still holds.
    pub fn end(&mut self) {
        let Some(rw) = self.inner.take() else { return };
        let result = {
            let _lend = Lend::new(&mut self.out);
            rw.end()
        };
        if let Err(e) = result {
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
        std::mem::take(&mut self.out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::PhoneNumber;

    fn rules() -> PageRules {
        let site = PhoneNumber::parse("+1 555-010-0000", "US").unwrap();
        PageRules {
            matcher: Arc::new(NumberMatcher::new(&[site])),
            exclude: vec!["[data-telswap-ignore]".into()],
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }

    fn to(number: &str) -> Arc<Replacement> {
        Arc::new(Replacement::new(PhoneNumber::parse(number, "US").unwrap(), "1"))
    }

    const PAGE: &str = r#"<p>Call (555) 010-0000</p><a href="tel:+15550100000">+1 555 010 0000</a><p>5550100000</p>"#;

    /// Each rewriter's output stays its own when several share a thread, interleaved, and when
    /// one moves to another thread between writes.
    #[test]
    fn outputs_stay_apart_across_rewriters_and_threads() {
        let rules = rules();
        let (a_to, b_to) = (to("+1 555-010-1001"), to("+1 555-010-2002"));
        let expect = |to: &Arc<Replacement>| rewrite_document(&rules, to.clone(), PAGE.as_bytes(), 7);
        let mut a = PageRewriter::new(&rules, a_to.clone(), None).unwrap();
        let mut b = PageRewriter::new(&rules, b_to.clone(), None).unwrap();
        let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
        let pieces: Vec<&[u8]> = PAGE.as_bytes().chunks(7).collect();
        let (first, rest) = pieces.split_at(pieces.len() / 2);
        for piece in first {
            a.write(piece);
            b.write(piece);
            b_out.extend(b.take_output());
        }
        // `a` finishes on another thread while `b` goes on on this one.
        std::thread::scope(|scope| {
            let a_rest = scope.spawn(move || {
                for piece in rest {
                    a.write(piece);
                }
                a.end();
                a.take_output()
            });
            for piece in rest {
                b.write(piece);
            }
            b.end();
            b_out.extend(b.take_output());
            a_out.extend(a_rest.join().unwrap());
        });
        assert_eq!(a_out, expect(&a_to));
        assert_eq!(b_out, expect(&b_to));
        assert!(String::from_utf8(a_out).unwrap().contains("(555) 010-1001"));
        assert!(String::from_utf8(b_out).unwrap().contains("+1 555 010 2002"));
    }
}
