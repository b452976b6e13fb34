//! What the rewrite engine costs on top of lol_html itself, over real pages (`benches/data/`) fed
//! in 16 KB chunks as the network delivers them.
//!
//! One group per page, each with three functions, so a single run gives the ratios (absolute
//! figures drift between runs; REFERENCE.md §7):
//! - `telswap`: [`PageRewriter`] exactly as the proxy drives it (the byte-level engine on these
//!   UTF-8 pages);
//! - `telswap_lol_html`: the same rewrites made by lol_html with the number handlers (the engine
//!   for other charsets and complex `exclude` selectors, and the only one before issue 6);
//! - `lol_html_no_handlers`: lol_html (non-strict) parsing and serialising with no handlers at
//!   all, the ceiling no rewriter built on it can pass;
//! - `lol_html_noop_handlers`: the selectors and handler kinds `PageRewriter::new` registers, each
//!   doing nothing: what lol_html charges just to show the engine every element and text chunk.
//!   `telswap` / this is the engine's own share.
//!
//! The `replay-*` groups time one response of a page the proxy has seen before
//! (`rewrite::replay`): read by the engine alone (`engine`, as with `--replay-cache-mb 0`),
//! answered whole from its recording (`replayed`), and differing from it on every response at
//! 90% and at 50% of the page (a "generated in N ms" comment whose length changes): answered from
//! the recording up to the difference, the engine resumed there and reading on until the
//! recording's bytes are found again past the change and it rejoins them (`differs_at_90pct`,
//! `differs_at_50pct`); with two tokens of the same length that change on every response, at
//! 10% and 60% (`tokens`): the engine reads from the last clean point before each to the first
//! after it where its state is the recorded one, the recording answers the rest; and with the
//! page's second half unlike the recording on every response (a letter upper-cased throughout,
//! a different one each time: `rest_differs`), where the engine reads the whole half and the
//! replay's tries to rejoin and realign are all lost time.
//!
//! The `matcher` group runs [`NumberMatcher`] over a page's raw bytes, without HTML parsing.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lol_html::MemorySettings;
use lol_html::html_content::TextChunk;
use lol_html::send::{DocumentContentHandlers, Element, ElementContentHandlers, HtmlRewriter, Settings};
use telswap::rewrite::html::DEFAULT_MEMORY_LIMIT;
use telswap::rewrite::matcher::Scan;
use telswap::rewrite::{Engine, NumberMatcher, PageRewriter, PageRules, PhoneNumber, Replacement};

/// What a socket read typically hands the proxy (and hyper's default read buffer).
const CHUNK: usize = 16 * 1024;

/// The pages, and how many occurrences of the site's number each holds where the engine rewrites
/// them (text, JSON-LD, `tel:` hrefs, `data-*`, `aria-label`, `content`; not inside
/// `[data-telswap-ignore]`, and none of the look-alikes). Checked before timing, so a page that
/// stopped exercising the replacement path fails loudly instead of measuring something else.
const PAGES: &[(&str, &[u8], usize)] = &[
    ("small-business", include_bytes!("data/small-business.html"), 11),
    ("numbers-heavy", include_bytes!("data/numbers-heavy.html"), 603),
    ("large-none", include_bytes!("data/large-none.html"), 0),
];

fn site_number() -> PhoneNumber {
    PhoneNumber::parse("+1 555-010-0000", "US").expect("site number")
}

fn rules() -> PageRules {
    PageRules::new(
        Arc::new(NumberMatcher::new(&[site_number()])),
        vec!["[data-telswap-ignore]".into(), "[data-calltrk-noswap]".into()],
        DEFAULT_MEMORY_LIMIT,
    )
}

fn replacement() -> Arc<Replacement> {
    Arc::new(Replacement::new(
        PhoneNumber::parse("+1 555-010-1001", "US").expect("tracking number"),
    ))
}

/// The engine as the proxy drives it (the pattern of `rewrite_document`). Returns the output and
/// the number of replacements.
fn run_telswap(rules: &PageRules, to: &Arc<Replacement>, page: &[u8], engine: Engine) -> (Vec<u8>, usize) {
    let rw = PageRewriter::with_engine(rules, to.clone(), None, engine).expect("utf-8 is supported");
    let (out, rw) = drive(rw, page);
    let stats = rw.stats();
    assert!(!stats.bailed_out.load(Ordering::Relaxed), "the rewriter bailed out");
    (out, stats.swapped.load(Ordering::Relaxed))
}

/// lol_html with nothing to do: not even the `<meta charset>` element handler the engine's
/// settings add. Non-strict like the engine, so odd markup is parsed the same way.
fn bare_settings<'h>() -> Settings<'h, 'static> {
    Settings::new_send().with_strict(false)
}

/// The settings `PageRewriter::new` uses for a response without a charset in `Content-Type`.
fn engine_settings<'h>() -> Settings<'h, 'static> {
    Settings::new_send()
        .with_strict(false)
        .with_graceful_bail_out_on_content_handler_error(true)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(DEFAULT_MEMORY_LIMIT)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        )
        .with_adjust_charset_on_meta_tag(true)
}

/// The handlers `PageRewriter::new` registers, in the same order and on the same selectors, each
/// doing nothing beyond reading what the engine reads first.
fn noop_handlers<'h>(exclude: &[String]) -> Settings<'h, 'static> {
    let mut settings = engine_settings();
    for selector in exclude {
        for sel in [selector.clone(), format!("{selector} *")] {
            let parsed = sel.parse().expect("exclude selector");
            let handlers = ElementContentHandlers::default()
                .element(|_: &mut Element<'_, '_>| Ok(()))
                .text(|_: &mut TextChunk<'_>| Ok(()));
            settings = settings.append_element_content_handler((std::borrow::Cow::Owned(parsed), handlers));
        }
    }
    let json_ld = r#"script[type="application/ld+json"]"#.parse().expect("static selector");
    settings = settings.append_element_content_handler((
        std::borrow::Cow::Owned(json_ld),
        ElementContentHandlers::default().text(|_: &mut TextChunk<'_>| Ok(())),
    ));
    let any = "*".parse().expect("static selector");
    settings = settings.append_element_content_handler((
        std::borrow::Cow::Owned(any),
        ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
            for attr in el.attributes() {
                black_box(attr.name());
            }
            Ok(())
        }),
    ));
    settings.append_document_content_handler(DocumentContentHandlers::default().text(|t: &mut TextChunk<'_>| {
        black_box(t.as_str());
        Ok(())
    }))
}

/// Streams `page` through a bare lol_html rewriter built from `settings`.
fn lol_html(settings: Settings<'_, 'static>, page: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.len() + 64);
    let mut rw = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
    for chunk in page.chunks(CHUNK) {
        rw.write(chunk).expect("lol_html write");
    }
    rw.end().expect("lol_html end");
    out
}

fn pages(c: &mut Criterion) {
    let rules = rules();
    let to = replacement();
    for &(name, page, expected) in PAGES {
        let (rewritten, swapped) = run_telswap(&rules, &to, page, Engine::Auto);
        assert_eq!(swapped, expected, "{name}: replacements made by the engine");
        let (by_lol_html, swapped) = run_telswap(&rules, &to, page, Engine::LolHtml);
        assert_eq!(swapped, expected, "{name}: replacements made through lol_html");
        assert!(rewritten == by_lol_html, "{name}: the two engines differ");
        assert_eq!(
            lol_html(bare_settings(), page),
            page,
            "{name}: lol_html without handlers"
        );
        assert_eq!(
            lol_html(noop_handlers(rules.exclude()), page),
            page,
            "{name}: no-op handlers"
        );
        assert_eq!(
            rewritten.len(),
            page.len(),
            "{name}: the tracking number has as many digits"
        );

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(page.len() as u64));
        if page.len() > 64 * 1024 {
            // Milliseconds per iteration: criterion's linear sampling would need minutes.
            group.sampling_mode(SamplingMode::Flat);
        }
        group.bench_function("telswap", |b| {
            b.iter(|| run_telswap(&rules, &to, black_box(page), Engine::Auto))
        });
        group.bench_function("telswap_lol_html", |b| {
            b.iter(|| run_telswap(&rules, &to, black_box(page), Engine::LolHtml))
        });
        group.bench_function("lol_html_no_handlers", |b| {
            b.iter(|| lol_html(bare_settings(), black_box(page)))
        });
        group.bench_function("lol_html_noop_handlers", |b| {
            b.iter(|| lol_html(noop_handlers(rules.exclude()), black_box(page)))
        });
        group.finish();
    }
}

/// One response through the proxy's rewriter for page `key` (replays on), as `run_telswap`.
fn respond(rules: &PageRules, to: &Arc<Replacement>, key: &str, page: &[u8]) -> Vec<u8> {
    let rw = PageRewriter::for_page(rules, to.clone(), Some(encoding_rs::UTF_8), Some(key.into()))
        .expect("utf-8 is supported");
    drive(rw, page).0
}

/// Feeds `page` to `rw` in [`CHUNK`]s, taking the output after each, and ends it.
fn drive(mut rw: PageRewriter, page: &[u8]) -> (Vec<u8>, PageRewriter) {
    let mut out = Vec::with_capacity(page.len() + 64);
    for chunk in page.chunks(CHUNK) {
        rw.write(chunk);
        out.extend(rw.take_output());
    }
    rw.end();
    out.extend(rw.take_output());
    (out, rw)
}

fn replays(c: &mut Criterion) {
    let rules = rules();
    let to = replacement();
    for &(name, page, _) in &PAGES[..2] {
        // The page with a comment that differs on every response, at `share` of its length.
        let varied = |share: usize, n: u64| {
            let at = page.len() * share / 100;
            let at = (at..page.len()).find(|&i| page[i] == b'<').unwrap_or(page.len());
            let mut p = page.to_vec();
            // Of a different length from one response to the next (the recording's, taken every
            // VOLATILE_RETRY-th response, has the same length as one in four).
            let pad = " ".repeat((n % 4) as usize);
            p.splice(at..at, format!("<!-- generated in {n} ms{pad} -->").into_bytes());
            p
        };
        let mut group = c.benchmark_group(format!("replay-{name}"));
        group.throughput(Throughput::Bytes(page.len() as u64));
        group.bench_function("engine", |b| {
            b.iter(|| run_telswap(&rules, &to, black_box(page), Engine::Auto))
        });
        let key = format!("bench.test/{name}");
        assert_eq!(
            respond(&rules, &to, &key, page),
            run_telswap(&rules, &to, page, Engine::Auto).0
        );
        group.bench_function("replayed", |b| b.iter(|| respond(&rules, &to, &key, black_box(page))));
        for share in [90, 50] {
            let id = format!("differs_at_{share}pct");
            responses(&mut group, (name, &id), (&rules, &to), 1_000_000, |n| varied(share, n));
        }
        let tokens = |n: u64| {
            let mut p = page.to_vec();
            for (share, k) in [(60, 1), (10, 2)] {
                let at = page.len() * share / 100;
                let at = (at..page.len()).find(|&i| page[i] == b'<').unwrap_or(page.len());
                let token = format!(
                    "<input type=hidden name=t{k} value=\"{:016x}\">",
                    n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                );
                p.splice(at..at, token.into_bytes());
            }
            p
        };
        responses(&mut group, (name, "tokens"), (&rules, &to), 1, tokens);
        let rest_differs = |n: u64| {
            let mut p = page.to_vec();
            let letter = b'a' + (n % 26) as u8;
            for c in &mut p[page.len() / 2..] {
                if *c == letter {
                    *c = letter.to_ascii_uppercase();
                }
            }
            p
        };
        responses(&mut group, (name, "rest_differs"), (&rules, &to), 1, rest_differs);
        group.finish();
    }
}

/// Times one response each of `make(n + 1)`, `make(n + 2)`..., a page differing on every
/// response, after `make(n)` was recorded (under a key of its own, from the page's name and `id`).
fn responses(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    (name, id): (&str, &str),
    (rules, to): (&PageRules, &Arc<Replacement>),
    mut n: u64,
    make: impl Fn(u64) -> Vec<u8>,
) {
    let key = format!("bench.test/{name}/{id}");
    let first = make(n);
    assert_eq!(
        respond(rules, to, &key, &first),
        run_telswap(rules, to, &first, Engine::Auto).0
    );
    group.bench_function(id, |b| {
        b.iter_batched(
            || {
                n += 1;
                make(n)
            },
            |p| respond(rules, to, &key, &p),
            criterion::BatchSize::SmallInput,
        )
    });
}

/// The matcher alone over a page's raw bytes: tags, attributes and scripts included, so it sees
/// more candidates than the engine hands it (`href="/...?ref=5550100000"` matches here).
fn matcher(c: &mut Criterion) {
    let matcher = NumberMatcher::new(&[site_number()]);
    let to = replacement();
    let mut group = c.benchmark_group("matcher");
    group.sampling_mode(SamplingMode::Flat);
    for &(name, page, _) in PAGES.iter().filter(|(name, ..)| *name != "small-business") {
        let text = std::str::from_utf8(page).expect("pages are utf-8");
        group.throughput(Throughput::Bytes(page.len() as u64));
        group.bench_with_input(BenchmarkId::new("scan", name), text, |b, text| {
            b.iter(|| {
                let bytes = black_box(text).as_bytes();
                let (mut from, mut found) = (0, 0usize);
                while let Scan::Found(m) = matcher.scan(bytes, from, Default::default(), true) {
                    from = m.end;
                    found += 1;
                }
                found
            })
        });
        group.bench_with_input(BenchmarkId::new("rewrite_value", name), text, |b, text| {
            b.iter(|| {
                let mut n = 0;
                matcher.rewrite_value(black_box(text), &to, &mut n)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pages, replays, matcher);
criterion_main!(benches);
