//! Smooth procedural textures: lattice value noise with fractal octaves, and small bitmaps of it
//! that move with objects.

use super::rng::mix;

/// Value noise on an integer lattice, smoothstep-interpolated; values in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct ValueNoise {
    seed: u64,
    /// Lattice cell size in pixels: the feature size.
    cell: f32,
    octaves: u32,
}

impl ValueNoise {
    pub fn new(seed: u64, cell: f32, octaves: u32) -> Self {
        Self {
            seed,
            cell: cell.max(0.5),
            octaves: octaves.max(1),
        }
    }

    fn lattice(&self, octave: u32, ix: i64, iy: i64) -> f32 {
        let h = mix(mix(self.seed, u64::from(octave)), mix(ix as u64, iy as u64));
        (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    fn octave(&self, octave: u32, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (ix, iy) = (fx as i64, fy as i64);
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (sx, sy) = (smooth(x - fx), smooth(y - fy));
        let v00 = self.lattice(octave, ix, iy);
        let v10 = self.lattice(octave, ix + 1, iy);
        let v01 = self.lattice(octave, ix, iy + 1);
        let v11 = self.lattice(octave, ix + 1, iy + 1);
        let top = v00 + (v10 - v00) * sx;
        let bottom = v01 + (v11 - v01) * sx;
        top + (bottom - top) * sy
    }

    /// Fractal sum of the octaves at pixel `(x, y)`, normalised to `[0, 1]`.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0 / self.cell);
        for o in 0..self.octaves {
            sum += amp * self.octave(o, x * freq, y * freq);
            norm += amp;
            amp *= 0.5;
            freq *= 2.0;
        }
        sum / norm
    }
}

/// A precomputed texture bitmap, sampled bilinearly (cheaper than evaluating noise per frame).
#[derive(Debug, Clone)]
pub struct Bitmap {
    width: usize,
    height: usize,
    data: Vec<f32>,
}

impl Bitmap {
    /// Renders `noise` over `width x height` pixels.
    pub fn from_noise(noise: &ValueNoise, width: usize, height: usize) -> Self {
        let (width, height) = (width.max(2), height.max(2));
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(noise.sample(x as f32, y as f32));
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// Bilinear sample at `(u, v)` pixels, clamped to the edges.
    #[inline]
    pub fn sample(&self, u: f32, v: f32) -> f32 {
        let u = u.clamp(0.0, (self.width - 1) as f32 - 1e-3);
        let v = v.clamp(0.0, (self.height - 1) as f32 - 1e-3);
        let (x0, y0) = (u as usize, v as usize);
        let (fx, fy) = (u - x0 as f32, v - y0 as f32);
        let i = y0 * self.width + x0;
        let (a, b) = (self.data[i], self.data[i + 1]);
        let (c, d) = (self.data[i + self.width], self.data[i + self.width + 1]);
        let top = a + (b - a) * fx;
        let bottom = c + (d - c) * fx;
        top + (bottom - top) * fy
    }
}
