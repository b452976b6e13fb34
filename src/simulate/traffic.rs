//! Simulated visitors: when they arrive, which pages they view, when they leave, when they call.
//!
//! Generated once per seed and then replayed against every pool size and policy, so two runs
//! differ only in the pool (common random numbers: the comparison is not drowned in noise).

use super::rng::Rng;
use crate::clock::Millis;

const MINUTE: f64 = 60_000.0;
const HOUR: Millis = 3_600_000;

/// How the arrival rate moves through the day: multipliers of the busiest hour's rate, by hour
/// of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A local business: quiet at night, busy 9–17 with a lunch dip, tapering in the evening.
    Business,
    /// The same rate every hour.
    Flat,
}

const BUSINESS: [f64; 24] = [
    0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.15, 0.35, 0.70, 0.95, 1.00, 1.00, // 00–11
    0.85, 0.95, 1.00, 0.95, 0.85, 0.65, 0.45, 0.40, 0.35, 0.30, 0.20, 0.10, // 12–23
];

impl Shape {
    pub fn factor(self, hour_of_day: usize) -> f64 {
        match self {
            Shape::Business => BUSINESS[hour_of_day % 24],
            Shape::Flat => 1.0,
        }
    }

    pub fn parse(s: &str) -> Result<Shape, String> {
        match s {
            "business" => Ok(Shape::Business),
            "flat" => Ok(Shape::Flat),
            _ => Err(format!("unknown shape {s:?}: expected business or flat")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Business => "business",
            Shape::Flat => "flat",
        }
    }
}

/// The traffic to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Arrivals per hour in the busiest hour of the shape (a Poisson rate).
    pub visitors_per_hour: f64,
    pub shape: Shape,
    pub days: u32,
    /// Mean time from arrival to leaving (lognormal, so most sessions are short and a few long).
    pub session_minutes: f64,
    /// Mean time between page views; each view refreshes the lease.
    pub page_minutes: f64,
    /// Share of visitors who call (once).
    pub call_rate: f64,
    /// Share of callers who call after leaving the site rather than while on it.
    pub call_after_leave: f64,
    /// Mean delay from leaving to calling, for those (exponential).
    pub call_delay_minutes: f64,
}

/// Spread of session lengths: lognormal σ 0.8 puts the median near 70% of the mean and about
/// one session in twenty above 2.5× the mean, like web analytics' session-length histograms.
const SESSION_SIGMA: f64 = 0.8;

/// One visitor's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// Page views, the first at arrival.
    pub views: Vec<Millis>,
    pub leave: Millis,
    pub call: Option<Millis>,
}

impl Visit {
    pub fn arrive(&self) -> Millis {
        self.views[0]
    }
}

/// Generated traffic and the figures the sizing rules read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub start: Millis,
    pub visits: Vec<Visit>,
    /// Most arrivals in one clock hour (what an analytics hourly report shows as the peak).
    pub peak_hour_visitors: usize,
    /// Most visitors on the site at once (between arrival and leaving).
    pub peak_concurrent: usize,
    pub mean_session_minutes: f64,
    pub days: u32,
}

impl Traffic {
    /// The most any pool of `numbers` numbers can get right on this traffic when calls are told
    /// apart by (number, time) alone, whatever its lease policy and ranking.
    ///
    /// At a call, every visitor on the site is showing a tracking number (a page view needs
    /// one). If `C` of them are on the site and `C > numbers`, they cover at most `numbers`
    /// numbers, so for each number at most one of its holders can be the one an attribution
    /// picks; nothing marks the caller out from the others (who will call is not known in
    /// advance), so the caller is picked at best `numbers / C` of the time. A caller who has
    /// left competes with the `C` still on the site: `numbers / (C + 1)`. The bound is generous:
    /// it forgets the other visitors who left and may still call, and counts a shared call as
    /// right when the caller happens to be ranked first.
    pub fn ceiling(&self, numbers: usize) -> f64 {
        // Arrivals and leavings in time order; a visitor is on the site up to and including
        // the instant of leaving.
        let mut edges: Vec<(Millis, i8)> = Vec::with_capacity(self.visits.len() * 2);
        for v in &self.visits {
            edges.push((v.arrive(), 1));
            edges.push((v.leave + 1, -1));
        }
        edges.sort_unstable();
        let mut calls: Vec<(Millis, bool)> = self
            .visits
            .iter()
            .filter_map(|v| v.call.map(|c| (c, c > v.leave)))
            .collect();
        if calls.is_empty() {
            return 1.0;
        }
        calls.sort_unstable();
        let (mut on_site, mut next, mut sum) = (0i64, 0usize, 0.0);
        for &(t, after_leaving) in &calls {
            while next < edges.len() && edges[next].0 <= t {
                on_site += i64::from(edges[next].1);
                next += 1;
            }
            // A caller on the site is among the `on_site`; one who left is not.
            let competing = on_site.max(1) as f64 + if after_leaving { 1.0 } else { 0.0 };
            sum += (numbers as f64 / competing).min(1.0);
        }
        sum / calls.len() as f64
    }

    /// Generates the traffic of `profile` from `seed`, starting at `start` (midnight UTC).
    pub fn generate(profile: &Profile, seed: u64, start: Millis) -> Traffic {
        let root = Rng::new(seed);
        let (mut arrivals, mut sessions, mut calls) = (root.fork(1), root.fork(2), root.fork(3));
        let mut visits = Vec::new();
        let mut peak_hour_visitors = 0;
        for hour in 0..profile.days as u64 * 24 {
            let rate = profile.visitors_per_hour * profile.shape.factor((hour % 24) as usize);
            let hour_start = start + hour * HOUR;
            let mut in_hour = 0;
            // A Poisson process of this hour's rate: exponential gaps, in hours.
            let mut t = arrivals.exp(1.0 / rate.max(f64::MIN_POSITIVE));
            while rate > 0.0 && t < 1.0 {
                let arrive = hour_start + (t * HOUR as f64) as Millis;
                visits.push(Self::visit(profile, arrive, &mut sessions, &mut calls));
                in_hour += 1;
                t += arrivals.exp(1.0 / rate);
            }
            peak_hour_visitors = peak_hour_visitors.max(in_hour);
        }
        let mut edges: Vec<(Millis, i32)> = visits.iter().flat_map(|v| [(v.arrive(), 1), (v.leave, -1)]).collect();
        edges.sort_unstable();
        let (mut on, mut peak_concurrent) = (0i32, 0i32);
        for (_, d) in edges {
            on += d;
            peak_concurrent = peak_concurrent.max(on);
        }
        let total: f64 = visits.iter().map(|v| (v.leave - v.arrive()) as f64 / MINUTE).sum();
        Traffic {
            start,
            mean_session_minutes: if visits.is_empty() {
                0.0
            } else {
                total / visits.len() as f64
            },
            visits,
            peak_hour_visitors,
            peak_concurrent: peak_concurrent as usize,
            days: profile.days,
        }
    }

    fn visit(p: &Profile, arrive: Millis, sessions: &mut Rng, calls: &mut Rng) -> Visit {
        let length = (sessions.lognormal(p.session_minutes, SESSION_SIGMA) * MINUTE) as Millis;
        let leave = arrive + length.max(1);
        let mut views = vec![arrive];
        let mut t = arrive + (sessions.exp(p.page_minutes) * MINUTE) as Millis;
        while t < leave {
            views.push(t);
            t += (sessions.exp(p.page_minutes) * MINUTE) as Millis;
        }
        // Both draws are made for every visitor so the call stream stays aligned across profiles
        // that differ only in rates.
        let (u_call, u_after, u_when) = (calls.unit(), calls.unit(), calls.unit());
        let delay = calls.exp(p.call_delay_minutes.max(0.0));
        let call = (u_call < p.call_rate).then(|| {
            if u_after < p.call_after_leave {
                leave + (delay * MINUTE) as Millis
            } else {
                arrive + (u_when * (leave - arrive) as f64) as Millis
            }
        });
        Visit { views, leave, call }
    }

    pub fn calls(&self) -> usize {
        self.visits.iter().filter(|v| v.call.is_some()).count()
    }

    pub fn calls_after_leaving(&self) -> usize {
        self.visits
            .iter()
            .filter(|v| v.call.is_some_and(|c| c > v.leave))
            .count()
    }

    pub fn daily_visitors(&self) -> f64 {
        self.visits.len() as f64 / self.days.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            visitors_per_hour: 60.0,
            shape: Shape::Business,
            days: 3,
            session_minutes: 4.0,
            page_minutes: 1.0,
            call_rate: 0.1,
            call_after_leave: 0.3,
            call_delay_minutes: 15.0,
        }
    }

    #[test]
    fn same_seed_same_traffic_other_seed_other_traffic() {
        let a = Traffic::generate(&profile(), 9, 0);
        assert_eq!(a, Traffic::generate(&profile(), 9, 0));
        assert_ne!(a.visits, Traffic::generate(&profile(), 10, 0).visits);
    }

    #[test]
    fn figures_follow_the_profile() {
        let mut p = profile();
        p.shape = Shape::Flat;
        p.days = 10;
        let t = Traffic::generate(&p, 1, 0);
        // 60 an hour for 240 hours: 14,400 expected, Poisson sd 120.
        assert!((t.visits.len() as f64 - 14_400.0).abs() < 500.0, "{}", t.visits.len());
        assert!((t.mean_session_minutes - 4.0).abs() < 0.2, "{}", t.mean_session_minutes);
        let calls = t.calls() as f64 / t.visits.len() as f64;
        assert!((calls - 0.1).abs() < 0.01, "{calls}");
        let after = t.calls_after_leaving() as f64 / t.calls() as f64;
        assert!((after - 0.3).abs() < 0.04, "{after}");
        assert!(t.peak_hour_visitors > 60 && t.peak_hour_visitors < 100);
        // Little: 60/h × 4 min = 4 on the site on average; the peak is well above.
        assert!(t.peak_concurrent > 6 && t.peak_concurrent < 25, "{}", t.peak_concurrent);
        for v in &t.visits {
            assert!(v.views.windows(2).all(|w| w[0] <= w[1]) && *v.views.last().unwrap() <= v.leave);
        }
    }

    #[test]
    fn the_business_shape_is_quiet_at_night() {
        let t = Traffic::generate(&profile(), 3, 0);
        let hour = |v: &Visit| (v.arrive() / HOUR % 24) as usize;
        let night = t.visits.iter().filter(|v| hour(v) < 6).count();
        let day = t.visits.iter().filter(|v| (9..15).contains(&hour(v))).count();
        assert!(day > 10 * night, "day {day}, night {night}");
    }
}
