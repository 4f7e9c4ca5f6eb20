//! Detection models of prism.
//!
//! - [`rvt`]: RVT (Recurrent Vision Transformer), layer-for-layer equal to the official
//!   implementation, with presets `rvt-{tiny,small,base}-{gen1,1mpx}`, per-part parameter
//!   counts, an explicit recurrent-state API and import of official PyTorch checkpoints.
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use prism_models::rvt::{import_rvt_checkpoint, RvtConfig, RvtState};
//!
//! let device = Device::flex();
//! let config = RvtConfig::preset("rvt-tiny-gen1").unwrap();
//! let model = import_rvt_checkpoint("rvt-t.ckpt", &config, &device).unwrap();
//! let mut state = RvtState::zeros(&config, 1, [256, 320], &device);
//! for _ in 0..3 {
//!     let histogram = Tensor::<4>::zeros([1, 20, 256, 320], &device);
//!     let (detections, next) = model.forward_decoded(histogram, state);
//!     state = next;
//!     let _ = detections; // [1, 1680, 7]: cx, cy, w, h, obj, cls0, cls1
//! }
//! ```

pub mod attention;
pub mod checkpoint;
pub mod fusion;
pub mod kernels;
pub mod mit;
pub mod mm;
pub mod onnx;
pub mod overrides;
pub mod rvt;
pub mod seq;
pub mod torch_weights;
pub mod yolox;
pub mod zoo;
