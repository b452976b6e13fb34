//! The proxy's counters for logs and `/metrics`: totals, requests by site and status, and the
//! upstream latency histogram.
//!
//! Everything here is written on the request path, so it is atomics, plus one short mutex for
//! the (site, status) table, whose few hundred entries at most are cheaper to keep in a map than
//! to preallocate per site and status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the upstream latency buckets: from a same-rack origin (1 ms) to
/// the default response timeout (30 s), roughly ×2.5 apart, as Prometheus client defaults are.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Label used for requests that matched no site (421).
pub const NO_SITE: &str = "_unknown";

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub misdirected: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub rewritten: AtomicU64,
    /// Of those, the ones lol_html rewrote (the rest took the byte-level engine).
    pub rewritten_lol_html: AtomicU64,
    /// Of those, the ones answered from a recording of the same bytes (`rewrite::replay`).
    pub rewritten_replayed: AtomicU64,
    /// Of the others, the ones that differed from a recording and were answered from it up to
    /// the difference, the engine reading only what followed.
    pub rewritten_resumed: AtomicU64,
    /// Of those, the ones that went back to their recording after a change of length moved
    /// the rest of the page.
    pub rewritten_realigned: AtomicU64,
    /// Page bytes answered from recordings without an engine reading them (whole replays and
    /// resumed pages' parts before the difference).
    pub replayed_bytes: AtomicU64,
    pub swapped: AtomicU64,
    pub bail_outs: AtomicU64,
    /// Client connections open now, plain and TLS after the handshake (gauge).
    pub connections_open: AtomicU64,
    /// Of those, keep-alive connections parked between requests, holding no HTTP buffers.
    pub connections_idle: AtomicU64,
    /// site → status → count; nested so that the hot path looks a site up without allocating.
    by_status: Mutex<HashMap<String, HashMap<u16, u64>>>,
    pub upstream_latency: Histogram,
}

impl Stats {
    /// Counts one answered request of `site` (or [`NO_SITE`]).
    pub fn record_status(&self, site: &str, status: u16) {
        let mut map = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(site) {
            Some(codes) => *codes.entry(status).or_default() += 1,
            None => {
                map.insert(site.to_string(), HashMap::from([(status, 1)]));
            }
        }
    }

    /// `(site, status, count)`, sorted, for a stable exposition.
    pub fn by_status(&self) -> Vec<(String, u16, u64)> {
        let map = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .flat_map(|(s, codes)| codes.iter().map(move |(c, n)| (s.clone(), *c, *n)))
            .collect();
        v.sort();
        v
    }
}

/// A fixed-bucket latency histogram (cumulative on read, as Prometheus wants it).
#[derive(Debug, Default)]
pub struct Histogram {
    /// One slot per bucket of [`LATENCY_BUCKETS`], plus one for `+Inf`; not cumulative.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Cumulative counts per bucket bound (the last is `+Inf`, the total), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(Option<f64>, u64)>, f64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Relaxed);
            out.push((LATENCY_BUCKETS.get(i).copied(), acc));
        }
        (out, self.sum_micros.load(Relaxed) as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let (b, sum) = h.snapshot();
        assert_eq!(b[0], (Some(0.001), 1));
        assert_eq!(b[2], (Some(0.005), 2));
        assert_eq!(b.last().unwrap(), &(None, 3));
        assert!((sum - 20.0035).abs() < 1e-6);
    }

    #[test]
    fn statuses_count_by_site() {
        let s = Stats::default();
        s.record_status("a", 200);
        s.record_status("a", 200);
        s.record_status(NO_SITE, 421);
        assert_eq!(s.by_status(), vec![("_unknown".into(), 421, 1), ("a".into(), 200, 2)]);
    }
}
