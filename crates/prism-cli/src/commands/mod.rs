//! One module per verb.

pub mod ablate;
pub mod bench;
pub mod calibration;
pub mod data;
pub mod demo;
pub mod engine_args;
pub mod eval;
pub mod eval_mm;
pub mod eval_seq;
pub mod export;
pub mod import;
pub mod infer;
pub mod infer_frames;
pub mod infer_sequence;
pub mod info;
pub mod model_source;
pub mod progress;
pub mod quantize;
pub mod serve;
pub mod slurm;
pub mod train;
