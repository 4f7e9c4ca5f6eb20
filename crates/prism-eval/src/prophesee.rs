//! RVT's evaluation protocol for event-camera sequences (`utils/evaluation/prophesee/` in
//! uzh-rpg/RVT: `evaluation.py`, `io/box_filtering.py`, `metrics/coco_eval.py`).
//!
//! Per sequence: [`filter_boxes`] drops early and small boxes from both ground truth and
//! detections; [`match_times`] makes one frame per distinct ground-truth timestamp, holding the
//! ground truth at exactly that time and the detections within `± time_tol`; every frame of every
//! sequence becomes one COCO image (ids 1, 2, ... in order), and the COCO evaluator runs on those.
//!
//! Float behaviour follows RVT's numpy code: boxes are f32, the filter computes `w² + h²` in
//! f32, areas are `w * h` in f32 (for ground truth and detections alike), and IoUs are computed
//! in f64 from the f32 values.

use std::ops::Range;

use crate::coco::evaluate::{run, DtBox};
use crate::coco::ClassMetrics;
use crate::coco::{
    CocoAnnotation, CocoCategory, CocoDetection, CocoError, CocoGt, CocoImage, CocoMetrics,
};

/// A box at a time: a ground-truth label or a detection (Prophesee `BBOX_DTYPE` fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedBox {
    /// Timestamp in microseconds (detections carry the label time they were made for).
    pub t_us: i64,
    /// Left edge in pixels.
    pub x: f32,
    /// Top edge in pixels.
    pub y: f32,
    /// Width in pixels.
    pub w: f32,
    /// Height in pixels.
    pub h: f32,
    /// Class index, 0-based (COCO category id = `class_id + 1`).
    pub class_id: u32,
    /// Detection confidence (`class_confidence`); unused for ground truth.
    pub score: f32,
}

/// RVT's `filter_boxes`: keep a box when `t > skip_ts_us`, `w² + h² >= min_diag²` and both
/// sides `>= min_side`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxFilter {
    /// Boxes at or before this time are dropped (not enough event history yet).
    pub skip_ts_us: i64,
    /// Minimum box diagonal in pixels.
    pub min_diag: f32,
    /// Minimum width and height in pixels.
    pub min_side: f32,
}

impl BoxFilter {
    /// Gen1 (304×240): skip 0.5 s, diagonal >= 30, sides >= 10.
    pub fn gen1() -> Self {
        Self {
            skip_ts_us: 500_000,
            min_diag: 30.0,
            min_side: 10.0,
        }
    }

    /// 1 Mpx as RVT evaluates it, at half resolution (640×360): RVT's 1 Mpx thresholds
    /// (diagonal 60, side 20, "from the supplementary material") halved to 30 and 10.
    pub fn gen4() -> Self {
        Self {
            skip_ts_us: 500_000,
            min_diag: 30.0,
            min_side: 10.0,
        }
    }

    /// 1 Mpx at full resolution (1280×720): diagonal >= 60, sides >= 20.
    pub fn gen4_full_resolution() -> Self {
        Self {
            skip_ts_us: 500_000,
            min_diag: 60.0,
            min_side: 20.0,
        }
    }

    /// Keeps every box (RVT's `apply_bbox_filters=False`).
    pub fn none() -> Self {
        Self {
            skip_ts_us: i64::MIN,
            min_diag: 0.0,
            min_side: f32::NEG_INFINITY,
        }
    }

    /// Whether `b` survives the filter. As in numpy, `w² + h²` is evaluated in f32 and
    /// compared with `min_diag²` computed in f64 and rounded to f32. [`BoxFilter::none`] keeps
    /// everything.
    pub fn keep(&self, b: &TimedBox) -> bool {
        if *self == Self::none() {
            return true;
        }
        let diag_square = b.w * b.w + b.h * b.h;
        let min_diag = f64::from(self.min_diag);
        b.t_us > self.skip_ts_us
            && diag_square >= (min_diag * min_diag) as f32
            && b.w >= self.min_side
            && b.h >= self.min_side
    }
}

/// One sequence's ground truth and detections, each sorted by time (RVT asserts this).
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    /// Ground-truth boxes.
    pub gt: &'a [TimedBox],
    /// Detections, with the timestamp of the label they were predicted for.
    pub dt: &'a [TimedBox],
}

/// What RVT's `evaluate_list` needs besides the boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct PropheseeConfig {
    /// Filter applied to ground truth and detections alike.
    pub filter: BoxFilter,
    /// Detections within `± time_tol_us` of a label timestamp count for it (RVT: 50 ms).
    pub time_tol_us: i64,
    /// Image width written into the COCO images (does not change the metrics).
    pub width: u32,
    /// Image height written into the COCO images (does not change the metrics).
    pub height: u32,
    /// Class names; class `i` is COCO category `i + 1`. Boxes of other classes are ignored.
    pub classes: Vec<String>,
}

impl PropheseeConfig {
    /// Gen1: 304×240, classes car and pedestrian, [`BoxFilter::gen1`].
    pub fn gen1() -> Self {
        Self {
            filter: BoxFilter::gen1(),
            time_tol_us: 50_000,
            width: 304,
            height: 240,
            classes: vec!["car".into(), "pedestrian".into()],
        }
    }

    /// 1 Mpx as RVT evaluates it: 640×360, classes pedestrian, two-wheeler, car,
    /// [`BoxFilter::gen4`].
    pub fn gen4() -> Self {
        Self {
            filter: BoxFilter::gen4(),
            time_tol_us: 50_000,
            width: 640,
            height: 360,
            classes: vec!["pedestrian".into(), "two-wheeler".into(), "car".into()],
        }
    }
}

/// Bad input to the Prophesee evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropheseeError {
    /// Timestamps go backwards (RVT asserts sorted boxes).
    #[error("sequence {sequence}: {kind} box {index} has t = {t_us} µs, earlier than the box before it (boxes must be sorted by time)")]
    Unsorted {
        /// Sequence index.
        sequence: usize,
        /// "ground-truth" or "detection".
        kind: &'static str,
        /// Box index in the sequence.
        index: usize,
        /// Its timestamp.
        t_us: i64,
    },
    /// A NaN or infinite value, or a negative width or height.
    #[error("sequence {sequence}: {kind} box {index} is invalid ({value:?}): values must be finite and w, h >= 0")]
    InvalidBox {
        /// Sequence index.
        sequence: usize,
        /// "ground-truth" or "detection".
        kind: &'static str,
        /// Box index in the sequence.
        index: usize,
        /// The box.
        value: TimedBox,
    },
    /// The COCO stage rejected the converted data.
    #[error(transparent)]
    Coco(#[from] CocoError),
}

/// RVT's `filter_boxes`, order preserved.
pub fn filter_boxes(boxes: &[TimedBox], filter: &BoxFilter) -> Vec<TimedBox> {
    boxes.iter().filter(|b| filter.keep(b)).copied().collect()
}

/// One evaluation frame: a ground-truth timestamp and the slices of boxes that belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The ground-truth timestamp.
    pub t_us: i64,
    /// Ground-truth boxes with exactly this timestamp.
    pub gt: Range<usize>,
    /// Detections with `t_us - tol <= t <= t_us + tol`.
    pub dt: Range<usize>,
}

/// RVT's `_match_times` on time-sorted boxes: one window per distinct ground-truth timestamp.
///
/// Windows of label times closer than `2 * time_tol_us` overlap, so one detection can count
/// (as a false positive, usually) in several frames.
pub fn match_times(gt: &[TimedBox], dt: &[TimedBox], time_tol_us: i64) -> Vec<Window> {
    let mut windows = Vec::new();
    let (mut low_gt, mut high_gt, mut low_dt, mut high_dt) = (0, 0, 0, 0);
    let mut previous: Option<i64> = None;
    for b in gt {
        let ts = b.t_us;
        if previous == Some(ts) {
            continue;
        }
        previous = Some(ts);
        while low_gt < gt.len() && gt[low_gt].t_us < ts {
            low_gt += 1;
        }
        high_gt = high_gt.max(low_gt);
        while high_gt < gt.len() && gt[high_gt].t_us <= ts {
            high_gt += 1;
        }
        let (low, high) = (
            ts.saturating_sub(time_tol_us),
            ts.saturating_add(time_tol_us),
        );
        while low_dt < dt.len() && dt[low_dt].t_us < low {
            low_dt += 1;
        }
        high_dt = high_dt.max(low_dt);
        while high_dt < dt.len() && dt[high_dt].t_us <= high {
            high_dt += 1;
        }
        windows.push(Window {
            t_us: ts,
            gt: low_gt..high_gt,
            dt: low_dt..high_dt,
        });
    }
    windows
}

fn check(boxes: &[TimedBox], sequence: usize, kind: &'static str) -> Result<(), PropheseeError> {
    for (index, b) in boxes.iter().enumerate() {
        let finite = [b.x, b.y, b.w, b.h, b.score].iter().all(|v| v.is_finite());
        if !finite || b.w < 0.0 || b.h < 0.0 {
            return Err(PropheseeError::InvalidBox {
                sequence,
                kind,
                index,
                value: *b,
            });
        }
        if index > 0 && b.t_us < boxes[index - 1].t_us {
            return Err(PropheseeError::Unsorted {
                sequence,
                kind,
                index,
                t_us: b.t_us,
            });
        }
    }
    Ok(())
}

/// The COCO form of the sequences, as RVT's `_to_coco_format` builds it, plus the number of
/// windowed detections before the category filter (RVT's `num_detections`).
struct Converted {
    gt: CocoGt,
    dts: Vec<DtBox>,
    num_windowed_detections: usize,
}

fn convert(
    sequences: &[Sequence<'_>],
    config: &PropheseeConfig,
) -> Result<Converted, PropheseeError> {
    let categories: Vec<CocoCategory> = config
        .classes
        .iter()
        .enumerate()
        .map(|(i, name)| CocoCategory {
            id: i as i64 + 1,
            name: name.clone(),
            supercategory: Some("none".into()),
        })
        .collect();
    let known = |class_id: u32| (class_id as usize) < config.classes.len();
    let mut gt = CocoGt {
        images: Vec::new(),
        annotations: Vec::new(),
        categories,
    };
    let mut dts = Vec::new();
    let mut num_windowed_detections = 0;
    let mut next_annotation_id = 1;
    for (s, seq) in sequences.iter().enumerate() {
        check(seq.gt, s, "ground-truth")?;
        check(seq.dt, s, "detection")?;
        let gt_boxes = filter_boxes(seq.gt, &config.filter);
        let dt_boxes = filter_boxes(seq.dt, &config.filter);
        for w in match_times(&gt_boxes, &dt_boxes, config.time_tol_us) {
            let image_id = gt.images.len() as i64 + 1;
            gt.images.push(CocoImage {
                id: image_id,
                width: Some(config.width),
                height: Some(config.height),
                file_name: None,
            });
            for b in &gt_boxes[w.gt] {
                // RVT numbers every annotation, then pycocotools drops unknown categories.
                let id = next_annotation_id;
                next_annotation_id += 1;
                if known(b.class_id) {
                    gt.annotations.push(CocoAnnotation {
                        id,
                        image_id,
                        category_id: i64::from(b.class_id) + 1,
                        bbox: [b.x.into(), b.y.into(), b.w.into(), b.h.into()],
                        area: f64::from(b.w * b.h),
                        iscrowd: false,
                    });
                }
            }
            num_windowed_detections += w.dt.len();
            for b in dt_boxes[w.dt].iter().filter(|b| known(b.class_id)) {
                dts.push(DtBox {
                    image_id,
                    category_id: i64::from(b.class_id) + 1,
                    bbox: [b.x.into(), b.y.into(), b.w.into(), b.h.into()],
                    score: b.score.into(),
                    area: f64::from(b.w * b.h),
                });
            }
        }
    }
    Ok(Converted {
        gt,
        dts,
        num_windowed_detections,
    })
}

/// The COCO ground truth and detections RVT would hand to pycocotools, for export and
/// comparison. (Evaluating the written files with pycocotools computes detection areas in f64
/// rather than RVT's f32, which can differ only for boxes within an ulp of 32² or 96².)
pub fn to_coco(
    sequences: &[Sequence<'_>],
    config: &PropheseeConfig,
) -> Result<(CocoGt, Vec<CocoDetection>), PropheseeError> {
    let c = convert(sequences, config)?;
    let dts = c
        .dts
        .into_iter()
        .map(|d| CocoDetection {
            image_id: d.image_id,
            category_id: d.category_id,
            bbox: d.bbox,
            score: d.score,
        })
        .collect();
    Ok((c.gt, dts))
}

/// RVT's `evaluate_list(..., apply_bbox_filters=True)` with the given filter, returning the
/// full COCO metrics.
///
/// As in RVT, when no detection falls into any frame every number is 0 (RVT returns zeros
/// without running COCO; here the 12 stats and every class AP are 0).
pub fn evaluate(
    sequences: &[Sequence<'_>],
    config: &PropheseeConfig,
) -> Result<CocoMetrics, PropheseeError> {
    let c = convert(sequences, config)?;
    if c.num_windowed_detections == 0 {
        let per_class =
            c.gt.categories
                .iter()
                .map(|cat| ClassMetrics {
                    category_id: cat.id,
                    name: cat.name.clone(),
                    ap: 0.0,
                    ap50: 0.0,
                    num_gt: c
                        .gt
                        .annotations
                        .iter()
                        .filter(|a| a.category_id == cat.id)
                        .count(),
                    num_detections: 0,
                })
                .collect();
        return Ok(CocoMetrics {
            stats: [0.0; 12],
            per_class,
        });
    }
    c.gt.validate("converted ground truth")?;
    Ok(run(&c.gt, &c.dts).0)
}
