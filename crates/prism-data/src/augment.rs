//! RVT's spatial augmentation (`data/utils/augmentor.py`, `config/dataset/base.yaml`): horizontal
//! flip, then zoom in (crop and enlarge) or zoom out (shrink and paste on zeros), all nearest
//! neighbour, applied identically to every window of a clip and to its boxes.
//!
//! Pixel mapping (PyTorch `nearest-exact`, pixel centres): a zoom-in crop of `cw` columns starting
//! at `x0` fills output column `o` from `x0 + floor((o + 0.5) * cw / W)`; a zoom-out to `cw`
//! columns pasted at `x0` fills `o` in `[x0, x0 + cw)` from `floor((o - x0 + 0.5) * W / cw)` and
//! leaves the rest zero; the flip reads column `W - 1 - x`. Boxes move with the same affine maps
//! (`x' = (x - x0) * W / cw`, `x' = x0 + x * cw / W`, `x' = W - x - w`), so a pixel is inside a
//! transformed box exactly when the pixel it was read from is inside the original box. Rows work
//! the same way without the flip.
//!
//! Everything happens inside the image content (the unpadded `content_hw`); the zero padding at
//! the bottom and right stays where RVT adds it, after augmentation.

use prism_events::synth::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::prepared::LabeledBox;

/// Boxes that an augmentation shrinks below this many pixels on a side are dropped.
pub const MIN_BOX_SIDE: f32 = 2.0;

/// Probabilities and ranges of the augmentation draws; [`Default`] is RVT's `base.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip (random and streaming clips).
    pub hflip_p: f32,
    /// Probability of a zoom for a random clip (zoom in or out by the weights below).
    pub zoom_p_random: f32,
    /// Probability of a zoom for a streaming sequence (zoom out only, as in RVT).
    pub zoom_p_stream: f32,
    /// Zoom-in factor drawn uniformly in `[1, zoom_in_max]`.
    pub zoom_in_max: f32,
    pub zoom_in_weight: f32,
    /// Zoom-out factor drawn uniformly in `[1, zoom_out_max]`.
    pub zoom_out_max: f32,
    pub zoom_out_weight: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip_p: 0.5,
            zoom_p_random: 0.8,
            zoom_p_stream: 0.5,
            zoom_in_max: 1.5,
            zoom_in_weight: 8.0,
            zoom_out_max: 1.2,
            zoom_out_weight: 2.0,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self {
            hflip_p: 0.0,
            zoom_p_random: 0.0,
            zoom_p_stream: 0.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let prob = |p: f32| (0.0..=1.0).contains(&p);
        let ok = prob(self.hflip_p)
            && prob(self.zoom_p_random)
            && prob(self.zoom_p_stream)
            && self.zoom_in_max >= 1.0
            && self.zoom_out_max >= 1.0
            && self.zoom_in_max.is_finite()
            && self.zoom_out_max.is_finite()
            && self.zoom_in_weight >= 0.0
            && self.zoom_out_weight >= 0.0
            && self.zoom_in_weight.is_finite()
            && self.zoom_out_weight.is_finite();
        if ok {
            Ok(())
        } else {
            Err(DataError::Invalid(format!(
                "augmentation: probabilities must be in [0, 1], zoom maxima >= 1, weights >= 0: {self:?}"
            )))
        }
    }

    /// Parameters for one random clip of an image of `hw` (content size). As in RVT, a zoom-in
    /// window is placed so that it holds one box (picked at random) of `recent`, the clip's last
    /// non-empty label frame; without boxes it is placed anywhere.
    pub fn draw_random(
        &self,
        rng: &mut SplitMix64,
        hw: [usize; 2],
        recent: &[LabeledBox],
    ) -> Augmentation {
        self.draw(rng, hw, self.zoom_p_random, self.zoom_in_weight, recent)
    }

    /// Parameters for one streaming sequence: flip and zoom out only.
    pub fn draw_stream(&self, rng: &mut SplitMix64, hw: [usize; 2]) -> Augmentation {
        self.draw(rng, hw, self.zoom_p_stream, 0.0, &[])
    }

    fn draw(
        &self,
        rng: &mut SplitMix64,
        [h, w]: [usize; 2],
        zoom_p: f32,
        in_weight: f32,
        recent: &[LabeledBox],
    ) -> Augmentation {
        let hflip = rng.uniform() < f64::from(self.hflip_p);
        let do_zoom = rng.uniform() < f64::from(zoom_p);
        let total = f64::from(in_weight) + f64::from(self.zoom_out_weight);
        let zoom_in = rng.uniform() * total < f64::from(in_weight);
        let zoom = if !do_zoom || total <= 0.0 || h == 0 || w == 0 {
            Zoom::None
        } else if zoom_in {
            let scale = rng.range(1.0, f64::from(self.zoom_in_max)) as f32;
            let (cw, ch) = (zoom_len(scale, w), zoom_len(scale, h));
            let flipped: Vec<LabeledBox> = Augmentation {
                hflip,
                zoom: Zoom::None,
            }
            .apply_boxes(recent, h, w)
            .into_iter()
            .filter(|b| b.w > 0.0 && b.h > 0.0)
            .collect();
            let (x0, y0) = if flipped.is_empty() {
                (
                    uniform_index(rng, w - cw + 1),
                    uniform_index(rng, h - ch + 1),
                )
            } else {
                let b = flipped[uniform_index(rng, flipped.len())];
                (
                    window_start_holding(rng, b.x, b.w, cw, w),
                    window_start_holding(rng, b.y, b.h, ch, h),
                )
            };
            Zoom::In {
                scale,
                cx: x0 as f32 + cw as f32 / 2.0,
                cy: y0 as f32 + ch as f32 / 2.0,
            }
        } else {
            let scale = rng.range(1.0, f64::from(self.zoom_out_max)) as f32;
            let (cw, ch) = (zoom_len(scale, w), zoom_len(scale, h));
            Zoom::Out {
                scale,
                x0: uniform_index(rng, w - cw + 1) as f32,
                y0: uniform_index(rng, h - ch + 1) as f32,
            }
        };
        Augmentation { hflip, zoom }
    }
}

/// Uniform in `0..n` (`n >= 1`).
pub(crate) fn uniform_index(rng: &mut SplitMix64, n: usize) -> usize {
    ((rng.uniform() * n as f64) as usize).min(n.saturating_sub(1))
}

/// RVT's `randomly_sample_zoom_window_from_label_rectangle` along one axis: a start for a window
/// of `len` pixels in `0..n` that holds `[pos, pos + size)` when it fits.
fn window_start_holding(rng: &mut SplitMix64, pos: f32, size: f32, len: usize, n: usize) -> usize {
    let (len_f, n_f) = (len as f64, n as f64);
    let (p0, p1) = (f64::from(pos), f64::from(pos + size));
    let lo = (p1 - len_f.max(f64::from(size))).max(0.0);
    let hi = ((p0 + len_f.max(f64::from(size))).min(n_f - 1.0) - len_f).max(lo);
    let start = rng.range(lo, hi).floor();
    (start.max(0.0) as usize).min(n - len)
}

/// Pixels a zoom by `scale` keeps along an axis of `n`: `floor(n / scale)`, in `1..=n`.
fn zoom_len(scale: f32, n: usize) -> usize {
    if !(scale.is_finite() && scale > 0.0) {
        return n;
    }
    ((n as f64 / f64::from(scale)).floor() as usize).clamp(1.min(n), n)
}

/// The zoom of an augmentation, in content pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Zoom {
    None,
    /// Crop `floor(H / scale) x floor(W / scale)` centred at `(cx, cy)` (moved inside the image
    /// when it sticks out) and enlarge it to `H x W`.
    In {
        scale: f32,
        cx: f32,
        cy: f32,
    },
    /// Shrink the image to `floor(H / scale) x floor(W / scale)` and paste it with its top-left
    /// corner at `(x0, y0)` (rounded, moved inside) on zeros.
    Out {
        scale: f32,
        x0: f32,
        y0: f32,
    },
}

/// One draw of the augmentation: flip first, then zoom.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    pub hflip: bool,
    pub zoom: Zoom,
}

/// How one axis maps: output pixel `o` reads input pixel `start + ...` (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AxisZoom {
    Identity,
    In { start: usize, len: usize },
    Out { start: usize, len: usize },
}

impl AxisZoom {
    fn new(zoom: &Zoom, vertical: bool, n: usize) -> Self {
        let start = |centre_or_corner: f32, len: usize, centred: bool| {
            let v = if centred {
                centre_or_corner - len as f32 / 2.0
            } else {
                centre_or_corner
            };
            let v = if v.is_finite() {
                v.round().max(0.0) as usize
            } else {
                0
            };
            v.min(n - len)
        };
        match *zoom {
            _ if n == 0 => AxisZoom::Identity,
            Zoom::None => AxisZoom::Identity,
            Zoom::In { scale, cx, cy } => {
                let len = zoom_len(scale, n);
                let c = if vertical { cy } else { cx };
                AxisZoom::In {
                    start: start(c, len, true),
                    len,
                }
            }
            Zoom::Out { scale, x0, y0 } => {
                let len = zoom_len(scale, n);
                let c = if vertical { y0 } else { x0 };
                AxisZoom::Out {
                    start: start(c, len, false),
                    len,
                }
            }
        }
    }

    /// Input pixel read by each output pixel of an axis of `n` (`None`: zero).
    fn source_map(self, n: usize, flip: bool) -> Vec<Option<usize>> {
        (0..n)
            .map(|o| {
                let v = match self {
                    AxisZoom::Identity => Some(o),
                    // floor((o + 0.5) * len / n), exactly, in integers.
                    AxisZoom::In { start, len } => {
                        Some(start + ((2 * o + 1) * len / (2 * n)).min(len - 1))
                    }
                    AxisZoom::Out { start, len } => (start..start + len)
                        .contains(&o)
                        .then(|| ((2 * (o - start) + 1) * n / (2 * len)).min(n - 1)),
                };
                if flip {
                    v.map(|v| n - 1 - v)
                } else {
                    v
                }
            })
            .collect()
    }

    /// Maps a box side `[p, p + s)` of an axis of `n`.
    fn map_interval(self, p: f32, s: f32, n: usize) -> (f32, f32) {
        let n = n as f32;
        match self {
            AxisZoom::Identity => (p, s),
            AxisZoom::In { start, len } => {
                let k = n / len as f32;
                ((p - start as f32) * k, s * k)
            }
            AxisZoom::Out { start, len } => {
                let k = len as f32 / n;
                (start as f32 + p * k, s * k)
            }
        }
    }
}

impl Augmentation {
    pub fn identity() -> Self {
        Self {
            hflip: false,
            zoom: Zoom::None,
        }
    }

    pub fn is_identity(&self) -> bool {
        !self.hflip && self.zoom == Zoom::None
    }

    /// Augments a whole `u8 [c, h, w]` histogram into `f32 [c, h, w]` counts.
    pub fn apply_histogram(&self, src: &[u8], c: usize, h: usize, w: usize, dst: &mut [f32]) {
        self.apply_histogram_in(src, c, [h, w], [h, w], dst);
    }

    /// Augments the top-left `content` region of a `u8 [c, hw]` histogram into `f32 [c, hw]`;
    /// the rest of `dst` (the padding) is zero. Both buffers should hold `c * h * w` values;
    /// anything missing is treated as zero, never a panic.
    pub fn apply_histogram_in(
        &self,
        src: &[u8],
        c: usize,
        [h, w]: [usize; 2],
        content: [usize; 2],
        dst: &mut [f32],
    ) {
        let (ch, cw) = (content[0].min(h), content[1].min(w));
        let xmap = AxisZoom::new(&self.zoom, false, cw).source_map(cw, self.hflip);
        let ymap = AxisZoom::new(&self.zoom, true, ch).source_map(ch, false);
        dst.fill(0.0);
        if self.is_identity() && [ch, cw] == [h, w] {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32::from(s);
            }
            return;
        }
        // Output columns that read something form one run (zoom out leaves zeros around it).
        let x_lo = xmap.iter().position(Option::is_some).unwrap_or(cw);
        let xs: Vec<usize> = xmap[x_lo..].iter().map_while(|v| *v).collect();
        let x_hi = x_lo + xs.len();
        for k in 0..c {
            for (oy, sy) in ymap.iter().enumerate() {
                let Some(sy) = *sy else { continue };
                let (s0, d0) = ((k * h + sy) * w, (k * h + oy) * w);
                let (Some(src_row), Some(dst_row)) =
                    (src.get(s0..s0 + cw), dst.get_mut(d0 + x_lo..d0 + x_hi))
                else {
                    continue;
                };
                for (d, &sx) in dst_row.iter_mut().zip(&xs) {
                    *d = f32::from(src_row.get(sx).copied().unwrap_or(0));
                }
            }
        }
    }

    /// The boxes moved like the pixels of an `h x w` image (content size), clipped to it; boxes
    /// that the augmentation shrinks below [`MIN_BOX_SIDE`] on a side, or that leave the image,
    /// are dropped.
    pub fn apply_boxes(&self, boxes: &[LabeledBox], h: usize, w: usize) -> Vec<LabeledBox> {
        let ax = AxisZoom::new(&self.zoom, false, w);
        let ay = AxisZoom::new(&self.zoom, true, h);
        let (wf, hf) = (w as f32, h as f32);
        boxes
            .iter()
            .filter_map(|b| {
                let bx = if self.hflip { wf - b.x - b.w } else { b.x };
                let (x, bw) = ax.map_interval(bx, b.w, w);
                let (y, bh) = ay.map_interval(b.y, b.h, h);
                let (x0, x1) = (x.max(0.0), (x + bw).min(wf));
                let (y0, y1) = (y.max(0.0), (y + bh).min(hf));
                let (nw, nh) = (x1 - x0, y1 - y0);
                let keep = nw > 0.0
                    && nh > 0.0
                    && (nw >= MIN_BOX_SIDE || nw >= b.w)
                    && (nh >= MIN_BOX_SIDE || nh >= b.h);
                keep.then_some(LabeledBox {
                    class_id: b.class_id,
                    x: x0,
                    y: y0,
                    w: nw,
                    h: nh,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_maps() {
        assert_eq!(
            AxisZoom::Identity.source_map(4, true),
            vec![Some(3), Some(2), Some(1), Some(0)]
        );
        // Crop 2 of 4 from 1, enlarged x2.
        let zin = AxisZoom::In { start: 1, len: 2 };
        assert_eq!(
            zin.source_map(4, false),
            vec![Some(1), Some(1), Some(2), Some(2)]
        );
        // Shrink 4 to 2 pasted at 1: nearest-exact keeps pixels 1 and 3.
        let zout = AxisZoom::Out { start: 1, len: 2 };
        assert_eq!(
            zout.source_map(4, false),
            vec![None, Some(1), Some(3), None]
        );
    }

    #[test]
    fn zoom_is_moved_inside() {
        // Centre far right: the crop is moved to the last position.
        let z = AxisZoom::new(
            &Zoom::In {
                scale: 2.0,
                cx: 1000.0,
                cy: -5.0,
            },
            false,
            10,
        );
        assert_eq!(z, AxisZoom::In { start: 5, len: 5 });
        let z = AxisZoom::new(
            &Zoom::In {
                scale: 2.0,
                cx: 1000.0,
                cy: -5.0,
            },
            true,
            10,
        );
        assert_eq!(z, AxisZoom::In { start: 0, len: 5 });
        let z = AxisZoom::new(
            &Zoom::Out {
                scale: 1.25,
                x0: 7.0,
                y0: 0.0,
            },
            false,
            10,
        );
        assert_eq!(z, AxisZoom::Out { start: 2, len: 8 });
        let z = AxisZoom::new(
            &Zoom::In {
                scale: f32::NAN,
                cx: 0.0,
                cy: 0.0,
            },
            false,
            10,
        );
        assert_eq!(z, AxisZoom::In { start: 0, len: 10 });
    }

    #[test]
    fn draws_stay_in_range() {
        let cfg = AugmentConfig::default();
        let boxes = [LabeledBox {
            class_id: 0,
            x: 100.0,
            y: 50.0,
            w: 40.0,
            h: 30.0,
        }];
        let (mut ins, mut outs, mut flips) = (0, 0, 0);
        for i in 0..2000 {
            let mut rng = SplitMix64::new(i);
            let a = cfg.draw_random(&mut rng, [240, 304], &boxes);
            flips += usize::from(a.hflip);
            match a.zoom {
                Zoom::In { scale, cx, cy } => {
                    ins += 1;
                    assert!((1.0..=1.5).contains(&scale));
                    let (cw, ch) = (zoom_len(scale, 304) as f32, zoom_len(scale, 240) as f32);
                    // The crop holds the (possibly flipped) box.
                    let bx = if a.hflip { 304.0 - 140.0 } else { 100.0 };
                    assert!(cx - cw / 2.0 <= bx && bx + 40.0 <= cx + cw / 2.0, "{a:?}");
                    assert!(cy - ch / 2.0 <= 50.0 && 80.0 <= cy + ch / 2.0, "{a:?}");
                }
                Zoom::Out { scale, x0, y0 } => {
                    outs += 1;
                    assert!((1.0..=1.2).contains(&scale));
                    assert!(x0 >= 0.0 && x0 as usize + zoom_len(scale, 304) <= 304);
                    assert!(y0 >= 0.0 && y0 as usize + zoom_len(scale, 240) <= 240);
                }
                Zoom::None => {}
            }
            let s = cfg.draw_stream(&mut rng, [240, 304]);
            assert!(!matches!(s.zoom, Zoom::In { .. }));
        }
        // p(zoom in) = 0.8 * 0.8 = 0.64, p(zoom out) = 0.16, p(flip) = 0.5.
        assert!((1150..1400).contains(&ins), "{ins}");
        assert!((230..420).contains(&outs), "{outs}");
        assert!((900..1100).contains(&flips), "{flips}");
    }
}
