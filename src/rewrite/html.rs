//! Streaming an HTML document through a rewrite engine: [`PageRewriter`] picks the byte-level
//! engine ([`super::fast`]) for UTF-8 pages whose `exclude` selectors it can match, and lol_html
//! with the number handlers below for everything else (other charsets, complex selectors).
//!
//! Without a charset in `Content-Type` the page's first bytes decide, as a browser's prescan
//! does: up to 1024 bytes are held until a `<meta>` charset, `</head>` or `<body>` settles it,
//! or the origin pauses for 500 ms short of that (`proxy::body::PRESCAN_WAIT`).
//! A non-UTF-8 charset sends the page to lol_html, which honours the `<meta>` itself; a page
//! that declares nothing goes to lol_html (when it must) as UTF-8 if its first bytes show UTF-8,
//! else as windows-1252, which decodes every byte and encodes it back the same. (lol_html writes
//! every text chunk back from its decoding, changed or not, so bytes that do not decode would
//! come out as U+FFFD.)
//!
//! lol_html's handlers,
//! in the order lol_html runs them for one piece of input (registration order, and
//! element-content handlers before document handlers):
//! 1. for each `exclude` selector `S`, an element handler on `S` that flags "this element is
//!    excluded"; whether text and elements are inside one follows from lol_html's open elements,
//!    mirrored by the handler on `*` and end-tag handlers ([`OpenElements`]), with what a start
//!    tag closes without an end tag ([`super::implied`]);
//! 2. text handlers on JSON scripts ([`JSON_SCRIPT_TYPES`]) that flag "this script text may be
//!    rewritten";
//! 3. one element handler on `*` that rewrites the listed attributes (a selector cannot name
//!    `data-*` attributes, so it has to see every element) unless flagged;
//! 4. one document text handler that rewrites text nodes through a [`TextStream`].

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use lol_html::errors::RewritingError;
use lol_html::html_content::{TextChunk, TextType};
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, DocumentContentHandlers, MemorySettings, Selector};

use super::fast::Exclude;
use super::matcher::{NumberMatcher, Replacement, TextStream};
use super::replay::{self, EngineArgs, Key, Run};

const HTML_NS: &str = "http://www.w3.org/1999/xhtml";

static NOSCRIPT: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| super::fast::key_of(b"noscript"));

/// Attributes whose values may carry a phone number, besides `data-*` and `tel:`-like `href`s.
pub(crate) const NUMBER_ATTRIBUTES: &[&str] = &["content", "title", "aria-label", "alt", "value", "placeholder"];

/// `script` types whose text is rewritten: JSON-LD, and JSON data islands (the props a
/// framework hydrates the page from, Next.js's `__NEXT_DATA__` among them: left with the
/// site's number, they would put it back on the page once its script runs), also with
/// parameters (`application/json; charset=utf-8`, `application/json ;charset=utf-8`) or
/// another `+json` subtype. Other scripts are code, never touched. Matched ASCII
/// case-insensitively, the same way by lol_html (as attribute selectors) and by the byte-level
/// engine ([`TypeTest::matches`]).
pub(crate) const JSON_SCRIPT_TYPES: &[TypeTest] = &[
    TypeTest::Is("application/json"),
    TypeTest::Starts("application/json;"),
    TypeTest::Starts("application/json "),
    TypeTest::Ends("+json"),
    TypeTest::Contains("+json;"),
    TypeTest::Contains("+json "),
];

/// One test of a `type` attribute's value, as a CSS attribute selector's operator would make it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TypeTest {
    Is(&'static str),
    Starts(&'static str),
    Ends(&'static str),
    Contains(&'static str),
}

impl TypeTest {
    /// The `script` selector lol_html runs it as (`i`: ASCII case-insensitive, even on a
    /// `script` in SVG, where a bare attribute selector would match by case).
    fn selector(self) -> String {
        let (op, v) = match self {
            Self::Is(v) => ("=", v),
            Self::Starts(v) => ("^=", v),
            Self::Ends(v) => ("$=", v),
            Self::Contains(v) => ("*=", v),
        };
        format!(r#"script[type{op}"{v}" i]"#)
    }

    /// Whether a raw attribute value passes, as lol_html's selector matching reads it.
    pub(crate) fn matches(self, value: &[u8]) -> bool {
        let eq = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
        match self {
            Self::Is(v) => eq(value, v),
            Self::Starts(v) => value.get(..v.len()).is_some_and(|h| eq(h, v)),
            Self::Ends(v) => value.len() >= v.len() && eq(&value[value.len() - v.len()..], v),
            Self::Contains(v) => value.windows(v.len()).any(|w| eq(w, v)),
        }
    }
}

/// URL schemes whose `href` is a phone number.
///
/// Not `whatsapp:` or `facetime:`: a pool's numbers take calls, not chats or FaceTime (they are
/// registered to no account), so the chat button would break; `https://wa.me/...` links, the
/// other way to write the same, are left alone too.
pub(crate) const PHONE_SCHEMES: &[&str] = &["tel:", "sms:", "callto:"];

/// lol_html's own buffers per response are capped here; past it the rest of the page passes
/// unmodified (graceful bail-out) rather than the response failing. 2 MiB holds any realistic
/// tag; only pathological markup (a multi-megabyte attribute) reaches it.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 20;

/// One site's compiled rewriting configuration, shared by all of its responses.
#[derive(Debug, Clone)]
pub struct PageRules {
    pub matcher: Arc<NumberMatcher>,
    pub memory_limit: usize,
    exclude: Arc<[String]>,
    /// `exclude` compiled once for the byte-level engine (`None`: a selector only lol_html can
    /// match). Compiling it per response cost a few allocations on every page.
    fast_exclude: Option<Arc<Exclude>>,
    /// Unique to each `PageRules::new` (clones share it): recordings of pages
    /// ([`super::replay`]) are kept under it, so rules reloaded never replay the old rules' pages.
    id: u64,
}

impl PageRules {
    pub fn new(matcher: Arc<NumberMatcher>, exclude: Vec<String>, memory_limit: usize) -> PageRules {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let fast_exclude = Exclude::compile(&exclude).map(Arc::new);
        PageRules {
            matcher,
            memory_limit,
            exclude: exclude.into(),
            fast_exclude,
            id: IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// See the field: which rules a recorded page was rewritten under.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `exclude` selectors, as the rules file gave them.
    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }
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
    /// The page was answered whole from a recording ([`super::replay`]).
    pub replayed: AtomicBool,
    /// Page bytes answered from a recording without the engine reading them: the whole page
    /// when `replayed`, the part before the first difference when the page differed from its
    /// recording (the engine resumed there).
    pub replayed_bytes: AtomicUsize,
    /// After a difference that changed the page's length, the rest went back to the recording
    /// (found that many bytes further on or back).
    pub realigned: AtomicBool,
}

#[derive(Default)]
struct Flags {
    /// The element at hand matches an `exclude` selector.
    element_excluded: AtomicBool,
    json_ld: AtomicBool,
    /// lol_html's open elements, for exclusions (and to tell a `noscript`'s raw text).
    open: std::sync::Mutex<OpenElements>,
    /// How many excluded elements are open (read without the lock by every text chunk).
    excluded: AtomicUsize,
}

/// lol_html's open elements as its selector matching keeps them, mirrored for exclusions: a
/// start tag inside an exclusion may close elements without an end tag ([`super::implied`]),
/// the excluded one or an ancestor of it (a table cell closed by the next), which lol_html's
/// matching would keep open. Each element is pushed by the `*` handler and popped by its end
/// tag's handler with everything opened after it (lol_html runs no handler for those), as the
/// byte-level engine's stack does.
#[derive(Default)]
struct OpenElements {
    open: Vec<OpenElement>,
    next_id: u64,
    /// Excluded elements open and not closed by a later start tag.
    excluded: usize,
}

struct OpenElement {
    /// The name's key, as the byte-level engine keys it.
    key: u64,
    id: u64,
    excluded: bool,
    closed: bool,
}

impl OpenElements {
    fn push(&mut self, key: u64, excluded: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.push(OpenElement {
            key,
            id,
            excluded,
            closed: false,
        });
        self.excluded += usize::from(excluded);
        id
    }

    /// Element `id`'s end tag: it closes, with every element opened after it.
    fn pop_to(&mut self, id: u64) {
        if let Some(at) = self.open.iter().rposition(|e| e.id == id) {
            for e in self.open.drain(at..) {
                self.excluded -= usize::from(e.excluded && !e.closed);
            }
        }
    }

    /// The HTML start tag `name` (lowercase), while an exclusion is open: closes what it ends.
    fn close_implied(&mut self, name: &str) {
        self.excluded -= super::implied::close_implied(&mut self.open, name.as_bytes());
    }
}

impl super::implied::OpenElement for OpenElement {
    fn key(&self) -> u64 {
        self.key
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn close(&mut self) -> bool {
        self.closed = true;
        self.excluded
    }
}

impl Flags {
    fn open(&self) -> std::sync::MutexGuard<'_, OpenElements> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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

/// The lol_html engine for one response.
struct LolRewriter {
    inner: Option<HtmlRewriter<'static, Sink>>,
    out: Vec<u8>,
    stats: Arc<PageStats>,
}

impl LolRewriter {
    fn new(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
        stats: Arc<PageStats>,
    ) -> Option<LolRewriter> {
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

        for selector in rules.exclude.iter() {
            let Ok(parsed) = selector.parse::<Selector>() else {
                continue;
            };
            let fe = flags.clone();
            let handlers =
                ElementContentHandlers::default().element(Box::new(move |_: &mut lol_html::send::Element<'_, '_>| {
                    fe.element_excluded.store(true, Ordering::Relaxed);
                    Ok(())
                })
                    as lol_html::send::ElementHandler<'static>);
            settings = settings.append_element_content_handler((std::borrow::Cow::Owned(parsed), handlers));
        }

        for kind in JSON_SCRIPT_TYPES {
            let fj = flags.clone();
            let json: Selector = kind.selector().parse().expect("static selector");
            settings = settings.append_element_content_handler((
                std::borrow::Cow::Owned(json),
                ElementContentHandlers::default().text(Box::new(move |_: &mut TextChunk<'_>| {
                    fj.json_ld.store(true, Ordering::Relaxed);
                    Ok(())
                }) as lol_html::send::TextHandler<'static>),
            ));
        }

        let (fa, sa, ta, ma) = (flags.clone(), stats.clone(), to.clone(), rules.matcher.clone());
        // The attributes to set on the element at hand; the buffer is kept from one to the next.
        let mut changes: Vec<(String, String)> = Vec::new();
        let any: Selector = "*".parse().expect("static selector");
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Owned(any),
            ElementContentHandlers::default().element(Box::new(move |el: &mut lol_html::send::Element<'_, '_>| {
                let matched = take(&fa.element_excluded);
                let excluded = {
                    let mut open = fa.open();
                    let name = el.tag_name();
                    if open.excluded > 0 && el.namespace_uri() == HTML_NS {
                        open.close_implied(&name);
                    }
                    if let Some(handlers) = el.end_tag_handlers() {
                        let id = open.push(super::fast::key_of(name.as_bytes()), matched);
                        let fr = fa.clone();
                        handlers.push(Box::new(move |_: &mut lol_html::html_content::EndTag<'_>| {
                            let mut open = fr.open();
                            open.pop_to(id);
                            fr.excluded.store(open.excluded, Ordering::Relaxed);
                            Ok(())
                        }));
                    }
                    fa.excluded.store(open.excluded, Ordering::Relaxed);
                    matched || open.excluded > 0
                };
                if excluded {
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
                let excluded = ft.excluded.load(Ordering::Relaxed) > 0;
                let json_ld = take(&ft.json_ld);
                let eligible = match t.text_type() {
                    TextType::Data | TextType::RCData => true,
                    TextType::ScriptData => json_ld,
                    // A `noscript`'s content, raw text here (lol_html reads pages as a browser
                    // with scripts on does), is the page a visitor without JavaScript sees. Raw
                    // text holds no elements: the innermost open one is the one it belongs to.
                    TextType::RawText => ft.open().open.last().is_some_and(|e| e.key == *NOSCRIPT),
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
        Some(LolRewriter {
            inner: Some(inner),
            out,
            stats,
        })
    }

    fn write(&mut self, chunk: &[u8]) {
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

    fn end(&mut self) {
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
}

/// Which engine rewrites a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Engine {
    /// The byte-level engine where it applies, lol_html elsewhere (what the proxy uses).
    Auto,
    /// lol_html for every page (tests and benches compare the two).
    LolHtml,
}

/// The engine [`PageRewriter::new`] uses: `telswap serve --engine` sets it once at start-up (an
/// escape hatch for a site where the byte-level engine would misread a page).
static ENGINE: AtomicU8 = AtomicU8::new(Engine::Auto as u8);

pub fn set_engine(engine: Engine) {
    ENGINE.store(engine as u8, Ordering::Relaxed);
}

fn engine() -> Engine {
    if ENGINE.load(Ordering::Relaxed) == Engine::LolHtml as u8 {
        Engine::LolHtml
    } else {
        Engine::Auto
    }
}

// The byte-level engine's variant is the large one, and the one nearly every response takes:
// boxing it would add an allocation per page to save bytes on the rare others.
#[allow(clippy::large_enum_variant)]
enum Inner {
    /// Boxed: lol_html's rewriter is large, and most responses take the byte-level engine.
    Lol(Box<LolRewriter>),
    Fast(Run),
    /// No charset in `Content-Type`: the first bytes are held until they say which.
    Sniff {
        head: Vec<u8>,
        rules: PageRules,
        to: Arc<Replacement>,
        /// `None`: lol_html takes the page whatever its charset.
        exclude: Option<Arc<Exclude>>,
        page: Option<Box<str>>,
    },
    /// Only while [`PageRewriter::settle`] moves from `Sniff` to an engine.
    Settling,
}

/// The prescan window: a `<meta>` charset after this many bytes is not looked for (as in
/// browsers).
const PRESCAN: usize = 1024;

/// Rewrites one HTML response as it streams: `write` each chunk, `take_output` what is ready.
pub struct PageRewriter {
    inner: Inner,
    stats: Arc<PageStats>,
}

impl PageRewriter {
    /// `encoding`: the charset from `Content-Type`, if any; without one, the first bytes are
    /// prescanned for a `<meta>` charset ([`sniff`]). An undeclared page is read as UTF-8 by the
    /// byte-level engine (which passes any byte through), and by lol_html as UTF-8 if its first
    /// bytes show UTF-8, else as windows-1252 (which gives every byte back). Returns `None` for encodings lol_html cannot
    /// parse (UTF-16 and friends): such pages pass through untouched.
    pub fn new(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
    ) -> Option<PageRewriter> {
        PageRewriter::with_engine(rules, to, encoding, engine())
    }

    /// [`PageRewriter::new`] for the page named `page` (host and path): when the byte-level
    /// engine takes it, a response with the same bytes as an earlier one of `page` (same rules,
    /// same number) is answered from that one's recording ([`super::replay`]).
    pub fn for_page(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
        page: Option<Box<str>>,
    ) -> Option<PageRewriter> {
        PageRewriter::build(rules, to, encoding, engine(), page)
    }

    /// Whether [`PageRewriter::for_page`] takes a page in `encoding`: it refuses only an
    /// encoding lol_html cannot parse (one that is not ASCII-compatible, such as UTF-16).
    pub fn can_rewrite(encoding: Option<&'static encoding_rs::Encoding>) -> bool {
        encoding.is_none_or(|e| AsciiCompatibleEncoding::new(e).is_some())
    }

    pub fn with_engine(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
        engine: Engine,
    ) -> Option<PageRewriter> {
        PageRewriter::build(rules, to, encoding, engine, None)
    }

    fn build(
        rules: &PageRules,
        to: Arc<Replacement>,
        encoding: Option<&'static encoding_rs::Encoding>,
        engine: Engine,
        page: Option<Box<str>>,
    ) -> Option<PageRewriter> {
        let stats = Arc::new(PageStats::default());
        let exclude = match engine {
            Engine::Auto => rules.fast_exclude.clone(),
            Engine::LolHtml => None,
        };
        let inner = match (encoding, exclude) {
            (Some(enc), Some(exclude)) if enc == encoding_rs::UTF_8 => {
                Inner::Fast(fast_engine(rules, to, exclude, stats.clone(), page))
            }
            (None, exclude) => Inner::Sniff {
                head: Vec::new(),
                rules: rules.clone(),
                to,
                exclude,
                page,
            },
            (encoding, _) => Inner::Lol(Box::new(LolRewriter::new(rules, to, encoding, stats.clone())?)),
        };
        Some(PageRewriter { inner, stats })
    }

    /// Whether the byte-level engine is doing the work (`None` while the first bytes are read).
    pub fn is_fast(&self) -> Option<bool> {
        match self.inner {
            Inner::Fast(_) => Some(true),
            Inner::Lol(_) => Some(false),
            Inner::Sniff { .. } | Inner::Settling => None,
        }
    }

    /// Feeds the next chunk of the page. After a bail-out (memory limit) the rest passes as is.
    pub fn write(&mut self, chunk: &[u8]) {
        match &mut self.inner {
            Inner::Lol(rw) => rw.write(chunk),
            Inner::Fast(rw) => rw.write(chunk),
            Inner::Sniff { head, .. } => {
                head.extend_from_slice(chunk);
                if let Some(charset) = sniff(head, false) {
                    self.settle(charset);
                }
            }
            Inner::Settling => {}
        }
    }

    /// Whether page bytes are held for the charset prescan (some have arrived, not yet enough
    /// to decide): the caller ends the wait with [`PageRewriter::settle_now`] if the origin
    /// pauses.
    pub fn holds_prescan(&self) -> bool {
        matches!(&self.inner, Inner::Sniff { head, .. } if !head.is_empty())
    }

    /// Ends the charset prescan with the bytes that have arrived, as a browser does when the
    /// page stops short of the window (HTML's encoding sniffing: "wait 500ms or 1024 bytes,
    /// whichever came first"), so a page the origin flushes early reaches the visitor early.
    /// A `<meta charset>` of another encoding arriving after that is not honoured (a browser
    /// would reparse; a stream cannot): the byte-level engine then reads the page as UTF-8,
    /// which for an ASCII-compatible charset still finds and swaps the ASCII digits of numbers.
    pub fn settle_now(&mut self) {
        self.end_prescan();
        if let Inner::Fast(run) = &mut self.inner {
            run.settle();
        }
    }

    /// Ends the charset prescan, if it is running, with the bytes that have arrived.
    fn end_prescan(&mut self) {
        if let Inner::Sniff { head, .. } = &self.inner {
            let charset = sniff(head, true).unwrap_or(Prescan::Undeclared(head.len().min(PRESCAN)));
            self.settle(charset);
        }
    }

    /// Whether a replay ([`super::replay`]) holds bytes that matched its recording but that it
    /// cannot send yet: the caller gives the origin [`replay::HOLD_WAIT`] to send more, then
    /// calls [`PageRewriter::settle_now`], and the engine sends what it can.
    pub fn holds_replay(&self) -> bool {
        matches!(&self.inner, Inner::Fast(run) if run.holds())
    }

    /// Ends the page, flushing anything still held.
    pub fn end(&mut self) {
        // Only the prescan: a replay holding bytes ends whole if they were all it had.
        self.end_prescan();
        match &mut self.inner {
            Inner::Lol(rw) => rw.end(),
            Inner::Fast(rw) => rw.end(),
            Inner::Sniff { .. } | Inner::Settling => unreachable!("settled above"),
        }
    }

    /// Ends the sniff: the held bytes go to the engine the charset calls for.
    fn settle(&mut self, charset: Prescan) {
        let Inner::Sniff {
            head,
            rules,
            to,
            exclude,
            page,
        } = std::mem::replace(&mut self.inner, Inner::Settling)
        else {
            return;
        };
        self.inner = match (charset, exclude) {
            // The byte-level engine reads bytes: any ASCII-compatible page passes whole.
            (Prescan::Utf8 | Prescan::Undeclared(_), Some(exclude)) => {
                let mut rw = fast_engine(&rules, to, exclude, self.stats.clone(), page);
                rw.write(&head);
                Inner::Fast(rw)
            }
            (charset, _) => {
                let encoding = match charset {
                    Prescan::Utf8 => Some(encoding_rs::UTF_8),
                    // lol_html reads the `<meta>` itself.
                    Prescan::Other => None,
                    // lol_html writes text back from its decoding: bytes it cannot decode come
                    // back as U+FFFD. So a page is read as UTF-8 only when its first bytes show
                    // UTF-8 (a multi-byte sequence, nothing invalid); otherwise as windows-1252
                    // (what browsers assume for an undeclared page), which decodes every byte
                    // and encodes it back the same, whatever the page's real charset (a legacy
                    // page's accents, or a `<meta>` the prescan did not reach). Judging only the
                    // prescanned bytes keeps the choice the same however the network cut them.
                    Prescan::Undeclared(read) if shows_utf8(&head[..read.min(head.len())]) => Some(encoding_rs::UTF_8),
                    Prescan::Undeclared(_) => Some(encoding_rs::WINDOWS_1252),
                };
                let mut rw = LolRewriter::new(&rules, to, encoding, self.stats.clone())
                    .expect("UTF-8 and windows-1252 are supported");
                rw.write(&head);
                Inner::Lol(Box::new(rw))
            }
        };
    }

    /// Takes the output produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Lol(rw) => std::mem::take(&mut rw.out),
            Inner::Fast(rw) => rw.take_output(),
            Inner::Sniff { .. } | Inner::Settling => Vec::new(),
        }
    }

    pub fn stats(&self) -> Arc<PageStats> {
        self.stats.clone()
    }
}

/// The byte-level engine for a response; for a known `page`, with its recording or replay.
fn fast_engine(
    rules: &PageRules,
    to: Arc<Replacement>,
    exclude: Arc<Exclude>,
    stats: Arc<PageStats>,
    page: Option<Box<str>>,
) -> Run {
    let key = page.and_then(|p| Some((replay::replays()?, Key::new(rules, p, &to)?)));
    let args = EngineArgs {
        matcher: rules.matcher.clone(),
        to,
        exclude,
        limit: rules.memory_limit,
        stats,
    };
    match key {
        Some((replays, key)) => Run::keyed(args, key, replays),
        None => Run::engine(args),
    }
}

/// What the prescan of a page without a charset in `Content-Type` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prescan {
    /// A `<meta>` declares UTF-8.
    Utf8,
    /// A `<meta>` declares another charset.
    Other,
    /// Nothing declared in the first this many bytes (up to `<body>` or `</head>`, or the
    /// window): what the choice of charset may look at, so that it does not depend on how the
    /// network cut the page.
    Undeclared(usize),
}

/// Whether an undeclared page's first bytes show UTF-8: some multi-byte UTF-8 and nothing that
/// is not (a sequence cut by their end is allowed). Pure ASCII shows nothing.
fn shows_utf8(first: &[u8]) -> bool {
    match std::str::from_utf8(first) {
        Ok(text) => !text.is_ascii(),
        Err(e) => e.error_len().is_none() && !first[..e.valid_up_to()].is_ascii(),
    }
}

/// The prescan of a page without a charset in `Content-Type`: `None` while undecided.
fn sniff(head: &[u8], done: bool) -> Option<Prescan> {
    let window = &head[..head.len().min(PRESCAN)];
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'<', &window[i..]) {
        let lt = i + k;
        let rest = &window[lt..];
        let starts = |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        if starts(b"<body") || starts(b"</head") {
            return Some(Prescan::Undeclared(lt));
        }
        if starts(b"<meta") {
            let Some(gt) = memchr::memchr(b'>', rest) else {
                // The tag goes on past what has arrived.
                return if done || head.len() >= PRESCAN {
                    Some(Prescan::Undeclared(window.len()))
                } else {
                    None
                };
            };
            // A label naming no charset is no declaration: the prescan goes on, as a browser's.
            if let Some(e) = meta_charset(&rest[..gt]).and_then(encoding_rs::Encoding::for_label) {
                // A `<meta>` claiming UTF-16 means UTF-8 (the bytes are ASCII-compatible).
                let utf8 = e == encoding_rs::UTF_8 || e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE;
                return Some(if utf8 { Prescan::Utf8 } else { Prescan::Other });
            }
        }
        i = lt + 1;
    }
    if done || head.len() >= PRESCAN {
        Some(Prescan::Undeclared(window.len()))
    } else {
        None
    }
}

/// The label after `charset=` in a `<meta ...` tag (its bytes up to `>`).
fn meta_charset(tag: &[u8]) -> Option<&[u8]> {
    let lower = tag.to_ascii_lowercase();
    let at = memchr::memmem::find(&lower, b"charset")? + 7;
    let mut i = at;
    while i < tag.len() && tag[i].is_ascii_whitespace() {
        i += 1;
    }
    if tag.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    while i < tag.len() && matches!(tag[i], b'"' | b'\'' | b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    let start = i;
    while i < tag.len() && !matches!(tag[i], b'"' | b'\'' | b' ' | b'\t' | b'\n' | b'\r' | b';' | b'/' | b'>') {
        i += 1;
    }
    (i > start).then(|| &tag[start..i])
}

/// Rewrites a whole document in one call (tests, benches, small bodies).
pub fn rewrite_document(rules: &PageRules, to: Arc<Replacement>, html: &[u8], chunk: usize) -> Vec<u8> {
    rewrite_document_with(rules, to, html, chunk, Engine::Auto)
}

/// [`rewrite_document`] with the engine chosen.
pub fn rewrite_document_with(
    rules: &PageRules,
    to: Arc<Replacement>,
    html: &[u8],
    chunk: usize,
    engine: Engine,
) -> Vec<u8> {
    let mut rw = PageRewriter::with_engine(rules, to, None, engine).expect("utf-8 is supported");
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
        PageRules::new(
            Arc::new(NumberMatcher::new(&[site])),
            vec!["[data-telswap-ignore]".into()],
            DEFAULT_MEMORY_LIMIT,
        )
    }

    fn to(number: &str) -> Arc<Replacement> {
        Arc::new(Replacement::new(PhoneNumber::parse(number, "US").unwrap()))
    }

    /// `can_rewrite` (the headers of a `HEAD`) agrees with `for_page` (the body of a `GET`).
    #[test]
    fn can_rewrite_says_what_for_page_does() {
        use encoding_rs::*;
        let encodings = [
            UTF_8,
            WINDOWS_1252,
            SHIFT_JIS,
            ISO_2022_JP,
            UTF_16LE,
            UTF_16BE,
            REPLACEMENT,
        ];
        for encoding in encodings.into_iter().map(Some).chain([None]) {
            let built = PageRewriter::for_page(&rules(), to("+1 555-010-1001"), encoding, None).is_some();
            assert_eq!(PageRewriter::can_rewrite(encoding), built, "{encoding:?}");
        }
        assert!(!PageRewriter::can_rewrite(Some(UTF_16LE)));
    }

    /// lol_html (here for a selector the byte-level engine cannot match) on a page that declares
    /// no charset: no byte is lost, in the text it rewrites too, however the page is cut. A
    /// page whose first bytes show UTF-8 is read as UTF-8 (its no-break spaces are separators);
    /// any other as windows-1252, which gives every byte back.
    #[test]
    fn an_undeclared_page_keeps_its_bytes_on_lol_html() {
        let site = PhoneNumber::parse("+1 555-010-0000", "US").unwrap();
        let complex = PageRules::new(
            Arc::new(NumberMatcher::new(&[site])),
            vec!["footer p".into()],
            DEFAULT_MEMORY_LIMIT,
        );
        let swap = |page: &[u8], from: &[u8], to: &[u8]| -> Vec<u8> {
            let at = memchr::memmem::find(page, from).expect("the number is in the page");
            [&page[..at], to, &page[at + from.len()..]].concat()
        };
        let latin1_head =
            &b"<html><head><title>Caf\xE9</title></head><body><p>T\xE9l\xE9phone 555-010-0000 \xB7 caf\xE9</p>"[..];
        let latin1_late =
            &b"<html><head><title>Plumber</title></head><body><p>T\xE9l (555)\xA0010\x960000 caf\xE9</p>"[..];
        let utf8 = "<html><head><title>Café</title></head><body><p>Tél 555\u{a0}010\u{a0}0000</p>".as_bytes();
        let utf8_late = "<html><head><title>Plumber</title></head><body><p>Tél 555-010-0000 ·</p>".as_bytes();
        for (name, page, want) in [
            (
                "latin-1 in the head",
                latin1_head,
                swap(latin1_head, b"555-010-0000", b"555-010-1001"),
            ),
            (
                "latin-1 after an ASCII head",
                latin1_late,
                swap(latin1_late, b"(555)\xA0010\x960000", b"(555)\xA0010\x961001"),
            ),
            (
                "UTF-8 in the head",
                utf8,
                swap(
                    utf8,
                    "555\u{a0}010\u{a0}0000".as_bytes(),
                    "555\u{a0}010\u{a0}1001".as_bytes(),
                ),
            ),
            (
                "UTF-8 after an ASCII head",
                utf8_late,
                swap(utf8_late, b"555-010-0000", b"555-010-1001"),
            ),
        ] {
            for chunk in [1, 7, 64, page.len()] {
                let out = rewrite_document(&complex, to("+1 555-010-1001"), page, chunk);
                assert_eq!(out, want, "{name}, chunk {chunk}: {}", String::from_utf8_lossy(&out));
            }
        }
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
