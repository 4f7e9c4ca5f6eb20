//! SimOTA label assignment (YOLOX, as vendored by RVT in `yolox/models/yolo_head.py`).
//!
//! For one image: anchors whose centre lies within 1.5 strides of some ground-truth centre are
//! candidates; each ground truth gets the `k` candidates of lowest cost, where
//! `cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), onehot) + 3 * -ln(IoU + 1e-8) + 1e6 * outside`
//! and `k = max(1, floor(sum of its top-10 IoUs))`; an anchor claimed twice keeps its cheapest
//! ground truth. It runs on plain `f32` slices: the reference computes it under `no_grad`.

pub use prism_core::yolox::Anchor;

/// A ground-truth box in input pixels: centre, size, class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    pub class_id: usize,
}

/// Detached predictions of one image: decoded boxes `(cx, cy, w, h)` per anchor, objectness
/// logit per anchor and `num_classes` class logits per anchor (row-major).
#[derive(Debug, Clone, Copy)]
pub struct ImagePredictions<'a> {
    pub boxes: &'a [[f32; 4]],
    pub obj_logits: &'a [f32],
    pub cls_logits: &'a [f32],
    pub num_classes: usize,
}

/// One positive anchor: which ground truth it regresses and the IoU of its prediction with it
/// (the soft class target).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Positive {
    pub anchor: usize,
    pub gt: usize,
    pub iou: f32,
}

/// Centre radius of the geometry constraint, in strides.
pub const CENTER_RADIUS: f32 = 1.5;
/// Candidates per ground truth whose IoUs set the dynamic k.
pub const TOP_CANDIDATES: usize = 10;

/// IoU of two `(cx, cy, w, h)` boxes, as `bboxes_iou(..., xyxy=False)` computes it.
pub fn iou_cxcywh(a: [f32; 4], b: [f32; 4]) -> f32 {
    let tl_x = (a[0] - a[2] / 2.0).max(b[0] - b[2] / 2.0);
    let tl_y = (a[1] - a[3] / 2.0).max(b[1] - b[3] / 2.0);
    let br_x = (a[0] + a[2] / 2.0).min(b[0] + b[2] / 2.0);
    let br_y = (a[1] + a[3] / 2.0).min(b[1] + b[3] / 2.0);
    let inter = if tl_x < br_x && tl_y < br_y {
        (br_x - tl_x) * (br_y - tl_y)
    } else {
        0.0
    };
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `F.binary_cross_entropy` of probability `p` against target `t`; PyTorch clamps the logs at -100.
fn bce_prob(p: f32, t: f32) -> f32 {
    let log_p = p.ln().max(-100.0);
    let log_1p = (1.0 - p).ln().max(-100.0);
    -(t * log_p + (1.0 - t) * log_1p)
}

/// Whether anchor `a`'s centre lies strictly within `CENTER_RADIUS` strides of `gt`'s centre.
fn in_center(a: &Anchor, gt: &GtBox) -> bool {
    let cx = (a.x + 0.5) * a.stride;
    let cy = (a.y + 0.5) * a.stride;
    let r = a.stride * CENTER_RADIUS;
    let d = [
        cx - (gt.cx - r),
        cy - (gt.cy - r),
        (gt.cx + r) - cx,
        (gt.cy + r) - cy,
    ];
    d.iter().fold(f32::INFINITY, |m, &v| m.min(v)) > 0.0
}

/// Indices of the `k` smallest values (ties broken by index, like a stable sort).
fn k_smallest(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// SimOTA for one image. Returns the positive anchors in increasing anchor order (the order of
/// `fg_mask` in the reference).
pub fn assign(anchors: &[Anchor], preds: &ImagePredictions<'_>, gts: &[GtBox]) -> Vec<Positive> {
    if gts.is_empty() {
        return Vec::new();
    }
    let k = preds.num_classes;
    // Candidate anchors: in the centre region of at least one ground truth.
    let geometry: Vec<Vec<bool>> = gts
        .iter()
        .map(|gt| anchors.iter().map(|a| in_center(a, gt)).collect())
        .collect();
    let candidates: Vec<usize> = (0..anchors.len())
        .filter(|&a| geometry.iter().any(|g| g[a]))
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let n = candidates.len();
    // Pairwise IoU and cost, [gt][candidate].
    let mut ious = vec![vec![0.0f32; n]; gts.len()];
    let mut cost = vec![vec![0.0f32; n]; gts.len()];
    for (g, gt) in gts.iter().enumerate() {
        let gt_box = [gt.cx, gt.cy, gt.w, gt.h];
        for (j, &a) in candidates.iter().enumerate() {
            let iou = iou_cxcywh(gt_box, preds.boxes[a]);
            ious[g][j] = iou;
            let obj = sigmoid(preds.obj_logits[a]);
            let cls_cost: f32 = (0..k)
                .map(|c| {
                    let p = (sigmoid(preds.cls_logits[a * k + c]) * obj).sqrt();
                    bce_prob(p, if c == gt.class_id { 1.0 } else { 0.0 })
                })
                .sum();
            let outside = if geometry[g][a] { 0.0 } else { 1e6 };
            cost[g][j] = cls_cost + 3.0 * -(iou + 1e-8).ln() + outside;
        }
    }
    // Dynamic k per ground truth and the matching matrix.
    let top = TOP_CANDIDATES.min(n);
    let mut matched: Vec<Vec<usize>> = vec![Vec::new(); n];
    for g in 0..gts.len() {
        let mut sorted = ious[g].clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let dynamic_k = (sorted[..top].iter().sum::<f32>() as usize).max(1);
        for j in k_smallest(&cost[g], dynamic_k) {
            matched[j].push(g);
        }
    }
    let mut out = Vec::new();
    for (j, gts_of_anchor) in matched.iter().enumerate() {
        let gt = match gts_of_anchor.len() {
            0 => continue,
            1 => gts_of_anchor[0],
            // Claimed by several: the ground truth of lowest cost over all of them (argmin
            // returns the first minimum).
            _ => {
                (0..gts.len())
                    .fold((0usize, f32::INFINITY), |(bg, bc), g| {
                        if cost[g][j] < bc {
                            (g, cost[g][j])
                        } else {
                            (bg, bc)
                        }
                    })
                    .0
            }
        };
        out.push(Positive {
            anchor: candidates[j],
            gt,
            iou: ious[gt][j],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_core::yolox::anchor_grid;

    fn gt(cx: f32, cy: f32, w: f32, h: f32, class_id: usize) -> GtBox {
        GtBox {
            cx,
            cy,
            w,
            h,
            class_id,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        assert!((iou_cxcywh([5.0, 5.0, 10.0, 10.0], [5.0, 5.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        // Half overlap: inter 50, union 150.
        assert!(
            (iou_cxcywh([5.0, 5.0, 10.0, 10.0], [10.0, 5.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6
        );
        assert_eq!(
            iou_cxcywh([0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 2.0, 2.0]),
            0.0
        );
    }

    /// Predictions that put a box equal to `boxes[a]` at every anchor, with neutral logits.
    fn preds_with(boxes: &[[f32; 4]], k: usize) -> (Vec<f32>, Vec<f32>) {
        (vec![0.0; boxes.len()], vec![0.0; boxes.len() * k])
    }

    #[test]
    fn perfect_prediction_is_assigned_to_its_object() {
        let anchors = anchor_grid([64, 64], &[8, 16, 32]);
        let object = gt(20.0, 28.0, 16.0, 24.0, 1);
        // Every anchor predicts a far-away box except anchor (2, 3) at stride 8, which is exact.
        let mut boxes = vec![[200.0, 200.0, 4.0, 4.0]; anchors.len()];
        let exact = 3 * 8 + 2;
        boxes[exact] = [object.cx, object.cy, object.w, object.h];
        let (obj, cls) = preds_with(&boxes, 2);
        let preds = ImagePredictions {
            boxes: &boxes,
            obj_logits: &obj,
            cls_logits: &cls,
            num_classes: 2,
        };
        let pos = assign(&anchors, &preds, &[object]);
        // IoUs sum to 1 -> dynamic k = 1: exactly the exact anchor.
        assert_eq!(
            pos,
            vec![Positive {
                anchor: exact,
                gt: 0,
                iou: 1.0
            }]
        );
    }

    #[test]
    fn dynamic_k_grows_with_good_predictions_and_anchors_stay_in_the_centre_region() {
        let anchors = anchor_grid([64, 64], &[8, 16, 32]);
        let object = gt(32.0, 32.0, 30.0, 30.0, 0);
        let boxes = vec![[32.0, 32.0, 30.0, 30.0]; anchors.len()];
        let (obj, cls) = preds_with(&boxes, 1);
        let preds = ImagePredictions {
            boxes: &boxes,
            obj_logits: &obj,
            cls_logits: &cls,
            num_classes: 1,
        };
        let pos = assign(&anchors, &preds, &[object]);
        // All candidates have IoU 1, so k = min(10, candidates).
        let candidates = anchors.iter().filter(|a| in_center(a, &object)).count();
        assert_eq!(pos.len(), candidates.min(10));
        for p in &pos {
            assert!(in_center(&anchors[p.anchor], &object));
            assert_eq!(p.gt, 0);
        }
        assert!(pos.windows(2).all(|w| w[0].anchor < w[1].anchor));
    }

    #[test]
    fn an_anchor_claimed_twice_keeps_the_cheaper_ground_truth() {
        let anchors = anchor_grid([32, 32], &[8, 16, 32]);
        // Two objects with the same centre; every prediction matches the first one exactly.
        let a = gt(16.0, 16.0, 12.0, 12.0, 0);
        let b = gt(16.0, 16.0, 20.0, 6.0, 0);
        let boxes = vec![[16.0, 16.0, 12.0, 12.0]; anchors.len()];
        let (obj, cls) = preds_with(&boxes, 1);
        let preds = ImagePredictions {
            boxes: &boxes,
            obj_logits: &obj,
            cls_logits: &cls,
            num_classes: 1,
        };
        let pos = assign(&anchors, &preds, &[a, b]);
        assert!(!pos.is_empty());
        assert!(pos.iter().all(|p| p.gt == 0), "{pos:?}");
    }

    #[test]
    fn no_ground_truth_means_no_positives() {
        let anchors = anchor_grid([32, 32], &[8, 16, 32]);
        let boxes = vec![[16.0, 16.0, 12.0, 12.0]; anchors.len()];
        let (obj, cls) = preds_with(&boxes, 1);
        let preds = ImagePredictions {
            boxes: &boxes,
            obj_logits: &obj,
            cls_logits: &cls,
            num_classes: 1,
        };
        assert!(assign(&anchors, &preds, &[]).is_empty());
    }
}
