//! Lease operations at scale: 100,000 numbers, 1,000,000 sessions.
//!
//! Each session views three pages (a lease, then two refreshes); the clock moves 10 ms per page
//! view, so about 60,000 leases are live at once and leases lapse (release) continuously. The
//! measured operation is `Pools::choose` — the pool lock, lapsing due leases, and the lease or
//! refresh — as the proxy calls it. Besides criterion's mean, `p99` prints latency percentiles
//! of single operations over a full pass of the million sessions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use telswap::clock::ManualClock;
use telswap::pool::{Audience, Holder, NoJournal, NumberChooser, Pools};
use telswap::rules::{RuleSet, load_sources};
use telswap::visitor::classify::Channel;

const NUMBERS: usize = 100_000;
const SESSIONS: usize = 1_000_000;
const VIEWS_PER_SESSION: usize = 3;
const MS_PER_VIEW: u64 = 10;

fn rules() -> RuleSet {
    // +1 555-2xx-xxxx: 100,000 distinct valid numbers.
    let numbers: Vec<String> = (0..NUMBERS)
        .map(|i| format!("\"+1 555{:07}\"", 2_000_000 + i))
        .collect();
    let text = format!(
        "hosts = [\"bench.test\"]\nupstream = \"http://127.0.0.1:9\"\nnumbers = [\"+1 555-010-0000\"]\n\
         [[pool]]\nname = \"ads\"\nmode = \"session\"\nwhen.channel = [\"paid_search\"]\nidle_timeout = \"30m\"\n\
         numbers = [{}]\n",
        numbers.join(",")
    );
    load_sources(&[(PathBuf::from("bench.toml"), text)]).expect("bench rules")
}

struct Workload {
    set: RuleSet,
    pools: Arc<Pools>,
    clock: Arc<ManualClock>,
    sessions: Vec<String>,
    i: usize,
}

impl Workload {
    fn new() -> Workload {
        let set = rules();
        let clock = ManualClock::new(0);
        let pools = Pools::new(&set, clock.clone(), Arc::new(NoJournal));
        let sessions = (0..SESSIONS).map(|i| format!("s{i:07}")).collect();
        Workload {
            set,
            pools,
            clock,
            sessions,
            i: 0,
        }
    }

    /// One page view: the session at position `i` in an interleaving where each session's three
    /// views are spread over ~3 minutes.
    #[inline]
    fn step(&mut self) {
        let i = self.i;
        self.i += 1;
        let round = i % VIEWS_PER_SESSION;
        let base = i / VIEWS_PER_SESSION;
        // View k of session s happens k*6000 views (60 s) after its first.
        let s = (base + SESSIONS - round * 6000) % SESSIONS;
        self.clock.set(i as u64 * MS_PER_VIEW);
        let site = &self.set.sites[0];
        let a = Audience {
            channel: Channel::PaidSearch,
            source: "google",
            medium: "cpc",
            campaign: None,
        };
        let id = &self.sessions[s];
        let c = self.pools.choose(
            site,
            Some(&a),
            Some(&Holder {
                visitor: id,
                session: id,
            }),
        );
        std::hint::black_box(c);
    }
}

fn bench(c: &mut Criterion) {
    let mut w = Workload::new();
    // Warm up to steady state: a full idle_timeout of arrivals.
    for _ in 0..(30 * 60 * 1000 / MS_PER_VIEW as usize) {
        w.step();
    }
    let mut g = c.benchmark_group("pool_100k_numbers_1m_sessions");
    g.throughput(Throughput::Elements(1));
    g.bench_function("choose_lease_refresh_release", |b| b.iter(|| w.step()));
    g.finish();
    let st = &w.pools.stats(&w.set)[0];
    println!(
        "steady state: {} leased of {}, peak {}, exhausted {}",
        st.leased, st.size, st.peak_leased, st.exhausted
    );
}

fn p99(_: &mut Criterion) {
    let mut w = Workload::new();
    let total = SESSIONS * VIEWS_PER_SESSION;
    let mut lat: Vec<u32> = Vec::with_capacity(total);
    let start = Instant::now();
    for _ in 0..total {
        let t = Instant::now();
        w.step();
        lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
    }
    let wall = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| Duration::from_nanos(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as u64);
    let st = &w.pools.stats(&w.set)[0];
    println!(
        "pool p99: {} page views of {} sessions on {} numbers in {:.2?} = {:.0} ops/s; p50 {:?} p99 {:?} p99.9 {:?} max {:?}; peak leased {}",
        total,
        SESSIONS,
        NUMBERS,
        wall,
        total as f64 / wall.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        st.peak_leased
    );
}

criterion_group!(benches, bench, p99);
criterion_main!(benches);
