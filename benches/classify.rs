//! Classification cost per request: the GA4 channel rules, click ids, keyword, device and
//! crawler checks the visitor phase runs on every page view.

use criterion::{Criterion, criterion_group, criterion_main};
use telswap::visitor::classify::{Landing, classify, device, is_bot};

const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "paid_search_gclid",
        "utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=plumber&gclid=Cj0KCQiA",
        None,
    ),
    ("organic_referrer", "", Some("https://www.google.co.uk/")),
    (
        "social_referrer",
        "",
        Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com%2F"),
    ),
    ("direct", "", None),
    ("internal", "", Some("https://www.example.com/services")),
    (
        "email_utm",
        "utm_source=newsletter&utm_medium=email&utm_campaign=nov",
        None,
    ),
];

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

fn bench(c: &mut Criterion) {
    let own = vec!["www.example.com".to_string(), "example.com".to_string()];
    let capture = vec!["cta".to_string()];
    let mut g = c.benchmark_group("classify");
    for (name, query, referrer) in CASES {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let l = Landing {
                    query,
                    referrer: *referrer,
                    own_hosts: &own,
                    capture: &capture,
                };
                std::hint::black_box(classify(std::hint::black_box(&l)))
            })
        });
    }
    g.bench_function("is_bot_browser", |b| b.iter(|| is_bot(std::hint::black_box(Some(UA)))));
    g.bench_function("is_bot_googlebot", |b| {
        b.iter(|| {
            is_bot(std::hint::black_box(Some(
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            )))
        })
    });
    g.bench_function("device", |b| b.iter(|| device(std::hint::black_box(Some(UA)), None)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
