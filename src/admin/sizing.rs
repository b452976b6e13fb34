//! A session pool's recommended size, from the traffic it really served.
//!
//! By Little's law the leases held at once average L = λ × W: λ the arrival rate of visitors
//! who take a lease (at the busiest hour), W the mean time a lease is held (the visit plus
//! `idle_timeout`). Arrivals are close to Poisson, so the pool needs L plus a margin for the
//! busy moments of that hour; the vendors' rules of thumb (REFERENCE.md §1) are shown beside it
//! for the same traffic. Pure: lease rows in, figures and an explanation out.

use std::fmt::Write;

use super::dashboard::esc;
use crate::pool::sizing;
use crate::store::LeaseRow;

const HOUR_MS: i64 = 3_600_000;

/// What the pool's leases say about its traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub leases: usize,
    /// Leases started in the busiest clock hour.
    pub peak_arrivals_per_hour: f64,
    /// Mean hold of a lease in minutes: the visit plus `idle_timeout` (or until released).
    pub mean_lease_min: f64,
    /// Mean visit in minutes (first to last page view of the lease).
    pub mean_session_min: f64,
    /// Most visits live at the same moment.
    pub peak_concurrent: usize,
    /// Leases per day, averaged over the days of the window that had any.
    pub daily_visitors: f64,
}

impl Traffic {
    /// `None` without leases to learn from.
    pub fn from_leases(rows: &[LeaseRow], idle_timeout_ms: i64) -> Option<Traffic> {
        if rows.is_empty() {
            return None;
        }
        let mut per_hour = std::collections::HashMap::<i64, usize>::new();
        let mut per_day = std::collections::HashSet::<i64>::new();
        let (mut held, mut visit) = (0i64, 0i64);
        let mut edges = Vec::with_capacity(rows.len() * 2);
        for r in rows {
            *per_hour.entry(r.started.div_euclid(HOUR_MS)).or_default() += 1;
            per_day.insert(r.started.div_euclid(24 * HOUR_MS));
            let end = r.released.unwrap_or(r.last_seen + idle_timeout_ms).max(r.started);
            held += end - r.started;
            visit += (r.last_seen - r.started).max(0);
            edges.push((r.started, 1i32));
            edges.push((r.last_seen.max(r.started) + 1, -1));
        }
        // Ends sort before starts at the same instant.
        edges.sort();
        let (mut live, mut peak) = (0i32, 0i32);
        for (_, d) in edges {
            live += d;
            peak = peak.max(live);
        }
        let n = rows.len() as f64;
        Some(Traffic {
            leases: rows.len(),
            peak_arrivals_per_hour: per_hour.values().copied().max().unwrap_or(0) as f64,
            mean_lease_min: held as f64 / n / 60_000.0,
            mean_session_min: visit as f64 / n / 60_000.0,
            peak_concurrent: peak.max(0) as usize,
            daily_visitors: n / per_day.len().max(1) as f64,
        })
    }
}

/// The recommendation and the rules of thumb for the same traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub traffic: Traffic,
    /// λ × W.
    pub littles_l: f64,
    pub recommended: usize,
    pub nimbata: usize,
    pub ctm: usize,
    /// The seed article's one number per 8–10 concurrent visitors.
    pub seed_article: (usize, usize),
}

impl Sizing {
    pub fn new(traffic: Traffic) -> Sizing {
        let lease = std::time::Duration::from_secs_f64(traffic.mean_lease_min.max(0.0) * 60.0);
        Sizing {
            littles_l: traffic.peak_arrivals_per_hour * traffic.mean_lease_min / 60.0,
            recommended: sizing::littles_law(traffic.peak_arrivals_per_hour, lease, sizing::DEFAULT_HEADROOM).max(1),
            nimbata: sizing::nimbata(traffic.peak_arrivals_per_hour, traffic.mean_session_min).max(1),
            ctm: sizing::ctm(traffic.daily_visitors).max(1),
            seed_article: sizing::seed_article(traffic.peak_concurrent as f64),
            traffic,
        }
    }

    /// The pools page's explanation, with the figures filled in.
    pub fn explain(&self, size: usize) -> String {
        let t = &self.traffic;
        let mut out = String::from(r#"<div class="sizing">"#);
        let _ = write!(
            out,
            "<p><b>Recommended size: <span data-figure=\"recommended\">{}</span></b> (now {size}). From {} leases in the last 7 days: \
             by Little's law, leases held at once = peak arrival rate × mean lease time = {:.0} visitors/hour × {:.1} min \
             (visit {:.1} min + idle timeout) = <b>{:.1}</b>; arrivals are random (Poisson), so the pool gets L + 2√L \
             to cover the busy minutes of the busiest hour.</p>",
            self.recommended, t.leases, t.peak_arrivals_per_hour, t.mean_lease_min, t.mean_session_min, self.littles_l
        );
        let _ = write!(
            out,
            "<table><thead><tr><th>Sizing rule</th><th>For this traffic</th><th class=\"n\">Numbers</th></tr></thead><tbody>\
             <tr><td>telswap: Little's law + Poisson margin</td><td>{:.1} held at once</td><td class=\"n\">{}</td></tr>\
             <tr><td>Nimbata: peak-hour visitors ÷ (60 ÷ average session minutes)</td><td>{:.0} visitors in the busiest hour, {:.1} min sessions</td><td class=\"n\" data-figure=\"nimbata\">{}</td></tr>\
             <tr><td>CallTrackingMetrics: 1 per 20 daily visitors per source</td><td>{:.0} visitors a day</td><td class=\"n\" data-figure=\"ctm\">{}</td></tr>\
             <tr><td>Seed article: 1 per 8–10 concurrent visitors</td><td>{} concurrent</td><td class=\"n\">{}–{}</td></tr>\
             </tbody></table>",
            self.littles_l,
            self.recommended,
            t.peak_arrivals_per_hour,
            t.mean_session_min,
            self.nimbata,
            t.daily_visitors,
            self.ctm,
            t.peak_concurrent,
            self.seed_article.0,
            self.seed_article.1
        );
        out.push_str(&format!(
            "<p class=\"muted\">{}</p></div>",
            esc("The vendors' rules ignore the idle timeout: a lease outlives the visit by it, and a pool sized to visits alone runs out at the busiest hour (see `telswap simulate`).")
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(started_min: i64, visit_min: i64, released_min: Option<i64>) -> LeaseRow {
        LeaseRow {
            id: started_min as u64,
            site: "s".into(),
            pool: "p".into(),
            number: "+15550101001".into(),
            number_index: 0,
            session: format!("s{started_min}"),
            visitor: "v".into(),
            started: started_min * 60_000,
            last_seen: (started_min + visit_min) * 60_000,
            released: released_min.map(|m| m * 60_000),
            shared: false,
        }
    }

    #[test]
    fn littles_law_from_leases() {
        // 60 visitors in one hour, one a minute, each 10 min visit, released 30 min after.
        let rows: Vec<LeaseRow> = (0..60).map(|m| lease(m, 10, Some(m + 40))).collect();
        let t = Traffic::from_leases(&rows, 30 * 60_000).unwrap();
        assert_eq!(t.peak_arrivals_per_hour, 60.0);
        assert!((t.mean_lease_min - 40.0).abs() < 1e-9);
        assert!((t.mean_session_min - 10.0).abs() < 1e-9);
        assert_eq!(t.peak_concurrent, 11);
        let s = Sizing::new(t);
        assert!((s.littles_l - 40.0).abs() < 1e-9);
        assert_eq!(s.recommended, 40 + 13); // 40 + 2√40 = 52.6
        assert_eq!(s.nimbata, 10); // 60 in the busiest hour / (60 / 10)
        assert_eq!(s.ctm, 3); // 60 a day / 20
        assert!(
            s.explain(20)
                .contains("Recommended size: <span data-figure=\"recommended\">53</span>")
        );
        assert!(Traffic::from_leases(&[], 1).is_none());
    }

    #[test]
    fn unreleased_leases_hold_for_idle_timeout() {
        let t = Traffic::from_leases(&[lease(0, 5, None)], 30 * 60_000).unwrap();
        assert!((t.mean_lease_min - 35.0).abs() < 1e-9);
    }
}
