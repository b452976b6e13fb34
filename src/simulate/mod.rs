//! `telswap simulate`: how well calls are attributed for given traffic and pool settings.
//!
//! Visitors arrive (Poisson, an hourly rate shaped through the day), view pages, leave, and
//! some call, during the session or after leaving ([`traffic`]). The simulator replays them in
//! time order against the REAL [`Pools`] on a [`ManualClock`] (every page view is a
//! [`NumberChooser::choose`]) and attributes each call with the REAL [`Pools::who_held`] and
//! [`attribute`], then compares the session the call was attributed to with the session that
//! actually called. The same traffic is replayed with the naive free-number order
//! ([`FreeOrder::Random`]) so the gain of resting numbers is measured with everything else
//! identical, and pool sizes are searched for the smallest that reaches a target accuracy.
//!
//! Pure and deterministic: no I/O, the same seed gives the same report. Depends on `pool`,
//! `calls::attribution`, `rules` (the pool is configured through a generated rules file, as a
//! user would) and `clock`.

mod report;
pub mod rng;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use report::{SimulateArgs, cli};
pub use traffic::{Profile, Shape, Traffic};

use crate::calls::attribution::attribute;
use crate::clock::{ManualClock, Millis};
use crate::pool::sizing::{self, DEFAULT_HEADROOM};
use crate::pool::{Audience, Choice, Confidence, FreeOrder, Holder, NoJournal, NumberChooser, Pools};
use crate::rules::{Exhausted, RuleSet, load_sources};
use crate::visitor::classify::Channel;

/// Simulated time starts on a Monday at midnight UTC (2026-01-05), so the daily shape's hours
/// are the clock's hours.
pub const START: Millis = 1_767_571_200_000;

/// Largest pool the search tries: past one number per visitor nothing is ever reused, so a
/// larger pool cannot do better.
const MAX_POOL: usize = 200_000;

/// The pool under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub size: usize,
    pub idle_timeout: Duration,
    pub match_window: Duration,
    pub exhausted: Exhausted,
    pub order: FreeOrder,
}

/// What happened to the calls of one run. Every call is in exactly one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub calls: u64,
    /// `exact`, and the caller's session.
    pub exact: u64,
    /// `late` (called after the lease was released, inside `match_window`), the caller's session.
    pub late: u64,
    /// `shared` with the caller's session ranked first.
    pub shared_first: u64,
    /// `shared` with another session ranked first.
    pub shared_other: u64,
    /// `exact` or `late`, but another session: a silent misattribution.
    pub wrong: u64,
    /// No session: overflow or original number shown, or no lease left in the window.
    pub none: u64,
    /// Most leases held at once.
    pub peak_leased: usize,
    /// Page views that found no free number.
    pub exhausted: u64,
}

impl Outcomes {
    /// Share of calls attributed to the right session without ambiguity (`exact` or `late`).
    /// `shared` calls do not count: the product itself tells the user it is unsure.
    pub fn accuracy(&self) -> f64 {
        self.share(self.exact + self.late)
    }

    pub fn share(&self, n: u64) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            n as f64 / self.calls as f64
        }
    }
}

/// Replays `traffic` against a pool set up as `setup`, attributing every call.
pub fn run(traffic: &Traffic, setup: &Setup) -> Outcomes {
    let rules = pool_rules(setup);
    let site = rules.sites[0].clone();
    let clock = ManualClock::new(traffic.start);
    let pools = Pools::with_free_order(&rules, clock.clone(), Arc::new(NoJournal), setup.order);
    let audience = Audience {
        channel: Channel::PaidSearch,
        source: "google",
        medium: "cpc",
        campaign: None,
    };

    // (time, kind, visitor): at the same instant a page view comes before a call, so a visitor
    // calling at arrival calls the number the page showed.
    const VIEW: u8 = 0;
    const CALL: u8 = 1;
    let mut events: Vec<(Millis, u8, u32)> = Vec::new();
    for (i, v) in traffic.visits.iter().enumerate() {
        events.extend(v.views.iter().map(|&t| (t, VIEW, i as u32)));
        events.extend(v.call.map(|t| (t, CALL, i as u32)));
    }
    events.sort_unstable();

    let mut shown = vec![None; traffic.visits.len()];
    let mut out = Outcomes::default();
    for (t, kind, i) in events {
        clock.set(t);
        let (visitor, session) = (format!("v{i}"), format!("s{i}"));
        if kind == VIEW {
            let holder = Holder {
                visitor: &visitor,
                session: &session,
            };
            shown[i as usize] = Some(match pools.choose(&site, Some(&audience), Some(&holder)) {
                Choice::Tracking { number, .. } => number,
                // The page kept the site's own number: a call to it is not a tracking call.
                Choice::Original => site.numbers[0].clone(),
            });
            continue;
        }
        let number = shown[i as usize].clone().expect("a call follows a page view");
        let held = pools.who_held(&site, &number, t);
        let a = attribute(&site, &number, t, &held, &|_| None);
        let mine = a.attribution.get("session").and_then(Value::as_str) == Some(session.as_str());
        out.calls += 1;
        match a.confidence {
            Confidence::Exact if mine => out.exact += 1,
            Confidence::Late if mine => out.late += 1,
            Confidence::Exact | Confidence::Late => out.wrong += 1,
            Confidence::Shared if mine => out.shared_first += 1,
            Confidence::Shared => out.shared_other += 1,
            Confidence::Source | Confidence::None => out.none += 1,
        }
    }
    let stats = pools.stats(&rules);
    out.peak_leased = stats[0].peak_leased;
    out.exhausted = stats[0].exhausted;
    out
}

/// A rules file with one session pool of `setup.size` numbers, as a user would write it.
fn pool_rules(setup: &Setup) -> RuleSet {
    // +1 555-2xx-xxxx: fictional numbers, distinct up to 4,000,000.
    let numbers: Vec<String> = (0..setup.size)
        .map(|i| format!("\"+1 555{:07}\"", 2_000_000 + i))
        .collect();
    let (exhausted, overflow) = match setup.exhausted {
        Exhausted::ReuseOldest => ("reuse_oldest", ""),
        Exhausted::Overflow => ("overflow", "overflow = \"+1 555-010-1999\"\n"),
        Exhausted::Original => ("original", ""),
    };
    let text = format!(
        "hosts = [\"simulated.test\"]\nupstream = \"http://127.0.0.1:9\"\nnumbers = [\"+1 555-010-0000\"]\n\
         [[pool]]\nname = \"ads\"\nmode = \"session\"\nwhen.channel = [\"paid_search\"]\n\
         idle_timeout = \"{}ms\"\nmatch_window = \"{}ms\"\nexhausted = \"{exhausted}\"\n{overflow}numbers = [{}]\n",
        setup.idle_timeout.as_millis(),
        setup.match_window.as_millis(),
        numbers.join(",")
    );
    load_sources(&[(PathBuf::from("simulated.toml"), text)]).expect("generated rules are valid")
}

/// The smallest pool whose accuracy reaches `target`, with everything else as in `setup`.
///
/// Starts at `hint` (a sizing rule's answer), doubles or halves to bracket the threshold, then
/// bisects. Accuracy is close to monotone in the pool size for fixed traffic (the same visitors
/// and calls are replayed at every size), so bisection finds the threshold. Starting near the
/// answer matters: tiny pools are the slowest to simulate (every call has hundreds of shared
/// candidates). `None` when even one number per visitor falls short (calls after
/// `match_window`).
pub fn smallest_pool(traffic: &Traffic, setup: &Setup, target: f64, hint: usize) -> Option<(usize, Outcomes)> {
    let cap = (traffic.visits.len() + 1).min(MAX_POOL);
    let at = |size: usize| run(traffic, &Setup { size, ..*setup });
    let first = hint.clamp(1, cap);
    let o = at(first);
    // lo fails (0 always does: no numbers), hi passes with `best`.
    let (mut lo, mut hi, mut best) = if o.accuracy() >= target {
        let (mut hi, mut best) = (first, o);
        loop {
            let down = hi / 2;
            if down == 0 {
                break (0, hi, best);
            }
            let o = at(down);
            if o.accuracy() < target {
                break (down, hi, best);
            }
            (hi, best) = (down, o);
        }
    } else {
        let mut lo = first;
        loop {
            if lo >= cap {
                return None;
            }
            let up = (lo * 2).min(cap);
            let o = at(up);
            if o.accuracy() >= target {
                break (lo, up, o);
            }
            lo = up;
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let o = at(mid);
        if o.accuracy() >= target {
            hi = mid;
            best = o;
        } else {
            lo = mid;
        }
    }
    Some((hi, best))
}

/// The idle timeouts `telswap simulate` also sizes both policies at, beside the one asked for.
pub const IDLE_TIMEOUTS: [Duration; 6] = [
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];

/// The smallest pool reaching the target at one idle timeout, for both policies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleSizing {
    pub idle_timeout: Duration,
    pub ours: Option<usize>,
    pub naive: Option<usize>,
    /// Ours' accuracy with Nimbata's pool size at this idle timeout.
    pub at_nimbata: f64,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub profile: Profile,
    pub seed: u64,
    /// `None`: Nimbata's rule for the traffic.
    pub pool_size: Option<usize>,
    pub idle_timeout: Duration,
    pub match_window: Duration,
    pub exhausted: Exhausted,
    pub target: f64,
}

/// A sizing rule's answer for the simulated traffic and how both policies do at that size.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSize {
    pub rule: &'static str,
    /// How the rule reads ("2–3" for a range); the size simulated is `size`.
    pub label: String,
    pub size: usize,
    pub ours: f64,
    pub naive: f64,
    /// The most any policy could get right at this size ([`Traffic::ceiling`]).
    pub ceiling: f64,
}

/// Everything `telswap simulate` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub options: Options,
    pub visitors: usize,
    pub calls: usize,
    pub calls_after_leaving: usize,
    pub daily_visitors: f64,
    pub peak_hour_visitors: usize,
    pub peak_concurrent: usize,
    pub mean_session_minutes: f64,
    /// The pool size simulated and where it came from.
    pub size: usize,
    pub size_from: &'static str,
    pub ours: Outcomes,
    pub naive: Outcomes,
    pub smallest_ours: Option<usize>,
    pub smallest_naive: Option<usize>,
    pub rules: Vec<RuleSize>,
    /// Smallest pools by idle timeout ([`IDLE_TIMEOUTS`] and the one asked for, ascending).
    pub by_idle: Vec<IdleSizing>,
}

impl Report {
    /// Ours' smallest pool as a share of the naive policy's, when both reach the target.
    pub fn ratio(&self) -> Option<f64> {
        match (self.smallest_ours, self.smallest_naive) {
            (Some(a), Some(b)) => Some(a as f64 / b as f64),
            _ => None,
        }
    }

    /// Each policy at its own best idle timeout: (ours' smallest pool, its idle timeout,
    /// naive's smallest pool, its idle timeout), when both reach the target somewhere.
    pub fn best_settings(&self) -> Option<(usize, Duration, usize, Duration)> {
        let best = |f: fn(&IdleSizing) -> Option<usize>| {
            self.by_idle
                .iter()
                .filter_map(|b| f(b).map(|n| (n, b.idle_timeout)))
                .min()
        };
        let (a, ai) = best(|b| b.ours)?;
        let (n, ni) = best(|b| b.naive)?;
        Some((a, ai, n, ni))
    }

    /// The idle timeout that serves Nimbata's pool size best, and ours' accuracy with it.
    pub fn nimbata_best(&self) -> Option<(Duration, f64)> {
        self.by_idle
            .iter()
            .map(|b| (b.idle_timeout, b.at_nimbata))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Nimbata's rule among the sizing rules.
    pub fn nimbata(&self) -> Option<&RuleSize> {
        self.rules.iter().find(|r| r.rule == "Nimbata")
    }

    /// Ours' accuracy at Nimbata's size, and the ceiling there.
    pub fn at_nimbata(&self) -> Option<(f64, f64)> {
        self.nimbata().map(|r| (r.ours, r.ceiling))
    }
}

/// The seed of the naive policy's random picks, derived from the run's seed.
fn naive_order(seed: u64) -> FreeOrder {
    FreeOrder::Random {
        seed: seed ^ 0x6E61_6976_6520_6F72,
    }
}

/// Runs the whole comparison.
pub fn simulate(o: &Options) -> Report {
    let traffic = Traffic::generate(&o.profile, o.seed, START);
    let nimbata = sizing::nimbata(traffic.peak_hour_visitors as f64, traffic.mean_session_minutes);
    let ctm = sizing::ctm(traffic.daily_visitors());
    let (seed_lo, seed_hi) = sizing::seed_article(traffic.peak_concurrent as f64);
    let lease = Duration::from_secs_f64(traffic.mean_session_minutes * 60.0) + o.idle_timeout;
    let little = sizing::littles_law(traffic.peak_hour_visitors as f64, lease, DEFAULT_HEADROOM);

    let ours_setup = |size: usize| Setup {
        size: size.max(1),
        idle_timeout: o.idle_timeout,
        match_window: o.match_window,
        exhausted: o.exhausted,
        order: FreeOrder::LongestRested,
    };
    let naive_setup = |size: usize| Setup {
        order: naive_order(o.seed),
        ..ours_setup(size)
    };
    let (size, size_from) = match o.pool_size {
        Some(n) => (n, "--pool-size"),
        None => (nimbata.max(1), "Nimbata's rule"),
    };
    let ours = run(&traffic, &ours_setup(size));
    let naive = run(&traffic, &naive_setup(size));
    let smallest_ours = smallest_pool(&traffic, &ours_setup(1), o.target, little).map(|(n, _)| n);
    let smallest_naive = smallest_pool(&traffic, &naive_setup(1), o.target, little).map(|(n, _)| n);
    let mut idles: Vec<Duration> = IDLE_TIMEOUTS.into_iter().chain([o.idle_timeout]).collect();
    idles.sort_unstable();
    idles.dedup();
    let nimbata_at = |idle_timeout: Duration| {
        let setup = Setup {
            idle_timeout,
            ..ours_setup(nimbata)
        };
        if setup == ours_setup(size) {
            ours.accuracy()
        } else {
            run(&traffic, &setup).accuracy()
        }
    };
    let by_idle = idles
        .into_iter()
        .map(|idle_timeout| {
            let at_nimbata = nimbata_at(idle_timeout);
            if idle_timeout == o.idle_timeout {
                return IdleSizing {
                    idle_timeout,
                    at_nimbata,
                    ours: smallest_ours,
                    naive: smallest_naive,
                };
            }
            let at = |setup: Setup| {
                let hint = smallest_ours.unwrap_or(little);
                smallest_pool(&traffic, &Setup { idle_timeout, ..setup }, o.target, hint).map(|(n, _)| n)
            };
            IdleSizing {
                idle_timeout,
                at_nimbata,
                ours: at(ours_setup(1)),
                naive: at(naive_setup(1)),
            }
        })
        .collect();

    // The article's range collapses to one figure on small traffic (1 per 8 and 1 per 10 agree).
    let seed_label = if seed_lo == seed_hi {
        seed_hi.to_string()
    } else {
        format!("{seed_lo}–{seed_hi}")
    };
    let mut rules = Vec::new();
    for (rule, label, n) in [
        ("Nimbata", nimbata.to_string(), nimbata),
        ("CallTrackingMetrics", ctm.to_string(), ctm),
        ("seed article", seed_label, seed_hi),
        ("Little's law", little.to_string(), little),
    ] {
        let n = n.max(1);
        let (ours, naive) = if n == size {
            (ours.accuracy(), naive.accuracy())
        } else {
            (
                run(&traffic, &ours_setup(n)).accuracy(),
                run(&traffic, &naive_setup(n)).accuracy(),
            )
        };
        rules.push(RuleSize {
            rule,
            label,
            size: n,
            ours,
            naive,
            ceiling: traffic.ceiling(n),
        });
    }
    Report {
        options: o.clone(),
        visitors: traffic.visits.len(),
        calls: traffic.calls(),
        calls_after_leaving: traffic.calls_after_leaving(),
        daily_visitors: traffic.daily_visitors(),
        peak_hour_visitors: traffic.peak_hour_visitors,
        peak_concurrent: traffic.peak_concurrent,
        mean_session_minutes: traffic.mean_session_minutes,
        size,
        size_from,
        ours,
        naive,
        smallest_ours,
        smallest_naive,
        rules,
        by_idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn small() -> Options {
        Options {
            profile: Profile {
                visitors_per_hour: 40.0,
                shape: Shape::Business,
                days: 2,
                session_minutes: 4.0,
                page_minutes: 1.0,
                call_rate: 0.2,
                call_after_leave: 0.3,
                call_delay_minutes: 15.0,
            },
            seed: 5,
            pool_size: None,
            idle_timeout: 30 * MIN,
            match_window: 120 * MIN,
            exhausted: Exhausted::ReuseOldest,
            target: 0.9,
        }
    }

    fn setup(size: usize, order: FreeOrder) -> Setup {
        Setup {
            size,
            idle_timeout: 30 * MIN,
            match_window: 120 * MIN,
            exhausted: Exhausted::ReuseOldest,
            order,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let a = simulate(&small());
        assert_eq!(a, simulate(&small()));
        let mut other = small();
        other.seed = 6;
        assert_ne!(a.ours, simulate(&other).ours);
    }

    #[test]
    fn every_call_lands_in_one_class() {
        let t = Traffic::generate(&small().profile, 1, START);
        for size in [1, 5, 40] {
            let o = run(&t, &setup(size, FreeOrder::LongestRested));
            assert_eq!(o.calls as usize, t.calls());
            assert_eq!(
                o.exact + o.late + o.shared_first + o.shared_other + o.wrong + o.none,
                o.calls
            );
        }
    }

    #[test]
    fn one_number_per_visitor_attributes_every_call_in_the_window() {
        let t = Traffic::generate(&small().profile, 2, START);
        let o = run(&t, &setup(t.visits.len(), FreeOrder::LongestRested));
        let lapsed = t
            .visits
            .iter()
            .filter(|v| {
                v.call
                    .is_some_and(|c| c > v.views.last().unwrap() + (150 * MIN).as_millis() as u64)
            })
            .count() as u64;
        assert_eq!(o.exact + o.late + lapsed, o.calls, "{o:?}");
        assert_eq!(o.wrong + o.shared_first + o.shared_other, 0);
    }

    #[test]
    fn no_policy_beats_the_ceiling_and_enough_numbers_lift_it_to_one() {
        let t = Traffic::generate(&small().profile, 7, START);
        assert_eq!(t.ceiling(t.peak_concurrent + 1), 1.0);
        assert!(t.ceiling(1) < t.ceiling(2) && t.ceiling(2) <= t.ceiling(4));
        for size in [1, 2, 3, 5] {
            for idle in [2 * MIN, 30 * MIN] {
                let o = run(
                    &t,
                    &Setup {
                        idle_timeout: idle,
                        ..setup(size, FreeOrder::LongestRested)
                    },
                );
                // Counting a shared call as right when the caller is ranked first, as the
                // ceiling does; a small allowance for the luck of one traffic sample.
                let first = o.share(o.exact + o.late + o.shared_first);
                assert!(
                    first <= t.ceiling(size) + 0.02,
                    "{size} {idle:?}: {first} > {}",
                    t.ceiling(size)
                );
            }
        }
    }

    #[test]
    fn a_tiny_pool_shares_numbers_and_misattributes() {
        let t = Traffic::generate(&small().profile, 3, START);
        let o = run(&t, &setup(1, FreeOrder::LongestRested));
        assert!(o.exhausted > 0 && o.shared_first + o.shared_other > 0, "{o:?}");
        assert!(o.accuracy() < 0.5, "{o:?}");
    }

    #[test]
    fn exhaustion_policies_overflow_and_original_give_no_session() {
        let t = Traffic::generate(&small().profile, 4, START);
        for exhausted in [Exhausted::Overflow, Exhausted::Original] {
            let o = run(
                &t,
                &Setup {
                    exhausted,
                    ..setup(2, FreeOrder::LongestRested)
                },
            );
            assert!(
                o.none > 0 && o.shared_first + o.shared_other == 0,
                "{exhausted:?}: {o:?}"
            );
        }
    }

    #[test]
    fn resting_numbers_beats_random_reuse_when_calls_come_after_the_idle_timeout() {
        // Calls long after leaving: only a rested number still points at the caller.
        let mut p = small().profile;
        p.call_after_leave = 1.0;
        p.call_delay_minutes = 45.0;
        p.call_rate = 0.5;
        let t = Traffic::generate(&p, 8, START);
        let size = 60;
        let ours = run(&t, &setup(size, FreeOrder::LongestRested));
        let naive = run(&t, &setup(size, FreeOrder::Random { seed: 1 }));
        assert!(
            ours.accuracy() > naive.accuracy() + 0.05,
            "ours {:.3}, naive {:.3}",
            ours.accuracy(),
            naive.accuracy()
        );
        assert!(ours.late > naive.late);
    }

    #[test]
    fn every_idle_timeout_is_sized_and_the_one_asked_for_is_among_them() {
        let mut o = small();
        o.idle_timeout = 7 * MIN;
        let r = simulate(&o);
        let idles: Vec<Duration> = r.by_idle.iter().map(|b| b.idle_timeout).collect();
        assert_eq!(idles.len(), IDLE_TIMEOUTS.len() + 1);
        assert!(idles.windows(2).all(|w| w[0] < w[1]), "{idles:?}");
        let asked = r.by_idle.iter().find(|b| b.idle_timeout == 7 * MIN).unwrap();
        assert_eq!((asked.ours, asked.naive), (r.smallest_ours, r.smallest_naive));
        let (a, ai, n, _) = r.best_settings().expect("reachable");
        assert!(a <= r.smallest_ours.unwrap() && n <= r.smallest_naive.unwrap());
        let at = run(
            &Traffic::generate(&o.profile, o.seed, START),
            &Setup {
                idle_timeout: ai,
                ..setup(a, FreeOrder::LongestRested)
            },
        );
        assert!(at.accuracy() >= o.target, "{at:?}");
    }

    #[test]
    fn the_search_finds_the_threshold() {
        let o = small();
        let t = Traffic::generate(&o.profile, o.seed, START);
        let base = setup(1, FreeOrder::LongestRested);
        let (n, at) = smallest_pool(&t, &base, o.target, 7).expect("reachable");
        assert!(at.accuracy() >= o.target);
        assert!(run(&t, &Setup { size: n - 1, ..base }).accuracy() < o.target);
        assert_eq!(
            smallest_pool(&t, &base, o.target, 300).map(|(n, _)| n),
            Some(n),
            "from above"
        );
    }
}
