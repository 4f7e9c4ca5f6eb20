//! RVT's label cleaning (`scripts/genx/preprocess_dataset.py::apply_filters`, RVT @ b80f568).
//!
//! In order: crop every box to the field of view (RVT clips corners to `0..=W-1`, `0..=H-1`)
//! and drop boxes left with no width or height; keep boxes with `w² + h² >= min_diag²` and both
//! sides `>= min_side`; optionally drop "faulty" boxes wider than `floor(max_width_frac * W)`,
//! which RVT does on the train split only ([`LabelFilter::for_split`]). Class selection is not
//! part of the filter: [`crate::PrepareOptions::classes`] decides which class ids are kept.

use prism_events::BoxLabel;
use serde::{Deserialize, Serialize};

/// Size thresholds of RVT's label cleaning, in sensor pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelFilter {
    /// Smallest diagonal kept (Prophesee filter: 30 for Gen1).
    pub min_diag: f32,
    /// Smallest width and height kept.
    pub min_side: f32,
    /// Boxes wider than `floor(frac * sensor_width)` are dropped (RVT: 0.9, train split only).
    pub max_width_frac: Option<f32>,
}

impl LabelFilter {
    /// Gen1: the Prophesee filter (diagonal >= 30, sides >= 10) and the faulty-width filter.
    pub fn gen1() -> Self {
        Self {
            min_diag: 30.0,
            min_side: 10.0,
            max_width_frac: Some(0.9),
        }
    }

    /// 1Mpx (Gen4): RVT's "conservative" filter (sides >= 5) and the faulty-width filter.
    pub fn gen4() -> Self {
        Self {
            min_diag: 0.0,
            min_side: 5.0,
            max_width_frac: Some(0.9),
        }
    }

    /// Only the crop to the field of view.
    pub fn none() -> Self {
        Self {
            min_diag: 0.0,
            min_side: 0.0,
            max_width_frac: None,
        }
    }

    /// The filter RVT uses for `split`: the faulty-width filter only applies to `train`.
    pub fn for_split(self, split: &str) -> Self {
        if split == "train" {
            self
        } else {
            Self {
                max_width_frac: None,
                ..self
            }
        }
    }

    /// The boxes that survive, cropped to the `sensor_w` x `sensor_h` field of view.
    pub fn apply(&self, boxes: &[BoxLabel], sensor_w: f32, sensor_h: f32) -> Vec<BoxLabel> {
        let max_w = self.max_width_frac.map(|f| max_width(f, sensor_w));
        boxes
            .iter()
            .filter_map(|b| crop_to_fov(b, sensor_w, sensor_h))
            .filter(|b| {
                let diag_ok = b.w * b.w + b.h * b.h >= self.min_diag * self.min_diag;
                let side_ok = b.w >= self.min_side && b.h >= self.min_side;
                let width_ok = max_w.is_none_or(|m| b.w <= m);
                diag_ok && side_ok && width_ok
            })
            .collect()
    }
}

/// RVT's `(9 * W) // 10` for any fraction: the small offset keeps `0.9_f32 * 1280` (which is
/// 1151.99997 in f32) at 1152.
fn max_width(frac: f32, sensor_w: f32) -> f32 {
    (f64::from(frac) * f64::from(sensor_w) + 1e-4).floor() as f32
}

/// RVT's `crop_to_fov_filter`: corners clipped to `[0, W-1] x [0, H-1]`; `None` when the box has
/// no area left (or is not a number).
pub fn crop_to_fov(b: &BoxLabel, sensor_w: f32, sensor_h: f32) -> Option<BoxLabel> {
    // max/min rather than clamp: clamp panics when the sensor is empty (max < min).
    let clip = |v: f32, hi: f32| v.max(0.0).min(hi);
    let (x0, x1) = (clip(b.x, sensor_w - 1.0), clip(b.x + b.w, sensor_w - 1.0));
    let (y0, y1) = (clip(b.y, sensor_h - 1.0), clip(b.y + b.h, sensor_h - 1.0));
    let (w, h) = (x1 - x0, y1 - y0);
    (w > 0.0 && h > 0.0).then_some(BoxLabel {
        x: x0,
        y: y0,
        w,
        h,
        ..*b
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f32, y: f32, w: f32, h: f32) -> BoxLabel {
        BoxLabel {
            t: 0,
            x,
            y,
            w,
            h,
            class_id: 0,
            track_id: 0,
            confidence: 1.0,
        }
    }

    #[test]
    fn crop_clips_to_last_pixel_and_drops_empty() {
        let f = LabelFilter::none();
        let out = f.apply(
            &[
                bx(-5.0, -5.0, 20.0, 20.0),
                bx(90.0, 40.0, 20.0, 20.0),
                bx(120.0, 10.0, 5.0, 5.0), // entirely right of the sensor
                bx(10.0, 10.0, 0.0, 5.0),
                bx(f32::NAN, 1.0, 2.0, 2.0),
            ],
            100.0,
            50.0,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].x, out[0].y, out[0].w, out[0].h),
            (0.0, 0.0, 15.0, 15.0)
        );
        // Right and bottom edges stop at W-1 and H-1, as in RVT.
        assert_eq!(
            (out[1].x, out[1].y, out[1].w, out[1].h),
            (90.0, 40.0, 9.0, 9.0)
        );
    }

    #[test]
    fn gen1_size_filter() {
        let f = LabelFilter::gen1();
        let boxes = [
            bx(0.0, 0.0, 10.0, 30.0), // diag 31.6, sides ok -> keep
            bx(0.0, 0.0, 9.9, 40.0),  // side too small
            bx(0.0, 0.0, 20.0, 20.0), // diag 28.3 < 30
            bx(0.0, 0.0, 21.3, 21.3), // diag 30.1
        ];
        let out = f.apply(&boxes, 304.0, 240.0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].w, 10.0);
        assert_eq!(out[1].w, 21.3);
    }

    #[test]
    fn faulty_width_is_train_only() {
        // floor(0.9 * 304) = 273; floor(0.9 * 1280) = 1152.
        let wide = [bx(0.0, 0.0, 273.0, 50.0), bx(0.0, 0.0, 273.5, 50.0)];
        assert_eq!(LabelFilter::gen1().apply(&wide, 304.0, 240.0).len(), 1);
        let val = LabelFilter::gen1().for_split("val");
        assert_eq!(val.apply(&wide, 304.0, 240.0).len(), 2);
        let gen4 = [bx(0.0, 0.0, 1152.0, 50.0), bx(0.0, 0.0, 1152.5, 50.0)];
        assert_eq!(LabelFilter::gen4().apply(&gen4, 1280.0, 720.0).len(), 1);
    }

    #[test]
    fn gen4_conservative_filter() {
        let boxes = [bx(0.0, 0.0, 5.0, 5.0), bx(0.0, 0.0, 4.9, 100.0)];
        assert_eq!(LabelFilter::gen4().apply(&boxes, 1280.0, 720.0).len(), 1);
    }

    #[test]
    fn empty_sensor_drops_everything_without_panicking() {
        assert!(LabelFilter::none()
            .apply(&[bx(0.0, 0.0, 1.0, 1.0)], 0.0, 0.0)
            .is_empty());
    }
}
