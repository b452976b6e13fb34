//! The number-format table: every common way a number is written, in, and what the visitor sees.
//! Each case runs through the real engine (the byte-level one, as for any UTF-8 page; `tests/engines.rs`
//! holds lol_html to the same output) as page text.

use std::sync::Arc;

use telswap::rewrite::html::DEFAULT_MEMORY_LIMIT;
use telswap::rewrite::{NumberMatcher, PageRules, PhoneNumber, Replacement, rewrite_document};

fn engine(site: &str, tracking: &str, country: &str) -> (PageRules, Arc<Replacement>) {
    let site = PhoneNumber::parse(site, country).unwrap();
    let rules = PageRules::new(
        Arc::new(NumberMatcher::new(&[site])),
        vec!["[data-telswap-ignore]".into()],
        DEFAULT_MEMORY_LIMIT,
    );
    let to = Arc::new(Replacement::new(PhoneNumber::parse(tracking, country).unwrap()));
    (rules, to)
}

fn rewrite(rules: &PageRules, to: &Arc<Replacement>, html: &str) -> String {
    String::from_utf8(rewrite_document(rules, to.clone(), html.as_bytes(), 4096)).unwrap()
}

fn check_table(site: &str, tracking: &str, country: &str, cases: &[(&str, &str)]) {
    let (rules, to) = engine(site, tracking, country);
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = rewrite(&rules, &to, &format!("<p>{input}</p>"));
        let want = format!("<p>{want}</p>");
        if got != want {
            failures.push(format!("  {input:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{country} cases failed:\n{}", failures.join("\n"));
}

/// A site that lists numbers of two countries: a number of the tracking number's country keeps
/// its shape; one of the other country, whose digits and grouping mean nothing for the tracking
/// number, becomes its international form, keeping the page's plus sign, prefix and spacing.
#[test]
fn a_number_of_another_country_becomes_the_international_form() {
    let numbers = [
        PhoneNumber::parse("+1 555-010-0000", "US").unwrap(),
        PhoneNumber::parse("+44 20 7946 0000", "GB").unwrap(),
    ];
    let rules = PageRules::new(Arc::new(NumberMatcher::new(&numbers)), vec![], DEFAULT_MEMORY_LIMIT);
    // (tracking number, its country, (page text, what it becomes))
    type Table<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, &str, Table); 2] = [
        (
            "+1 555-010-1001",
            "US",
            &[
                ("(555) 010-0000", "(555) 010-1001"),
                ("+1 555.010.0000", "+1 555.010.1001"),
                ("020 7946 0000", "+1 5550101001"),
                ("(020) 7946 0000", "(+1) 5550101001"),
                ("+44 20 7946 0000", "+1 5550101001"),
                ("+44 (0)20 7946 0000", "+1 5550101001"),
                ("&#43;44&nbsp;20&nbsp;7946&nbsp;0000", "&#43;1&nbsp;5550101001"),
                ("0044 20 7946 0000", "001 5550101001"),
                ("00 44 20 7946 0000", "00 1 5550101001"),
                ("0044 (0)20 7946 0000", "001 5550101001"),
                ("00 44 (0)20 7946 0000", "00 1 5550101001"),
                ("011 44 (0)20 7946 0000", "+1 5550101001"),
                (
                    r#"<a href="tel:0044(0)2079460000">x</a>"#,
                    r#"<a href="tel:0015550101001">x</a>"#,
                ),
                ("011 44 20 7946 0000", "+1 5550101001"),
                ("020-7946-0000", "+1-5550101001"),
                (
                    r#"<a href="tel:+442079460000">x</a>"#,
                    r#"<a href="tel:+15550101001">x</a>"#,
                ),
                (
                    r#"<a href="tel:02079460000">x</a>"#,
                    r#"<a href="tel:+15550101001">x</a>"#,
                ),
                (
                    r#"<a href="tel:%2B44%2020%207946%200000">x</a>"#,
                    r#"<a href="tel:%2B1%205550101001">x</a>"#,
                ),
            ],
        ),
        (
            "+44 20 7946 1001",
            "GB",
            &[
                ("(555) 010-0000", "(+44) 2079461001"),
                ("(555)010-0000", "(+44) 2079461001"),
                ("&#40;555&#41; 010-0000", "&#40;+44&#41; 2079461001"),
                ("&lpar;555&rpar;010-0000", "&lpar;+44&rpar; 2079461001"),
                (
                    r#"<script type="application/json">{"phone":5550100000,"n":[15550100000], "s": 5550100000,"t":"tel:5550100000"}</script>"#,
                    r#"<script type="application/json">{"phone":442079461001,"n":[442079461001], "s": 442079461001,"t":"tel:+442079461001"}</script>"#,
                ),
                ("+1 555.010.0000", "+44 2079461001"),
                ("555.010.0000", "+44.2079461001"),
                ("1-555-010-0000", "+44-2079461001"),
                ("011 1 555 010 0000", "011 44 2079461001"),
                ("020 7946 0000", "020 7946 1001"),
                ("+44 (0)20 7946 0000", "+44 (0)20 7946 1001"),
                ("0044 (0)20 7946 0000", "0044 (0)20 7946 1001"),
                (
                    r#"<a href="tel:+15550100000">x</a>"#,
                    r#"<a href="tel:+442079461001">x</a>"#,
                ),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (tracking, country, table) in cases {
        let to = Arc::new(Replacement::new(PhoneNumber::parse(tracking, country).unwrap()));
        for (input, want) in table {
            let got = rewrite(&rules, &to, &format!("<p>{input}</p>"));
            let want = format!("<p>{want}</p>");
            if got != want {
                failures.push(format!("  {tracking}: {input:?}\n    want {want:?}\n    got  {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "cases failed:\n{}", failures.join("\n"));
}

#[test]
fn us_shapes_keep_their_shape() {
    check_table(
        "+1 555-010-0000",
        "+1 555-010-1001",
        "US",
        &[
            ("5550100000", "5550101001"),
            ("555-010-0000", "555-010-1001"),
            ("555.010.0000", "555.010.1001"),
            ("555 010 0000", "555 010 1001"),
            ("(555) 010-0000", "(555) 010-1001"),
            ("(555)010-0000", "(555)010-1001"),
            ("(555) 0100000", "(555) 0101001"),
            ("555/010-0000", "555/010-1001"),
            ("+1 555-010-0000", "+1 555-010-1001"),
            ("+1 (555) 010-0000", "+1 (555) 010-1001"),
            ("+15550100000", "+15550101001"),
            ("+1.555.010.0000", "+1.555.010.1001"),
            ("1-555-010-0000", "1-555-010-1001"),
            ("1 (555) 010-0000", "1 (555) 010-1001"),
            ("1.555.010.0000", "1.555.010.1001"),
            ("001 555 010 0000", "001 555 010 1001"),
            ("011 1 555 010 0000", "011 1 555 010 1001"),
            ("555&nbsp;010&nbsp;0000", "555&nbsp;010&nbsp;1001"),
            ("555&#8209;010&#8209;0000", "555&#8209;010&#8209;1001"),
            ("555&#x2011;010&#x2011;0000", "555&#x2011;010&#x2011;1001"),
            ("555\u{2013}010\u{2013}0000", "555\u{2013}010\u{2013}1001"),
            ("555\u{a0}010\u{a0}0000", "555\u{a0}010\u{a0}1001"),
            ("555\u{2011}010\u{2011}0000", "555\u{2011}010\u{2011}1001"),
            ("+1&#160;555&#160;010&#160;0000", "+1&#160;555&#160;010&#160;1001"),
            ("&#40;555&#41; 010-0000", "&#40;555&#41; 010-1001"),
            ("&plus;1 555 010 0000", "&plus;1 555 010 1001"),
            ("1 555 010 0000 x 123", "1 555 010 1001 x 123"),
            ("555-010-0000x123", "555-010-1001x123"),
            ("(555) 010-0000 ext.12", "(555) 010-1001 ext.12"),
            ("555.010.0000Ext12", "555.010.1001Ext12"),
            (
                "Call 555-010-0000, or 555-010-0000.",
                "Call 555-010-1001, or 555-010-1001.",
            ),
            ("(555) 010-0000!", "(555) 010-1001!"),
        ],
    );
}

#[test]
fn uk_shapes_keep_trunk_prefix_and_optional_zero() {
    check_table(
        "+44 20 7946 0000",
        "+44 20 7946 0123",
        "GB",
        &[
            ("020 7946 0000", "020 7946 0123"),
            ("020-7946-0000", "020-7946-0123"),
            ("(020) 7946 0000", "(020) 7946 0123"),
            ("+44 20 7946 0000", "+44 20 7946 0123"),
            ("+44 (0)20 7946 0000", "+44 (0)20 7946 0123"),
            ("+44 (0) 20 7946 0000", "+44 (0) 20 7946 0123"),
            ("0044 20 7946 0000", "0044 20 7946 0123"),
            ("(20) 7946 0000", "(20) 7946 0123"),
            ("+442079460000", "+442079460123"),
        ],
    );
}

#[test]
fn german_shapes() {
    check_table(
        "+49 30 1234567",
        "+49 30 7654321",
        "DE",
        &[
            ("030 1234567", "030 7654321"),
            ("030/1234567", "030/7654321"),
            ("030-123 45 67", "030-765 43 21"),
            ("(030) 123 45 67", "(030) 765 43 21"),
            ("+49 30 1234567", "+49 30 7654321"),
            ("+49 (0)30 1234567", "+49 (0)30 7654321"),
            ("0049 30 1234567", "0049 30 7654321"),
        ],
    );
}

#[test]
fn french_shapes() {
    check_table(
        "+33 1 23 45 67 89",
        "+33 1 98 76 54 32",
        "FR",
        &[
            ("01 23 45 67 89", "01 98 76 54 32"),
            ("01.23.45.67.89", "01.98.76.54.32"),
            ("0123456789", "0198765432"),
            ("+33 1 23 45 67 89", "+33 1 98 76 54 32"),
            ("+33 (0)1 23 45 67 89", "+33 (0)1 98 76 54 32"),
            (
                "01&nbsp;23&nbsp;45&nbsp;67&nbsp;89",
                "01&nbsp;98&nbsp;76&nbsp;54&nbsp;32",
            ),
        ],
    );
}

#[test]
fn australian_shapes() {
    check_table(
        "+61 2 9876 5432",
        "+61 2 9000 1111",
        "AU",
        &[
            ("(02) 9876 5432", "(02) 9000 1111"),
            ("02 9876 5432", "02 9000 1111"),
            ("+61 2 9876 5432", "+61 2 9000 1111"),
            ("+61 (0)2 9876 5432", "+61 (0)2 9000 1111"),
            ("0011 61 2 9876 5432", "0011 61 2 9000 1111"),
        ],
    );
}

#[test]
fn lookalikes_are_left_alone() {
    let untouched = [
        "15550100000123",
        "5550100000123",
        "25550100000",
        "555-010-00000",
        "555-010-0001",
        "ORD5550100000",
        "ORD-5550100000",
        "Order #5550100000",
        "$5550100000",
        "\u{20ac}5550100000",
        "5550100000.00",
        "555-010-0000-12",
        "licence 555.010.0000.5",
        "555+010+0000",
        "650+253+1234",
        "03/27/2011",
        "2012-01-02 08:00",
        "id=a5550100000b",
        "5550100000xl",
        "5550100000extra",
        "SKU 5550100000p",
        "5550100000x12-34",
        "SKU 5550100000W1-BLK",
        "5550100000&#49;",
        "12-555-010-0000",
    ];
    let (rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    for s in untouched {
        let html = format!("<p>{s}</p>");
        assert_eq!(rewrite(&rules, &to, &html), html, "{s:?} must not be rewritten");
    }
}

#[test]
fn attributes_links_and_json_ld() {
    let (rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    let cases = [
        (
            r#"<a href="tel:+15550100000">x</a>"#,
            r#"<a href="tel:+15550101001">x</a>"#,
        ),
        (
            r#"<a href="TEL:555-010-0000">x</a>"#,
            r#"<a href="TEL:555-010-1001">x</a>"#,
        ),
        (
            r#"<a href="tel:%2B1%20555%20010%200000">x</a>"#,
            r#"<a href="tel:%2B1%20555%20010%201001">x</a>"#,
        ),
        (
            r#"<a href="tel:%2b1-555-010-0000">x</a>"#,
            r#"<a href="tel:%2b1-555-010-1001">x</a>"#,
        ),
        (
            r#"<a href="tel:+15550100000,,123">x</a>"#,
            r#"<a href="tel:+15550101001,,123">x</a>"#,
        ),
        (
            r#"<a href="tel:+15550100000;ext=123">x</a>"#,
            r#"<a href="tel:+15550101001;ext=123">x</a>"#,
        ),
        (
            r#"<a href="tel:+1-555-010-0000p123">x</a>"#,
            r#"<a href="tel:+1-555-010-1001p123">x</a>"#,
        ),
        (
            r#"<a href="sms:+15550100000?body=hi">x</a>"#,
            r#"<a href="sms:+15550101001?body=hi">x</a>"#,
        ),
        (
            r#"<a href="callto:5550100000">x</a>"#,
            r#"<a href="callto:5550101001">x</a>"#,
        ),
        (
            r#"<a href="/call/5550100000">x</a>"#,
            r#"<a href="/call/5550100000">x</a>"#,
        ),
        (
            r#"<img alt="Call 555-010-0000" src="a.png">"#,
            r#"<img alt="Call 555-010-1001" src="a.png">"#,
        ),
        (
            r#"<meta content="Call (555) 010-0000">"#,
            r#"<meta content="Call (555) 010-1001">"#,
        ),
        (
            r#"<b title="555.010.0000" aria-label="555 010 0000">"#,
            r#"<b title="555.010.1001" aria-label="555 010 1001">"#,
        ),
        (r#"<input value="(555) 010-0000">"#, r#"<input value="(555) 010-1001">"#),
        (
            r#"<div data-phone="5550100000" data-x='555-010-0000'>"#,
            // The page's own quoting is kept.
            r#"<div data-phone="5550101001" data-x='555-010-1001'>"#,
        ),
        (
            r#"<div class="c5550100000" id="5550100000">"#,
            r#"<div class="c5550100000" id="5550100000">"#,
        ),
        (
            r#"<script type="application/ld+json">{"telephone":"+1-555-010-0000"}</script>"#,
            r#"<script type="application/ld+json">{"telephone":"+1-555-010-1001"}</script>"#,
        ),
        (
            r#"<script type="application/LD+json">{"telephone":"+1-555-010-0000"}</script>"#,
            r#"<script type="application/LD+json">{"telephone":"+1-555-010-1001"}</script>"#,
        ),
        (
            r#"<script type="application/ld+json">{"telephone":"\u002B1-555-010-0000"}</script>"#,
            r#"<script type="application/ld+json">{"telephone":"\u002B1-555-010-1001"}</script>"#,
        ),
        // What a visitor without JavaScript sees.
        (
            r#"<noscript><p>Call 555-010-0000</p><a href="tel:+15550100000">call</a></noscript>"#,
            r#"<noscript><p>Call 555-010-1001</p><a href="tel:+15550101001">call</a></noscript>"#,
        ),
        // A JSON data island (Next.js's props): the framework would otherwise render the
        // site's number back over the swapped one.
        (
            r#"<script id="__NEXT_DATA__" type="application/json">{"props":{"phone":"(555) 010-0000","href":"tel:+15550100000"}}</script>"#,
            r#"<script id="__NEXT_DATA__" type="application/json">{"props":{"phone":"(555) 010-1001","href":"tel:+15550101001"}}</script>"#,
        ),
        // With parameters, and other `+json` subtypes; a type that only starts like JSON's is
        // not JSON.
        (
            r#"<script type="application/json; charset=utf-8">["555-010-0000"]</script><script type="application/vnd.site+json">["555-010-0000"]</script><script type="application/ld+json;charset=UTF-8">["555-010-0000"]</script><script type="application/json ; charset=utf-8">["555-010-0000"]</script>"#,
            r#"<script type="application/json; charset=utf-8">["555-010-1001"]</script><script type="application/vnd.site+json">["555-010-1001"]</script><script type="application/ld+json;charset=UTF-8">["555-010-1001"]</script><script type="application/json ; charset=utf-8">["555-010-1001"]</script>"#,
        ),
        (
            r#"<script type="application/jsonp">f("555-010-0000")</script><script type="application/json-x">["555-010-0000"]</script>"#,
            r#"<script type="application/jsonp">f("555-010-0000")</script><script type="application/json-x">["555-010-0000"]</script>"#,
        ),
        // Chat and FaceTime buttons: a pool's numbers take calls only.
        (
            r#"<a href="whatsapp://send?phone=15550100000">x</a><a href="facetime:5550100000">y</a>"#,
            r#"<a href="whatsapp://send?phone=15550100000">x</a><a href="facetime:5550100000">y</a>"#,
        ),
        (
            r#"<script>var phone = "555-010-0000";</script>"#,
            r#"<script>var phone = "555-010-0000";</script>"#,
        ),
        (
            r#"<style>.x:after{content:"555-010-0000"}</style>"#,
            r#"<style>.x:after{content:"555-010-0000"}</style>"#,
        ),
        (r#"<!-- 555-010-0000 -->"#, r#"<!-- 555-010-0000 -->"#),
        (
            r#"<title>Call 555-010-0000</title>"#,
            r#"<title>Call 555-010-1001</title>"#,
        ),
        (
            r#"<textarea>555-010-0000</textarea>"#,
            r#"<textarea>555-010-1001</textarea>"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(rewrite(&rules, &to, input), want, "input {input}");
    }
}

#[test]
fn excluded_elements_and_their_content_are_untouched() {
    let (rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    let html = r#"<div data-telswap-ignore title="555-010-0000"><p>555-010-0000 <a href="tel:5550100000">x</a></p><img alt="555-010-0000"></div><p>555-010-0000</p>"#;
    let want = r#"<div data-telswap-ignore title="555-010-0000"><p>555-010-0000 <a href="tel:5550100000">x</a></p><img alt="555-010-0000"></div><p>555-010-1001</p>"#;
    assert_eq!(rewrite(&rules, &to, html), want);
    // Nested exclusions and text after the excluded element closes.
    let html = "<section data-telswap-ignore><div><b>555-010-0000</b></div>555-010-0000</section>555-010-0000";
    let want = "<section data-telswap-ignore><div><b>555-010-0000</b></div>555-010-0000</section>555-010-1001";
    assert_eq!(rewrite(&rules, &to, html), want);
}

#[test]
fn a_page_without_a_match_is_byte_identical() {
    let (rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    let html = "<!DOCTYPE html><html><head><title>x</title></head><body><p>Call 555-010-0099 or 555 0100</p>\
                <p>&amp; &nbsp; &#8209; 03/27/2011 $1,234.50</p><img src=a.png alt='x' data-id=5550100001></body></html>";
    assert_eq!(rewrite(&rules, &to, html), html);
}

#[test]
fn several_site_numbers_all_become_the_tracking_number() {
    let a = PhoneNumber::parse("+1 555-010-0000", "US").unwrap();
    let b = PhoneNumber::parse("+1 800-555-0199", "US").unwrap();
    let rules = PageRules::new(Arc::new(NumberMatcher::new(&[a, b])), vec![], DEFAULT_MEMORY_LIMIT);
    let to = Arc::new(Replacement::new(PhoneNumber::parse("+1 555-010-1001", "US").unwrap()));
    assert_eq!(
        rewrite(&rules, &to, "<p>555-010-0000 / 1-800-555-0199</p>"),
        "<p>555-010-1001 / 1-555-010-1001</p>"
    );
}

#[test]
fn past_the_memory_limit_the_rest_of_the_page_passes_unmodified_and_is_never_cut() {
    let (mut rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    rules.memory_limit = 64 * 1024;
    // A tag lol_html must buffer whole, far larger than the limit, between two numbers.
    let huge = "x".repeat(512 * 1024);
    let html = format!("<p>555-010-0000</p><img alt=\"{huge}\"><p>555-010-0000</p><footer>end</footer>");
    let mut rw = telswap::rewrite::PageRewriter::new(&rules, to, None).unwrap();
    let mut out = Vec::new();
    for piece in html.as_bytes().chunks(16 * 1024) {
        rw.write(piece);
        out.extend(rw.take_output());
    }
    rw.end();
    out.extend(rw.take_output());
    let out = String::from_utf8(out).unwrap();
    assert!(
        rw.stats().bailed_out.load(std::sync::atomic::Ordering::Relaxed),
        "the bail-out is recorded"
    );
    assert!(
        out.starts_with("<p>555-010-1001</p>"),
        "before the bail-out the page is rewritten"
    );
    assert!(
        out.ends_with("<p>555-010-0000</p><footer>end</footer>"),
        "after it the rest passes as is"
    );
    assert_eq!(out.len(), html.len(), "nothing is lost or duplicated");
}

#[test]
fn malformed_markup_still_streams_and_is_rewritten() {
    let (rules, to) = engine("+1 555-010-0000", "+1 555-010-1001", "US");
    let cases = [
        ("<p>555-010-0000<div><span>", "<p>555-010-1001<div><span>"),
        (
            "<table><td>555-010-0000<tr><p>x</table>",
            "<table><td>555-010-1001<tr><p>x</table>",
        ),
        (
            "<a href='tel:5550100000'>555-010-0000</b></i></a></p>",
            "<a href='tel:5550101001'>555-010-1001</b></i></a></p>",
        ),
        ("</p>555-010-0000<<>>", "</p>555-010-1001<<>>"),
    ];
    for (input, want) in cases {
        assert_eq!(rewrite(&rules, &to, input), want, "{input}");
    }
}
