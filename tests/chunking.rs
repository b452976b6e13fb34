//! Chunking property: lol_html splits text wherever the network split the page, so a number may
//! arrive in pieces (even inside `&nbsp;`). The output must not depend on where the cuts fall.

use std::sync::Arc;

use telswap::rewrite::html::DEFAULT_MEMORY_LIMIT;
use telswap::rewrite::{NumberMatcher, PageRules, PhoneNumber, Replacement, rewrite_document};

fn engine() -> (PageRules, Arc<Replacement>) {
    let site = PhoneNumber::parse("+1 555-010-0000", "US").unwrap();
    let rules = PageRules::new(
        Arc::new(NumberMatcher::new(&[site])),
        vec!["[data-telswap-ignore]".into()],
        DEFAULT_MEMORY_LIMIT,
    );
    let to = Arc::new(Replacement::new(PhoneNumber::parse("+1 555-010-1001", "US").unwrap()));
    (rules, to)
}

fn pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = ["/", "/services", "/contact"]
        .iter()
        .map(|p| (p.to_string(), telswap::demo::page_for(p).unwrap()))
        .collect();
    pages.push((
        "entities and near misses".into(),
        "<p>+1&nbsp;(555)&nbsp;010&#8209;0000 and 555-010-00001 and 1555-010-0000-2 and &#40;555&#41;&#32;010&#45;0000\
         </p><p>5550100000</p><p>555 010 0000 555 010 0000</p><a href=\"tel:%2B1%20555%20010%200000\" \
         data-x=\"555.010.0000\">555\u{a0}010\u{a0}0000</a><p>tail 555-010-0000"
            .into(),
    ));
    pages
}

/// Asserts that `page`, which holds swaps, is rewritten the same cut into pieces of every size
/// in `sizes` as whole.
fn assert_same_at_every_size(
    name: &str,
    rules: &PageRules,
    to: &Arc<Replacement>,
    page: &str,
    sizes: std::ops::RangeInclusive<usize>,
) {
    let whole = rewrite_document(rules, to.clone(), page.as_bytes(), page.len());
    assert_ne!(whole, page.as_bytes(), "{name}: the page should contain swaps");
    for size in sizes {
        let got = rewrite_document(rules, to.clone(), page.as_bytes(), size);
        assert!(
            got == whole,
            "{name}: chunk size {size} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&whole)
        );
    }
}

#[test]
fn output_is_the_same_for_every_chunk_size_from_1_to_64() {
    let (rules, to) = engine();
    for (name, page) in pages() {
        assert_same_at_every_size(&name, &rules, &to, &page, 1..=64);
    }
}

#[test]
fn every_number_on_the_demo_pages_is_swapped_except_excluded_and_lookalikes() {
    let (rules, to) = engine();
    for (name, page) in pages().into_iter().take(3) {
        let out = String::from_utf8(rewrite_document(&rules, to.clone(), page.as_bytes(), 7)).unwrap();
        // The only originals left in these two spellings: the lookalikes in the footer.
        let left = out.matches("555-010-0000").count() + out.matches("5550100000").count();
        assert_eq!(left, 2, "{name}: unexpected originals left in\n{out}");
        assert!(out.contains("data-telswap-ignore>Our registered office line, never swapped: (555) 010-0000"));
        assert!(out.contains("Order ref 5550100000123"));
        assert!(out.contains("licence 555-010-0000-77"));
    }
}

/// The same property where the tracking number is written with another number of bytes than
/// the site's (shorter, or in international form for a number of another country) and the page
/// separates digits with UTF-8 characters (no-break space, en dash, thin space) that a cut can
/// split: a cut must read as if the text came in one piece, whatever was written before it.
#[test]
fn cuts_inside_utf8_separators_and_after_numbers_of_other_lengths_change_nothing() {
    // (`<body>` first: without it the charset prescan would hold this short page whole.)
    let page = "<body><p>Call 020\u{a0}7946\u{a0}0000 or 020\u{2013}7946\u{2013}0000, 020\u{2009}7946\u{2009}0000 \
                and 1\u{a0}555\u{a0}010\u{a0}0000 now.</p><p>020 7946 000 0,020 7946 0000 x 555\u{2013}010\u{2013}0000</p>";
    // (site number, its country, tracking number)
    let setups = [
        ("+44 20 7946 0000", "GB", "+44 1632 96000"),
        ("+1 555-010-0000", "US", "+44 20 7946 0111"),
        ("+1 555-010-0000", "US", "+1 555-010-1001"),
    ];
    for (site, country, number) in setups {
        let rules = PageRules::new(
            Arc::new(NumberMatcher::new(&[PhoneNumber::parse(site, country).unwrap()])),
            vec![],
            DEFAULT_MEMORY_LIMIT,
        );
        let to = Arc::new(Replacement::new(PhoneNumber::parse(number, "US").unwrap()));
        assert_same_at_every_size(&format!("{site} -> {number}"), &rules, &to, page, 1..=page.len());
    }
}
