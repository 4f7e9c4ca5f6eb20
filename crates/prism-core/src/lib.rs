//! prism's shared vocabulary, used on both sides of the ONNX file.
//!
//! - [`spec::ModelSpec`]: the `prism` metadata entry every exported model carries, so that
//!   deployment needs no other file.
//! - [`yolox`]: the YOLOX head's anchor grid and output decode, one definition for training,
//!   the Burn model's tensor decode, evaluation and deployment.
//! - [`detection`]: boxes, detections and class-aware NMS, shared by evaluation (training side)
//!   and inference (deployment side) so both score the same boxes.

pub mod detection;
pub mod spec;
pub mod yolox;

pub use detection::{BoxXyxy, Detection};
pub use spec::{ModelSpec, SpecError};
