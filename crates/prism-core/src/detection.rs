//! Boxes and class-aware NMS over decoded YOLOX rows ([`crate::yolox`]), as the reference YOLOX
//! post-processing does them (`yolox/utils/boxes.py::postprocess`: score = objectness × best class score, threshold,
//! then `torchvision.ops.batched_nms`).

use serde::{Deserialize, Serialize};

/// An axis-aligned box by its corners, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxXyxy {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxXyxy {
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
        }
    }

    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// Area as torchvision computes it (no +1), zero for inverted boxes.
    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    pub fn iou(&self, other: &BoxXyxy) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Scales by `factor` and clips to a `width` × `height` image.
    pub fn scaled_and_clipped(&self, factor: f32, width: f32, height: f32) -> Self {
        Self {
            x1: (self.x1 * factor).clamp(0.0, width),
            y1: (self.y1 * factor).clamp(0.0, height),
            x2: (self.x2 * factor).clamp(0.0, width),
            y2: (self.y2 * factor).clamp(0.0, height),
        }
    }
}

/// The name of class `id` in `classes`, or the id itself where the list has none.
pub fn class_name(classes: &[String], id: usize) -> std::borrow::Cow<'_, str> {
    match classes.get(id) {
        Some(name) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(id.to_string()),
    }
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub bbox: BoxXyxy,
    /// objectness × class score, the quantity thresholded and ranked.
    pub score: f32,
    pub class_id: usize,
}

/// Turns decoded rows `(cx, cy, w, h, obj, class scores…)` into detections: best class per row,
/// score = obj × class score, keep `score >= threshold`, class-aware NMS, at most `max` kept.
/// `scratch` is reused between calls so steady-state inference does not allocate.
pub fn postprocess(
    decoded: &[f32],
    row_len: usize,
    score_threshold: f32,
    nms_iou: f32,
    max: usize,
    scratch: &mut Vec<Detection>,
    out: &mut Vec<Detection>,
) {
    scratch.clear();
    out.clear();
    if row_len < 6 {
        return;
    }
    for row in decoded.chunks_exact(row_len) {
        let (class_id, class_score) =
            row[5..]
                .iter()
                .copied()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
                    if s > best.1 {
                        (i, s)
                    } else {
                        best
                    }
                });
        let score = row[4] * class_score;
        // NaN scores fail this comparison and are dropped.
        if score >= score_threshold {
            scratch.push(Detection {
                bbox: BoxXyxy::from_center(row[0], row[1], row[2], row[3]),
                score,
                class_id,
            });
        }
    }
    nms_in_place(scratch, nms_iou, max, out);
}

/// Class-aware NMS as `torchvision.ops.batched_nms`: candidates in decreasing score order (ties by
/// position), a box is dropped when its IoU with a kept box of the same class exceeds `iou`.
pub fn nms_in_place(candidates: &mut [Detection], iou: f32, max: usize, out: &mut Vec<Detection>) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    for candidate in candidates.iter() {
        if out.len() >= max {
            break;
        }
        let suppressed = out.iter().any(|kept| {
            kept.class_id == candidate.class_id && kept.bbox.iou(&candidate.bbox) > iou
        });
        if !suppressed {
            out.push(*candidate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32, class_id: usize) -> Detection {
        Detection {
            bbox: BoxXyxy { x1, y1, x2, y2 },
            score,
            class_id,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = BoxXyxy {
            x1: 0.0,
            y1: 0.0,
            x2: 2.0,
            y2: 2.0,
        };
        let b = BoxXyxy {
            x1: 1.0,
            y1: 1.0,
            x2: 3.0,
            y2: 3.0,
        };
        assert!((a.iou(&b) - 1.0 / 7.0).abs() < 1e-7);
        assert_eq!(a.iou(&a), 1.0);
        let far = BoxXyxy {
            x1: 5.0,
            y1: 5.0,
            x2: 6.0,
            y2: 6.0,
        };
        assert_eq!(a.iou(&far), 0.0);
    }

    #[test]
    fn nms_is_class_aware() {
        let mut c = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            det(1.0, 1.0, 10.0, 10.0, 0.8, 0), // overlaps the first, same class: dropped
            det(1.0, 1.0, 10.0, 10.0, 0.7, 1), // same place, other class: kept
            det(20.0, 20.0, 30.0, 30.0, 0.6, 0),
        ];
        let mut out = Vec::new();
        nms_in_place(&mut c, 0.45, 100, &mut out);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.6]);
    }

    #[test]
    fn postprocess_thresholds_on_obj_times_class() {
        // cx cy w h obj c0 c1
        let decoded = [
            10.0, 10.0, 4.0, 4.0, 0.5, 0.1, 0.9, // score 0.45 class 1
            50.0, 50.0, 4.0, 4.0, 0.2, 0.3, 0.1, // score 0.06: dropped at 0.1
        ];
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        postprocess(&decoded, 7, 0.1, 0.45, 10, &mut scratch, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.45).abs() < 1e-6);
        assert_eq!(
            out[0].bbox,
            BoxXyxy {
                x1: 8.0,
                y1: 8.0,
                x2: 12.0,
                y2: 12.0
            }
        );
    }

    proptest! {
        /// Kept boxes of one class never overlap above the threshold, scores come out sorted,
        /// and every candidate is either kept or overlapped by a better kept box of its class.
        #[test]
        fn nms_invariants(boxes in prop::collection::vec((0f32..100.0, 0f32..100.0, 1f32..40.0, 1f32..40.0, 0f32..1.0, 0usize..3), 0..60)) {
            let mut c: Vec<Detection> = boxes.iter().map(|&(x, y, w, h, s, k)| det(x, y, x + w, y + h, s, k)).collect();
            let mut out = Vec::new();
            nms_in_place(&mut c, 0.5, usize::MAX, &mut out);
            for (i, a) in out.iter().enumerate() {
                for b in &out[i + 1..] {
                    prop_assert!(a.score >= b.score);
                    if a.class_id == b.class_id {
                        prop_assert!(a.bbox.iou(&b.bbox) <= 0.5);
                    }
                }
            }
            for cand in &c {
                let kept = out.iter().any(|k| k == cand);
                let covered = out.iter().any(|k| k.class_id == cand.class_id && k.score >= cand.score && k.bbox.iou(&cand.bbox) > 0.5);
                prop_assert!(kept || covered);
            }
        }
    }
}
