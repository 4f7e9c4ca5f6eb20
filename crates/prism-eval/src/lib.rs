//! COCO detection metrics and the Prophesee event-camera evaluation protocol.
//!
//! - [`coco`]: a bounding-box evaluator that reproduces pycocotools 2.0.11
//!   `COCOeval(iouType='bbox')` value for value (same matching order, same float operations,
//!   same summation order), plus COCO JSON reading and writing.
//! - [`prophesee`]: RVT's evaluation of event-camera sequences (box filtering, matching
//!   detections to label timestamps, conversion to COCO images) on top of [`coco`].
//!
//! Neither module depends on Burn or on other prism crates, so the trainer, the CLI and
//! external tools can all use the same metric.

pub mod coco;
pub mod prophesee;

pub use coco::{
    evaluate, load_detections, load_ground_truth, write_detections, write_ground_truth,
    ClassMetrics, CocoAnnotation, CocoCategory, CocoDetection, CocoError, CocoGt, CocoImage,
    CocoMetrics,
};
pub use prophesee::{BoxFilter, PropheseeConfig, PropheseeError, Sequence, TimedBox};
