//! Fills the proxy's session log past its bound, as a busy site does within a day, and reports
//! what each page view cost on the request's thread and what the log kept.
//!
//!     cargo run --release --example session_log -- 2000000
//!
//! Each session views three pages (the third after the maintenance tick's housekeeping has had
//! its chance, every 20,000 views, as at 4,000 views a second). The log is bounded at 1,000,000
//! sessions, the proxy's size. Prints the latency distribution of `page_view` before and past the
//! bound, the stalls over 1 ms (moka rebuilding a table segment or growing on the inserting
//! thread), and how many of the last 1,000 sessions the log still holds with all three pages.

use std::time::Instant;

use telswap::visitor::classify::Device;
use telswap::visitor::sessions::{Seen, SessionLog};

const BOUND: u64 = 1_000_000;

fn main() {
    let sessions: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |n| n.parse().expect("a count of sessions"));
    let log = SessionLog::new(BOUND);
    let none = None;
    let mut below = Vec::new();
    let mut past = Vec::new();
    let started = Instant::now();
    let mut views = 0u64;
    for i in 0..sessions {
        let session = format!("AaJLEPDVh1STjF27-vFwOg{i:08}");
        for path in ["/", "/pricing", "/contact"] {
            let t = Instant::now();
            log.page_view(
                "site",
                "visitor",
                &session,
                i,
                Device::Desktop,
                (&none, &none, 0),
                Some(Seen::path(path)),
                i,
            );
            let ns = t.elapsed().as_nanos() as u64;
            if i < BOUND {
                below.push(ns)
            } else {
                past.push(ns)
            }
            views += 1;
            if views.is_multiple_of(20_000) {
                log.run_pending_tasks();
            }
        }
    }
    let elapsed = started.elapsed();
    log.run_pending_tasks();
    let kept = (sessions.saturating_sub(1_000)..sessions)
        .filter(|i| {
            log.get(&format!("AaJLEPDVh1STjF27-vFwOg{i:08}"))
                .is_some_and(|r| r.pages.len() == 3)
        })
        .count();
    println!(
        "{sessions} sessions, {views} page views in {:.2} s",
        elapsed.as_secs_f64()
    );
    report("below the bound", below);
    report("past the bound", past);
    println!(
        "of the last 1,000 sessions, {kept} are held with all 3 page views; {} sessions held",
        log.len()
    );
}

fn report(name: &str, mut ns: Vec<u64>) {
    if ns.is_empty() {
        return;
    }
    let over = |limit: u64| ns.iter().filter(|&&n| n > limit).count();
    let (over_1ms, stalled_ms) = (
        over(1_000_000),
        ns.iter().filter(|&&n| n > 200_000).sum::<u64>() / 1_000_000,
    );
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1_000.0;
    println!(
        "{name}: {} views; p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.2} ms; {over_1ms} over 1 ms; views over 200 us sum {stalled_ms} ms",
        ns.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        ns[ns.len() - 1] as f64 / 1e6,
    );
}
