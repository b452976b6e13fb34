//! Finding a site's numbers in raw HTML text and writing a tracking number in the same shape.
//!
//! Text is matched *raw*, as lol_html hands it over: entities are not decoded, so a separator may
//! be `&nbsp;` or `&#8209;` and a plus sign `%2B` (in `tel:` URLs) or `&#43;`. Matching works on
//! digits: a candidate is a run of digits joined by separators, and it matches when its digits
//! equal one of a configured number's [`Form`](super::phone::Form)s. Replacing substitutes digits
//! in place and copies every other byte, so the page keeps its own separators, grouping,
//! parentheses, prefix style and entity encoding.
//!
//! The scan is built to cost almost nothing on text without a candidate: one table lookup per
//! byte, and a candidate is abandoned at the first digit that no form continues with.

use super::phone::{FormKind, PhoneNumber};

/// Up to this many separator tokens may stand between two digits (`) - ` is three).
const MAX_SEPARATOR_RUN: usize = 3;

/// Bytes that can start a token the scanner cares about: digits, and the first byte of a plus
/// sign written literally (`+`), as an entity (`&#43;`, `&plus;`) or percent-encoded (`%2B`).
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
        _ => Token::Other(b'&'),
    }
}

fn token_at(text: &[u8], i: usize) -> Token {
    let Some(&b) = text.get(i) else { return Token::End };
    match b {
        b'0'..=b'9' => Token::Digit(b),
        b' ' => sep(1, true),
        b'-' | b'.' | b'/' | b'(' | b')' => sep(1, false),
        b'+' => Token::Plus(1),
        0xC2 => match text.get(i + 1) {
            Some(0xA0) => sep(2, true),
            _ => Token::Other(b),
        },
        0xE2 => match (text.get(i + 1), text.get(i + 2)) {
            // U+2010 hyphen, U+2011 non-breaking hyphen, U+2013 en dash
            (Some(0x80), Some(0x90 | 0x91 | 0x93)) => sep(3, false),
            // U+2009 thin space, U+202F narrow no-break space
            (Some(0x80), Some(0x89 | 0xAF)) => sep(3, true),
            _ => Token::Other(b),
        },
        b'&' => entity_at(text, i),
        b'%' => percent_at(text, i),
        _ => Token::Other(b),
    }
}

/// `&nbsp;`, `&#160;`, `&#xA0;`, `&#8209;`, `&#40;`, `&plus;` ... Named entities we do not know
/// are ordinary text.
fn entity_at(text: &[u8], i: usize) -> Token {
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
        return if partial { Token::Incomplete } else { Token::Other(b'&') };
    };
    let body = &rest[..semi];
    let len = semi + 2;
    let cp = if let Some(num) = body.strip_prefix(b"#") {
        let (digits, radix) = match num.first() {
            Some(b'x' | b'X') => (&num[1..], 16),
            _ => (num, 10),
        };
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| u32::from_str_radix(s, radix).ok())
    } else {
        NAMED.iter().find(|(name, _)| *name == body).map(|(_, cp)| *cp)
    };
    match cp {
        Some(cp) => classify_code_point(cp, len),
        None => Token::Other(b'&'),
    }
}

/// Percent-encoded separators and plus, as found in `tel:` URLs: `%20`, `%2D`, `%2B`, `%C2%A0`.
fn percent_at(text: &[u8], i: usize) -> Token {
    let hex = |j: usize| -> Option<Option<u8>> {
        match (text.get(j), text.get(j + 1)) {
            (Some(a), Some(b)) => {
                let s = [*a, *b];
                Some(
                    std::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok()),
                )
            }
            _ => None,
        }
    };
    match hex(i + 1) {
        None => Token::Incomplete,
        Some(None) => Token::Other(b'%'),
        Some(Some(0xC2)) => match (text.get(i + 3), hex(i + 4)) {
            (None, _) | (Some(b'%'), None) => Token::Incomplete,
            (Some(b'%'), Some(Some(0xA0))) => sep(6, true),
            _ => Token::Other(b'%'),
        },
        Some(Some(v)) => classify_code_point(v as u32, 3),
    }
}

/// One way a configured number can be written, compiled for scanning.
#[derive(Debug, Clone)]
struct Target {
    kind: FormKind,
    digits: Vec<u8>,
    /// Forms that make sense after a `+`: those that start with the country code.
    after_plus: bool,
}

/// A match of a configured number in text: bytes `start..end` (digits and the separators between
/// them, plus a leading `+`), and which form it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub kind: FormKind,
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
#[derive(Debug, Clone)]
pub struct NumberMatcher {
    targets: Vec<Target>,
    /// Bit `d` set when some form starts with digit `d`: the cheap first test of a candidate.
    first_digits: u16,
    max_digits: usize,
}

/// The up-to-three bytes that came before the text being scanned (oldest first, 0 = none), so a
/// candidate at offset 0 can be judged by what precedes it in an earlier chunk.
pub type Before = [u8; 3];

impl NumberMatcher {
    pub fn new(numbers: &[PhoneNumber]) -> NumberMatcher {
        let mut targets: Vec<Target> = Vec::new();
        for n in numbers {
            for f in n.forms() {
                if targets.iter().any(|t| t.digits == f.digits.as_bytes()) {
                    continue;
                }
                let after_plus = matches!(f.kind, FormKind::Intl | FormKind::IntlTrunk);
                targets.push(Target {
                    kind: f.kind,
                    digits: f.digits.into_bytes(),
                    after_plus,
                });
            }
        }
        targets.sort_by_key(|t| std::cmp::Reverse(t.digits.len()));
        // The alive-set below is a u64 bit mask.
        targets.truncate(64);
        let first_digits = targets.iter().fold(0u16, |m, t| m | 1 << (t.digits[0] - b'0'));
        let max_digits = targets.iter().map(|t| t.digits.len()).max().unwrap_or(0);
        NumberMatcher {
            targets,
            first_digits,
            max_digits,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Finds the first match or open candidate at or after `from`. `before` holds the bytes that
    /// precede `text`; `last` says no more text follows (the end of the text node or value).
    pub fn scan(&self, text: &[u8], from: usize, before: Before, last: bool) -> Scan {
        if self.targets.is_empty() {
            return Scan::Done;
        }
        let mut i = from;
        while i < text.len() {
            let b = text[i];
            if !INTERESTING[b as usize] {
                i += 1;
                continue;
            }
            let prev = byte_before(text, i, before, 1);
            if b.is_ascii_digit() {
                if prev.is_ascii_digit() {
                    i += 1;
                    continue;
                }
                if self.first_digits & (1 << (b - b'0')) != 0 {
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
                _ => i += 1,
            }
        }
        Scan::Done
    }

    fn try_at(&self, text: &[u8], start: usize, before: Before, last: bool, plus: bool) -> Attempt {
        if !left_boundary_ok(text, start, before) {
            return Attempt::Fail;
        }
        let mut alive: u64 = 0;
        for (k, t) in self.targets.iter().enumerate() {
            if !plus || t.after_plus {
                alive |= 1 << k;
            }
        }
        let mut pos = start;
        if plus {
            let Token::Plus(len) = token_at(text, pos) else {
                return Attempt::Fail;
            };
            pos += len;
        }
        let mut n = 0usize;
        let mut seps = 0usize;
        // Longest completed form so far: (target index, end offset).
        let mut best: Option<(usize, usize)> = None;
        let mut undecided = false;
        loop {
            match token_at(text, pos) {
                Token::Digit(d) => {
                    let mut still = 0u64;
                    let mut bits = alive;
                    while bits != 0 {
                        let k = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let t = &self.targets[k];
                        if t.digits.get(n) == Some(&d) {
                            still |= 1 << k;
                        }
                    }
                    alive = still;
                    if alive == 0 {
                        break;
                    }
                    n += 1;
                    pos += 1;
                    seps = 0;
                    let mut bits = alive;
                    while bits != 0 {
                        let k = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if self.targets[k].digits.len() == n {
                            match right_boundary(text, pos, last) {
                                Boundary::Ok => {
                                    if best.is_none_or(|(b, _)| self.targets[b].digits.len() < n) {
                                        best = Some((k, pos));
                                    }
                                }
                                Boundary::Undecided => undecided = true,
                                Boundary::Blocked => {}
                            }
                            alive &= !(1 << k);
                        }
                    }
                    if alive == 0 || n >= self.max_digits {
                        break;
                    }
                }
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
            }),
            None => Attempt::Fail,
        }
    }

    /// Rewrites one complete value (an attribute, a JSON-LD string), or `None` when it holds no
    /// match. `count` is increased by the number of replacements.
    pub fn rewrite_value(&self, value: &str, to: &Replacement, count: &mut usize) -> Option<String> {
        let bytes = value.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut from = 0;
        while let Scan::Found(m) = self.scan(bytes, from, [0; 3], true) {
            let o = out.get_or_insert_with(|| String::with_capacity(value.len() + 8));
            o.push_str(&value[copied..m.start]);
            to.write(&value[m.start..m.end], m.kind, o);
            *count += 1;
            copied = m.end;
            from = m.end;
        }
        out.map(|mut o| {
            o.push_str(&value[copied..]);
            o
        })
    }
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

fn byte_before(text: &[u8], i: usize, before: Before, k: usize) -> u8 {
    if i >= k {
        text[i - k]
    } else {
        let j = 3 + i - k;
        before.get(j).copied().unwrap_or(0)
    }
}

/// What may not come right before a number: a letter or digit (an id such as `ORD5550100000`),
/// a currency sign (a price), `#` or `@`, a `+` that did not start this match (`650+253+1234`),
/// or a gluing separator after a letter or digit (`12-555-010-0000`, `ORD-5550100000` are ids).
fn left_boundary_ok(text: &[u8], start: usize, before: Before) -> bool {
    let b1 = byte_before(text, start, before, 1);
    if b1.is_ascii_alphanumeric() || matches!(b1, b'_' | b'$' | b'#' | b'@' | b'+') {
        return false;
    }
    let b2 = byte_before(text, start, before, 2);
    if matches!(b1, b'-' | b'.' | b'/' | b',' | b'#') && (b2.is_ascii_alphanumeric() || b2 == b'_') {
        return false;
    }
    // £ (C2 A3), ¥ (C2 A5), € (E2 82 AC)
    if (b2 == 0xC2 && matches!(b1, 0xA3 | 0xA5))
        || (b1 == 0xAC && b2 == 0x82 && byte_before(text, start, before, 3) == 0xE2)
    {
        return false;
    }
    true
}

/// After a number: not another digit, letter or `_`, and not a gluing separator followed by a
/// digit (`555-010-0000-12` is an order id); a space and more digits is just more text.
fn right_boundary(text: &[u8], end: usize, last: bool) -> Boundary {
    match token_at(text, end) {
        Token::Digit(_) => Boundary::Blocked,
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

/// The tracking number a page should show, ready to be written in any form.
#[derive(Debug, Clone)]
pub struct Replacement {
    number: PhoneNumber,
    /// The country code of the site's own numbers: a domestic form (`(555) 010-0000`) can only
    /// be kept when the tracking number is in the same country.
    site_cc: String,
}

impl Replacement {
    pub fn new(number: PhoneNumber, site_cc: &str) -> Replacement {
        Replacement {
            number,
            site_cc: site_cc.to_string(),
        }
    }

    pub fn number(&self) -> &PhoneNumber {
        &self.number
    }

    /// Writes the tracking number in the shape of `original` (the matched bytes, written in
    /// form `kind`): digits are substituted in order and every other byte is kept.
    pub fn write(&self, original: &str, kind: FormKind, out: &mut String) {
        if kind.is_domestic() && self.number.cc != self.site_cc {
            out.push('+');
            out.push_str(&self.number.cc);
            out.push(' ');
            out.push_str(&self.number.nsn);
            return;
        }
        let new = self.number.digits_for(kind);
        let new = new.as_bytes();
        let bytes = original.as_bytes();
        // Only digit tokens are digits of the number: the `8209` of `&#8209;` is not.
        let mut digit_at = Vec::with_capacity(24);
        let mut i = 0;
        while i < bytes.len() {
            match token_at(bytes, i) {
                Token::Digit(_) => {
                    digit_at.push(i);
                    i += 1;
                }
                Token::Sep { len, .. } | Token::Plus(len) => i += len,
                _ => i += 1,
            }
        }
        let old_count = digit_at.len();
        let mut copied = 0;
        for (k, &at) in digit_at.iter().enumerate() {
            out.push_str(&original[copied..at]);
            copied = at + 1;
            if k + 1 < old_count {
                if let Some(&d) = new.get(k) {
                    out.push(d as char);
                }
            } else if new.len() > k {
                // The last original digit takes whatever the new number has left, so a
                // longer number grows its last group and a shorter one shrinks it.
                out.push_str(std::str::from_utf8(&new[k..]).unwrap_or_default());
            }
        }
        out.push_str(&original[copied..]);
    }
}

/// Rewrites one text node that arrives in chunks, buffering only while a candidate is open
/// across a chunk boundary.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: String,
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
        if self.pending.is_empty() {
            let out = rewrite_segment(matcher, chunk, self.before, last, to, count);
            return match out {
                None => {
                    self.advance(chunk.as_bytes(), last);
                    None
                }
                Some((emit, held)) => {
                    self.pending.push_str(&chunk[held..]);
                    self.advance(emit.as_bytes(), last);
                    Some(emit)
                }
            };
        }
        let mut text = std::mem::take(&mut self.pending);
        text.push_str(chunk);
        match rewrite_segment(matcher, &text, self.before, last, to, count) {
            None => {
                self.advance(text.as_bytes(), last);
                Some(text)
            }
            Some((emit, held)) => {
                self.pending.push_str(&text[held..]);
                self.advance(emit.as_bytes(), last);
                Some(emit)
            }
        }
    }

    fn advance(&mut self, emitted: &[u8], last: bool) {
        if last {
            self.before = [0; 3];
            return;
        }
        for &b in emitted.iter().rev().take(3).rev() {
            self.before = [self.before[1], self.before[2], b];
        }
    }

    /// Whether text is being held back (for tests and the memory bound).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Rewrites `text` up to the first open candidate. `None`: nothing to change and nothing held.
/// `Some((emit, held_from))`: emit this, and hold `text[held_from..]` for the next chunk.
fn rewrite_segment(
    matcher: &NumberMatcher,
    text: &str,
    before: Before,
    last: bool,
    to: &Replacement,
    count: &mut usize,
) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut from = 0;
    loop {
        match matcher.scan(bytes, from, before, last) {
            Scan::Found(m) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 8));
                o.push_str(&text[copied..m.start]);
                to.write(&text[m.start..m.end], m.kind, o);
                *count += 1;
                copied = m.end;
                from = m.end;
            }
            Scan::Open(at) => {
                let mut o = out.unwrap_or_default();
                o.push_str(&text[copied..at]);
                return Some((o, at));
            }
            Scan::Done => {
                return out.map(|mut o| {
                    o.push_str(&text[copied..]);
                    (o, text.len())
                });
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
        (NumberMatcher::new(&[site]), Replacement::new(to, "1"))
    }

    fn rw(text: &str) -> String {
        let (m, to) = us();
        let mut n = 0;
        m.rewrite_value(text, &to, &mut n).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn keeps_shape() {
        assert_eq!(rw("Call (555) 010-0000 now"), "Call (555) 010-1001 now");
        assert_eq!(
            rw("+1&nbsp;555&#8209;010&#8209;0000"),
            "+1&nbsp;555&#8209;010&#8209;1001"
        );
        assert_eq!(rw("tel:%2B1%20555%20010%200000"), "tel:%2B1%20555%20010%201001");
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
