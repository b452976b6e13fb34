//! The byte-level engine: the rewrites of [`super::html`]'s lol_html handlers, made by a small
//! HTML state tracker that copies every byte it does not have to look at.
//!
//! Why it exists: lol_html is a full tokenizer, and the handlers the rules need (a document text
//! handler, an element handler on `*`, attribute selectors for `exclude`) each switch it from its
//! fast tag scanner to full lexing of every tag and decoding of every text chunk: 5–7× the cost
//! of its bare parse on a page full of markup (`benches/RESULTS.md`). Phone numbers are rare; a
//! rewriter only needs to know, at each byte, whether it is page text, an attribute value (and
//! which), a JSON script (JSON-LD or a data island), or something never rewritten (other scripts, styles, comments,
//! excluded elements). That state is small:
//!
//! - text vs markup, with quote-aware tag ends (`<a title="a>b">`), comments, CDATA, doctype and
//!   bogus comments;
//! - raw-text elements, as lol_html's tree-builder simulator switches them: `textarea` and `title`
//!   (rewritten), `script` (rewritten only as JSON), `noscript` (rewritten: what a visitor
//!   without JavaScript sees), `style`, `iframe`, `xmp`, `noembed`, `noframes` (never),
//!   `plaintext` (never, to the end);
//! - foreign content (`svg`, `math`), where those switches do not happen and `<![CDATA[` opens a
//!   CDATA section, left and re-entered as lol_html's namespace stack does (the HTML breakout
//!   tags, `foreignObject`/`desc`/`title` and MathML text integration points);
//! - the stack of open elements, only to know when an element matching `exclude` closes. End tags
//!   close back to the nearest open element of the same name, like lol_html's selector matching;
//!   inside an exclusion, a start tag that closes open elements without an end tag
//!   (`<li>…<li>`) closes them for the exclusion ([`super::implied`]).
//!
//! Text goes through the same [`TextStream`] and attribute values through the same
//! [`NumberMatcher::rewrite_bytes`] as with lol_html, so both engines find the same numbers; the
//! tests (`tests/engines.rs`) hold their outputs equal. Attribute values are replaced in place,
//! quotes and all, where lol_html re-serialises the attribute.
//!
//! The engine works on bytes, so it runs only on UTF-8 pages (and ASCII-compatible bytes when no
//! other charset is declared), and only when every `exclude` selector is a compound selector
//! ([`Exclude`]); [`super::html::PageRewriter`] picks lol_html otherwise.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::html::{JSON_SCRIPT_TYPES, NUMBER_ATTRIBUTES, PHONE_SCHEMES, PageStats};
use super::implied::{OpenElement, close_implied};
use super::matcher::{Before, NumberMatcher, Replacement, TextStream};

/// Elements with no end tag, never pushed on the stack (`low`: the lowercase name). A `match`
/// compiles to a switch on the length and a few comparisons: every start tag asks.
fn is_void(low: &[u8]) -> bool {
    matches!(
        low,
        b"area"
            | b"base"
            | b"br"
            | b"col"
            | b"embed"
            | b"hr"
            | b"img"
            | b"input"
            | b"link"
            | b"meta"
            | b"source"
            | b"track"
            | b"wbr"
            | b"param"
            | b"keygen"
            | b"frame"
            | b"basefont"
            | b"bgsound"
    )
}

/// Where HTML content starts again inside `svg` ...
const SVG_HTML_POINTS: &[&[u8]] = &[b"foreignobject", b"desc", b"title"];
/// ... and inside `math`.
const MATHML_TEXT_POINTS: &[&[u8]] = &[b"mi", b"mo", b"mn", b"ms", b"mtext"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Html,
    Svg,
    MathMl,
}

/// Start tags that leave foreign content (HTML's "breakout" list, as lol_html has it).
const FOREIGN_EXIT: &[&[u8]] = &[
    b"b",
    b"big",
    b"blockquote",
    b"body",
    b"br",
    b"center",
    b"code",
    b"dd",
    b"div",
    b"dl",
    b"dt",
    b"em",
    b"embed",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"head",
    b"hr",
    b"i",
    b"img",
    b"li",
    b"listing",
    b"menu",
    b"meta",
    b"nobr",
    b"ol",
    b"p",
    b"pre",
    b"ruby",
    b"s",
    b"small",
    b"span",
    b"strong",
    b"strike",
    b"sub",
    b"sup",
    b"table",
    b"tt",
    b"u",
    b"ul",
    b"var",
];

/// Elements whose content is read as text up to their end tag, as lol_html's tree-builder
/// simulator switches them (`None`: `plaintext`, the rest of the page), by lowercase name, with
/// the end tag's name. The script kind's JSON-LD flag is decided per tag.
fn raw_kind(low: &[u8]) -> Option<(&'static [u8], Option<RawKind>)> {
    let (end, kind): (&'static [u8], _) = match low {
        b"script" => (b"script", Some(RawKind::Script { json_ld: false })),
        b"style" => (b"style", Some(RawKind::RawText)),
        b"title" => (b"title", Some(RawKind::RcData)),
        b"textarea" => (b"textarea", Some(RawKind::RcData)),
        b"noscript" => (b"noscript", Some(RawKind::NoScript)),
        b"iframe" => (b"iframe", Some(RawKind::RawText)),
        b"xmp" => (b"xmp", Some(RawKind::RawText)),
        b"noembed" => (b"noembed", Some(RawKind::RawText)),
        b"noframes" => (b"noframes", Some(RawKind::RawText)),
        b"plaintext" => (b"plaintext", None),
        _ => return None,
    };
    Some((end, kind))
}

// ---------------------------------------------------------------------------------------------
// `exclude` selectors

/// How an attribute selector compares the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exists,
    Equals,
    /// `~=`: one of the whitespace-separated words.
    Word,
    /// `|=`: equal, or followed by `-`.
    Dash,
    Prefix,
    Suffix,
    Contains,
}

#[derive(Debug, Clone)]
struct AttrSel {
    /// Lowercase.
    name: Vec<u8>,
    op: Op,
    value: Vec<u8>,
    /// `[name="v" i]`.
    fold: bool,
}

/// One compound selector: `tag#id.class[attr op value]...`, every part optional.
#[derive(Debug, Clone, Default)]
struct Compound {
    /// Lowercase; `None` for `*` or no type.
    tag: Option<Vec<u8>>,
    attrs: Vec<AttrSel>,
}

/// The site's `exclude` selectors, when all of them are compound selectors (a type, `*`, `#id`,
/// `.class` and attribute selectors with any operator, in a comma list): what the byte-level
/// engine can match on one tag. Combinators and pseudo-classes are left to lol_html.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    any_of: Vec<Compound>,
}

impl Exclude {
    /// `None` when some selector is outside the supported forms.
    pub fn compile(selectors: &[String]) -> Option<Exclude> {
        let mut any_of = Vec::new();
        for list in selectors {
            for sel in list.split(',') {
                any_of.push(parse_compound(sel.trim().as_bytes())?);
            }
        }
        Some(Exclude { any_of })
    }

    fn matches(&self, tag: &[u8], name: &std::ops::Range<usize>, attrs: &[AttrSpan]) -> bool {
        self.any_of.iter().any(|c| {
            c.tag.as_ref().is_none_or(|t| tag[name.clone()].eq_ignore_ascii_case(t))
                && c.attrs.iter().all(|a| {
                    attrs
                        .iter()
                        .filter(|s| tag[s.name.clone()].eq_ignore_ascii_case(&a.name))
                        // The first of duplicate attributes counts, as in a browser.
                        .take(1)
                        .any(|s| {
                            let v = s.value.clone().map(|r| &tag[r]).unwrap_or(b"");
                            value_matches(a, v)
                        })
                })
        })
    }
}

fn value_matches(a: &AttrSel, v: &[u8]) -> bool {
    let eq = |x: &[u8], y: &[u8]| if a.fold { x.eq_ignore_ascii_case(y) } else { x == y };
    let want = &a.value[..];
    match a.op {
        Op::Exists => true,
        Op::Equals => eq(v, want),
        Op::Word => {
            !want.is_empty()
                && !want.iter().any(u8::is_ascii_whitespace)
                && v.split(u8::is_ascii_whitespace).any(|w| eq(w, want))
        }
        Op::Dash => eq(v, want) || (v.len() > want.len() && v[want.len()] == b'-' && eq(&v[..want.len()], want)),
        Op::Prefix => !want.is_empty() && v.len() >= want.len() && eq(&v[..want.len()], want),
        Op::Suffix => !want.is_empty() && v.len() >= want.len() && eq(&v[v.len() - want.len()..], want),
        Op::Contains => !want.is_empty() && v.len() >= want.len() && v.windows(want.len()).any(|w| eq(w, want)),
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80
}

/// Parses one compound selector, or `None` for anything else (combinators, pseudo-classes,
/// escapes, namespaces).
fn parse_compound(s: &[u8]) -> Option<Compound> {
    let mut c = Compound::default();
    let mut i = 0;
    let ident = |i: &mut usize| -> Option<Vec<u8>> {
        let start = *i;
        while *i < s.len() && is_ident_byte(s[*i]) {
            *i += 1;
        }
        // An identifier cannot start with a digit, or with `-` and a digit.
        let id = &s[start..*i];
        let bad_start =
            id.first().is_none_or(u8::is_ascii_digit) || (id.len() > 1 && id[0] == b'-' && id[1].is_ascii_digit());
        (!bad_start).then(|| id.to_vec())
    };
    if s.is_empty() {
        return None;
    }
    if s[0] == b'*' {
        i = 1;
    } else if is_ident_byte(s[0]) {
        c.tag = Some(ident(&mut i)?.to_ascii_lowercase());
    }
    while i < s.len() {
        match s[i] {
            b'#' | b'.' => {
                let (name, op): (&[u8], Op) = if s[i] == b'#' {
                    (b"id", Op::Equals)
                } else {
                    (b"class", Op::Word)
                };
                i += 1;
                let value = ident(&mut i)?;
                c.attrs.push(AttrSel {
                    name: name.to_vec(),
                    op,
                    value,
                    fold: false,
                });
            }
            b'[' => {
                i += 1;
                let ws = |i: &mut usize| {
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                };
                ws(&mut i);
                let name = ident(&mut i)?.to_ascii_lowercase();
                ws(&mut i);
                let op = match s.get(i)? {
                    b']' => Op::Exists,
                    b'=' => Op::Equals,
                    b'~' => Op::Word,
                    b'|' => Op::Dash,
                    b'^' => Op::Prefix,
                    b'$' => Op::Suffix,
                    b'*' => Op::Contains,
                    _ => return None,
                };
                let mut sel = AttrSel {
                    name,
                    op,
                    value: Vec::new(),
                    fold: false,
                };
                if op != Op::Exists {
                    i += if op == Op::Equals { 1 } else { 2 };
                    if op != Op::Equals && s.get(i - 1) != Some(&b'=') {
                        return None;
                    }
                    ws(&mut i);
                    match s.get(i)? {
                        &q @ (b'"' | b'\'') => {
                            let end = i + 1 + s[i + 1..].iter().position(|&b| b == q)?;
                            sel.value = s[i + 1..end].to_vec();
                            if sel.value.contains(&b'\\') {
                                return None;
                            }
                            i = end + 1;
                        }
                        _ => sel.value = ident(&mut i)?,
                    }
                    ws(&mut i);
                    if matches!(s.get(i), Some(b'i' | b'I')) {
                        sel.fold = true;
                        i += 1;
                        ws(&mut i);
                    }
                }
                if s.get(i) != Some(&b']') {
                    return None;
                }
                i += 1;
                c.attrs.push(sel);
            }
            _ => return None,
        }
    }
    Some(c)
}

// ---------------------------------------------------------------------------------------------
// Tags

/// An attribute of the tag at hand: offsets into the tag's bytes.
#[derive(Debug, Clone)]
struct AttrSpan {
    name: std::ops::Range<usize>,
    value: Option<std::ops::Range<usize>>,
}

/// A tag read whole: its name (offsets in the buffer), the offset after its `>`, and whether it
/// ends with `/>`.
struct TagEnd {
    name: std::ops::Range<usize>,
    end: usize,
    self_closing: bool,
}

/// Reads the tag whose name starts at `at` (after `<` or `</`) as HTML's tokenizer does, up to
/// its `>`, collecting attributes. `None`: the buffer ends inside the tag.
fn read_tag(buf: &[u8], at: usize, attrs: &mut Vec<AttrSpan>) -> Option<TagEnd> {
    attrs.clear();
    let n = buf.len();
    let mut i = at;
    while i < n && !matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>') {
        i += 1;
    }
    let name = at..i;
    let mut self_closing = false;
    loop {
        // Before an attribute name.
        while i < n && matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/') {
            self_closing = buf[i] == b'/';
            i += 1;
        }
        if i >= n {
            return None;
        }
        if buf[i] == b'>' {
            return Some(TagEnd {
                name,
                end: i + 1,
                self_closing,
            });
        }
        self_closing = false;
        // The name: the first byte is taken whatever it is (`=` included), as the spec says.
        let start = i;
        i += 1;
        while i < n && !matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>' | b'=') {
            i += 1;
        }
        let name_at = start..i;
        while i < n && matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ') {
            i += 1;
        }
        if i >= n {
            return None;
        }
        if buf[i] != b'=' {
            attrs.push(AttrSpan {
                name: name_at,
                value: None,
            });
            continue;
        }
        i += 1;
        while i < n && matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ') {
            i += 1;
        }
        if i >= n {
            return None;
        }
        let value = match buf[i] {
            q @ (b'"' | b'\'') => {
                let end = i + 1 + find_byte(q, &buf[i + 1..])?;
                let v = i + 1..end;
                i = end + 1;
                Some(v)
            }
            b'>' => None,
            _ => {
                let start = i;
                while i < n && !matches!(buf[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'>') {
                    i += 1;
                }
                if i >= n {
                    return None;
                }
                Some(start..i)
            }
        };
        attrs.push(AttrSpan { name: name_at, value });
    }
}

/// What the stack keeps of an open element: a key of its lowercase name.
///
/// A name of up to [`PACKED`] bytes (nearly every tag) is packed whole into the key, lowercased,
/// with its length in the top byte, so no two such names share a key. This replaced an FNV-1a
/// hash of every name, whose serial multiply chain was a third of `end_tag`'s own time on a page
/// full of markup. The bytes are gathered and lowercased in a register ([`short_word`],
/// [`ascii_lower_word`]): lowercasing them one by one into an array and reading it back as a word
/// stalled on every tag (a load that spans several smaller stores is not forwarded from them).
/// Longer names are FNV-1a hashed, with the top bit set so that they never take a short name's
/// key (the top byte of a packed key is at most 7).
#[inline]
pub(crate) fn key_of(name: &[u8]) -> u64 {
    if name.len() <= PACKED {
        return ascii_lower_word(short_word(name)) | (name.len() as u64) << 56;
    }
    let fnv = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    });
    fnv | 1 << 63
}

/// Names of up to this many bytes (nearly every tag) are keyed by their bytes themselves.
const PACKED: usize = 7;

/// The bytes of `s` (at most 8) as a little-endian word, zero above them, read with a few loads
/// that stay inside `s`: two overlapping 4-byte loads for 4 to 8 bytes; the first, middle and
/// last byte for 1 to 3.
#[inline]
fn short_word(s: &[u8]) -> u64 {
    let n = s.len();
    debug_assert!(n <= 8);
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes")));
    match n {
        0 => 0,
        1..=3 => u64::from(s[0]) | u64::from(s[n / 2]) << (8 * (n / 2)) | u64::from(s[n - 1]) << (8 * (n - 1)),
        _ => u32_at(0) | u32_at(n - 4) << (8 * (n - 4)),
    }
}

/// The low and the high bit of every byte of a word, for the byte-parallel (SWAR) tests below.
const LSB: u64 = 0x0101_0101_0101_0101;
const MSB: u64 = LSB << 7;

/// `to_ascii_lowercase` on each byte of a word at once: `A`..`Z` get bit 5, every other byte
/// (non-ASCII ones too) is left as it is.
#[inline]
fn ascii_lower_word(x: u64) -> u64 {
    // Each byte's low 7 bits, plus a constant that carries into its top bit exactly when they are
    // at least `A` (or above `Z`); the sums stay below 0x100, so no byte carries into the next.
    let low7 = x & !MSB;
    let from_a = low7 + LSB * u64::from(0x80 - b'A');
    let past_z = low7 + LSB * u64::from(0x80 - b'Z' - 1);
    let upper = from_a & !past_z & !x & MSB;
    x | upper >> 2
}

/// `memchr`, with the first 16 bytes looked at inline, a word at a time: most of what the engine
/// searches is that short (the text between two tags, most often a line break and indentation; a
/// quoted attribute value), and there the call into `memchr` and its setup cost more than the
/// search.
#[inline]
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < 16 {
        let Some(word) = hay.get(at..at + 8) else { break };
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ (LSB * u64::from(b));
        // The lowest flagged byte is the first zero byte of `x` (flags above it may be false).
        let zero = x.wrapping_sub(LSB) & !x & MSB;
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr::memchr(b, &hay[at..]).map(|k| at + k)
}

/// What a start tag's name means to the engine, from one lowercasing pass: every start tag asks
/// whether it is void, raw text (`script` among them), `svg` or `math`, and most are none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TagName {
    /// The name's stack key, as [`key_of`] makes it.
    key: u64,
    void: bool,
    /// A raw-text element's end tag name and kind ([`raw_kind`]).
    raw: Option<(&'static [u8], Option<RawKind>)>,
    foreign: Option<Ns>,
}

impl TagName {
    fn of(name: &[u8]) -> TagName {
        let key = key_of(name);
        let mut t = TagName {
            key,
            void: false,
            raw: None,
            foreign: None,
        };
        // The lowercase name, from the key for a short one (a whole-word store, read back in
        // parts) or lowercased anew for a longer one; the longest looked up here is `plaintext`.
        let mut low = [0u8; 12];
        if name.len() <= PACKED {
            low[..8].copy_from_slice(&key.to_le_bytes());
        } else if name.len() <= low.len() {
            for (slot, &b) in low.iter_mut().zip(name) {
                *slot = b.to_ascii_lowercase();
            }
        } else {
            return t;
        }
        let low = &low[..name.len()];
        t.void = is_void(low);
        t.raw = raw_kind(low);
        t.foreign = match low {
            b"svg" => Some(Ns::Svg),
            b"math" => Some(Ns::MathMl),
            _ => None,
        };
        t
    }

    fn is_script(&self) -> bool {
        matches!(self.raw, Some((_, Some(RawKind::Script { .. }))))
    }
}

fn one_of(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|l| name.eq_ignore_ascii_case(l))
}

// ---------------------------------------------------------------------------------------------
// The engine

/// What the bytes at hand are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Data,
    /// Inside an element whose content is text up to its end tag.
    /// `escape`: where a script is in HTML's escaped states: 0 none, 1 after `<!--`, 2 after
    /// `<!--` and `<script` (where `</script>` does not end it).
    Raw {
        kind: RawKind,
        end: &'static [u8],
        escape: u8,
    },
    /// Inside a comment; `dashes`: how many `-` came right before (at most 2).
    Comment {
        dashes: u8,
    },
    /// Inside `<![CDATA[`; `brackets`: how many `]` came right before.
    Cdata {
        brackets: u8,
    },
    /// After `<plaintext>`: the rest of the page.
    Plain,
    /// Gave up (a tag or the open-element stack past the memory limit): copy the rest.
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawKind {
    /// `textarea`, `title`: text, rewritten.
    RcData,
    /// `script`: rewritten only when it is JSON-LD.
    Script { json_ld: bool },
    /// `style` and friends: never rewritten.
    RawText,
    /// `noscript`: raw text to lol_html, which reads pages as a browser with scripts on does,
    /// but markup a visitor without JavaScript sees: rewritten like text.
    NoScript,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    /// The element's name, as [`key_of`] keys it.
    name: u64,
    excluded: bool,
    /// Closed by a later start tag ([`super::implied`]) while lol_html's selector matching still
    /// has it open: it counts no more as excluded, and waits for the end tag lol_html pairs
    /// with it.
    closed: bool,
    /// A `script[type="application/ld+json"]`: lol_html treats every script text inside it as
    /// JSON-LD (possible only when it was opened in foreign content).
    json_ld: bool,
}

impl OpenElement for Open {
    fn key(&self) -> u64 {
        self.name
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn close(&mut self) -> bool {
        self.closed = true;
        self.excluded
    }
}

/// All the engine carries from one byte to the next at a clean point ([`FastRewriter::is_clean`]:
/// no tag cut by a chunk edge, no candidate number held back): the mode, the open elements, the
/// namespaces and the text's look-back bytes. A replay ([`super::replay`]) keeps one at each clean
/// point of its recording, so that when a response turns out to differ from the recording, an
/// engine resumed at the last clean point sent reads only what follows it: from the same state
/// and the same bytes the engine writes the same output, however they are cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    mode: Mode,
    before: Before,
    stack: Box<[Open]>,
    excluded: usize,
    json_ld: usize,
    ns: Box<[Ns]>,
}

impl Snapshot {
    /// Bytes it holds, its own size included (the replay cache weighs recordings by it).
    pub(crate) fn bytes(&self) -> usize {
        Snapshot::size(self.stack.len(), self.ns.len())
    }

    /// What a snapshot of this many open elements and namespaces weighs.
    fn size(open: usize, namespaces: usize) -> usize {
        std::mem::size_of::<Snapshot>() + open * std::mem::size_of::<Open>() + namespaces * std::mem::size_of::<Ns>()
    }
}

/// Rewrites one UTF-8 HTML response as it streams; see the module doc.
pub struct FastRewriter {
    matcher: Arc<NumberMatcher>,
    to: Arc<Replacement>,
    exclude: Arc<Exclude>,
    limit: usize,
    stats: Arc<PageStats>,
    mode: Mode,
    /// The unread tail of the previous chunk: a tag, comment opening or end tag cut by the chunk
    /// boundary, read again with the next chunk.
    carry: Vec<u8>,
    text: TextStream,
    stack: Vec<Open>,
    /// Open elements that match `exclude`.
    excluded: usize,
    /// Open JSON-LD script elements.
    json_ld: usize,
    /// The namespace stack, as lol_html's tree-builder simulator keeps it (never empty).
    ns: Vec<Ns>,
    attrs: Vec<AttrSpan>,
    out: Vec<u8>,
    /// In the buffer being read: bytes before this are already in `out`.
    copied: usize,
    swapped: usize,
}

/// What a `<` in page text turned out to start.
enum Markup {
    /// Handled up to here.
    Done(usize),
    /// Only a `<` of text.
    Text,
    /// The buffer ends before it can be told.
    Incomplete,
}

impl FastRewriter {
    pub fn new(
        matcher: Arc<NumberMatcher>,
        to: Arc<Replacement>,
        exclude: Arc<Exclude>,
        limit: usize,
        stats: Arc<PageStats>,
    ) -> FastRewriter {
        FastRewriter {
            matcher,
            to,
            exclude,
            limit,
            stats,
            mode: Mode::Data,
            carry: Vec::new(),
            text: TextStream::default(),
            // Room for a typical page's nesting and a tag's attributes, so they are allocated
            // once per page rather than grown step by step.
            stack: Vec::with_capacity(32),
            excluded: 0,
            json_ld: 0,
            ns: vec![Ns::Html],
            attrs: Vec::with_capacity(8),
            out: Vec::new(),
            copied: 0,
            swapped: 0,
        }
    }

    /// Feeds the next chunk of the page.
    pub fn write(&mut self, chunk: &[u8]) {
        self.out.reserve(chunk.len() + chunk.len() / 8);
        if self.carry.is_empty() {
            let rest = self.read(chunk);
            self.carry.extend_from_slice(&chunk[rest..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let rest = self.read(&buf);
            buf.drain(..rest);
            self.carry = buf;
        }
        if self.carry.len() > self.limit {
            // One tag (or comment opening) larger than the limit: give up on the rest, as
            // lol_html's graceful bail-out does.
            let carry = std::mem::take(&mut self.carry);
            self.bail_out("a tag larger than the memory limit", &carry);
        }
        self.flush_count();
    }

    /// Ends the page: whatever was held back (an unfinished tag, a candidate number at the very
    /// end) is written as it came.
    pub fn end(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        if !carry.is_empty() {
            // A tag that never closed: the page ends inside it; nothing in it is rewritten.
            self.end_text();
            self.out.extend_from_slice(&carry);
        }
        self.end_text();
        self.flush_count();
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the output written so far is final for the bytes read so far: no tag or comment
    /// opening cut by the chunk edge is carried, no candidate number is held back, and the engine
    /// has not given up. What follows cannot change it ([`super::replay`] splices only up to such
    /// points).
    pub(crate) fn is_clean(&self) -> bool {
        self.carry.is_empty() && self.text.pending_len() == 0 && self.mode != Mode::Passthrough
    }

    /// The engine's state at a clean point (see [`Snapshot`]).
    pub(crate) fn snapshot(&self) -> Snapshot {
        debug_assert!(self.is_clean(), "a snapshot is taken at a clean point");
        Snapshot {
            mode: self.mode,
            before: self.text.look_back_bytes(),
            stack: self.stack.as_slice().into(),
            excluded: self.excluded,
            json_ld: self.json_ld,
            ns: self.ns.as_slice().into(),
        }
    }

    /// Whether the engine stands at a clean point in the state of `s`, compared in place (it is
    /// asked at every clean point a replay may rejoin at). Debug builds check it against a whole
    /// snapshot, so that a part of the state added to [`Snapshot`] cannot be left out here.
    pub(crate) fn state_is(&self, s: &Snapshot) -> bool {
        let same = self.is_clean()
            && self.mode == s.mode
            && self.text.look_back_bytes() == s.before
            && self.excluded == s.excluded
            && self.json_ld == s.json_ld
            && self.stack[..] == s.stack[..]
            && self.ns[..] == s.ns[..];
        debug_assert_eq!(same, self.is_clean() && self.snapshot() == *s);
        same
    }

    /// What [`FastRewriter::snapshot`] would take, in bytes, without taking it.
    pub(crate) fn snapshot_bytes(&self) -> usize {
        Snapshot::size(self.stack.len(), self.ns.len())
    }

    /// Puts a fresh engine (nothing read yet) in the state of `at`, as if it had read the bytes
    /// that led there; its output starts with what follows them.
    pub(crate) fn resume(&mut self, at: &Snapshot) {
        debug_assert!(self.out.is_empty() && self.carry.is_empty() && self.stack.is_empty());
        self.mode = at.mode;
        self.text = TextStream::resumed(at.before);
        self.stack.extend_from_slice(&at.stack);
        self.excluded = at.excluded;
        self.json_ld = at.json_ld;
        self.ns.clear();
        self.ns.extend_from_slice(&at.ns);
    }

    /// Output bytes written and not yet taken.
    pub(crate) fn output_len(&self) -> usize {
        self.out.len()
    }

    fn flush_count(&mut self) {
        if self.swapped > 0 {
            self.stats.swapped.fetch_add(self.swapped, Ordering::Relaxed);
            self.swapped = 0;
        }
    }

    fn bail_out(&mut self, why: &str, rest: &[u8]) {
        let pending = self.text.take_pending();
        self.out.extend_from_slice(&pending);
        self.out.extend_from_slice(rest);
        self.mode = Mode::Passthrough;
        self.stats.bailed_out.store(true, Ordering::Relaxed);
        tracing::warn!(why, "rewrite bailed out; the rest of the page passes unmodified");
    }

    /// Copies `buf[copied..upto]` to the output.
    #[inline]
    fn copy(&mut self, buf: &[u8], upto: usize) {
        if upto > self.copied {
            self.out.extend_from_slice(&buf[self.copied..upto]);
            self.copied = upto;
        }
    }

    /// Reads `buf` from the start; returns where its unread tail (to carry) starts.
    fn read(&mut self, buf: &[u8]) -> usize {
        self.copied = 0;
        let mut i = 0;
        let n = buf.len();
        while i < n {
            match self.mode {
                Mode::Passthrough => {
                    i = n;
                }
                Mode::Plain => {
                    i = n;
                }
                Mode::Data => match find_byte(b'<', &buf[i..]) {
                    None => {
                        self.text_run(buf, i, n);
                        i = n;
                    }
                    Some(k) => {
                        let lt = i + k;
                        self.text_run_before_lt(buf, i, lt);
                        match self.markup(buf, lt) {
                            Markup::Done(next) => i = next,
                            Markup::Text => {
                                self.text_run(buf, lt, lt + 1);
                                i = lt + 1;
                            }
                            Markup::Incomplete => {
                                self.copy(buf, lt);
                                return lt;
                            }
                        }
                    }
                },
                Mode::Raw { kind, end, escape } => {
                    let eligible = match kind {
                        RawKind::RcData | RawKind::NoScript => true,
                        RawKind::Script { json_ld } => json_ld || self.json_ld > 0,
                        RawKind::RawText => false,
                    } && self.excluded == 0;
                    let script = matches!(kind, RawKind::Script { .. });
                    let mut esc = escape;
                    let mut from = i;
                    loop {
                        let found = if esc > 0 {
                            memchr::memchr2(b'<', b'-', &buf[from..])
                        } else {
                            memchr::memchr(b'<', &buf[from..])
                        };
                        let Some(k) = found else {
                            self.raw_run(buf, i, n, eligible);
                            self.mode = Mode::Raw { kind, end, escape: esc };
                            i = n;
                            break;
                        };
                        let p = from + k;
                        // In a script, what lol_html (and a browser) reads as the script's end
                        // depends on `<!--`, `<script` and `-->` inside it (the spec's escaped
                        // and double-escaped script states).
                        let step = if buf[p] == b'-' {
                            match word_at(&buf[p..], b"-->", false) {
                                EndTag::Yes => {
                                    esc = 0;
                                    Step::Skip(p + 3)
                                }
                                EndTag::No => Step::Skip(p + 1),
                                EndTag::Maybe => Step::Carry,
                            }
                        } else if script && esc == 0 && buf.get(p + 1) != Some(&b'/') {
                            match word_at(&buf[p..], b"<!--", false) {
                                EndTag::Yes => {
                                    esc = 1;
                                    // The `--` may also be the start of `-->` (`<!-->`).
                                    Step::Skip(p + 2)
                                }
                                EndTag::No => Step::Skip(p + 1),
                                EndTag::Maybe => Step::Carry,
                            }
                        } else if esc == 1 && buf.get(p + 1) != Some(&b'/') {
                            match word_at(&buf[p..], b"<script", true) {
                                EndTag::Yes => {
                                    esc = 2;
                                    Step::Skip(p + 1)
                                }
                                EndTag::No => Step::Skip(p + 1),
                                EndTag::Maybe => Step::Carry,
                            }
                        } else {
                            match end_tag_at(&buf[p..], end) {
                                EndTag::No => Step::Skip(p + 1),
                                EndTag::Maybe => Step::Carry,
                                EndTag::Yes if esc == 2 => {
                                    esc = 1;
                                    Step::Skip(p + 2)
                                }
                                EndTag::Yes => Step::End,
                            }
                        };
                        match step {
                            Step::Skip(next) => from = next,
                            Step::Carry => {
                                // Cut by the chunk boundary: read it again with more.
                                self.raw_run(buf, i, p, eligible);
                                self.mode = Mode::Raw { kind, end, escape: esc };
                                self.copy(buf, p);
                                return p;
                            }
                            Step::End => {
                                self.raw_run(buf, i, p, eligible);
                                self.mode = Mode::Raw { kind, end, escape: esc };
                                match self.end_tag(buf, p) {
                                    Some(next) => {
                                        self.mode = Mode::Data;
                                        i = next;
                                    }
                                    None => {
                                        self.copy(buf, p);
                                        return p;
                                    }
                                }
                                break;
                            }
                        }
                    }
                }
                Mode::Comment { dashes } => {
                    let (next, closed, dashes) = scan_close(buf, i, b'-', dashes);
                    i = next;
                    self.mode = if closed { Mode::Data } else { Mode::Comment { dashes } };
                }
                Mode::Cdata { brackets } => {
                    let (next, closed, brackets) = scan_close(buf, i, b']', brackets);
                    i = next;
                    self.mode = if closed { Mode::Data } else { Mode::Cdata { brackets } };
                }
            }
        }
        self.copy(buf, n);
        n
    }

    /// Page text `buf[from..to]` of the current text node.
    #[inline]
    fn text_run(&mut self, buf: &[u8], from: usize, to: usize) {
        self.raw_run(buf, from, to, self.excluded == 0);
    }

    /// Page text `buf[from..to]` that a `<` follows. A number cannot run on past a `<`, so a run
    /// with fewer digits than the shortest form holds none, and, with nothing held back from
    /// earlier chunks, only its last bytes need keeping for the next run's left boundary. Most
    /// text between tags is like that (prices, dates, counts, words), and it skips the matcher.
    #[inline]
    fn text_run_before_lt(&mut self, buf: &[u8], from: usize, to: usize) {
        let run = &buf[from..to];
        let min = self.matcher.min_digits();
        if self.excluded == 0 && self.text.pending_len() == 0 && !has_digits(run, min) {
            self.text.skip(run);
            return;
        }
        self.text_run(buf, from, to);
    }

    fn raw_run(&mut self, buf: &[u8], from: usize, to: usize, eligible: bool) {
        if !eligible || from == to {
            return;
        }
        let mut count = 0;
        // What comes before the run goes out first, so its rewrite is written straight after it.
        self.copy(buf, from);
        if self.text.push_bytes(
            &self.matcher,
            &buf[from..to],
            false,
            &self.to,
            &mut count,
            &mut self.out,
        ) {
            self.copied = to;
        }
        self.swapped += count;
    }

    /// The current text node ends (markup follows): release any candidate held back.
    #[inline]
    fn end_text(&mut self) {
        if self.text.end_if_idle() {
            return;
        }
        let mut count = 0;
        self.text
            .push_bytes(&self.matcher, &[], true, &self.to, &mut count, &mut self.out);
        self.swapped += count;
    }

    /// Reads the markup that starts with the `<` at `lt`.
    fn markup(&mut self, buf: &[u8], lt: usize) -> Markup {
        let n = buf.len();
        let Some(&b1) = buf.get(lt + 1) else {
            return Markup::Incomplete;
        };
        match b1 {
            b if b.is_ascii_alphabetic() => match read_tag(buf, lt + 1, &mut self.attrs) {
                Some(tag) => {
                    self.end_text();
                    Markup::Done(self.start_tag(buf, tag))
                }
                None => Markup::Incomplete,
            },
            b'/' => {
                let Some(&b2) = buf.get(lt + 2) else {
                    return Markup::Incomplete;
                };
                if b2.is_ascii_alphabetic() {
                    return match self.end_tag(buf, lt) {
                        Some(next) => Markup::Done(next),
                        None => Markup::Incomplete,
                    };
                }
                // `</>` is dropped by browsers, `</3` and such are bogus comments: both end at `>`.
                self.bogus(buf, lt)
            }
            b'!' => {
                if n < lt + 4 {
                    // `<!--` or `<![CDATA[` may still be coming; a short `<!x>` is read below.
                    if buf[lt + 1..].iter().all(|&b| b == b'!' || b == b'-' || b == b'[') {
                        return Markup::Incomplete;
                    }
                    return self.bogus(buf, lt);
                }
                if &buf[lt + 2..lt + 4] == b"--" {
                    self.end_text();
                    // `<!-->` and `<!--->` close at once: start as if two dashes came before.
                    self.mode = Mode::Comment { dashes: 2 };
                    return Markup::Done(lt + 4);
                }
                if buf[lt + 2] == b'[' && self.ns() != Ns::Html {
                    if n < lt + 9 {
                        return Markup::Incomplete;
                    }
                    if &buf[lt + 2..lt + 9] == b"[CDATA[" {
                        self.end_text();
                        self.mode = Mode::Cdata { brackets: 0 };
                        return Markup::Done(lt + 9);
                    }
                }
                self.bogus(buf, lt)
            }
            b'?' => self.bogus(buf, lt),
            _ => Markup::Text,
        }
    }

    /// A doctype or bogus comment: up to the next `>`, copied.
    fn bogus(&mut self, buf: &[u8], lt: usize) -> Markup {
        match memchr::memchr(b'>', &buf[lt..]) {
            Some(k) => {
                self.end_text();
                Markup::Done(lt + k + 1)
            }
            None => Markup::Incomplete,
        }
    }

    fn ns(&self) -> Ns {
        self.ns.last().copied().unwrap_or(Ns::Html)
    }

    /// The HTML start tag `name`, while an exclusion is open: closes what it ends
    /// ([`close_implied`]), the excluded elements among them included.
    fn close_implied(&mut self, name: &[u8]) {
        let mut low = [0u8; 10];
        let Some(low) = low.get_mut(..name.len()) else { return };
        for (l, b) in low.iter_mut().zip(name) {
            *l = b.to_ascii_lowercase();
        }
        self.excluded -= close_implied(&mut self.stack, low);
    }

    fn leave_ns(&mut self) {
        if self.ns.len() > 1 {
            self.ns.pop();
        }
    }

    /// The end tag at `lt` (`</name ...>`): pops back to the open element of that name. `None`
    /// when the buffer ends inside it.
    fn end_tag(&mut self, buf: &[u8], lt: usize) -> Option<usize> {
        let tag = read_tag(buf, lt + 2, &mut self.attrs)?;
        self.end_text();
        let name = &buf[tag.name.clone()];
        let key = key_of(name);
        if let Some(at) = self.stack.iter().rposition(|o| o.name == key) {
            for open in self.stack.drain(at..) {
                self.excluded -= usize::from(open.excluded && !open.closed);
                self.json_ld -= usize::from(open.json_ld);
            }
        }
        let ns = self.ns();
        let leaves = if ns == Ns::Html {
            // Leaving an integration point back into the foreign element around it.
            match self.ns.len().checked_sub(2).map(|k| self.ns[k]) {
                Some(Ns::MathMl) => one_of(name, MATHML_TEXT_POINTS) || name.eq_ignore_ascii_case(b"annotation-xml"),
                Some(Ns::Svg) => one_of(name, SVG_HTML_POINTS),
                _ => false,
            }
        } else {
            (ns == Ns::Svg && name.eq_ignore_ascii_case(b"svg"))
                || (ns == Ns::MathMl && name.eq_ignore_ascii_case(b"math"))
                || one_of(name, &[b"p", b"br"])
        };
        if leaves {
            self.leave_ns();
        }
        Some(tag.end)
    }

    /// A start tag, read whole: excluded or not, its attributes rewritten, the stack and the text
    /// mode updated. Returns where reading goes on.
    fn start_tag(&mut self, buf: &[u8], tag: TagEnd) -> usize {
        let name = &buf[tag.name.clone()];
        let info = TagName::of(name);
        let excluded_here = !self.exclude.any_of.is_empty() && self.exclude.matches(buf, &tag.name, &self.attrs);
        // Namespaces first, as lol_html's tree-builder simulator: `svg` and `math` enter theirs
        // (even written `<svg/>`), foreign content is left on the breakout tags and entered
        // back into HTML at integration points; only HTML start tags switch text modes.
        let ns_before = self.ns();
        let attr_is = |a: &AttrSpan, n: &[u8]| buf[a.name.clone()].eq_ignore_ascii_case(n);
        // Whether the element itself is an HTML one (an integration point is not).
        let mut html = ns_before == Ns::Html && info.foreign.is_none();
        if let Some(ns) = info.foreign {
            self.ns.push(ns);
        } else if ns_before != Ns::Html {
            if one_of(name, FOREIGN_EXIT)
                || (name.eq_ignore_ascii_case(b"font")
                    && self
                        .attrs
                        .iter()
                        .any(|a| attr_is(a, b"color") || attr_is(a, b"size") || attr_is(a, b"face")))
            {
                self.leave_ns();
                html = self.ns() == Ns::Html;
            } else if !tag.self_closing
                && ((ns_before == Ns::Svg && one_of(name, SVG_HTML_POINTS))
                    || (ns_before == Ns::MathMl && one_of(name, MATHML_TEXT_POINTS))
                    || (ns_before == Ns::MathMl
                        && name.eq_ignore_ascii_case(b"annotation-xml")
                        && self.attrs.iter().any(|a| {
                            attr_is(a, b"encoding")
                                && a.value.clone().is_some_and(|v| {
                                    buf[v.clone()].eq_ignore_ascii_case(b"text/html")
                                        || buf[v].eq_ignore_ascii_case(b"application/xhtml+xml")
                                })
                        })))
            {
                self.ns.push(Ns::Html);
            }
        }
        if html && self.excluded > 0 {
            self.close_implied(name);
        }
        if !excluded_here && self.excluded == 0 {
            self.rewrite_attributes(buf);
        }
        // The first `type` counts, as for lol_html (and browsers): a later one is ignored.
        let is_json_ld = info.is_script()
            && self.attrs.iter().find(|a| attr_is(a, b"type")).is_some_and(|a| {
                a.value
                    .clone()
                    .is_some_and(|v| JSON_SCRIPT_TYPES.iter().any(|t| t.matches(&buf[v.clone()])))
            });
        // As lol_html's selector stack: void HTML elements are never open; in foreign content
        // `/>` closes.
        let pushed = if self.ns() == Ns::Html {
            !info.void
        } else {
            !tag.self_closing
        };
        if pushed {
            if (self.stack.len() + 1) * std::mem::size_of::<Open>() > self.limit {
                self.copy(buf, tag.end);
                self.bail_out("elements nested past the memory limit", &buf[tag.end..]);
                self.copied = buf.len();
                return buf.len();
            }
            self.stack.push(Open {
                name: info.key,
                excluded: excluded_here,
                closed: false,
                json_ld: is_json_ld,
            });
            self.excluded += usize::from(excluded_here);
            self.json_ld += usize::from(is_json_ld);
        }
        if ns_before == Ns::Html
            && let Some((end, kind)) = info.raw
        {
            self.mode = match kind {
                None => Mode::Plain,
                Some(RawKind::Script { .. }) => Mode::Raw {
                    kind: RawKind::Script { json_ld: is_json_ld },
                    end,
                    escape: 0,
                },
                Some(kind) => Mode::Raw { kind, end, escape: 0 },
            };
        }
        // Not copied yet: untouched bytes are copied in one go before the next change (or at
        // the end of the buffer), not tag by tag.
        tag.end
    }

    /// Rewrites the listed attributes of the tag just read, in place.
    fn rewrite_attributes(&mut self, buf: &[u8]) {
        let min = self.matcher.min_digits();
        for k in 0..self.attrs.len() {
            let Some(value) = self.attrs[k].value.clone() else {
                continue;
            };
            if value.len() < min {
                continue;
            }
            let name = &buf[self.attrs[k].name.clone()];
            let href = name.eq_ignore_ascii_case(b"href");
            let data = name.len() > 5 && name[..5].eq_ignore_ascii_case(b"data-");
            let listed = NUMBER_ATTRIBUTES
                .iter()
                .any(|a| name.eq_ignore_ascii_case(a.as_bytes()));
            if !(href || data || listed) {
                continue;
            }
            let v = &buf[value.clone()];
            if !v.iter().any(u8::is_ascii_digit) {
                continue;
            }
            if href {
                let t = v.trim_ascii_start();
                if !PHONE_SCHEMES
                    .iter()
                    .any(|s| t.len() >= s.len() && t[..s.len()].eq_ignore_ascii_case(s.as_bytes()))
                {
                    continue;
                }
            }
            let mut count = 0;
            // Only values that passed the filters above get here, and nearly all hold the number.
            self.copy(buf, value.start);
            if self.matcher.rewrite_bytes(v, &self.to, &mut count, &mut self.out) {
                self.copied = value.end;
                self.swapped += count;
            }
        }
    }
}

/// Whether `run` holds at least `min` ASCII digits. Counted 64 bytes at a time into a byte
/// accumulator (which the compiler turns into a few vector instructions per block) and stopped
/// as soon as the answer is known: most text runs between tags are short or digit-free.
#[inline]
fn has_digits(run: &[u8], min: usize) -> bool {
    if run.len() < min {
        return false;
    }
    let mut count = 0;
    for block in run.chunks(64) {
        count += usize::from(block.iter().fold(0u8, |a, &b| a + u8::from(b.wrapping_sub(b'0') < 10)));
        if count >= min {
            return true;
        }
    }
    false
}

/// Looks for the end of a comment (`-->` or `--!>`, `c` = `-`) or CDATA section (`]]>`, `c` =
/// `]`) from `i`. `run` says what came right before `i`: how many `c` (at most 2), or 3 for
/// `--!`. Returns where reading goes on, whether it closed there, and the run at the buffer's end.
fn scan_close(buf: &[u8], i: usize, c: u8, run: u8) -> (usize, bool, u8) {
    // The carried run counts only up to the first `>`, which breaks any run.
    let (mut start, mut carried) = (i, run);
    while let Some(k) = memchr::memchr(b'>', &buf[start..]) {
        let gt = start + k;
        if run_before(&buf[start..gt], carried, c) >= 2 {
            return (gt + 1, true, 0);
        }
        start = gt + 1;
        carried = 0;
    }
    (buf.len(), false, run_before(&buf[start..], carried, c))
}

/// The run at the end of `seg` (see [`scan_close`]), given the run before it.
fn run_before(seg: &[u8], carried: u8, c: u8) -> u8 {
    if seg.is_empty() {
        return carried;
    }
    if c == b'-'
        && let Some((b'!', rest)) = seg.split_last()
    {
        return if run_before(rest, carried, c) == 2 { 3 } else { 0 };
    }
    let own = seg.iter().rev().take(2).take_while(|&&b| b == c).count() as u8;
    if usize::from(own) == seg.len() {
        let carried = if carried == 3 { 0 } else { carried };
        (own + carried).min(2)
    } else {
        own
    }
}

/// Whether `at` (starting with `<`, in a raw-text element closed by `</end`) is that end tag.
enum EndTag {
    Yes,
    No,
    /// The buffer ends before it can be told.
    Maybe,
}

/// How the raw-text loop goes on after a `<` or `-`.
enum Step {
    Skip(usize),
    Carry,
    End,
}

/// Whether `at` starts with `word` (ASCII case-insensitive), followed, when `term`, by a byte
/// that ends a tag name.
fn word_at(at: &[u8], word: &[u8], term: bool) -> EndTag {
    let have = at.len().min(word.len());
    if !at[..have].eq_ignore_ascii_case(&word[..have]) {
        return EndTag::No;
    }
    if have < word.len() {
        return EndTag::Maybe;
    }
    if !term {
        return EndTag::Yes;
    }
    match at.get(word.len()) {
        None => EndTag::Maybe,
        Some(b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>') => EndTag::Yes,
        Some(_) => EndTag::No,
    }
}

fn end_tag_at(at: &[u8], end: &[u8]) -> EndTag {
    let want = end.len() + 3; // `<` `/` name and one byte after it
    let have = &at[..at.len().min(want)];
    let prefix_ok = have.get(1).is_none_or(|&b| b == b'/')
        && have
            .get(2..(2 + end.len()).min(have.len()))
            .is_none_or(|n| n.eq_ignore_ascii_case(&end[..n.len()]));
    if !prefix_ok {
        return EndTag::No;
    }
    match at.get(2 + end.len()) {
        None => EndTag::Maybe,
        Some(b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>') => EndTag::Yes,
        Some(_) => EndTag::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::PhoneNumber;

    fn engine() -> FastRewriter {
        let n = |s| PhoneNumber::parse(s, "US").unwrap();
        let exclude = ["[data-telswap-ignore]".to_string(), "div.no-swap".to_string()];
        FastRewriter::new(
            Arc::new(NumberMatcher::new(&[n("+1 555-010-0000")])),
            Arc::new(Replacement::new(n("+1 555-010-1001"))),
            Arc::new(Exclude::compile(&exclude).unwrap()),
            1 << 20,
            Arc::new(PageStats::default()),
        )
    }

    #[test]
    fn find_byte_finds_what_memchr_finds() {
        let hay: Vec<u8> = (0..40u8).map(|k| b'a' + k % 26).collect();
        for len in 0..=hay.len() {
            for at in 0..=len {
                let mut h = hay[..len].to_vec();
                if at < len {
                    h[at] = b'<';
                }
                if at + 3 < len {
                    h[at + 3] = b'<';
                }
                assert_eq!(find_byte(b'<', &h), memchr::memchr(b'<', &h), "{len} {at}");
                // Bytes one above and with the high bit: no false match before the true one.
                assert_eq!(find_byte(b'=', &h), memchr::memchr(b'=', &h));
                assert_eq!(find_byte(0xbc, &h), None);
            }
        }
    }

    #[test]
    fn a_short_word_is_the_bytes_packed_and_lowercased_as_byte_by_byte() {
        let bytes: Vec<u8> = (0..=255u8).rev().chain(b"DiVsPaN".iter().copied()).collect();
        for n in 0..=8 {
            for s in bytes.windows(n.max(1)).map(|w| &w[..n]).chain([&b"ABCDEFGH"[..n]]) {
                let packed = s
                    .iter()
                    .enumerate()
                    .fold(0u64, |k, (i, &b)| k | u64::from(b) << (8 * i));
                assert_eq!(short_word(s), packed, "{s:?}");
                let lower = s
                    .iter()
                    .enumerate()
                    .fold(0u64, |k, (i, &b)| k | u64::from(b.to_ascii_lowercase()) << (8 * i));
                assert_eq!(ascii_lower_word(packed), lower, "{s:?}");
            }
        }
        // Every byte value in every position, beside bytes that would carry if any could.
        for b in 0..=255u8 {
            for at in 0..8 {
                let word = u64::from_le_bytes(std::array::from_fn(|i| if i == at { b } else { 0xff }));
                let want = u64::from_le_bytes(std::array::from_fn(
                    |i| if i == at { b.to_ascii_lowercase() } else { 0xff },
                ));
                assert_eq!(ascii_lower_word(word), want, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn a_tag_name_means_the_same_in_any_case() {
        // Every name the engine tells apart, 1 to 9 bytes (short ones take their lowercase bytes
        // from the key, longer ones are lowercased anew), and a few it does not.
        let names = [
            "a",
            "p",
            "br",
            "hr",
            "col",
            "img",
            "wbr",
            "xmp",
            "svg",
            "area",
            "base",
            "link",
            "math",
            "meta",
            "embed",
            "frame",
            "input",
            "param",
            "style",
            "title",
            "track",
            "iframe",
            "keygen",
            "script",
            "source",
            "bgsound",
            "noembed",
            "basefont",
            "noframes",
            "noscript",
            "textarea",
            "plaintext",
            "div",
            "section",
            "blockquote",
        ];
        for name in names {
            let low = TagName::of(name.as_bytes());
            let upper = name.to_ascii_uppercase();
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c })
                .collect();
            for other in [upper, mixed] {
                assert_eq!(TagName::of(other.as_bytes()), low, "{other}");
            }
            let told_apart = low.void || low.raw.is_some() || low.foreign.is_some();
            assert_eq!(
                told_apart,
                !["a", "p", "div", "section", "blockquote"].contains(&name),
                "{name}"
            );
        }
    }

    #[test]
    fn name_keys_fold_case_and_tell_names_apart() {
        assert_eq!(key_of(b"DiV"), TagName::of(b"div").key);
        assert_eq!(key_of(b"FOREIGNOBJECT"), TagName::of(b"foreignObject").key);
        let names: [&[u8]; 9] = [
            b"a",
            b"a\0",
            b"ab",
            b"b",
            b"article",
            b"articles",
            b"blockquote",
            b"",
            b"\0",
        ];
        let keys: std::collections::HashSet<u64> = names.iter().map(|n| key_of(n)).collect();
        assert_eq!(keys.len(), names.len());
    }

    /// Every state the engine keeps across bytes, with numbers right after each of them.
    const PAGE: &str = "<!doctype html><title>555-010-0000</title><p>Call (555) 010-0000</p>\
        <!-- 555-010-0000 --><script>var a = '<!--<script>'; // 555-010-0000</script> 555-010-0000 --></script>5550100000\
        <script type=\"application/ld+json\">{\"telephone\": \"+1-555-010-0000\"}</script>\
        <div data-telswap-ignore><p>555.010.0000</p><span>555 010 0000</span></div>555.010.0000\
        <div class=no-swap><div>555-010-0000</div>555-010-0000</div>555-010-0000\
        <svg><desc><b>555-010-0000</b></desc><![CDATA[ 555-010-0000 ]]></svg>555-010-0000\
        <math><mi>555-010-0000</mi></math><style>555-010-0000</style>x555-010-0000 5 555-010-0000\
        <a href=\"tel:+15550100000\" title='555-010-0000'>5550100000</a><textarea>555-010-0000</textarea>";

    #[test]
    fn an_engine_resumed_from_a_snapshot_writes_what_the_whole_run_writes() {
        let page = PAGE.as_bytes();
        let mut whole = engine();
        whole.write(page);
        whole.end();
        let want = whole.take_output();
        let mut resumed_states = std::collections::HashSet::new();
        for cut in 0..=page.len() {
            let mut first = engine();
            first.write(&page[..cut]);
            if !first.is_clean() {
                continue;
            }
            let state = first.snapshot();
            let mut got = first.take_output();
            let mut next = engine();
            next.resume(&state);
            assert_eq!(next.snapshot(), state, "resume restores the whole state");
            assert!(next.state_is(&state) && first.state_is(&state));
            next.write(&page[cut..]);
            next.end();
            got.extend(next.take_output());
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "resumed after byte {cut}"
            );
            resumed_states.insert(format!("{:?}/{}/{:?}", state.mode, state.excluded, state.ns));
        }
        // The page puts clean points in comments, scripts, excluded elements and foreign content.
        assert!(resumed_states.len() >= 12, "{resumed_states:?}");
    }
}
