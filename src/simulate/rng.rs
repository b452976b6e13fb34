//! A small seeded PRNG (splitmix64) and the distributions the simulator draws from.
//!
//! Hand-written rather than a crate so a seed gives the same traffic on every platform and
//! every version of the build: reports are compared across runs by their figures.

/// splitmix64 (Steele, Lea, Flood 2014): passes BigCrush, one u64 of state.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for a purpose, so adding draws to one stream does not shift
    /// another (the call draws stay the same when the session model changes, and so on).
    pub fn fork(&self, stream: u64) -> Rng {
        let mut r = Rng(self.0 ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1], safe for `ln`.
    fn open_unit(&mut self) -> f64 {
        1.0 - self.unit()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.open_unit().ln()
    }

    /// Standard normal (Box–Muller; one of the pair is discarded to keep the stream simple).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.open_unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Lognormal with the given mean and shape `sigma` (of the underlying normal).
    pub fn lognormal(&mut self, mean: f64, sigma: f64) -> f64 {
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * self.normal()).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_streams_repeat_and_forks_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(7).fork(1).next_u64(), Rng::new(7).fork(2).next_u64());
    }

    #[test]
    fn distributions_have_their_means() {
        let mut r = Rng::new(42);
        let n = 200_000;
        let exp: f64 = (0..n).map(|_| r.exp(5.0)).sum::<f64>() / n as f64;
        let logn: f64 = (0..n).map(|_| r.lognormal(4.0, 0.8)).sum::<f64>() / n as f64;
        let unit: f64 = (0..n).map(|_| r.unit()).sum::<f64>() / n as f64;
        assert!((exp - 5.0).abs() < 0.1, "exp mean {exp}");
        assert!((logn - 4.0).abs() < 0.1, "lognormal mean {logn}");
        assert!((unit - 0.5).abs() < 0.01, "unit mean {unit}");
    }
}
