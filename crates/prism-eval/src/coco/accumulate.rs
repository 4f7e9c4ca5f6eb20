//! Precision and recall arrays: pycocotools' `COCOeval.accumulate()`.

use super::evaluate::{Evaluations, IGNORED_SHIFT};
use super::{recall_thresholds, AREA_RANGES, MAX_DETS, NUM_IOU_THRESHOLDS, NUM_RECALL_THRESHOLDS};

/// `np.spacing(1)`: keeps `tp / (tp + fp + eps)` finite when both counts are 0.
const EPS: f64 = f64::EPSILON;

/// The accumulated arrays, with pycocotools' layout and its `-1` for "no ground truth".
#[derive(Debug, Clone)]
pub struct Accumulation {
    /// Category ids, sorted: the `k` axis.
    pub category_ids: Vec<i64>,
    /// Interpolated precision `[t][r][k][a][m]` (IoU threshold, recall threshold, category,
    /// area range, maxDets), `-1` where there is no ground truth.
    pub precision: Vec<f64>,
    /// Final recall `[t][k][a][m]`, `-1` where there is no ground truth.
    pub recall: Vec<f64>,
}

impl Accumulation {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        (
            NUM_IOU_THRESHOLDS,
            NUM_RECALL_THRESHOLDS,
            self.category_ids.len(),
            AREA_RANGES.len(),
            MAX_DETS.len(),
        )
    }

    /// Index into [`Accumulation::precision`].
    pub fn precision_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        let (_, nr, nk, na, nm) = self.dims();
        (((t * nr + r) * nk + k) * na + a) * nm + m
    }

    /// Index into [`Accumulation::recall`].
    pub fn recall_index(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        let (_, _, nk, na, nm) = self.dims();
        ((t * nk + k) * na + a) * nm + m
    }

    /// Interpolated precision at IoU threshold `t`, recall threshold `r`, category `k`, area
    /// range `a`, maxDets index `m`.
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.precision_index(t, r, k, a, m)]
    }

    /// Recall at IoU threshold `t`, category `k`, area range `a`, maxDets index `m`.
    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[self.recall_index(t, k, a, m)]
    }
}

/// `accumulate()`: for each category, area range and maxDets, pool the images' detections,
/// rank them by score (stable: ties keep image order, then per-image rank), and read the
/// precision envelope at the recall thresholds.
pub(crate) fn accumulate(evals: &Evaluations, category_ids: Vec<i64>) -> Accumulation {
    let rec_thrs = recall_thresholds();
    let mut acc = Accumulation {
        precision: vec![
            -1.0;
            NUM_IOU_THRESHOLDS
                * NUM_RECALL_THRESHOLDS
                * category_ids.len()
                * AREA_RANGES.len()
                * MAX_DETS.len()
        ],
        recall: vec![
            -1.0;
            NUM_IOU_THRESHOLDS * category_ids.len() * AREA_RANGES.len() * MAX_DETS.len()
        ],
        category_ids,
    };
    for k in 0..evals.num_categories {
        for a in 0..AREA_RANGES.len() {
            for (m, &max_det) in MAX_DETS.iter().enumerate() {
                let images = evals.group(k, a);
                if images.is_empty() {
                    continue;
                }
                let npig: usize = images.iter().map(|im| im.num_gt).sum();
                if npig == 0 {
                    continue;
                }
                // Concatenate each image's first `max_det` detections, then rank by score;
                // the stable sort keeps image order, then per-image rank, among equal scores.
                let mut pooled: Vec<(f64, u32)> = Vec::new();
                for im in images {
                    let n = im.scores.len().min(max_det);
                    pooled.extend(
                        im.scores[..n]
                            .iter()
                            .copied()
                            .zip(im.flags[..n].iter().copied()),
                    );
                }
                pooled.sort_by(|x, y| (y.0 + 0.0).total_cmp(&(x.0 + 0.0)));
                let nd = pooled.len();
                let mut rc = vec![0.0; nd];
                let mut pr = vec![0.0; nd];
                for t in 0..NUM_IOU_THRESHOLDS {
                    let (mut tp, mut fp) = (0u64, 0u64);
                    for (j, &(_, flags)) in pooled.iter().enumerate() {
                        if flags & (1 << (IGNORED_SHIFT + t)) == 0 {
                            if flags & (1 << t) != 0 {
                                tp += 1;
                            } else {
                                fp += 1;
                            }
                        }
                        let (tpf, fpf) = (tp as f64, fp as f64);
                        rc[j] = tpf / npig as f64;
                        pr[j] = tpf / (fpf + tpf + EPS);
                    }
                    let ri = acc.recall_index(t, k, a, m);
                    acc.recall[ri] = if nd > 0 { rc[nd - 1] } else { 0.0 };
                    // Precision envelope: non-increasing from the right.
                    for j in (1..nd).rev() {
                        if pr[j] > pr[j - 1] {
                            pr[j - 1] = pr[j];
                        }
                    }
                    for (r, &thr) in rec_thrs.iter().enumerate() {
                        // np.searchsorted(rc, thr, side='left'); past the end stays 0.
                        let pi = rc.partition_point(|&x| x < thr);
                        let q = if pi < nd { pr[pi] } else { 0.0 };
                        let idx = acc.precision_index(t, r, k, a, m);
                        acc.precision[idx] = q;
                    }
                }
            }
        }
    }
    acc
}
