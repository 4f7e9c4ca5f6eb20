//! The scene background: fractal value noise plus two soft sinusoidal gratings, a smooth
//! texture with edges at several scales, seen through an optionally panning camera.

use super::rng::SplitMix64;
use super::texture::ValueNoise;

#[derive(Debug, Clone)]
pub struct Background {
    noise: ValueNoise,
    /// `(kx, ky, phase)` of each grating.
    gratings: Vec<(f32, f32, f32)>,
    contrast: f32,
}

impl Background {
    /// A background for a `width x height` sensor; `contrast` 0 is flat grey, 0.5 the most.
    pub fn new(seed: u64, width: usize, height: usize, contrast: f32) -> Self {
        let mut rng = SplitMix64::stream(seed, 0xB6, 0);
        let noise = ValueNoise::new(rng.next_u64(), (height.min(width) as f32 / 6.0).max(2.0), 4);
        let gratings = (0..2)
            .map(|_| {
                let angle = rng.range(0.0, std::f64::consts::PI) as f32;
                let period = rng.range(8.0, 40.0) as f32;
                let k = std::f32::consts::TAU / period;
                (
                    k * angle.cos(),
                    k * angle.sin(),
                    rng.range(0.0, std::f64::consts::TAU) as f32,
                )
            })
            .collect();
        Self {
            noise,
            gratings,
            contrast: contrast.clamp(0.0, 0.5),
        }
    }

    /// Linear intensity in `[0.02, 0.98]` at world position `(x, y)`.
    pub fn value(&self, x: f32, y: f32) -> f32 {
        let mut v = 2.0 * self.noise.sample(x, y) - 1.0;
        for &(kx, ky, phase) in &self.gratings {
            v += 0.25 * (kx * x + ky * y + phase).sin();
        }
        (0.5 + self.contrast * v / 1.5).clamp(0.02, 0.98)
    }

    /// Fills `linear` and `log` (`ln(I + log_eps)`) with the view whose top-left pixel sits at
    /// world position `(ox, oy)`.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        ox: f32,
        oy: f32,
        width: usize,
        log_eps: f32,
        linear: &mut [f32],
        log: &mut [f32],
    ) {
        for (i, (lin, lg)) in linear.iter_mut().zip(log.iter_mut()).enumerate() {
            let (x, y) = ((i % width) as f32, (i / width) as f32);
            *lin = self.value(x + ox, y + oy);
            *lg = (*lin + log_eps).ln();
        }
    }
}
