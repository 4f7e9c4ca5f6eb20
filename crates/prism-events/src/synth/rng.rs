//! A small seeded PRNG (SplitMix64) and seed mixing, so scenes are reproducible without `rand`.

/// SplitMix64: 64 bits of state, passes BigCrush, trivially seedable from any u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent stream for `(seed, purpose, index)`, e.g. one per pixel or per object.
    pub fn stream(seed: u64, purpose: u64, index: u64) -> Self {
        Self(mix(mix(seed, purpose), index))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        finalize(self.0)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Exponential waiting time with `rate` per unit (infinite when the rate is not positive).
    pub fn exponential(&mut self, rate: f64) -> f64 {
        if rate > 0.0 {
            -(1.0 - self.uniform()).ln() / rate
        } else {
            f64::INFINITY
        }
    }

    /// A fair coin.
    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

/// SplitMix64's output function: a good 64-bit bit mixer.
#[inline]
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes two words into one; order matters.
#[inline]
pub fn mix(a: u64, b: u64) -> u64 {
    finalize(
        a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ finalize(b.wrapping_add(0x632B_E59B_D9B4_E019)),
    )
}
