//! Per image and category matching: pycocotools' `computeIoU` + `evaluateImg`, and the public
//! entry points that run the whole evaluation.

use std::collections::{HashMap, HashSet};

use super::accumulate::{accumulate, Accumulation};
use super::iou::iou_matrix;
use super::json::{validate_detection, CocoCategory, CocoDetection, CocoError, CocoGt};
use super::summary::{summarize, CocoMetrics};
use super::{iou_thresholds, AREA_RANGES, MAX_DETS, NUM_IOU_THRESHOLDS};

/// A ground-truth box ready for matching.
#[derive(Debug, Clone)]
pub(crate) struct GtBox {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: [f64; 4],
    pub area: f64,
    pub crowd: bool,
}

/// A detection ready for matching. `area` is what pycocotools' `loadRes` stores: `w * h`
/// computed in the precision of the boxes it was given (f32 in RVT's pipeline).
#[derive(Debug, Clone)]
pub(crate) struct DtBox {
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: [f64; 4],
    pub score: f64,
    pub area: f64,
}

/// Matching result of one (category, area range, image): what `evaluateImg` returns, reduced
/// to what `accumulate` reads.
#[derive(Debug, Clone)]
pub(crate) struct ImageEval {
    /// Detection scores, highest first, at most `maxDets[-1]`.
    pub scores: Vec<f64>,
    /// Per detection, bit `t` = `dtMatches[t] != 0` and bit `IGNORED_SHIFT + t` = `dtIgnore[t]`
    /// (one word per detection keeps accumulation cache-friendly).
    pub flags: Vec<u32>,
    /// Number of ground truths that are not ignored (`gtIgnore == 0`).
    pub num_gt: usize,
}

/// Bit offset of the `dtIgnore` flags in [`ImageEval::flags`].
pub(crate) const IGNORED_SHIFT: usize = 16;

/// All `evaluateImg` results that are not `None` (images with ground truth or detections of the
/// category), grouped by `k * A + a`, each group in image-id order.
#[derive(Debug)]
pub(crate) struct Evaluations {
    pub num_categories: usize,
    pub groups: Vec<Vec<ImageEval>>,
}

impl Evaluations {
    pub fn group(&self, k: usize, a: usize) -> &[ImageEval] {
        &self.groups[k * AREA_RANGES.len() + a]
    }
}

/// Indices of `scores`, highest first, ties in input order (numpy `argsort(-s, kind='mergesort')`).
fn stable_order_desc(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Scores are finite (checked on input), so `total_cmp` equals numpy's order on `-score`
    // except that it separates -0.0 from 0.0; normalise those first.
    order.sort_by(|&a, &b| (scores[b] + 0.0).total_cmp(&(scores[a] + 0.0)));
    order
}

/// `evaluateImg` for one area range. `ious` is `[d * G + g]` with detections sorted by score
/// and ground truths in their original order.
fn evaluate_img(
    gts: &[&GtBox],
    dts: &[&DtBox],
    ious: &[f64],
    range: (f64, f64),
    thresholds: &[f64; NUM_IOU_THRESHOLDS],
) -> ImageEval {
    let outside = |area: f64| area < range.0 || area > range.1;
    let ignore: Vec<bool> = gts.iter().map(|g| g.crowd || outside(g.area)).collect();
    // Ground truths that count go first, ignored ones last (stable).
    let mut gt_order: Vec<usize> = (0..gts.len()).collect();
    gt_order.sort_by_key(|&g| ignore[g]);
    let gt_ignore: Vec<bool> = gt_order.iter().map(|&g| ignore[g]).collect();
    let gt_crowd: Vec<bool> = gt_order.iter().map(|&g| gts[g].crowd).collect();
    let gt_ids: Vec<i64> = gt_order.iter().map(|&g| gts[g].id).collect();
    let n_gt = gts.len();
    let n_dt = dts.len();

    let mut matched_id = vec![0i64; NUM_IOU_THRESHOLDS * n_dt];
    let mut ignored = vec![false; NUM_IOU_THRESHOLDS * n_dt];
    if n_gt > 0 && n_dt > 0 {
        for (t, &thr) in thresholds.iter().enumerate() {
            let mut gt_taken = vec![false; n_gt];
            for d in 0..n_dt {
                let mut best = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for g in 0..n_gt {
                    // A ground truth already matched is skipped, unless it is a crowd.
                    if gt_taken[g] && !gt_crowd[g] {
                        continue;
                    }
                    // Matched to a real ground truth and only ignored ones are left: stop.
                    if let Some(m) = m {
                        if !gt_ignore[m] && gt_ignore[g] {
                            break;
                        }
                    }
                    let v = ious[d * n_gt + gt_order[g]];
                    if v < best {
                        continue;
                    }
                    best = v;
                    m = Some(g);
                }
                if let Some(m) = m {
                    ignored[t * n_dt + d] = gt_ignore[m];
                    matched_id[t * n_dt + d] = gt_ids[m];
                    gt_taken[m] = true;
                }
            }
        }
    }
    // Unmatched detections outside the area range are ignored. pycocotools stores the matched
    // ground truth's id and tests it against 0, so a match to id 0 counts as no match.
    for t in 0..NUM_IOU_THRESHOLDS {
        for (d, dt) in dts.iter().enumerate() {
            let i = t * n_dt + d;
            if matched_id[i] == 0 && outside(dt.area) {
                ignored[i] = true;
            }
        }
    }
    let flags = (0..n_dt)
        .map(|d| {
            (0..NUM_IOU_THRESHOLDS).fold(0u32, |f, t| {
                let i = t * n_dt + d;
                f | (u32::from(matched_id[i] != 0) << t)
                    | (u32::from(ignored[i]) << (IGNORED_SHIFT + t))
            })
        })
        .collect();
    ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        flags,
        num_gt: gt_ignore.iter().filter(|&&ig| !ig).count(),
    }
}

/// `COCOeval.evaluate()`: every (category, area range, image) of sorted ids.
pub(crate) fn evaluate_all(
    image_ids: &[i64],
    category_ids: &[i64],
    gts: &[GtBox],
    dts: &[DtBox],
) -> Evaluations {
    let mut gt_groups: HashMap<(i64, i64), Vec<&GtBox>> = HashMap::new();
    for g in gts {
        gt_groups
            .entry((g.image_id, g.category_id))
            .or_default()
            .push(g);
    }
    let mut dt_groups: HashMap<(i64, i64), Vec<&DtBox>> = HashMap::new();
    for d in dts {
        dt_groups
            .entry((d.image_id, d.category_id))
            .or_default()
            .push(d);
    }
    let thresholds = iou_thresholds();
    let max_det = MAX_DETS[MAX_DETS.len() - 1];
    let n_area = AREA_RANGES.len();
    let mut groups: Vec<Vec<ImageEval>> = (0..category_ids.len() * n_area)
        .map(|_| Vec::new())
        .collect();
    for (k, &cat) in category_ids.iter().enumerate() {
        for &img in image_ids {
            let g: &[&GtBox] = gt_groups.get(&(img, cat)).map_or(&[], Vec::as_slice);
            let d: &[&DtBox] = dt_groups.get(&(img, cat)).map_or(&[], Vec::as_slice);
            if g.is_empty() && d.is_empty() {
                continue;
            }
            // Highest score first (stable), then only the first maxDets[-1] take part.
            let scores: Vec<f64> = d.iter().map(|d| d.score).collect();
            let d: Vec<&DtBox> = stable_order_desc(&scores)
                .into_iter()
                .take(max_det)
                .map(|j| d[j])
                .collect();
            let dt_boxes: Vec<[f64; 4]> = d.iter().map(|d| d.bbox).collect();
            let gt_boxes: Vec<[f64; 4]> = g.iter().map(|g| g.bbox).collect();
            let crowd: Vec<bool> = g.iter().map(|g| g.crowd).collect();
            let ious = iou_matrix(&dt_boxes, &gt_boxes, &crowd);
            for (a, &range) in AREA_RANGES.iter().enumerate() {
                groups[k * n_area + a].push(evaluate_img(g, &d, &ious, range, &thresholds));
            }
        }
    }
    Evaluations {
        num_categories: category_ids.len(),
        groups,
    }
}

/// Runs evaluate, accumulate and summarize on checked data (detections already restricted to
/// known images and categories).
pub(crate) fn run(gt: &CocoGt, dts: &[DtBox]) -> (CocoMetrics, Accumulation) {
    let mut image_ids: Vec<i64> = gt.images.iter().map(|im| im.id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut categories: Vec<CocoCategory> = gt.categories.clone();
    categories.sort_by_key(|c| c.id);
    categories.dedup_by_key(|c| c.id);
    let category_ids: Vec<i64> = categories.iter().map(|c| c.id).collect();
    let gts: Vec<GtBox> = gt
        .annotations
        .iter()
        .map(|a| GtBox {
            id: a.id,
            image_id: a.image_id,
            category_id: a.category_id,
            bbox: a.bbox,
            area: a.area,
            crowd: a.iscrowd,
        })
        .collect();
    let evals = evaluate_all(&image_ids, &category_ids, &gts, dts);
    let acc = accumulate(&evals, category_ids);
    let metrics = summarize(&acc, &categories, &gts, dts);
    (metrics, acc)
}

/// Checks detections against the ground truth and converts them, dropping those whose
/// category is not in the ground truth (pycocotools does the same, silently).
fn prepare_detections(gt: &CocoGt, dets: &[CocoDetection]) -> Result<Vec<DtBox>, CocoError> {
    let images: HashSet<i64> = gt.images.iter().map(|im| im.id).collect();
    let categories: HashSet<i64> = gt.categories.iter().map(|c| c.id).collect();
    let mut out = Vec::with_capacity(dets.len());
    for (index, d) in dets.iter().enumerate() {
        validate_detection(d, index, "detections")?;
        if !images.contains(&d.image_id) {
            return Err(CocoError::UnknownDetectionImage {
                origin: "detections".to_string(),
                index,
                image_id: d.image_id,
            });
        }
        if categories.contains(&d.category_id) {
            out.push(DtBox {
                image_id: d.image_id,
                category_id: d.category_id,
                bbox: d.bbox,
                score: d.score,
                area: d.bbox[2] * d.bbox[3],
            });
        }
    }
    Ok(out)
}

/// Evaluates detections against a ground-truth dataset like pycocotools
/// `COCOeval(gt, gt.loadRes(dets), 'bbox')` followed by `evaluate()`, `accumulate()`,
/// `summarize()`.
///
/// Errors on an inconsistent ground truth or on a detection that is malformed or names an
/// image the ground truth does not have. An empty detection list is fine (every AP is 0 where
/// there is ground truth), although pycocotools' `loadRes` itself cannot load one.
pub fn evaluate(gt: &CocoGt, dets: &[CocoDetection]) -> Result<CocoMetrics, CocoError> {
    evaluate_with_curves(gt, dets).map(|(metrics, _)| metrics)
}

/// [`evaluate`], also returning the full precision / recall arrays (for PR curves).
pub fn evaluate_with_curves(
    gt: &CocoGt,
    dets: &[CocoDetection],
) -> Result<(CocoMetrics, Accumulation), CocoError> {
    gt.validate("ground truth")?;
    let dts = prepare_detections(gt, dets)?;
    Ok(run(gt, &dts))
}
