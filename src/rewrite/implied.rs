//! Elements closed without an end tag, for exclusions: `<li data-telswap-ignore>…<li>` ends the
//! excluded item where the next one starts, as a browser reads it.
//!
//! lol_html does no tree construction: its selector matching keeps an element open until an end
//! tag of its name, or of an ancestor's, arrives, so on its own an excluded element closed only
//! implicitly would keep the rest of its parent unswapped. Both engines ([`super::fast`] and
//! [`super::html`]'s handlers) keep lol_html's open elements, ask [`implied_close`] at every
//! HTML start tag while an excluded element is open, and mark what it closes as closed (the
//! excluded element, or an ancestor of it such as its table cell); the end tags that lol_html
//! pairs with them later change nothing more.
//!
//! The rules are the HTML parser's "in body" start tags that close open elements, in the part
//! that concerns elements inside an exclusion: a new `li` closes the open `li` (`dd`/`dt` the
//! open `dd`/`dt`) unless a list or other special element stands between; a block start closes
//! an open `p` in button scope; a heading closes an open heading right above it; `option`
//! closes an open `option`; table cells, rows and sections close the open ones of their kind
//! within their table. Elements closed while no exclusion is open are not marked (nothing
//! depends on them then), so a later search may still find one: the conservative direction.

/// Special elements (other than `address`, `div` and `p`) that stop the search for an open
/// `li`, `dd` or `dt`; with `svg` and `math`, whose content is not HTML.
const LIST_STOP: &[&[u8]] = &[
    b"applet",
    b"area",
    b"article",
    b"aside",
    b"base",
    b"basefont",
    b"bgsound",
    b"blockquote",
    b"body",
    b"br",
    b"button",
    b"caption",
    b"center",
    b"col",
    b"colgroup",
    b"details",
    b"dir",
    b"dl",
    b"embed",
    b"fieldset",
    b"figcaption",
    b"figure",
    b"footer",
    b"form",
    b"frame",
    b"frameset",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"head",
    b"header",
    b"hgroup",
    b"hr",
    b"html",
    b"iframe",
    b"img",
    b"input",
    b"keygen",
    b"link",
    b"listing",
    b"main",
    b"marquee",
    b"menu",
    b"meta",
    b"nav",
    b"noembed",
    b"noframes",
    b"noscript",
    b"object",
    b"ol",
    b"param",
    b"plaintext",
    b"pre",
    b"script",
    b"search",
    b"section",
    b"select",
    b"source",
    b"style",
    b"summary",
    b"table",
    b"tbody",
    b"td",
    b"template",
    b"textarea",
    b"tfoot",
    b"th",
    b"thead",
    b"title",
    b"tr",
    b"track",
    b"ul",
    b"wbr",
    b"xmp",
    b"mi",
    b"mo",
    b"mn",
    b"ms",
    b"mtext",
    b"annotation-xml",
    b"foreignobject",
    b"desc",
    b"svg",
    b"math",
];

/// What stops the search for an open `p` ("button scope"), with `svg` and `math`.
const BUTTON_SCOPE: &[&[u8]] = &[
    b"applet",
    b"caption",
    b"html",
    b"table",
    b"td",
    b"th",
    b"marquee",
    b"object",
    b"template",
    b"button",
    b"mi",
    b"mo",
    b"mn",
    b"ms",
    b"mtext",
    b"annotation-xml",
    b"foreignobject",
    b"desc",
    b"title",
    b"svg",
    b"math",
];

/// Start tags that close an open `p` in button scope.
const CLOSES_P: &[&[u8]] = &[
    b"address",
    b"article",
    b"aside",
    b"blockquote",
    b"center",
    b"details",
    b"dialog",
    b"dir",
    b"div",
    b"dl",
    b"fieldset",
    b"figcaption",
    b"figure",
    b"footer",
    b"header",
    b"hgroup",
    b"main",
    b"menu",
    b"nav",
    b"ol",
    b"p",
    b"search",
    b"section",
    b"summary",
    b"ul",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"pre",
    b"listing",
    b"form",
    b"table",
    b"hr",
    b"xmp",
    b"plaintext",
    b"li",
    b"dd",
    b"dt",
];

const HEADINGS: &[&[u8]] = &[b"h1", b"h2", b"h3", b"h4", b"h5", b"h6"];
const TABLE_STOP: &[&[u8]] = &[b"table", b"html", b"template", b"svg", b"math"];
const ROW_STOP: &[&[u8]] = &[
    b"table",
    b"tbody",
    b"thead",
    b"tfoot",
    b"html",
    b"template",
    b"svg",
    b"math",
];
const CELL_STOP: &[&[u8]] = &[
    b"tr",
    b"table",
    b"tbody",
    b"thead",
    b"tfoot",
    b"html",
    b"template",
    b"svg",
    b"math",
];

/// For an HTML start tag `new` (its lowercase name): which of the open elements `open` (those
/// not closed yet, the current node first) it closes, as an index into
/// `open`: that element and every one before it close. `is(element, names)` says whether an
/// element is one of `names` (lowercase).
pub(crate) fn implied_close<N: Copy>(new: &[u8], open: &[N], is: impl Fn(N, &[&[u8]]) -> bool) -> Option<usize> {
    // The first element from `from` on that is one of `want`, unless one of `stop` comes first.
    let find = |from: usize, want: &[&[u8]], stop: &[&[u8]]| -> Option<usize> {
        for (k, &n) in open.iter().enumerate().skip(from) {
            if is(n, want) {
                return Some(k);
            }
            if is(n, stop) {
                return None;
            }
        }
        None
    };
    let mut close = match new {
        b"li" => find(0, &[b"li"], LIST_STOP),
        b"dd" | b"dt" => find(0, &[b"dd", b"dt"], LIST_STOP),
        b"td" | b"th" => find(0, &[b"td", b"th"], CELL_STOP),
        b"tr" => find(0, &[b"tr"], ROW_STOP),
        b"tbody" | b"thead" | b"tfoot" => find(0, &[b"tbody", b"thead", b"tfoot"], TABLE_STOP),
        b"option" | b"optgroup" => open.first().is_some_and(|&n| is(n, &[b"option"])).then_some(0),
        _ => None,
    };
    if CLOSES_P.contains(&new) {
        let below = close.map_or(0, |c| c + 1);
        if let Some(p) = find(below, &[b"p"], BUTTON_SCOPE) {
            close = Some(p);
        }
    }
    if HEADINGS.contains(&new) {
        let top = close.map_or(0, |c| c + 1);
        if open.get(top).is_some_and(|&n| is(n, HEADINGS)) {
            close = Some(top);
        }
    }
    close
}

/// An element on an engine's stack of open elements, as [`close_implied`] reads and marks it.
pub(crate) trait OpenElement {
    /// Its name, keyed as [`super::fast::key_of`] keys names.
    fn key(&self) -> u64;
    fn is_closed(&self) -> bool;
    /// Marks it closed; returns whether it was excluded (one exclusion fewer is open).
    fn close(&mut self) -> bool;
}

/// The HTML start tag `new` (its lowercase name), while an exclusion is open, over an engine's
/// open elements (`stack`, outermost first): marks closed what it closes ([`implied_close`]
/// over the elements not closed yet, so an ancestor of the exclusion, a table cell or a list
/// item, may close with it). Returns how many excluded elements that closed.
pub(crate) fn close_implied<E: OpenElement>(stack: &mut [E], new: &[u8]) -> usize {
    let open: Vec<usize> = (0..stack.len()).rev().filter(|&k| !stack[k].is_closed()).collect();
    let at = {
        let is = |k: usize, names: &[&[u8]]| names.iter().any(|n| super::fast::key_of(n) == stack[k].key());
        implied_close(new, &open, is)
    };
    at.map_or(0, |at| open[..=at].iter().map(|&k| usize::from(stack[k].close())).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(new: &str, open_top_first: &[&str]) -> Option<usize> {
        let open: Vec<&[u8]> = open_top_first.iter().map(|s| s.as_bytes()).collect();
        implied_close(new.as_bytes(), &open, |n, names| names.contains(&n))
    }

    #[test]
    fn the_parsers_implied_ends() {
        assert_eq!(close("li", &["li"]), Some(0));
        assert_eq!(close("li", &["b", "span", "li"]), Some(2));
        assert_eq!(close("li", &["p", "div", "li"]), Some(2), "past address, div and p");
        assert_eq!(close("li", &["ul", "li"]), None, "a nested list");
        assert_eq!(close("dt", &["dd"]), Some(0));
        assert_eq!(close("p", &["b", "p"]), Some(1));
        assert_eq!(close("div", &["span", "p", "div"]), Some(1));
        assert_eq!(close("span", &["p"]), None);
        assert_eq!(close("ul", &["button", "p"]), None, "button scope");
        assert_eq!(close("li", &["p", "li"]), Some(1), "the li, the p with it");
        assert_eq!(close("li", &["li", "p"]), Some(1), "the li, then the p under it");
        assert_eq!(close("h2", &["h1"]), Some(0));
        assert_eq!(close("h2", &["p", "h1"]), Some(1), "the p, then the heading under it");
        assert_eq!(close("option", &["option"]), Some(0));
        assert_eq!(close("option", &["b", "option"]), None);
        assert_eq!(close("td", &["b", "td", "tr"]), Some(1));
        assert_eq!(close("tr", &["td", "tr", "tbody"]), Some(1));
        assert_eq!(close("td", &["table", "td"]), None, "a nested table");
        assert_eq!(close("li", &["svg", "li"]), None);
        assert_eq!(close("li", &[]), None);
    }
}
