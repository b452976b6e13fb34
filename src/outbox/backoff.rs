//! When a failed delivery is tried again, and when it is given up. Pure: the caller passes the
//! times, and the jitter is derived from the row, so the schedule is reproducible in tests
//! while retries of different events still spread out instead of arriving together.

use std::time::Duration;

/// Delay after the 1st, 2nd, ... failed attempt; the last one repeats. Short first steps ride
/// out a receiver's deploy or restart; then hourly, capped at 6 h so an outage of a day is
/// retried a handful of times rather than hammered.
pub const SCHEDULE: &[Duration] = &[
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
];

/// A delivery still failing this long after its event is given up (dead): a CRM down for more
/// than a long weekend needs a person, and the event stays in the store for them.
pub const MAX_AGE: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// Each delay is scaled by a factor in [1 - JITTER, 1 + JITTER).
const JITTER: f64 = 0.2;

/// The delay after `failures` failed attempts (1 for the first failure), jittered by `seed`.
pub fn delay(failures: u32, seed: u64) -> Duration {
    let step = SCHEDULE[(failures.max(1) as usize - 1).min(SCHEDULE.len() - 1)];
    let unit = (mix(seed) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    step.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// When to try again after failure number `failures` at `now` (ms), or `None` when the event,
/// created at `created_at`, would be older than [`MAX_AGE`] by then: give up.
pub fn next_attempt(failures: u32, created_at: i64, now: i64, seed: u64) -> Option<i64> {
    let at = now + delay(failures, seed).as_millis() as i64;
    (at <= created_at + MAX_AGE.as_millis() as i64).then_some(at)
}

/// The jitter seed of a delivery's attempt: its row id and attempt number, mixed.
pub fn seed(row: i64, failures: u32) -> u64 {
    (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(failures)
}

/// splitmix64's finaliser: spreads nearby seeds over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_jitter_and_caps() {
        for seed in 0..200u64 {
            for (i, step) in SCHEDULE.iter().enumerate() {
                let d = delay(i as u32 + 1, seed);
                assert!(d >= step.mul_f64(0.8) && d < step.mul_f64(1.2), "{i}: {d:?}");
            }
            let late = delay(50, seed);
            assert!(late <= Duration::from_secs(6 * 3600).mul_f64(1.2));
        }
        // Jitter spreads: different rows get different delays.
        let spread: std::collections::HashSet<_> = (0..50).map(|r| delay(1, seed(r, 1))).collect();
        assert!(spread.len() > 40);
        assert_eq!(delay(3, 7), delay(3, 7));
    }

    #[test]
    fn gives_up_after_max_age() {
        let created = 1_000_000;
        let max = MAX_AGE.as_millis() as i64;
        assert!(next_attempt(1, created, created, 1).is_some_and(|t| t > created));
        assert_eq!(next_attempt(9, created, created + max, 1), None);
        // Following the schedule from the first failure, it gives up after 3 days, not before.
        let (mut now, mut failures) = (created, 0);
        while let Some(t) = next_attempt(failures + 1, created, now, seed(1, failures + 1)) {
            failures += 1;
            now = t;
        }
        assert!(now <= created + max && now > created + max - 8 * 3600 * 1000, "{now}");
        assert!((15..25).contains(&failures), "{failures} attempts in 3 days");
    }
}
