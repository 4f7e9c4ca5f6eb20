//! The DVS pixel model: log-intensity frames in, time-stamped events out.
//!
//! ESIM-style: each pixel keeps a reference log level; between two frames its log intensity is
//! taken as linear in time, and every crossing of `ref ± k·C` becomes one event stamped at the
//! interpolated crossing time. On top, the v2e non-idealities: per-pixel threshold mismatch
//! (`C ~ N(C, σ)`, at least 0.01), a refractory period (the event is dropped, the reference still
//! moves), leak (the reference drifts down, giving sporadic ON events) and shot noise (Poisson
//! events at a per-pixel rate, a few hot pixels much faster). Every pixel draws from its own
//! random stream, so the output does not depend on the order pixels are processed in.

use super::rng::SplitMix64;

/// Sensor non-idealities and thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelParams {
    pub threshold_pos: f32,
    pub threshold_neg: f32,
    pub threshold_sigma: f32,
    pub refractory_us: i64,
    pub leak_hz: f32,
    pub shot_noise_hz: f32,
    pub hot_pixel_fraction: f32,
    pub hot_pixel_hz: f32,
}

/// Fewest threshold a pixel gets after mismatch (as in v2e).
const MIN_THRESHOLD: f32 = 0.01;

/// Per-pixel state of the whole array, as parallel arrays.
#[derive(Debug)]
pub struct PixelArray {
    width: usize,
    refractory_us: i64,
    /// Reference log level of the last event (or reset).
    reference: Vec<f32>,
    /// Log intensity at the previous frame.
    previous: Vec<f32>,
    c_pos: Vec<f32>,
    c_neg: Vec<f32>,
    /// Reference drift per µs from leak (already scaled by the pixel's ON threshold).
    leak_per_us: Vec<f32>,
    /// Shot-noise rate in events per µs.
    noise_per_us: Vec<f64>,
    /// Absolute time (µs) of the pixel's next shot-noise event.
    next_noise_t: Vec<f64>,
    last_event_t: Vec<i64>,
    rng: Vec<SplitMix64>,
}

/// Event sort key: `(t - t0) << 33 | y << 17 | p << 16 | x`, so sorting keys sorts by time, then
/// row, polarity and column (which groups events into EVT3 vectors).
#[inline]
fn key(dt: i64, x: usize, y: usize, p: u8) -> u64 {
    (dt as u64) << 33 | (y as u64) << 17 | u64::from(p) << 16 | x as u64
}

/// Splits a key back into `(t - t0, x, y, p)`.
#[inline]
pub fn unkey(k: u64) -> (i64, u16, u16, u8) {
    (
        (k >> 33) as i64,
        (k & 0xFFFF) as u16,
        ((k >> 17) & 0xFFFF) as u16,
        ((k >> 16) & 1) as u8,
    )
}

impl PixelArray {
    /// Sets every pixel's reference to the first frame `log0` and draws its parameters.
    pub fn new(width: usize, log0: &[f32], params: &PixelParams, seed: u64, t0: i64) -> Self {
        let n = log0.len();
        let mut array = Self {
            width,
            refractory_us: params.refractory_us.max(0),
            reference: log0.to_vec(),
            previous: log0.to_vec(),
            c_pos: Vec::with_capacity(n),
            c_neg: Vec::with_capacity(n),
            leak_per_us: Vec::with_capacity(n),
            noise_per_us: Vec::with_capacity(n),
            next_noise_t: Vec::with_capacity(n),
            last_event_t: vec![i64::MIN / 2; n],
            rng: Vec::with_capacity(n),
        };
        let sigma = f64::from(params.threshold_sigma.max(0.0));
        for i in 0..n {
            let mut rng = SplitMix64::stream(seed, 0x5E_45_05, i as u64);
            let c_pos = (f64::from(params.threshold_pos) + sigma * rng.normal()) as f32;
            let c_neg = (f64::from(params.threshold_neg) + sigma * rng.normal()) as f32;
            let c_pos = c_pos.max(MIN_THRESHOLD);
            let jitter = (1.0 + 0.1 * rng.normal()).max(0.0) as f32;
            let hot = rng.uniform() < f64::from(params.hot_pixel_fraction);
            let rate_hz = if hot {
                params.hot_pixel_hz
            } else {
                params.shot_noise_hz
            };
            let rate = f64::from(rate_hz.max(0.0)) * 1e-6;
            array.c_pos.push(c_pos);
            array.c_neg.push(c_neg.max(MIN_THRESHOLD));
            array
                .leak_per_us
                .push(params.leak_hz.max(0.0) * jitter * c_pos * 1e-6);
            array.noise_per_us.push(rate);
            array.next_noise_t.push(t0 as f64 + rng.exponential(rate));
            array.rng.push(rng);
        }
        array
    }

    /// Advances from the previous frame (at `t0`) to `log1` at `t1`, appending one sort key per
    /// event (relative to `t0`) to `keys`. Keys are not sorted.
    pub fn step(&mut self, t0: i64, t1: i64, log1: &[f32], keys: &mut Vec<u64>) {
        let dt = (t1 - t0) as f32;
        let t1f = t1 as f64;
        for (i, &l1) in log1.iter().enumerate() {
            let l0 = self.previous[i];
            self.previous[i] = l1;
            let mut reference = self.reference[i] - self.leak_per_us[i] * dt;
            let (cp, cn) = (self.c_pos[i], self.c_neg[i]);
            let diff = l1 - reference;
            if diff >= cp || diff <= -cn {
                let (x, y) = (i % self.width, i / self.width);
                let (step, polarity) = if diff > 0.0 { (cp, 1u8) } else { (-cn, 0u8) };
                let slope = l1 - l0;
                let mut level = reference + step;
                // Crossings in order; stop at the frame's level.
                while (polarity == 1 && level <= l1) || (polarity == 0 && level >= l1) {
                    let frac = if slope != 0.0 {
                        ((level - l0) / slope).clamp(0.0, 1.0)
                    } else {
                        1.0
                    };
                    let t_rel = (frac * dt).round() as i64;
                    if t0 + t_rel - self.last_event_t[i] >= self.refractory_us {
                        self.last_event_t[i] = t0 + t_rel;
                        keys.push(key(t_rel, x, y, polarity));
                    }
                    reference = level;
                    level += step;
                }
            }
            if self.next_noise_t[i] <= t1f {
                let (x, y) = (i % self.width, i / self.width);
                let rng = &mut self.rng[i];
                while self.next_noise_t[i] <= t1f {
                    let t = self.next_noise_t[i].ceil() as i64;
                    let t_rel = (t - t0).clamp(0, t1 - t0);
                    keys.push(key(t_rel, x, y, u8::from(rng.coin())));
                    self.last_event_t[i] = t0 + t_rel;
                    self.next_noise_t[i] += rng.exponential(self.noise_per_us[i]).max(1.0);
                }
                // Like v2e, a noise event resets the pixel to the present level.
                reference = l1;
            }
            self.reference[i] = reference;
        }
    }
}
