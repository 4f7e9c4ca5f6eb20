//! COCO bounding-box evaluation, reproducing pycocotools 2.0.11 `COCOeval(iouType='bbox')`.
//!
//! The pipeline follows pycocotools step by step so that every number agrees exactly:
//! [`json`] reads and checks the files, [`iou`] is `maskApi.c::bbIou`, [`mod@evaluate`] is
//! `evaluateImg` (greedy matching per image and category), [`accumulate`] builds the precision
//! and recall arrays and [`summary`] averages them into the 12 standard numbers.
//!
//! Fixed parameters (pycocotools defaults for `bbox`): IoU thresholds `.50:.05:.95`, 101
//! recall thresholds, `maxDets = [1, 10, 100]`, area ranges all / small / medium / large,
//! `useCats = 1`.

pub mod accumulate;
pub mod evaluate;
pub mod iou;
pub mod json;
pub mod summary;

pub use accumulate::Accumulation;
pub use evaluate::{evaluate, evaluate_with_curves};
pub use json::{
    detections_from_json_slice, detections_to_json, load_detections, load_ground_truth,
    validate_detection, write_detections, write_ground_truth, CocoAnnotation, CocoCategory,
    CocoDetection, CocoError, CocoGt, CocoImage,
};
pub use summary::{ClassMetrics, CocoMetrics, STAT_NAMES};

/// Number of IoU thresholds (`.50:.05:.95`).
pub const NUM_IOU_THRESHOLDS: usize = 10;
/// Number of recall thresholds (`0:.01:1`).
pub const NUM_RECALL_THRESHOLDS: usize = 101;
/// Maximum detections per image considered by the three recall/precision settings.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];
/// Area ranges (in pixels²) and their labels: all, small, medium, large. Both ends inclusive.
pub const AREA_RANGES: [(f64, f64); 4] =
    [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];
/// Labels of [`AREA_RANGES`], as pycocotools prints them.
pub const AREA_LABELS: [&str; 4] = ["all", "small", "medium", "large"];

/// `np.linspace(start, stop, num)` with numpy's exact float operations (`i * step + start`,
/// last value set to `stop`), so the thresholds have the same bits as pycocotools'.
fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

/// The IoU thresholds `np.linspace(.5, .95, 10)`.
pub fn iou_thresholds() -> [f64; NUM_IOU_THRESHOLDS] {
    linspace(0.5, 0.95)
}

/// The recall thresholds `np.linspace(.0, 1.0, 101)`.
pub fn recall_thresholds() -> [f64; NUM_RECALL_THRESHOLDS] {
    linspace(0.0, 1.0)
}
