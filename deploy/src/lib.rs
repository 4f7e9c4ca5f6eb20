//! prism-deploy: run prism's ONNX exports anywhere ONNX runs.
//!
//! - [`Engine`]: a model on a backend (`tract`, `ort-cpu`, `ort-cuda`, `ort-tensorrt`), named
//!   `f32` tensors in and out, the model's `prism` spec read from the file.
//! - [`StreamDetector`]: events in, detections out, for recurrent event detectors (RVT): windows,
//!   stacked histograms, carried state, decoding, NMS, boxes in sensor coordinates.
//! - [`FrameDetector`]: one `f32` NCHW tensor in, detections out.
//! - [`server`]: a KServe v2 / Triton-style HTTP server with a streaming endpoint.
//!
//! This crate never depends on Burn: a Jetson build needs prism-core, prism-events, tract and ort.

#[cfg(all(feature = "jetpack", feature = "ort-api-31"))]
compile_error!(
    "the `jetpack` feature lowers the ONNX Runtime API level, which the default `ort-api-31` raises again: \
     build with `--no-default-features --features jetpack`"
);

pub mod engine;
pub mod error;
pub mod frame;
pub mod postprocess;
pub mod preprocess;
pub mod server;
pub mod stream;

pub use engine::{
    Backend, Engine, EngineOptions, Recurrent, Tensor, TensorInfo, TensorRtOptions, TensorView,
};
pub use error::{DeployError, Result};
pub use frame::FrameDetector;
pub use prism_core::{BoxXyxy, Detection, ModelSpec};
pub use stream::{
    Gap, OwnedWindow, Pushed, StreamDetector, StreamOptions, StreamSink, WindowDetections,
};
