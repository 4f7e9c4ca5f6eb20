//! prism's shared vocabulary, used on both sides of the ONNX file.
//!
//! - [`spec::ModelSpec`]: the `prism` metadata entry every exported model carries, so that
//!   deployment needs no other file.
//! - [`detection`]: boxes and detections, YOLOX output decoding and class-aware NMS, shared by
//!   evaluation (training side) and inference (deployment side) so both score the same boxes.

pub mod detection;
pub mod spec;

pub use detection::{BoxXyxy, Detection};
pub use spec::{ModelSpec, SpecError};
