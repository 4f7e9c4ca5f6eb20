//! Activation ranges from calibration data: running min / max, and a histogram of |x| for the
//! percentile and entropy (KL-divergence) methods.
//!
//! The histogram has a fixed number of bins over `[0, top)`; when a larger value arrives `top`
//! doubles and neighbouring bins merge, so one pass suffices and memory stays fixed.

/// How the clipping threshold of an activation is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// The largest magnitude seen.
    MinMax,
    /// The given percentile of |x| (ONNX Runtime's default is 99.999).
    Percentile(f64),
    /// The threshold whose 128-level quantization loses least information (KL divergence),
    /// TensorRT's entropy calibration. It reads a 2048-bin histogram, so it needs many values
    /// per tensor (an RVT window gives 10^4 to 10^6); with a few thousand the histogram is
    /// noise and the threshold clips too much: use a percentile there.
    Entropy,
}

impl Method {
    /// Whether the method reads the |x| histogram.
    pub(crate) fn needs_histogram(self) -> bool {
        !matches!(self, Self::MinMax)
    }

    /// `minmax`, `percentile-99.999`, `entropy`.
    pub fn name(self) -> String {
        match self {
            Self::MinMax => "minmax".into(),
            Self::Percentile(p) => format!("percentile-{p}"),
            Self::Entropy => "entropy".into(),
        }
    }
}

const BINS: usize = 2048;
/// Quantization levels on one side of zero for the entropy search (int8: 128).
const LEVELS: usize = 128;

/// The range of one activation tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    /// Smallest value seen, clipped to `-threshold`.
    pub min: f32,
    /// Largest value seen, clipped to `threshold`.
    pub max: f32,
    /// Symmetric clipping threshold (> 0 unless the tensor was always zero).
    pub threshold: f32,
}

/// Statistics of one tensor over the calibration data.
#[derive(Debug, Clone)]
pub(crate) struct TensorStats {
    min: f32,
    max: f32,
    /// Counts of |x| in `BINS` bins over `[0, top)`; empty when not needed.
    hist: Vec<u64>,
    top: f32,
}

impl TensorStats {
    pub fn new(histogram: bool) -> Self {
        Self {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: if histogram { vec![0; BINS] } else { Vec::new() },
            top: 0.0,
        }
    }

    /// Adds one batch of values (non-finite values are ignored).
    pub fn add(&mut self, values: &[f32]) {
        let mut lo = self.min;
        let mut hi = self.max;
        let mut peak = 0f32;
        for &v in values.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
            peak = peak.max(v.abs());
        }
        self.min = lo;
        self.max = hi;
        if self.hist.is_empty() || peak == 0.0 {
            if !self.hist.is_empty() {
                self.hist[0] += values.len() as u64;
            }
            return;
        }
        if self.top == 0.0 {
            // First non-zero batch: fit the range to it (a hair above, so the peak has a bin).
            self.top = peak * (1.0 + 1e-6);
        }
        while peak >= self.top {
            for i in 0..BINS / 2 {
                self.hist[i] = self.hist[2 * i] + self.hist[2 * i + 1];
            }
            self.hist[BINS / 2..].fill(0);
            self.top *= 2.0;
        }
        let per_bin = BINS as f32 / self.top;
        for &v in values.iter().filter(|v| v.is_finite()) {
            let bin = ((v.abs() * per_bin) as usize).min(BINS - 1);
            self.hist[bin] += 1;
        }
    }

    /// The range `method` picks.
    pub fn range(&self, method: Method) -> Range {
        if !self.min.is_finite() {
            return Range {
                min: 0.0,
                max: 0.0,
                threshold: 0.0,
            };
        }
        let abs_max = self.min.abs().max(self.max.abs());
        let threshold = match method {
            Method::MinMax => abs_max,
            _ if self.top == 0.0 => abs_max,
            Method::Percentile(p) => self.percentile(p).min(abs_max),
            Method::Entropy => self.entropy_threshold().min(abs_max),
        };
        Range {
            min: self.min.max(-threshold),
            max: self.max.min(threshold),
            threshold,
        }
    }

    fn bin_width(&self) -> f32 {
        self.top / BINS as f32
    }

    /// The upper edge of the bin where the cumulative count reaches `p` percent.
    fn percentile(&self, p: f64) -> f32 {
        let total: u64 = self.hist.iter().sum();
        let target = (total as f64 * p / 100.0).ceil() as u64;
        let mut cum = 0u64;
        for (i, &c) in self.hist.iter().enumerate() {
            cum += c;
            if cum >= target {
                return (i + 1) as f32 * self.bin_width();
            }
        }
        self.top
    }

    /// TensorRT's entropy calibration: for each candidate threshold (a bin edge from `LEVELS`
    /// bins up), fold the tail into the last kept bin (P), quantize P to `LEVELS` levels and
    /// expand back (Q), and keep the threshold with the least KL(P || Q).
    fn entropy_threshold(&self) -> f32 {
        let hist = &self.hist;
        let last_used = hist.iter().rposition(|&c| c > 0).unwrap_or(0);
        let stop = (last_used + 1).max(LEVELS);
        let mut best = (f64::INFINITY, stop);
        let mut tail: u64 = hist[LEVELS..].iter().sum();
        for i in LEVELS..=stop {
            let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
            p[i - 1] += tail as f64;
            if i < BINS {
                tail -= hist[i];
            }
            let kl = kl_divergence(&p, &hist[..i]);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        (best.1 as f32 + 0.5).min(BINS as f32) * self.bin_width()
    }
}

/// KL(P || Q) where Q is `original` quantized into `LEVELS` groups, each group's mass spread
/// evenly over its non-empty bins.
fn kl_divergence(p: &[f64], original: &[u64]) -> f64 {
    let n = p.len();
    let mut q = vec![0f64; n];
    for level in 0..LEVELS {
        let start = level * n / LEVELS;
        let end = ((level + 1) * n / LEVELS).max(start + 1).min(n);
        let mass: f64 = original[start..end].iter().map(|&c| c as f64).sum();
        let nonzero = original[start..end].iter().filter(|&&c| c > 0).count();
        if nonzero == 0 {
            continue;
        }
        let share = mass / nonzero as f64;
        for (qj, &c) in q[start..end].iter_mut().zip(&original[start..end]) {
            if c > 0 {
                *qj = share;
            }
        }
    }
    let p_sum: f64 = p.iter().sum();
    let q_sum: f64 = q.iter().sum();
    if p_sum == 0.0 || q_sum == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&pi, &qi) in p.iter().zip(&q) {
        if pi == 0.0 {
            continue;
        }
        let pn = pi / p_sum;
        // A bin P holds and Q does not (the folded tail): a small floor instead of infinity.
        let qn = if qi == 0.0 { 1e-12 } else { qi / q_sum };
        kl += pn * (pn / qn).ln();
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_is_the_largest_magnitude() {
        let mut s = TensorStats::new(false);
        s.add(&[0.5, -3.0, 2.0]);
        s.add(&[1.0, f32::NAN]);
        let r = s.range(Method::MinMax);
        assert_eq!((r.min, r.max, r.threshold), (-3.0, 2.0, 3.0));
    }

    #[test]
    fn the_histogram_grows_without_losing_counts() {
        let mut s = TensorStats::new(true);
        s.add(&[0.1, 0.2]);
        s.add(&[100.0, -50.0, 0.0]);
        assert_eq!(s.hist.iter().sum::<u64>(), 5);
        assert!(s.top > 100.0 && s.top < 400.0, "{}", s.top);
    }

    #[test]
    fn percentile_clips_rare_outliers() {
        let mut s = TensorStats::new(true);
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(1000.0);
        s.add(&values);
        let r = s.range(Method::Percentile(99.99));
        assert!(r.threshold > 0.9 && r.threshold < 2.0, "{r:?}");
        assert_eq!(s.range(Method::MinMax).threshold, 1000.0);
    }

    #[test]
    fn entropy_ignores_a_lone_outlier_but_keeps_the_bulk() {
        // A Gaussian-like bulk within ~4 plus one value at 400.
        let mut values = Vec::new();
        let mut x = 0.123_f64;
        for _ in 0..200_000 {
            // Box-Muller from a small LCG, deterministic.
            x = (x * 16807.0) % 1.0 + 1e-9;
            let u1 = x;
            x = (x * 16807.0) % 1.0 + 1e-9;
            let u2 = x;
            values.push(((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32);
        }
        values.push(400.0);
        let mut s = TensorStats::new(true);
        s.add(&values);
        let t = s.range(Method::Entropy).threshold;
        assert!(t > 2.0 && t < 50.0, "threshold {t}");
    }

    #[test]
    fn an_all_zero_tensor_has_a_zero_range() {
        let mut s = TensorStats::new(true);
        s.add(&[0.0; 16]);
        assert_eq!(s.range(Method::Entropy).threshold, 0.0);
    }
}
