//! Which model, on which backend, with which runtime settings: the flags `infer` and `serve`
//! share.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use prism_deploy::{Backend, Engine, EngineOptions, TensorRtOptions};

/// Which model, on which backend, with which runtime settings (shared by `infer` and `serve`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// The exported ONNX model (with its `prism` metadata).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// How a model runs: backend, threads, and the backends' own settings.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// tract | ort-cpu | ort-cuda | ort-tensorrt.
    #[arg(long, default_value = "tract")]
    pub backend: Backend,
    /// Threads within one operator: ONNX Runtime's intra-op threads (default: one per core);
    /// tract: a pool of this many threads for convolutions and matrix products (default: none,
    /// the calling thread).
    #[arg(long)]
    pub threads: Option<usize>,
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH, else the `cargo xtask` wheel).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// CUDA device for ort-cuda / ort-tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device: i32,
    /// ort-cuda / ort-tensorrt: allow TF32 for fp32 convolutions and matrix products in the CUDA
    /// provider (ONNX Runtime's default; prism's is off, so fp32 models compute in fp32).
    #[arg(long)]
    pub cuda_tf32: bool,
    /// TensorRT: allow fp16 kernels.
    #[arg(long)]
    pub trt_fp16: bool,
    /// TensorRT: int8 (use a QDQ model).
    #[arg(long)]
    pub trt_int8: bool,
    /// TensorRT: engine and timing cache directory (strongly advised: engine builds are slow).
    #[arg(long)]
    pub trt_cache: Option<PathBuf>,
}

impl RuntimeArgs {
    /// These settings on the default backend, tract.
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            threads: None,
            ort_library: None,
            device: 0,
            cuda_tf32: false,
            trt_fp16: false,
            trt_int8: false,
            trt_cache: None,
        }
    }

    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            backend: self.backend,
            intra_threads: self.threads,
            inter_threads: None,
            ort_library: self.ort_library.clone(),
            device_id: self.device,
            cuda_tf32: self.cuda_tf32,
            tensorrt: TensorRtOptions {
                fp16: self.trt_fp16,
                int8: self.trt_int8,
                cache_dir: self.trt_cache.clone(),
            },
        }
    }

    /// Loads `model` with these settings.
    pub fn load(&self, model: &std::path::Path) -> Result<Arc<Engine>> {
        let engine = Engine::load(model, &self.options())
            .with_context(|| format!("loading {} on {}", model.display(), self.backend))?;
        Ok(Arc::new(engine))
    }
}

impl EngineArgs {
    pub fn load(&self) -> Result<Arc<Engine>> {
        self.runtime.load(&self.model)
    }
}
