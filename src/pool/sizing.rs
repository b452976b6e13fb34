//! How many numbers a session pool needs: the vendors' rules of thumb and queueing arithmetic.
//!
//! Pure functions of traffic figures, for the dashboard's pools page and `telswap simulate`.
//! The vendor rules are quoted from REFERENCE.md §1 ("pool sizing"); each doc comment says what
//! the rule counts, because the rules disagree by an order of magnitude for the same traffic.
//! None of them knows our `idle_timeout`: a lease here is held for the session *plus*
//! `idle_timeout` after its last page view, which only [`littles_law`] accounts for.

use std::time::Duration;

/// Default headroom for [`littles_law`], in standard deviations of the number of leases held
/// at once: 2 leaves the pool exhausted for roughly 2% of peak-hour moments.
pub const DEFAULT_HEADROOM: f64 = 2.0;

/// Numbers needed by Little's law: leases held at once `L = λ × W`, with `λ` the peak arrival
/// rate of sessions and `W` the mean time a lease is held (session length + `idle_timeout`),
/// plus `headroom` standard deviations.
///
/// Why standard deviations of a Poisson count: with Poisson arrivals, the number of leases held
/// at once is Poisson distributed with mean `L` whatever the distribution of lease lengths
/// (the M/G/∞ queue), so its standard deviation is `√L`. A fixed percentage would be far too
/// little for a small pool (mean 5 often sees 9) and wasteful for a large one (mean 1,000 rarely
/// exceeds 1,070). `headroom = 2` covers about 98% of peak-hour moments.
pub fn littles_law(peak_arrivals_per_hour: f64, mean_lease: Duration, headroom: f64) -> usize {
    if !positive(peak_arrivals_per_hour) {
        return 0;
    }
    let held = peak_arrivals_per_hour * mean_lease.as_secs_f64() / 3600.0;
    let margin = headroom.max(0.0) * held.sqrt();
    ceil_count(held + margin)
}

/// Nimbata's rule (REFERENCE.md §1): numbers = peak visitors ÷ (60 ÷ average session minutes).
///
/// REFERENCE.md calls the first figure "peak concurrent visitors"; Nimbata's guide takes it from
/// Google Analytics' *hourly* users report ("if your peak is 200 users and the average session
/// duration is 3 minutes, the pool needed is 200/(60/3) = 10"), so it is the visitors of the
/// busiest hour, and the result is the mean number of sessions open at once in that hour. It
/// assumes a number returns to the pool when the session ends: no hold for late calls.
pub fn nimbata(peak_hour_visitors: f64, avg_session_minutes: f64) -> usize {
    if !(positive(peak_hour_visitors) && positive(avg_session_minutes)) {
        return 0;
    }
    ceil_count(peak_hour_visitors / (60.0 / avg_session_minutes))
}

/// CallTrackingMetrics' rule (REFERENCE.md §1): 1 number per 20 daily visitors per source.
/// `daily_visitors` are one source's (one pool's) visitors on an average day.
pub fn ctm(daily_visitors: f64) -> usize {
    if !positive(daily_visitors) {
        return 0;
    }
    ceil_count(daily_visitors / 20.0)
}

/// The seed article's rule (REFERENCE.md §1): about one number per 8–10 concurrent visitors.
/// Returns (low, high): `peak_concurrent ÷ 10` and `peak_concurrent ÷ 8`, rounded up.
pub fn seed_article(peak_concurrent: f64) -> (usize, usize) {
    if !positive(peak_concurrent) {
        return (0, 0);
    }
    (ceil_count(peak_concurrent / 10.0), ceil_count(peak_concurrent / 8.0))
}

/// False for zero, negatives and NaN: no traffic needs no numbers.
fn positive(x: f64) -> bool {
    x > 0.0
}

/// Rounds a positive figure up to a whole number of numbers, at least 1. The tiny tolerance
/// keeps float noise (`12.000000001`) from costing a number.
fn ceil_count(x: f64) -> usize {
    ((x - 1e-9).ceil().max(1.0)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn nimbata_matches_its_worked_example() {
        // "peak 200 users, average session 3 minutes: 200/(60/3) = 10 tracking numbers"
        assert_eq!(nimbata(200.0, 3.0), 10);
        assert_eq!(nimbata(100.0, 4.0), 7);
        assert_eq!(nimbata(1.0, 1.0), 1, "any traffic needs a number");
        assert_eq!(nimbata(0.0, 3.0), 0);
        assert_eq!(nimbata(f64::NAN, 3.0), 0);
    }

    #[test]
    fn ctm_is_one_number_per_twenty_daily_visitors() {
        assert_eq!(ctm(1_000.0), 50);
        assert_eq!(ctm(1_001.0), 51);
        assert_eq!(ctm(5.0), 1);
        assert_eq!(ctm(-3.0), 0);
    }

    #[test]
    fn seed_article_is_a_range() {
        assert_eq!(seed_article(80.0), (8, 10));
        assert_eq!(seed_article(9.0), (1, 2));
        assert_eq!(seed_article(0.0), (0, 0));
    }

    #[test]
    fn littles_law_counts_the_idle_hold_and_adds_poisson_headroom() {
        // 120 sessions an hour, each lease held 4 + 30 minutes: 68 held at once on average.
        assert_eq!(littles_law(120.0, 34 * MIN, 0.0), 68);
        // +2 standard deviations: 68 + 2 × √68 = 84.5.
        assert_eq!(littles_law(120.0, 34 * MIN, 2.0), 85);
        // Headroom matters more, relatively, for a small pool.
        // 6 an hour for 30 minutes: 3 + 2 × √3 = 6.5, i.e. +117%.
        assert_eq!(littles_law(6.0, 30 * MIN, 2.0), 7);
        assert_eq!(littles_law(0.0, 30 * MIN, 2.0), 0);
        // Negative headroom is treated as none rather than shrinking the pool below λW.
        assert_eq!(littles_law(120.0, 34 * MIN, -1.0), 68);
    }

    #[test]
    fn the_vendor_rules_disagree_for_the_same_traffic() {
        // 120 visitors in the peak hour, 1,400 a day, 4-minute sessions, 30-minute idle timeout.
        let n = nimbata(120.0, 4.0);
        let c = ctm(1_400.0);
        let l = littles_law(120.0, 34 * MIN, DEFAULT_HEADROOM);
        assert_eq!((n, c), (8, 70));
        assert!(n < c && c < l + 20, "nimbata {n}, ctm {c}, little {l}");
    }
}
