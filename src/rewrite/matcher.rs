//! Finding a site's numbers in raw HTML text and writing a tracking number in the same shape.
//!
//! Text is matched *raw*, as lol_html hands it over: entities are not decoded, so a separator may
//! be `&nbsp;` or `&#8209;` and a plus sign `%2B` (in `tel:` URLs), `&#43;` or `\u002B` (in
//! JSON, which JSON-LD writers escape it as). Matching works on
//! digits: a candidate is a run of digits joined by separators, and it matches when its digits
//! equal one of a configured number's [`Form`](super::phone::Form)s. Replacing substitutes digits
//! in place and copies every other byte, so the page keeps its own separators, grouping,
//! parentheses, prefix style and entity encoding.
//!
//! The scan is built to cost almost nothing on text without a candidate: one table lookup per
//! byte, and a candidate is abandoned at the first digit that no form continues with.

use super::phone::{Form, FormKind, PhoneNumber};

/// Up to this many separator tokens may stand between two digits (`) - ` is three).
const MAX_SEPARATOR_RUN: usize = 3;

/// Bytes that can start a token the scanner cares about: digits, and the first byte of a plus
/// sign written literally (`+`), as an entity (`&#43;`, `&plus;`), percent-encoded (`%2B`) or
/// as a JSON escape (`\u002B`).
static INTERESTING: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'0';
    while b <= b'9' {
        t[b as usize] = true;
        b += 1;
    }
    t[b'+' as usize] = true;
    t[b'&' as usize] = true;
    t[b'%' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Digit(u8),
    /// A separator; `spacing` separators (space, no-break space) may be followed by an unrelated
    /// number, the others (`-`, `.`, `/`) glue digit groups into one longer token.
    Sep {
        len: usize,
        spacing: bool,
    },
    Plus(usize),
    /// An entity or escape cut off by the end of the buffer: more text may complete it.
    Incomplete,
    Other(u8),
    End,
}

fn sep(len: usize, spacing: bool) -> Token {
    Token::Sep { len, spacing }
}

/// Classifies a code point reached through an entity or escape.
fn classify_code_point(cp: u32, len: usize) -> Token {
    match cp {
        0x20 | 0xA0 | 0x2009 | 0x202F => sep(len, true),
        0x2D | 0x2E | 0x2F | 0x28 | 0x29 | 0x2010 | 0x2011 | 0x2013 => sep(len, false),
        0x2B => Token::Plus(len),
        // A letter or digit written as an entity or escape still glues to a number.
        0x30..=0x39 | 0x41..=0x5A | 0x61..=0x7A => Token::Other(cp as u8),
        _ => Token::Other(b'&'),
    }
}

#[inline(always)]
fn token_at(text: &[u8], i: usize) -> Token {
    let Some(&b) = text.get(i) else { return Token::End };
    match b {
        b'0'..=b'9' => Token::Digit(b),
        b' ' => sep(1, true),
        b'-' | b'.' | b'/' | b'(' | b')' => sep(1, false),
        b'+' => Token::Plus(1),
        // windows-1252's no-break space and en dash, on a legacy page read as bytes: never a
        // token of their own in UTF-8 (they continue a character), and lol_html reading the
        // page as windows-1252 sees them as these separators too.
        0xA0 => sep(1, true),
        0x96 => sep(1, false),
        0xC2 | 0xE2 | b'&' | b'%' | b'\\' => token_at_escaped(text, i, b),
        _ => Token::Other(b),
    }
}

/// The multi-byte tokens: UTF-8 separators, entities, percent and JSON escapes.
#[inline(never)]
fn token_at_escaped(text: &[u8], i: usize, b: u8) -> Token {
    match b {
        // A separator cut by the end of the buffer is `Incomplete`, as a cut entity is: read
        // whole in the next chunk, it must mean what it means when the text comes in one piece.
        0xC2 => match text.get(i + 1) {
            Some(0xA0) => sep(2, true),
            None => Token::Incomplete,
            _ => Token::Other(b),
        },
        0xE2 => match (text.get(i + 1), text.get(i + 2)) {
            // U+2010 hyphen, U+2011 non-breaking hyphen, U+2013 en dash
            (Some(0x80), Some(0x90 | 0x91 | 0x93)) => sep(3, false),
            // U+2009 thin space, U+202F narrow no-break space
            (Some(0x80), Some(0x89 | 0xAF)) => sep(3, true),
            (None, _) | (Some(0x80), None) => Token::Incomplete,
            _ => Token::Other(b),
        },
        _ => match escaped_at(text, i) {
            Escaped::CodePoint(cp, len) => classify_code_point(cp, len),
            Escaped::Incomplete => Token::Incomplete,
            Escaped::Not => Token::Other(b),
        },
    }
}

/// What an entity, percent escape or JSON escape at `i` encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escaped {
    /// This code point, written in this many bytes.
    CodePoint(u32, usize),
    /// Cut off by the end of the buffer: more text may complete it.
    Incomplete,
    /// Not an escape (of anything known): the byte is text.
    Not,
}

/// The escape that starts at `i`, by its first byte (`&`, `%` or `\\`).
fn escaped_at(text: &[u8], i: usize) -> Escaped {
    match text[i] {
        b'&' => entity_at(text, i),
        b'%' => percent_at(text, i),
        b'\\' => json_escape_at(text, i),
        _ => Escaped::Not,
    }
}

/// A JSON (and JavaScript) `\uXXXX` escape: `\u002B`, `\u00A0`, `\u2011` ...
fn json_escape_at(text: &[u8], i: usize) -> Escaped {
    let rest = &text[i + 1..text.len().min(i + 6)];
    let well_begun = rest.first().is_none_or(|&c| c == b'u') && rest.iter().skip(1).all(u8::is_ascii_hexdigit);
    match (well_begun, rest.len()) {
        (false, _) => Escaped::Not,
        (true, 5) => parse_u32(&rest[1..], 16).map_or(Escaped::Not, |cp| Escaped::CodePoint(cp, 6)),
        (true, _) => Escaped::Incomplete,
    }
}

/// `u32::from_str_radix` on bytes, without the UTF-8 check: an optional `+`, then one or more
/// digits of `radix`, no overflow.
fn parse_u32(digits: &[u8], radix: u32) -> Option<u32> {
    let digits = match digits {
        [b'+', rest @ ..] if !rest.is_empty() => rest,
        _ => digits,
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(radix)?;
        acc.checked_mul(radix)?.checked_add(d)
    })
}

/// `&nbsp;`, `&#160;`, `&#xA0;`, `&#8209;`, `&#40;`, `&plus;` ... Named entities we do not know
/// are ordinary text.
fn entity_at(text: &[u8], i: usize) -> Escaped {
    const NAMED: &[(&[u8], u32)] = &[
        (b"nbsp", 0xA0),
        (b"NonBreakingSpace", 0xA0),
        (b"ndash", 0x2013),
        (b"hyphen", 0x2010),
        (b"dash", 0x2010),
        (b"lpar", 0x28),
        (b"rpar", 0x29),
        (b"period", 0x2E),
        (b"sol", 0x2F),
        (b"plus", 0x2B),
        (b"thinsp", 0x2009),
    ];
    let rest = &text[i + 1..];
    let Some(semi) = rest.iter().take(18).position(|&c| c == b';') else {
        let partial = rest.len() < 18 && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'#');
        return if partial { Escaped::Incomplete } else { Escaped::Not };
    };
    let body = &rest[..semi];
    let len = semi + 2;
    let cp = if let Some(num) = body.strip_prefix(b"#") {
        let (digits, radix) = match num.first() {
            Some(b'x' | b'X') => (&num[1..], 16),
            _ => (num, 10),
        };
        parse_u32(digits, radix)
    } else {
        NAMED.iter().find(|(name, _)| *name == body).map(|(_, cp)| *cp)
    };
    cp.map_or(Escaped::Not, |cp| Escaped::CodePoint(cp, len))
}

/// Percent-encoded separators and plus, as found in `tel:` URLs: `%20`, `%2D`, `%2B`, `%C2%A0`.
fn percent_at(text: &[u8], i: usize) -> Escaped {
    let hex = |j: usize| -> Option<Option<u8>> {
        match (text.get(j), text.get(j + 1)) {
            (Some(a), Some(b)) => Some(parse_u32(&[*a, *b], 16).map(|v| v as u8)),
            _ => None,
        }
    };
    match hex(i + 1) {
        None => Escaped::Incomplete,
        Some(None) => Escaped::Not,
        Some(Some(0xC2)) => match (text.get(i + 3), hex(i + 4)) {
            (None, _) | (Some(b'%'), None) => Escaped::Incomplete,
            (Some(b'%'), Some(Some(0xA0))) => Escaped::CodePoint(0xA0, 6),
            _ => Escaped::Not,
        },
        Some(Some(v)) => Escaped::CodePoint(u32::from(v), 3),
    }
}

/// One way a configured number can be written, compiled for scanning.
#[derive(Debug, Clone)]
struct Target {
    kind: FormKind,
    digits: Vec<u8>,
    /// Forms that make sense after a `+`: those that start with the country code.
    after_plus: bool,
    /// The number's country calling code.
    cc: u16,
}

/// A match of a configured number in text: bytes `start..end` (digits and the separators between
/// them, plus a leading `+`), which form it was written in, and the matched number's country
/// calling code (a site may list numbers of several countries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub kind: FormKind,
    pub cc: u16,
}

/// What the scanner found from a given offset on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    Found(Match),
    /// A candidate starts here but cannot be decided before more text arrives.
    Open(usize),
    Done,
}

/// The configured numbers of one site, compiled for finding them in text.
///
/// Every form of `numbers`, each digit string once (the first number's form wins), in order.
fn distinct_forms(numbers: &[PhoneNumber]) -> Vec<(Form, u16)> {
    let mut out: Vec<(Form, u16)> = Vec::new();
    for n in numbers {
        for f in n.forms() {
            if !out.iter().any(|(o, _)| o.digits == f.digits) {
                out.push((f, n.calling_code()));
            }
        }
    }
    out
}

/// The most forms a site's numbers may make (see [`NumberMatcher::forms_of`]).
pub const MAX_FORMS: usize = 64;

/// Targets (at most 64) are bits of a `u64`; a candidate keeps the set of targets its digits so
/// far agree with, narrowed by one table lookup per digit.
#[derive(Debug, Clone)]
pub struct NumberMatcher {
    targets: Vec<Target>,
    /// Bit `d` set when some form starts with digit `d`: the cheap first test of a candidate.
    first_digits: u16,
    /// The digits of the shortest form.
    min_digits: usize,
    /// `cont[n][d]`: the targets whose digit `n` is `d`.
    cont: Vec<[u64; 10]>,
    /// `ends[n]`: the targets of exactly `n` digits.
    ends: Vec<u64>,
    /// The targets a candidate starts with: all of them, or after a `+` those with a country code.
    start_any: u64,
    start_plus: u64,
}

/// How many bytes before a candidate its left boundary reads: a JSON `\uXXXX` escape and the
/// byte before it.
const LOOK_BACK: usize = 7;

/// The up-to-[`LOOK_BACK`] bytes that came before the text being scanned (0 = none), so a
/// candidate at offset 0 can be judged by what precedes it in an earlier chunk. Kept in one
/// register, the last byte in the low eight bits: every text run moves it along.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Before(u64);

impl Before {
    pub const NONE: Before = Before(0);
    const MASK: u64 = (1 << (8 * LOOK_BACK)) - 1;

    /// The `k`-th byte from the end (1: the last).
    #[inline]
    fn nth_last(self, k: usize) -> u8 {
        (self.0 >> (8 * (k - 1))) as u8
    }

    /// These bytes, then `read`.
    #[inline]
    fn then(self, read: &[u8]) -> Before {
        if let Some(tail) = read.last_chunk::<8>() {
            return Before(u64::from_be_bytes(*tail) & Self::MASK);
        }
        let v = read.iter().fold(self.0, |v, &b| (v << 8) | u64::from(b));
        Before(v & Self::MASK)
    }
}

impl NumberMatcher {
    /// How many digit strings (forms) `numbers` make: at most [`MAX_FORMS`] are matched.
    pub fn forms_of(numbers: &[PhoneNumber]) -> usize {
        distinct_forms(numbers).len()
    }

    pub fn new(numbers: &[PhoneNumber]) -> NumberMatcher {
        let mut targets: Vec<Target> = distinct_forms(numbers)
            .into_iter()
            .map(|(f, cc)| Target {
                after_plus: matches!(f.kind, FormKind::Intl | FormKind::IntlTrunk),
                kind: f.kind,
                digits: f.digits.into_bytes(),
                cc,
            })
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.digits.len()));
        // The alive-set below is a u64 bit mask. The rules refuse more (`forms_of`).
        targets.truncate(MAX_FORMS);
        let first_digits = targets.iter().fold(0u16, |m, t| m | 1 << (t.digits[0] - b'0'));
        let max_digits = targets.iter().map(|t| t.digits.len()).max().unwrap_or(0);
        let min_digits = targets.iter().map(|t| t.digits.len()).min().unwrap_or(0);
        let mut cont = vec![[0u64; 10]; max_digits];
        let mut ends = vec![0u64; max_digits + 1];
        let (mut start_any, mut start_plus) = (0u64, 0u64);
        for (k, t) in targets.iter().enumerate() {
            let bit = 1u64 << k;
            for (n, &d) in t.digits.iter().enumerate() {
                cont[n][(d - b'0') as usize] |= bit;
            }
            ends[t.digits.len()] |= bit;
            start_any |= bit;
            if t.after_plus {
                start_plus |= bit;
            }
        }
        NumberMatcher {
            targets,
            first_digits,
            min_digits,
            cont,
            ends,
            start_any,
            start_plus,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The fewest digits a match has (0 without numbers): text shorter than this holds none.
    pub fn min_digits(&self) -> usize {
        self.min_digits
    }

    /// Finds the first match or open candidate at or after `from`. `before` holds the bytes that
    /// precede `text`; `last` says no more text follows (the end of the text node or value).
    pub fn scan(&self, text: &[u8], from: usize, before: Before, last: bool) -> Scan {
        if self.targets.is_empty() {
            return Scan::Done;
        }
        let mut i = from;
        while i < text.len() {
            match first_interesting(&text[i..]) {
                Some(skip) => i += skip,
                None => break,
            }
            let b = text[i];
            let prev = byte_before(text, i, before, 1);
            if b.is_ascii_digit() {
                // Inside a digit group; an escape's last hex digit (`\u00a0555`, `%20555`)
                // ends none.
                if prev.is_ascii_digit() && escape_before(text, i, before).is_none() {
                    i += 1;
                    continue;
                }
                if self.first_digits & (1 << (b - b'0')) != 0 && !self.second_digit_fails(text, i) {
                    match self.try_at(text, i, before, last, false) {
                        Attempt::Found(m) => return Scan::Found(m),
                        Attempt::Open => return Scan::Open(i),
                        Attempt::Fail => {}
                    }
                }
                // A match never starts inside a digit group.
                i += 1;
                while i < text.len() && text[i].is_ascii_digit() {
                    i += 1;
                }
                continue;
            }
            match token_at(text, i) {
                Token::Plus(len) => {
                    match self.try_at(text, i, before, last, true) {
                        Attempt::Found(m) => return Scan::Found(m),
                        Attempt::Open => return Scan::Open(i),
                        Attempt::Fail => {}
                    }
                    i += len;
                }
                Token::Incomplete if !last => return Scan::Open(i),
                Token::Sep { len, .. } => i += len,
                // A whole escape of something else (`\u2022`, `%E2`): its hex digits never
                // start a digit group, which would swallow a number right after it (as they
                // would not when a chunk edge falls between the two).
                Token::Other(_) if matches!(b, b'\\' | b'%') => match escaped_at(text, i) {
                    Escaped::CodePoint(_, len) => i += len,
                    _ => i += 1,
                },
                _ => i += 1,
            }
        }
        Scan::Done
    }

    /// Whether the digit after the one at `i` already rules out every form (most digit groups
    /// that merely start like a number: `573`, `2020`), which spares a full attempt.
    #[inline]
    fn second_digit_fails(&self, text: &[u8], i: usize) -> bool {
        match (text.get(i + 1), self.cont.get(1)) {
            (Some(&d2), Some(cont1)) if d2.is_ascii_digit() => {
                self.start_any & self.cont[0][(text[i] - b'0') as usize] & cont1[(d2 - b'0') as usize] == 0
            }
            _ => false,
        }
    }

    fn try_at(&self, text: &[u8], start: usize, before: Before, last: bool, plus: bool) -> Attempt {
        if !left_boundary_ok(text, start, before) {
            return Attempt::Fail;
        }
        let mut alive = if plus { self.start_plus } else { self.start_any };
        let mut pos = start;
        if plus {
            let Token::Plus(len) = token_at(text, pos) else {
                return Attempt::Fail;
            };
            pos += len;
        }
        let mut n = 0usize;
        let mut seps = 0usize;
        // Longest completed form so far: (target index, end offset). Targets have distinct digits,
        // so at most one completes at a given digit count, and each completion is longer than
        // the one before.
        let mut best: Option<(usize, usize)> = None;
        let mut undecided = false;
        loop {
            if let Some(&b) = text.get(pos)
                && b.is_ascii_digit()
            {
                // Alive targets have more than `n` digits, so `cont[n]` exists while any is.
                let Some(cont) = self.cont.get(n) else { break };
                alive &= cont[(b - b'0') as usize];
                if alive == 0 {
                    break;
                }
                n += 1;
                pos += 1;
                seps = 0;
                let done = alive & self.ends[n];
                if done != 0 {
                    match right_boundary(text, pos, last) {
                        Boundary::Ok => best = Some((done.trailing_zeros() as usize, pos)),
                        Boundary::Undecided => undecided = true,
                        Boundary::Blocked => {}
                    }
                    alive &= !done;
                    if alive == 0 {
                        break;
                    }
                }
                continue;
            }
            match token_at(text, pos) {
                Token::Sep { len, .. } if n > 0 || plus => {
                    seps += 1;
                    if seps > MAX_SEPARATOR_RUN {
                        break;
                    }
                    pos += len;
                }
                Token::End | Token::Incomplete if !last => {
                    // A longer form may still complete in the next chunk.
                    undecided = true;
                    break;
                }
                _ => break,
            }
        }
        if undecided {
            // The longest reading is not known before more text arrives.
            return Attempt::Open;
        }
        match best {
            Some((k, end)) => Attempt::Found(Match {
                start,
                end,
                kind: self.targets[k].kind,
                cc: self.targets[k].cc,
            }),
            None => Attempt::Fail,
        }
    }

    /// Rewrites one complete value (an attribute, a JSON-LD string), or `None` when it holds no
    /// match. `count` is increased by the number of replacements.
    pub fn rewrite_value(&self, value: &str, to: &Replacement, count: &mut usize) -> Option<String> {
        let mut out = Vec::new();
        self.rewrite_bytes(value.as_bytes(), to, count, &mut out)
            .then(|| into_string(out))
    }

    /// [`rewrite_value`](Self::rewrite_value) on raw bytes (the byte-level engine's attribute
    /// values, which are not checked to be UTF-8: bytes other than the matched digits are copied),
    /// appending the rewritten value to `out` (the engine's output, so a changed attribute costs
    /// no buffer of its own). Returns whether it held a match; when not, nothing was appended.
    pub fn rewrite_bytes(&self, bytes: &[u8], to: &Replacement, count: &mut usize, out: &mut Vec<u8>) -> bool {
        // A complete value is a text's last segment: `scan` holds no candidate open at its end,
        // so a change covers the whole value.
        let held = rewrite_segment(self, bytes, 0, Before::NONE, true, to, count, out);
        debug_assert!(
            held.is_none_or(|h| h == bytes.len()),
            "nothing is held back of a complete value"
        );
        held.is_some()
    }
}

/// Text rewritten by [`Replacement::write_bytes`]: ASCII digits replaced ASCII digits and every
/// other byte was copied whole between them, so it is still UTF-8 (the lossy branch is never
/// taken).
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

enum Attempt {
    Found(Match),
    Open,
    Fail,
}

enum Boundary {
    Ok,
    Blocked,
    Undecided,
}

#[inline]
fn byte_before(text: &[u8], i: usize, before: Before, k: usize) -> u8 {
    if i >= k { text[i - k] } else { before.nth_last(k - i) }
}

/// Whether what comes right before `start` makes it a JSON value: `[`, `,` or `":`, with at most
/// one space between.
fn json_value_before(text: &[u8], start: usize, before: Before) -> bool {
    let at = |k| byte_before(text, start, before, k);
    let k = if at(1) == b' ' { 2 } else { 1 };
    match at(k) {
        b'[' | b',' => true,
        b':' => at(k + 1) == b'"',
        _ => false,
    }
}

/// What may not come right before a number: a letter or digit (an id such as `ORD5550100000`),
/// a currency sign (a price), `#` or `@`, a `+` that did not start this match (`650+253+1234`),
/// or a gluing separator after a letter or digit (`12-555-010-0000`, `ORD-5550100000` are ids).
///
/// In JSON, `\n`, `\t`, `\r`, `\b` and `\f` read as the spaces they stand for, and `\/` as
/// the slash it is (the byte before its backslash counts). A `\uXXXX` or `%XX` escape stands for
/// what it encodes (`"Tel.\u00a0555…"` is a no-break space before the number, `\u0041` a
/// letter), and so does a character of several bytes in UTF-8 ([`char_glues_left`]).
fn left_boundary_ok(text: &[u8], start: usize, before: Before) -> bool {
    let at = |k| byte_before(text, start, before, k);
    let b1 = at(1);
    // Most numbers follow a space, `>`, `(`, a quote or `:`, or start the text: nothing below
    // can then apply (they need a letter, digit, `/`, `-` or a multi-byte character first).
    if matches!(b1, 0 | b' ' | b'>' | b'(' | b'"' | b'\'' | b':' | b'=' | b'\n' | b'\t') {
        return true;
    }
    let b2 = at(2);
    if let Some((cp, len)) = escape_before(text, start, before) {
        let before_escape = at(len + 1);
        return match u8::try_from(cp).ok().filter(u8::is_ascii) {
            Some(b) => !glues_left(b, before_escape),
            // A percent escape's byte of a UTF-8 sequence (the look-back holds one escape, not
            // the whole character): £ and ¥ end in A3 and A5, € in 82 AC; a lone 96 is
            // windows-1252's en dash.
            None if len == 3 => match cp {
                0xA3 | 0xA5 => false,
                0xAC => !(at(6) == b'%' && at(5) == b'8' && at(4) == b'2'),
                0x96 => !word_byte(before_escape),
                _ => true,
            },
            None => !char_glues_left(cp, before_escape),
        };
    }
    if b2 == b'\\' && matches!(b1, b'n' | b't' | b'r' | b'b' | b'f') {
        return true;
    }
    if b1 == b'/' && b2 == b'\\' {
        return !glues_left(b1, at(3));
    }
    // A character of two or three bytes in UTF-8, read as the escape of it would be.
    if b1 & 0xC0 == 0x80 {
        if (0xC2..=0xDF).contains(&b2) {
            return !char_glues_left((u32::from(b2 & 0x1F) << 6) | u32::from(b1 & 0x3F), at(3));
        }
        let b3 = at(3);
        if b2 & 0xC0 == 0x80 && (0xE0..=0xEF).contains(&b3) {
            let cp = (u32::from(b3 & 0x0F) << 12) | (u32::from(b2 & 0x3F) << 6) | u32::from(b1 & 0x3F);
            return !char_glues_left(cp, at(4));
        }
    }
    !glues_left(b1, b2)
}

/// Whether a character beyond ASCII right before a number, with `before` the byte before it,
/// makes it part of something else: a hyphen or dash after a letter or digit, as `-` does
/// (U+2010 hyphen, U+2011 non-breaking hyphen, U+2013 en dash: `12\u2011555…` is an id), or a
/// currency sign (£, ¥, €: a price).
fn char_glues_left(cp: u32, before: u8) -> bool {
    match cp {
        0x2010 | 0x2011 | 0x2013 => word_byte(before),
        0xA3 | 0xA5 | 0x20AC => true,
        _ => false,
    }
}

/// The escape that ends right before `i`, and its length: a JSON `\uXXXX` (its code point),
/// unless its backslash is itself escaped (`\\u00a0` is a backslash and the text `u00a0`), or
/// a percent escape `%XX` (its byte, one of a UTF-8 sequence from 0x80 up).
#[inline(always)]
fn escape_before(text: &[u8], i: usize, before: Before) -> Option<(u32, usize)> {
    let at = |k| byte_before(text, i, before, k);
    let (b1, b2) = (at(1), at(2));
    // Every candidate asks: the byte right before rules out most at once.
    if !b1.is_ascii_hexdigit() || !b2.is_ascii_hexdigit() {
        return None;
    }
    if at(3) == b'%' {
        return parse_u32(&[b2, b1], 16).map(|v| (v, 3));
    }
    let hex = [at(4), at(3), b2, b1];
    if at(5) != b'u' || at(6) != b'\\' || at(7) == b'\\' || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    parse_u32(&hex, 16).map(|cp| (cp, 6))
}

/// Whether `b1` right before a number, with `b2` before it, makes it part of something else.
/// A lone 0x96 is windows-1252's en dash (a separator to the scanner, as `-`).
fn glues_left(b1: u8, b2: u8) -> bool {
    b1.is_ascii_alphanumeric()
        || matches!(b1, b'_' | b'$' | b'#' | b'@' | b'+')
        || (matches!(b1, b'-' | b'.' | b'/' | b',' | 0x96) && word_byte(b2))
}

/// A letter, digit or `_`: what a gluing separator joins a number to.
#[inline]
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// After a number: not another digit, letter or `_`, and not a gluing separator followed by a
/// digit (`555-010-0000-12` is an order id); a space and more digits is just more text. An
/// extension or a dialer's pause glued on ([`extension_at`]) leaves the number whole.
///
/// Inlined by force: [`extension_at`] calls it back, and left to itself the compiler kept it
/// out of [`NumberMatcher::try_at`], whose digit loop then ran about 8% more instructions
/// (callgrind, `examples/rewrite_profile`).
#[inline(always)]
fn right_boundary(text: &[u8], end: usize, last: bool) -> Boundary {
    match token_at(text, end) {
        Token::Digit(_) => Boundary::Blocked,
        // A letter written as itself may start an extension; one written as an entity or
        // escape, like a digit so written, glues.
        Token::Other(b) if b.is_ascii_alphabetic() && text[end] == b => extension_at(text, end, last),
        Token::Other(b) if b.is_ascii_alphanumeric() || b == b'_' => Boundary::Blocked,
        Token::End | Token::Incomplete if !last => Boundary::Undecided,
        Token::Sep { len, spacing } => match token_at(text, end + len) {
            Token::Digit(_) if !spacing => Boundary::Blocked,
            Token::End | Token::Incomplete if !last => Boundary::Undecided,
            _ => Boundary::Ok,
        },
        _ => Boundary::Ok,
    }
}

/// What may be glued right after a number and still leave it a number: an extension (`x12`,
/// `ext12`, `Ext. 12`, `extn:12`, `extension 12`) or a dialer's pause or wait (`p12`, `w12`,
/// lower case, as `tel:` links for phone menus write them), then digits that end as a number
/// must ([`right_boundary`]: `x12-34` and `p3Kz9` are ids). Callers who dial the tracking number
/// reach the business's line, where the extension still works. Any other letter makes the
/// number part of a word or id.
///
/// Out of line and cold: it is rare, and kept out of [`NumberMatcher::try_at`], whose digit
/// loop it would otherwise slow.
#[cold]
#[inline(never)]
fn extension_at(text: &[u8], at: usize, last: bool) -> Boundary {
    const WORDS: [&[u8]; 4] = [b"extension", b"extn", b"ext", b"x"];
    let rest = &text[at..];
    let more = |found: Boundary| if last { found } else { Boundary::Undecided };
    // The longest word the text starts with; text that ends inside one may become it.
    let mut word = None;
    let mut cut = false;
    for w in WORDS {
        let same = rest
            .iter()
            .zip(w)
            .take_while(|(a, b)| a.to_ascii_lowercase() == **b)
            .count();
        if same == w.len() {
            word = Some(w.len());
            break;
        }
        cut |= same == rest.len();
    }
    if cut {
        // All of the text is the start of a longer word than any it holds whole.
        return more(Boundary::Blocked);
    }
    let mut i = match (word, rest.first()) {
        (Some(n), _) => {
            // `Ext.` or `ext:`, then a space, may stand before the digits.
            let mut i = n + usize::from(matches!(rest.get(n), Some(b'.' | b':')));
            i += usize::from(rest.get(i) == Some(&b' '));
            i
        }
        (None, Some(b'p' | b'w')) => 1,
        (None, _) => return Boundary::Blocked,
    };
    match rest.get(i) {
        Some(d) if d.is_ascii_digit() => {}
        None => return more(Boundary::Blocked),
        Some(_) => return Boundary::Blocked,
    }
    let digits = i;
    while rest.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        if i - digits > MAX_EXTENSION_DIGITS {
            return Boundary::Blocked;
        }
    }
    // Then as after a number, but no second extension.
    match rest.get(i) {
        Some(b) if b.is_ascii_alphabetic() => Boundary::Blocked,
        _ => right_boundary(text, at + i, last),
    }
}

/// The most digits an extension or dial string glued after a number has (libphonenumber reads
/// up to 9 after an `x`): more make it an id. The bound also keeps what a candidate number
/// holds back at a chunk's edge a few bytes long, whatever run of digits follows.
const MAX_EXTENSION_DIGITS: usize = 9;

/// The tracking number a page should show, ready to be written in any form.
#[derive(Debug, Clone)]
pub struct Replacement {
    number: PhoneNumber,
    /// Its country calling code, to tell a match of a number of another country.
    cc: u16,
    /// The digits to write for each form, computed once: `Idd("011")`, `Idd("00")`, `IntlTrunk`,
    /// `Trunk`, `Intl`, `National`.
    digits: [String; 6],
}

impl Replacement {
    pub fn new(number: PhoneNumber) -> Replacement {
        let digits = [
            FormKind::Idd("011"),
            FormKind::Idd("00"),
            FormKind::IntlTrunk,
            FormKind::Trunk,
            FormKind::Intl,
            FormKind::National,
        ]
        .map(|kind| number.digits_for(kind));
        Replacement {
            cc: number.calling_code(),
            number,
            digits,
        }
    }

    pub fn number(&self) -> &PhoneNumber {
        &self.number
    }

    /// Writes the tracking number in the shape of `original` (the matched bytes of a number of
    /// country `cc`, written in form `kind`): digits are substituted in order and every other
    /// byte is kept. A number of another country is written whole in international form.
    pub fn write(&self, original: &str, kind: FormKind, cc: u16, out: &mut String) {
        let mut bytes = Vec::with_capacity(original.len() + 8);
        self.write_bytes(original.as_bytes(), kind, cc, false, &mut bytes);
        out.push_str(&into_string(bytes));
    }

    /// [`write`](Self::write) on bytes: `original` is whole UTF-8 text (a match).
    /// `json_number`: the match is a JSON number (bare digits after `[`, `,` or `":`).
    fn write_bytes(&self, original: &[u8], kind: FormKind, cc: u16, json_number: bool, out: &mut Vec<u8>) {
        if cc != self.cc {
            self.write_international(original, kind, json_number, out);
            return;
        }
        let other;
        let new = match kind {
            FormKind::Idd("011") => &self.digits[0],
            FormKind::Idd("00") => &self.digits[1],
            FormKind::Idd(_) | FormKind::IddTrunk(_) => {
                other = self.number.digits_for(kind);
                &other
            }
            FormKind::IntlTrunk => &self.digits[2],
            FormKind::Trunk => &self.digits[3],
            FormKind::Intl => &self.digits[4],
            FormKind::National => &self.digits[5],
        };
        let new = new.as_bytes();
        // Only digit tokens are digits of the number: the `8209` of `&#8209;` is not, nor the
        // `002` of `\u002B` (other multi-byte tokens hold no ASCII digit and may be stepped
        // through byte by byte).
        let step = |i: usize| match original[i] {
            b'&' | b'%' | b'\\' => match token_at(original, i) {
                Token::Sep { len, .. } | Token::Plus(len) => len,
                _ => 1,
            },
            _ => 1,
        };
        // The usual case, as many digits as the original: copy it, then overwrite digit `k`
        // with digit `k` of the new number.
        let base = out.len();
        out.extend_from_slice(original);
        let (mut i, mut k) = (0, 0);
        while i < original.len() {
            if original[i].is_ascii_digit() {
                let Some(&d) = new.get(k) else { break };
                out[base + i] = d;
                k += 1;
                i += 1;
            } else {
                i += step(i);
            }
        }
        if i >= original.len() && k == new.len() {
            return;
        }
        // Otherwise the last original digit takes whatever the new number has left, so a
        // longer number grows its last group, and a shorter one drops the surplus digits.
        out.truncate(base);
        let (mut i, mut k, mut copied, mut after_last_digit) = (0, 0, 0, None);
        while i < original.len() {
            if original[i].is_ascii_digit() {
                out.extend_from_slice(&original[copied..i]);
                if let Some(&d) = new.get(k) {
                    out.push(d);
                }
                k += 1;
                i += 1;
                copied = i;
                after_last_digit = Some(out.len());
            } else {
                i += step(i);
            }
        }
        out.extend_from_slice(&original[copied..]);
        if let Some(at) = after_last_digit
            && new.len() > k
        {
            out.splice(at..at, new[k..].iter().copied());
        }
    }

    /// The tracking number in place of a number of another country, whose digits and grouping
    /// mean nothing for it: a reader needs its international form, `+44 2079461001`. The
    /// original's plus sign (`+`, `&#43;`, `%2B`, `\u002B`) or international prefix (`00`,
    /// `011`, unless it is the tracking number's own country's) is kept, and its first spacing
    /// separator (else `-` or `.`) goes after the country code; a number written without
    /// separators (a `tel:` link) gets none. A match that closes a parenthesis opened before it
    /// (`(555) 010-0000`, `(020) 7946 0000`) closes it after the country code: `(+44) 2079461001`.
    /// A JSON number (`json_number`) stays one: digits only.
    fn write_international(&self, original: &[u8], kind: FormKind, json_number: bool, out: &mut Vec<u8>) {
        if json_number {
            out.extend_from_slice(self.number.cc.as_bytes());
            out.extend_from_slice(self.number.nsn.as_bytes());
            return;
        }
        let (mut spacing, mut other, mut close, mut depth, mut i) = (None, None, None, 0i32, 0);
        while i < original.len() {
            match token_at(original, i) {
                Token::Sep { len, spacing: true } => {
                    spacing = spacing.or(Some(i..i + len));
                    i += len;
                }
                Token::Sep { len, spacing: false } => {
                    let cp = match escaped_at(original, i) {
                        Escaped::CodePoint(cp, _) => cp,
                        _ => u32::from(original[i]),
                    };
                    match cp {
                        0x28 => depth += 1,
                        0x29 => {
                            depth -= 1;
                            close = close.or(Some(i..i + len));
                        }
                        _ => other = other.or(Some(i..i + len)),
                    }
                    i += len;
                }
                Token::Plus(len) => i += len,
                _ => i += 1,
            }
        }
        let sep = spacing.clone().or(other).map_or(&[][..], |r| &original[r]);
        match kind {
            // A reader in the tracking number's own country does not dial out to reach it.
            FormKind::Idd("011") | FormKind::IddTrunk("011") if self.cc == 1 => out.push(b'+'),
            FormKind::Idd(idd) | FormKind::IddTrunk(idd) => {
                out.extend_from_slice(idd.as_bytes());
                // The page's separator between the prefix and the country code, if it has one.
                let (mut at, mut digits) = (0, 0);
                while digits < idd.len() && at < original.len() {
                    digits += usize::from(original[at].is_ascii_digit());
                    at += 1;
                }
                if let Token::Sep { len, .. } = token_at(original, at) {
                    out.extend_from_slice(&original[at..at + len]);
                }
            }
            FormKind::Intl | FormKind::IntlTrunk => match token_at(original, 0) {
                Token::Plus(len) => out.extend_from_slice(&original[..len]),
                _ => out.push(b'+'),
            },
            FormKind::Trunk | FormKind::National => out.push(b'+'),
        }
        out.extend_from_slice(self.number.cc.as_bytes());
        match close {
            Some(close) if depth < 0 => {
                out.extend_from_slice(&original[close]);
                // `(+44)` is followed by a space, the page's own if it has one.
                out.extend_from_slice(spacing.map_or(&b" "[..], |r| &original[r]));
            }
            _ => out.extend_from_slice(sep),
        }
        out.extend_from_slice(self.number.nsn.as_bytes());
    }
}

/// Rewrites one text node that arrives in chunks, buffering only while a candidate is open
/// across a chunk boundary.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: Vec<u8>,
    before: Before,
}

impl TextStream {
    /// Feeds one chunk. Returns `None` when the chunk may pass unchanged, or the text to emit in
    /// its place (which may hold back a tail, or release text held back from earlier chunks).
    /// `last` marks the node's final chunk, after which the stream is ready for the next node.
    pub fn push(
        &mut self,
        matcher: &NumberMatcher,
        chunk: &str,
        last: bool,
        to: &Replacement,
        count: &mut usize,
    ) -> Option<String> {
        // A candidate is only ever held back from an ASCII byte, so what is emitted splits the
        // text at character boundaries and stays UTF-8.
        let mut out = Vec::new();
        self.push_bytes(matcher, chunk.as_bytes(), last, to, count, &mut out)
            .then(|| into_string(out))
    }

    /// [`push`](Self::push) on raw bytes, appending the text to emit to `out` (the byte-level
    /// engine's output buffer, so a rewritten run costs no buffer of its own). Returns `false`
    /// when the chunk may pass unchanged; then nothing was appended.
    pub fn push_bytes(
        &mut self,
        matcher: &NumberMatcher,
        chunk: &[u8],
        last: bool,
        to: &Replacement,
        count: &mut usize,
        out: &mut Vec<u8>,
    ) -> bool {
        if self.pending.is_empty() {
            // Most chunks hold no digit, `+`, `&` or `%` (and every node ends with an empty one):
            // nothing to scan, only the look-back bytes to keep.
            let Some(first) = first_interesting(chunk) else {
                self.advance(chunk, last);
                return false;
            };
            return match rewrite_segment(matcher, chunk, first, self.before, last, to, count, out) {
                None => {
                    self.advance(chunk, last);
                    false
                }
                Some(held) => {
                    self.pending.extend_from_slice(&chunk[held..]);
                    // The look-back is the page's own text, not its rewrite: a number written
                    // shorter or longer must not change how the next chunk's left edge reads.
                    self.advance(&chunk[..held], last);
                    true
                }
            };
        }
        // `pending` keeps its buffer for the next candidate held back.
        self.pending.extend_from_slice(chunk);
        match rewrite_segment(matcher, &self.pending, 0, self.before, last, to, count, out) {
            None => {
                out.extend_from_slice(&self.pending);
                look_back(&mut self.before, &self.pending, last);
                self.pending.clear();
            }
            Some(held) => {
                look_back(&mut self.before, &self.pending[..held], last);
                self.pending.drain(..held);
            }
        }
        true
    }

    /// With nothing held back, the stream's whole state: the look-back bytes for the left
    /// boundary of what follows ([`super::fast::Snapshot`] keeps them).
    pub(crate) fn look_back_bytes(&self) -> Before {
        debug_assert!(self.pending.is_empty());
        self.before
    }

    /// A stream with nothing held back and these look-back bytes.
    pub(crate) fn resumed(before: Before) -> TextStream {
        TextStream {
            pending: Vec::new(),
            before,
        }
    }

    /// Ends a text node that holds nothing back: only the look-back bytes to forget. Returns
    /// `false` (and does nothing) when text is held, which [`push_bytes`](Self::push_bytes) with
    /// `last` must then release.
    #[inline]
    pub fn end_if_idle(&mut self) -> bool {
        if self.pending.is_empty() {
            self.before = Before::NONE;
            true
        } else {
            false
        }
    }

    /// Passes text that holds no match, with nothing held back: only its last bytes are kept, for
    /// the left boundary of what follows.
    #[inline]
    pub fn skip(&mut self, text: &[u8]) {
        debug_assert!(self.pending.is_empty());
        self.advance(text, false);
    }

    /// Gives up the text held back, unchanged (the byte-level engine's bail-out).
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.before = Before::NONE;
        std::mem::take(&mut self.pending)
    }

    fn advance(&mut self, read: &[u8], last: bool) {
        look_back(&mut self.before, read, last);
    }

    /// Whether text is being held back (for tests and the memory bound).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Moves the look-back bytes past `read` (the page's text that went by), or forgets them at the
/// end of a text node.
fn look_back(before: &mut Before, read: &[u8], last: bool) {
    *before = if last { Before::NONE } else { before.then(read) };
}

/// The first byte that can start a token the scanner cares about.
#[inline]
fn first_interesting(text: &[u8]) -> Option<usize> {
    text.iter().position(|&b| INTERESTING[b as usize])
}

/// Rewrites `text` (scanning from `from`, which must not be inside a digit group) up to the
/// first open candidate, appending what to emit to `out`. `None`: nothing to change and nothing
/// held (and nothing appended). `Some(held_from)`: `out` got the text to emit, and
/// `text[held_from..]` is to be held for the next chunk.
#[allow(clippy::too_many_arguments)]
fn rewrite_segment(
    matcher: &NumberMatcher,
    bytes: &[u8],
    from: usize,
    before: Before,
    last: bool,
    to: &Replacement,
    count: &mut usize,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let mut changed = false;
    let mut copied = 0;
    let mut from = from;
    loop {
        match matcher.scan(bytes, from, before, last) {
            Scan::Found(m) => {
                out.extend_from_slice(&bytes[copied..m.start]);
                let json_number =
                    bytes[m.start..m.end].iter().all(u8::is_ascii_digit) && json_value_before(bytes, m.start, before);
                to.write_bytes(&bytes[m.start..m.end], m.kind, m.cc, json_number, out);
                *count += 1;
                changed = true;
                copied = m.end;
                from = m.end;
            }
            Scan::Open(at) => {
                out.extend_from_slice(&bytes[copied..at]);
                return Some(at);
            }
            Scan::Done => {
                if !changed {
                    return None;
                }
                out.extend_from_slice(&bytes[copied..]);
                return Some(bytes.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> (NumberMatcher, Replacement) {
        let site = PhoneNumber::parse("+1 555-010-0000", "US").unwrap();
        let to = PhoneNumber::parse("+1 555-010-1001", "US").unwrap();
        (NumberMatcher::new(&[site]), Replacement::new(to))
    }

    fn rw(text: &str) -> String {
        let (m, to) = us();
        let mut n = 0;
        m.rewrite_value(text, &to, &mut n).unwrap_or_else(|| text.to_string())
    }

    /// `text` streamed in two pushes, cut at `cut`.
    fn rw_cut(text: &str, cut: usize) -> String {
        let (m, to) = us();
        let mut s = TextStream::default();
        let mut n = 0;
        let a = s
            .push(&m, &text[..cut], false, &to, &mut n)
            .unwrap_or_else(|| text[..cut].to_string());
        let b = s
            .push(&m, &text[cut..], true, &to, &mut n)
            .unwrap_or_else(|| text[cut..].to_string());
        a + &b
    }

    #[test]
    fn keeps_shape() {
        assert_eq!(rw("Call (555) 010-0000 now"), "Call (555) 010-1001 now");
        assert_eq!(
            rw("+1&nbsp;555&#8209;010&#8209;0000"),
            "+1&nbsp;555&#8209;010&#8209;1001"
        );
        assert_eq!(rw("tel:%2B1%20555%20010%200000"), "tel:%2B1%20555%20010%201001");
        // JSON escapes, as JSON-LD writers put a plus sign or a no-break space; the escape's own
        // hex digits are not the number's.
        assert_eq!(rw(r"\u002B1-555-010-0000"), r"\u002B1-555-010-1001");
        assert_eq!(rw(r"tel:\u002b15550100000"), r"tel:\u002b15550101001");
        assert_eq!(rw(r"555\u00a0010\u00A00000"), r"555\u00a0010\u00A01001");
        // Not escapes of a plus or separator: left alone.
        assert_eq!(rw(r"\u00411-555-010-0000"), r"\u00411-555-010-0000");
        // A letter or digit escaped still glues to the number; a JSON newline or tab does not.
        assert_eq!(rw(r"5550100000\u0041"), r"5550100000\u0041");
        assert_eq!(rw("5550100000&#65;"), "5550100000&#65;");
        assert_eq!(rw(r"Call:\n555-010-0000"), r"Call:\n555-010-1001");
        assert_eq!(rw(r"\t(555) 010-0000"), r"\t(555) 010-1001");
        // An escaped slash is a slash: a URL's path stays an id.
        assert_eq!(
            rw(r"https:\/\/cdn.test\/5550100000.jpg"),
            r"https:\/\/cdn.test\/5550100000.jpg"
        );
        assert_eq!(rw(r"\/p\/555-010-0000"), r"\/p\/555-010-0000");
        // An escape right before the number reads as what it stands for.
        assert_eq!(rw(r"Tel.\u00a0555-010-0000"), r"Tel.\u00a0555-010-1001");
        assert_eq!(rw(r"Tel:\u0020(555) 010-0000"), r"Tel:\u0020(555) 010-1001");
        assert_eq!(rw(r"ORD\u002D5550100000"), r"ORD\u002D5550100000");
        assert_eq!(rw(r"\u00A35550100000"), r"\u00A35550100000");
        assert_eq!(rw(r"x\u002B5550100000"), r"x\u002B5550100000");
        // A hyphen or dash escaped, or written in UTF-8, glues as `-` does.
        for s in [
            r"12\u2011555\u2011010\u20110000",
            r"ORD\u20135550100000",
            "12\u{2011}555\u{2011}010\u{2011}0000",
        ] {
            assert_eq!(rw(s), s);
        }
        assert_eq!(rw("Tel \u{2013}555-010-0000"), "Tel \u{2013}555-010-1001");
        // Percent escapes before a number, as a `tel:` link or a share link writes them.
        for (from, to) in [
            ("tel:%28555%29%20010-0000", "tel:%28555%29%20010-1001"),
            ("?text=Call%205550100000", "?text=Call%205550101001"),
            ("Tel%C2%A0555-010-0000", "Tel%C2%A0555-010-1001"),
            ("tel:%E2%80%AA5550100000%E2%80%AC", "tel:%E2%80%AA5550101001%E2%80%AC"),
        ] {
            assert_eq!(rw(from), to);
        }
        for s in [
            "ORD%2D5550100000",
            "x%415550100000",
            "%C2%A35550100000",
            "%E2%82%AC5550100000",
            "ORD%965550100000",
        ] {
            assert_eq!(rw(s), s);
        }
        // `\\u00a0` is a backslash, then the text `u00a0`: a digit glues.
        assert_eq!(rw(r"\\u00a05550100000"), r"\\u00a05550100000");
    }

    #[test]
    fn the_look_back_keeps_the_last_bytes_of_every_read() {
        let text = b"0123456789abcdefghij";
        for cut in 0..=text.len() {
            for end in cut..=text.len() {
                let b = Before::NONE.then(&text[..cut]).then(&text[cut..end]);
                for k in 1..=LOOK_BACK {
                    let want = end.checked_sub(k).map_or(0, |i| text[i]);
                    assert_eq!(b.nth_last(k), want, "reads ..{cut} {cut}..{end}, byte {k} from the end");
                }
            }
        }
    }

    #[test]
    fn an_escape_before_a_number_is_read_across_a_chunk_edge() {
        let text = r#"{"t":"Tel.\u00a0555-010-0000","o":"ORD\u00415550100000","b":"Tel\u2022555-010-0000","p":"tel:%E2%80%AA5550100000"}"#;
        let whole = rw(text);
        assert!(whole.contains(r"\u00a0555-010-1001") && whole.contains(r"ORD\u00415550100000"));
        // An escape of no separator ends no digit group either: its hex digits are not the number's.
        assert!(whole.contains(r"\u2022555-010-1001"), "{whole}");
        assert!(whole.contains("%AA5550101001"), "{whole}");
        for cut in 1..text.len() {
            assert_eq!(rw_cut(text, cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_extension_or_a_pause_glued_on_leaves_the_number() {
        for (s, want) in [
            ("555-010-0000x12", "555-010-1001x12"),
            ("5550100000X12", "5550101001X12"),
            ("555-010-0000ext12", "555-010-1001ext12"),
            ("555.010.0000 Ext.12", "555.010.1001 Ext.12"),
            ("555-010-0000EXT.12", "555-010-1001EXT.12"),
            ("tel:+15550100000p123", "tel:+15550101001p123"),
            ("tel:5550100000w2", "tel:5550101001w2"),
            ("555-010-0000Ext. 12", "555-010-1001Ext. 12"),
            ("5550100000extn:12", "5550101001extn:12"),
            (
                "5550100000extension 12, ask for Sam",
                "5550101001extension 12, ask for Sam",
            ),
            ("5550100000x12.", "5550101001x12."),
            // Not before a digit, or another letter: part of a word or id.
            ("5550100000x", "5550100000x"),
            ("5550100000ext", "5550100000ext"),
            ("5550100000ex12", "5550100000ex12"),
            ("5550100000b12", "5550100000b12"),
            ("5550100000pw", "5550100000pw"),
            // The extension's digits end as a number's must.
            ("555-010-0000x12-34", "555-010-0000x12-34"),
            ("5550100000x12abc", "5550100000x12abc"),
            ("5550100000x1_thumb", "5550100000x1_thumb"),
            ("5550100000p3Kz9", "5550100000p3Kz9"),
            ("5550100000x12x3", "5550100000x12x3"),
            ("5550100000x123456789", "5550101001x123456789"),
            ("5550100000x1234567890", "5550100000x1234567890"),
            // A dialer's pause is lower case; SKUs are not.
            ("SKU 5550100000W1", "SKU 5550100000W1"),
            ("5550100000P12", "5550100000P12"),
            // A letter or digit written as an entity or escape glues, as before.
            ("5550100000&#49;", "5550100000&#49;"),
            (r"5550100000\u0031", r"5550100000\u0031"),
            ("tel:5550100000%312", "tel:5550100000%312"),
            ("5550100000&#120;12", "5550100000&#120;12"),
        ] {
            assert_eq!(rw(s), want, "{s}");
        }
        // However many digits follow, a candidate holds back only a few bytes.
        let (m, to) = us();
        let mut s = TextStream::default();
        let mut n = 0;
        s.push(&m, "Call 5550100000x", false, &to, &mut n);
        for _ in 0..1_000 {
            s.push(&m, "1", false, &to, &mut n);
        }
        assert_eq!(s.pending_len(), 0);
        // Cut anywhere, the stream reads what the whole text reads.
        for text in [
            "Call 555-010-0000Ext.12 now",
            "Call 555-010-0000Ext. 12 now",
            "Call 555-010-0000extension 12",
            "Call 555-010-0000extra now",
            "5550100000x12-34",
            "5550100000x123",
            "5550100000x1234567890123",
            "5550100000e",
        ] {
            let whole = rw(text);
            for cut in 1..text.len() {
                assert_eq!(rw_cut(text, cut), whole, "{text} cut at {cut}");
            }
        }
    }

    #[test]
    fn refuses_lookalikes() {
        for s in [
            "15550100000123",
            "ORD5550100000",
            "555-010-0000-12",
            "$5550100000",
            "650+253+1234",
        ] {
            assert_eq!(rw(s), s);
        }
    }

    #[test]
    fn open_candidate_is_held_back_across_chunks() {
        let (m, to) = us();
        let mut s = TextStream::default();
        let mut n = 0;
        assert_eq!(s.push(&m, "Call 555-01", false, &to, &mut n).as_deref(), Some("Call "));
        assert_eq!(s.pending_len(), 6);
        assert_eq!(
            s.push(&m, "0-0000 today", true, &to, &mut n).as_deref(),
            Some("555-010-1001 today")
        );
        assert_eq!(n, 1);
    }
}
