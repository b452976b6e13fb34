//! Runs the rewrite engine over one page many times, for a profiler: the page fed in 16 KB
//! chunks through `rewrite_document_with`, with the load harness's rules.
//!
//!     cargo build --release --example rewrite_profile
//!     valgrind --tool=callgrind target/release/examples/rewrite_profile benches/data/small-business.html 200
//!
//! Instruction counts do not depend on the machine's load, so they compare changes to the
//! engine where wall-clock benchmarks on a shared machine drift (REFERENCE.md §7).

use std::sync::Arc;

use telswap::rewrite::html::DEFAULT_MEMORY_LIMIT;
use telswap::rewrite::{Engine, NumberMatcher, PageRules, PhoneNumber, Replacement, rewrite_document_with};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "benches/data/small-business.html".into());
    let times: usize = args.next().map_or(200, |n| n.parse().expect("a count of runs"));
    let page = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let number = |s| PhoneNumber::parse(s, "US").expect("a valid number");
    let rules = PageRules::new(
        Arc::new(NumberMatcher::new(&[number("+1 555-010-0000")])),
        vec!["[data-telswap-ignore]".into(), "[data-calltrk-noswap]".into()],
        DEFAULT_MEMORY_LIMIT,
    );
    let to = Arc::new(Replacement::new(number("+1 555-010-1001")));
    let mut bytes = 0;
    for _ in 0..times {
        let out = rewrite_document_with(&rules, to.clone(), &page, 16 * 1024, Engine::Auto);
        assert_ne!(out, page, "the page holds the site's number, so the rewrite changes it");
        bytes += out.len();
    }
    println!("{times} runs of {path}: {bytes} bytes out");
}
