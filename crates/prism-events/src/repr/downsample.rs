//! PyTorch's `nearest-exact` resampling, which RVT applies to 1Mpx histograms
//! (`F.interpolate(x, scale_factor=0.5, mode='nearest-exact')`).
//!
//! PyTorch (`aten/src/ATen/native/UpSample.h`, `nearest_neighbor_exact_compute_source_index`):
//! `src = min(floor((dst + 0.5) * scale), in_size - 1)` with `scale = 1 / scale_factor` when a
//! scale factor is given (here exactly 2.0), else `in_size / out_size`; the output size is
//! `floor(in_size * scale_factor)`. For a factor of 0.5 this is `src = 2 * dst + 1`: every 2x2 block
//! keeps its bottom-right pixel, and the clamp never applies because `2 * (floor(n / 2) - 1) + 1 <
//! n`. So a halved histogram equals the histogram of the events at odd x and odd y placed at
//! `(x / 2, y / 2)` (per-pixel counting, wrapping and clipping commute with picking pixels), which
//! is how [`super::StackedHistogram`] builds it.

/// Output length of a `nearest-exact` resize of `in_size` by `scale_factor` (PyTorch:
/// `floor(in_size * scale_factor)`).
pub fn output_size(in_size: usize, scale_factor: f64) -> usize {
    (in_size as f64 * scale_factor).floor() as usize
}

/// Source index PyTorch's `nearest-exact` reads for output index `dst`, given the scale factor the
/// caller passed to `F.interpolate` (computed in `f32` as in PyTorch).
pub fn source_index(dst: usize, in_size: usize, scale_factor: f64) -> usize {
    let scale = (1.0 / scale_factor) as f32;
    let src = ((dst as f32 + 0.5) * scale).floor() as usize;
    src.min(in_size.saturating_sub(1))
}

/// Halves a `[channels, in_h, in_w]` tensor with `nearest-exact` (factor 0.5) into the top-left
/// corner of a zeroed `[channels, out_h, out_w]` buffer (`out_h >= in_h / 2`, `out_w >= in_w / 2`;
/// the rest is padding). Reference implementation for tests; the histogram never calls it.
pub fn halve_nearest_exact(
    src: &[u8],
    channels: usize,
    in_h: usize,
    in_w: usize,
    out: &mut [u8],
    out_h: usize,
    out_w: usize,
) {
    let (h, w) = (output_size(in_h, 0.5), output_size(in_w, 0.5));
    for c in 0..channels {
        for oy in 0..h.min(out_h) {
            let sy = source_index(oy, in_h, 0.5);
            for ox in 0..w.min(out_w) {
                let sx = source_index(ox, in_w, 0.5);
                if let (Some(o), Some(&v)) = (
                    out.get_mut((c * out_h + oy) * out_w + ox),
                    src.get((c * in_h + sy) * in_w + sx),
                ) {
                    *o = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_scale_keeps_odd_pixels() {
        for n in [1usize, 2, 3, 47, 240, 241, 304, 720, 1280] {
            assert_eq!(output_size(n, 0.5), n / 2);
            for dst in 0..n / 2 {
                assert_eq!(source_index(dst, n, 0.5), 2 * dst + 1, "n={n} dst={dst}");
            }
        }
    }

    #[test]
    fn halve_picks_bottom_right_of_each_block() {
        let src: Vec<u8> = (0..4 * 6).map(|v| v as u8).collect();
        let mut out = vec![0u8; 3 * 4];
        halve_nearest_exact(&src, 1, 4, 6, &mut out, 3, 4);
        assert_eq!(out, vec![7, 9, 11, 0, 19, 21, 23, 0, 0, 0, 0, 0]);
    }
}
