//! Pool occupancy over time for the pools page: a sample of every pool's leased count and
//! exhaustion counter each minute, kept in memory for the last 7 days.
//!
//! In memory on purpose: the pools themselves live in memory and restart empty, and the
//! durable record of traffic is the lease table, which the sizing reads.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::clock::Millis;
use crate::pool::PoolStats;

/// One sample a minute for a week.
pub const SAMPLES: usize = 7 * 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Millis,
    pub leased: usize,
    /// The pool's exhaustion counter (a total since start) when sampled.
    pub exhausted_total: u64,
}

#[derive(Default)]
pub struct Occupancy {
    series: Mutex<HashMap<(String, String), VecDeque<Sample>>>,
}

impl Occupancy {
    pub fn record(&self, at: Millis, stats: &[PoolStats]) {
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for p in stats {
            let q = map.entry((p.site.clone(), p.name.clone())).or_default();
            if q.len() == SAMPLES {
                q.pop_front();
            }
            q.push_back(Sample {
                at,
                leased: p.leased,
                exhausted_total: p.exhausted,
            });
        }
    }

    /// Samples of one pool in [from, to), at most `points` of them (each the busiest of the
    /// samples it stands for, so a short peak is not averaged away), as (at, leased, exhaustion
    /// events since the point before).
    pub fn series(&self, site: &str, pool: &str, from: Millis, to: Millis, points: usize) -> Vec<(Millis, usize, u64)> {
        let map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get(&(site.to_string(), pool.to_string())) else {
            return Vec::new();
        };
        let picked: Vec<&Sample> = q.iter().filter(|s| s.at >= from && s.at < to).collect();
        let per = picked.len().div_ceil(points.max(1)).max(1);
        let mut out = Vec::new();
        let mut prev_total = picked.first().map(|s| s.exhausted_total).unwrap_or(0);
        for chunk in picked.chunks(per) {
            let last = chunk[chunk.len() - 1];
            let leased = chunk.iter().map(|s| s.leased).max().unwrap_or(0);
            // A restart resets the counter: count from zero again rather than going negative.
            let events = last
                .exhausted_total
                .checked_sub(prev_total)
                .unwrap_or(last.exhausted_total);
            out.push((last.at, leased, events));
            prev_total = last.exhausted_total;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::PoolMode;

    fn stats(leased: usize, exhausted: u64) -> Vec<PoolStats> {
        vec![PoolStats {
            site: "s".into(),
            name: "p".into(),
            mode: PoolMode::Session,
            size: 10,
            leased,
            peak_leased: leased,
            exhausted,
            handed_over: 0,
        }]
    }

    #[test]
    fn series_keeps_peaks_and_counts_events() {
        let o = Occupancy::default();
        for (i, (l, e)) in [(1, 0), (5, 0), (2, 3), (2, 7)].into_iter().enumerate() {
            o.record(i as u64 * 60_000, &stats(l, e));
        }
        assert_eq!(
            o.series("s", "p", 0, u64::MAX, 2),
            vec![(60_000, 5, 0), (180_000, 2, 7)]
        );
        assert_eq!(o.series("s", "p", 0, u64::MAX, 10).len(), 4);
        assert!(o.series("s", "other", 0, u64::MAX, 10).is_empty());
    }
}
