//! The 12 summary numbers and per-class APs: pycocotools' `COCOeval.summarize()`.
//!
//! Averages skip the `-1` entries (no ground truth) and are summed with numpy's pairwise
//! algorithm in numpy's element order, so the results carry the same bits as pycocotools'.

use std::fmt::Write;

use serde::Serialize;

use super::accumulate::Accumulation;
use super::evaluate::{DtBox, GtBox};
use super::json::CocoCategory;
use super::{iou_thresholds, AREA_LABELS, MAX_DETS, NUM_IOU_THRESHOLDS, NUM_RECALL_THRESHOLDS};

/// Names of [`CocoMetrics::stats`], in order.
pub const STAT_NAMES: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

/// Metrics of one category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Category id in the ground truth.
    pub category_id: i64,
    /// Category name in the ground truth.
    pub name: String,
    /// AP@[.5:.95], all areas, 100 detections; `-1` without ground truth.
    pub ap: f64,
    /// AP@.5, all areas, 100 detections; `-1` without ground truth.
    pub ap50: f64,
    /// Ground-truth boxes that are not crowd regions.
    pub num_gt: usize,
    /// Detections of this category (before the 100-per-image cut).
    pub num_detections: usize,
}

/// The result of a COCO evaluation: pycocotools' `stats` plus per-class APs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoMetrics {
    /// `COCOeval.stats`: AP, AP50, AP75, AP small/medium/large, AR@1, AR@10, AR@100,
    /// AR small/medium/large (see [`STAT_NAMES`]); `-1` where nothing could be measured.
    pub stats: [f64; 12],
    /// One entry per category, sorted by category id.
    pub per_class: Vec<ClassMetrics>,
}

impl CocoMetrics {
    /// AP@[.5:.95] (the COCO "mAP").
    pub fn ap(&self) -> f64 {
        self.stats[0]
    }
    /// AP at IoU 0.5.
    pub fn ap50(&self) -> f64 {
        self.stats[1]
    }
    /// AP at IoU 0.75.
    pub fn ap75(&self) -> f64 {
        self.stats[2]
    }
    /// AP for small objects (area < 32²).
    pub fn ap_small(&self) -> f64 {
        self.stats[3]
    }
    /// AP for medium objects (32² to 96²).
    pub fn ap_medium(&self) -> f64 {
        self.stats[4]
    }
    /// AP for large objects (area > 96²).
    pub fn ap_large(&self) -> f64 {
        self.stats[5]
    }
    /// AR with at most 1 detection per image.
    pub fn ar1(&self) -> f64 {
        self.stats[6]
    }
    /// AR with at most 10 detections per image.
    pub fn ar10(&self) -> f64 {
        self.stats[7]
    }
    /// AR with at most 100 detections per image.
    pub fn ar100(&self) -> f64 {
        self.stats[8]
    }
    /// AR for small objects.
    pub fn ar_small(&self) -> f64 {
        self.stats[9]
    }
    /// AR for medium objects.
    pub fn ar_medium(&self) -> f64 {
        self.stats[10]
    }
    /// AR for large objects.
    pub fn ar_large(&self) -> f64 {
        self.stats[11]
    }

    /// The standard 12-line pycocotools summary followed by a per-class table. `class_names`
    /// overrides the ground truth's category names, in `per_class` order (missing entries keep
    /// the ground-truth name).
    pub fn table(&self, class_names: &[&str]) -> String {
        let mut out = String::new();
        let lines: [(bool, Option<&str>, &str, usize); 12] = [
            (true, None, "all", 100),
            (true, Some("0.50"), "all", 100),
            (true, Some("0.75"), "all", 100),
            (true, None, "small", 100),
            (true, None, "medium", 100),
            (true, None, "large", 100),
            (false, None, "all", 1),
            (false, None, "all", 10),
            (false, None, "all", 100),
            (false, None, "small", 100),
            (false, None, "medium", 100),
            (false, None, "large", 100),
        ];
        for ((ap, iou, area, max_det), value) in lines.iter().zip(self.stats) {
            let (title, kind) = if *ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let _ = writeln!(
                out,
                " {title:<18} {kind} @[ IoU={:<9} | area={area:>6} | maxDets={max_det:>3} ] = {value:.3}",
                iou.unwrap_or("0.50:0.95"),
            );
        }
        let width = self
            .per_class
            .iter()
            .enumerate()
            .map(|(i, c)| class_names.get(i).map_or(c.name.len(), |n| n.len()))
            .chain([5])
            .max()
            .unwrap_or(5);
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>6}  {:>8}  {:>10}",
            "class", "AP", "AP50", "gt", "detections"
        );
        let cell = |v: f64| {
            if v < 0.0 {
                "-".to_string()
            } else {
                format!("{v:.3}")
            }
        };
        for (i, c) in self.per_class.iter().enumerate() {
            let name = class_names.get(i).copied().unwrap_or(&c.name);
            let _ = writeln!(
                out,
                "{name:<width$}  {:>6}  {:>6}  {:>8}  {:>10}",
                cell(c.ap),
                cell(c.ap50),
                c.num_gt,
                c.num_detections
            );
        }
        out
    }
}

/// numpy's pairwise summation (`pairwise_sum` in `loops_utils.h`, block 128, unroll 8), the
/// algorithm behind `np.add.reduce` / `np.mean` on a contiguous float64 array.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `np.mean(s[s > -1])`, or `-1` when nothing is left.
pub(crate) fn mean_valid(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|&x| x > -1.0).collect();
    if v.is_empty() {
        -1.0
    } else {
        pairwise_sum(&v) / v.len() as f64
    }
}

/// Index of an IoU threshold by exact equality, as `np.where(iouThr == p.iouThrs)`.
fn threshold_index(value: f64) -> Option<usize> {
    iou_thresholds().iter().position(|&t| t == value)
}

fn area_index(label: &str) -> usize {
    AREA_LABELS.iter().position(|&l| l == label).unwrap_or(0)
}

fn max_det_index(max_det: usize) -> usize {
    MAX_DETS
        .iter()
        .position(|&m| m == max_det)
        .unwrap_or(MAX_DETS.len() - 1)
}

/// One precision statistic: mean over (t, r, k) in C order, as numpy flattens
/// `precision[t][:, :, :, a, m]`. `iou` selects one threshold; `Some(None)` means the value was
/// not found among the thresholds (empty selection, `-1`).
fn ap_stat(acc: &Accumulation, iou: Option<Option<usize>>, a: usize, m: usize) -> f64 {
    let ts: Vec<usize> = match iou {
        None => (0..NUM_IOU_THRESHOLDS).collect(),
        Some(t) => t.into_iter().collect(),
    };
    let nk = acc.category_ids.len();
    mean_valid(ts.into_iter().flat_map(|t| {
        (0..NUM_RECALL_THRESHOLDS)
            .flat_map(move |r| (0..nk).map(move |k| acc.precision_at(t, r, k, a, m)))
    }))
}

/// One recall statistic: mean over (t, k) in C order.
fn ar_stat(acc: &Accumulation, a: usize, m: usize) -> f64 {
    let nk = acc.category_ids.len();
    mean_valid(
        (0..NUM_IOU_THRESHOLDS).flat_map(|t| (0..nk).map(move |k| acc.recall_at(t, k, a, m))),
    )
}

/// `summarize()` for bbox, plus per-class AP@[.5:.95] and AP50 at area "all", 100 detections.
pub(crate) fn summarize(
    acc: &Accumulation,
    categories: &[CocoCategory],
    gts: &[GtBox],
    dts: &[DtBox],
) -> CocoMetrics {
    let all = area_index("all");
    let m100 = max_det_index(100);
    let at50 = Some(threshold_index(0.5));
    let at75 = Some(threshold_index(0.75));
    let stats = [
        ap_stat(acc, None, all, m100),
        ap_stat(acc, at50, all, m100),
        ap_stat(acc, at75, all, m100),
        ap_stat(acc, None, area_index("small"), m100),
        ap_stat(acc, None, area_index("medium"), m100),
        ap_stat(acc, None, area_index("large"), m100),
        ar_stat(acc, all, max_det_index(1)),
        ar_stat(acc, all, max_det_index(10)),
        ar_stat(acc, all, m100),
        ar_stat(acc, area_index("small"), m100),
        ar_stat(acc, area_index("medium"), m100),
        ar_stat(acc, area_index("large"), m100),
    ];
    let t50 = threshold_index(0.5);
    let per_class = categories
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let curve = |t: usize| {
                (0..NUM_RECALL_THRESHOLDS).map(move |r| acc.precision_at(t, r, k, all, m100))
            };
            ClassMetrics {
                category_id: c.id,
                name: c.name.clone(),
                ap: mean_valid((0..NUM_IOU_THRESHOLDS).flat_map(curve)),
                ap50: mean_valid(t50.into_iter().flat_map(curve)),
                num_gt: gts
                    .iter()
                    .filter(|g| g.category_id == c.id && !g.crowd)
                    .count(),
                num_detections: dts.iter().filter(|d| d.category_id == c.id).count(),
            }
        })
        .collect();
    CocoMetrics { stats, per_class }
}

#[cfg(test)]
mod tests {
    use super::pairwise_sum;

    #[test]
    fn pairwise_sum_matches_naive_on_exact_values() {
        for n in [0, 1, 7, 8, 9, 127, 128, 129, 1000, 10_101] {
            let v: Vec<f64> = (0..n).map(|i| (i % 17) as f64).collect();
            let naive: f64 = v.iter().sum();
            assert_eq!(pairwise_sum(&v), naive, "n = {n}");
        }
    }
}
