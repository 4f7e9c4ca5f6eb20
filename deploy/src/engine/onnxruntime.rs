//! The ONNX Runtime backends (`ort-cpu`, `ort-cuda`, `ort-tensorrt`) through `ort` 2.0.0-rc.15
//! with `load-dynamic`.
//!
//! The library is loaded at run time, once per process (ONNX Runtime allows one environment per
//! process; `ort` enforces it). Which file, first match wins:
//! 1. [`EngineOptions::ort_library`],
//! 2. the `ORT_DYLIB_PATH` environment variable,
//! 3. the wheel `cargo xtask` provisions: `$PRISM_ENV` (else `<workspace>/target/prism-env`) /
//!    `venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1`.
//!
//! Execution providers are registered with `error_on_failure()`: asking for CUDA or TensorRT on
//! a machine or a wheel without them is an error naming what is missing, never a silent CPU
//! fallback.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

use super::{Backend, EngineOptions, Loaded, Tensor, TensorInfo, TensorView};
use crate::error::{DeployError, Result};

/// File name of the library in the ONNX Runtime 1.31.1 wheels (they ship no unversioned symlink).
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

/// The process-wide environment and the library it was loaded from.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Where libonnxruntime is looked for; see the module documentation. Errors list the places tried.
pub fn library_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return existing(p, "--ort-library");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&p), "ORT_DYLIB_PATH");
    }
    let env_dir = std::env::var_os("PRISM_ENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/prism-env"));
    let lib_dir = env_dir.join("venv/lib");
    let found = std::fs::read_dir(&lib_dir).ok().and_then(|entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/onnxruntime/capi").join(LIBRARY_FILE))
            .find(|p| p.is_file())
    });
    found.map(|p| std::fs::canonicalize(&p).unwrap_or(p)).ok_or_else(|| {
        DeployError::Runtime(format!(
            "libonnxruntime not found: pass its path (--ort-library), set ORT_DYLIB_PATH, or run \
             `cargo xtask provision` (looked in {}/python3*/site-packages/onnxruntime/capi/{LIBRARY_FILE})",
            lib_dir.display()
        ))
    })
}

fn existing(p: &Path, from: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(DeployError::Runtime(format!("{} (from {from}) does not exist", p.display())))
    }
}

/// The process-wide ORT environment, loading the library on first use. A later request for a
/// different library file is an error: one process can hold one ONNX Runtime.
pub fn environment(explicit: Option<&Path>) -> Result<(PathBuf, Environment)> {
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = guard.as_ref() {
        if let Some(p) = explicit {
            let same = std::fs::canonicalize(p).ok() == std::fs::canonicalize(loaded).ok();
            if !same {
                return Err(DeployError::Runtime(format!(
                    "this process already loaded ONNX Runtime from {}; it cannot also load {}",
                    loaded.display(),
                    p.display()
                )));
            }
        }
        return Ok((loaded.clone(), env.clone()));
    }
    let path = library_path(explicit)?;
    let env = ort::init_from(&path)
        .map_err(|e| DeployError::Runtime(format!("cannot load {}: {e}", path.display())))?
        .with_name("prism")
        .with_telemetry(false)
        .build()
        .map_err(|e| DeployError::Runtime(format!("cannot create the environment: {e}")))?;
    tracing::info!("ONNX Runtime loaded from {}", path.display());
    *guard = Some((path.clone(), env.clone()));
    Ok((path, env))
}

/// An ORT session behind a mutex (`Session::run` takes `&mut self`).
pub(crate) struct OrtRunner {
    session: Mutex<Session>,
    backend: &'static str,
}

impl OrtRunner {
    pub(crate) fn load(path: &Path, options: &EngineOptions) -> Result<Loaded<Self>> {
        let backend = options.backend.name();
        let (lib, env) = environment(options.ort_library.as_deref())?;
        let providers = execution_providers(options, &lib)?;
        let builder_err = |what: &str, e: ort::Error<ort::session::builder::SessionBuilder>| DeployError::Provider {
            backend,
            reason: format!("{what}: {e}"),
        };
        let mut builder = Session::builder(&env)
            .map_err(|e| DeployError::Runtime(format!("cannot create a session builder: {e}")))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| builder_err("optimization level", e))?;
        if let Some(n) = options.intra_threads {
            builder = builder.with_intra_threads(n).map_err(|e| builder_err("intra-op threads", e))?;
        }
        if let Some(n) = options.inter_threads {
            builder = builder
                .with_parallel_execution(n > 1)
                .map_err(|e| builder_err("parallel execution", e))?
                .with_inter_threads(n)
                .map_err(|e| builder_err("inter-op threads", e))?;
        }
        let mut builder = builder
            .with_execution_providers(providers)
            .map_err(|e| builder_err("cannot register the execution provider", e))?;
        let session = builder.commit_from_file(path).map_err(|e| DeployError::BadModel {
            path: path.into(),
            backend,
            reason: e.to_string(),
        })?;
        let info = |outlets: &[ort::value::Outlet]| -> Vec<TensorInfo> {
            outlets
                .iter()
                .map(|o| TensorInfo {
                    name: o.name().to_string(),
                    shape: o
                        .dtype()
                        .tensor_shape()
                        .map(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect())
                        .unwrap_or_default(),
                })
                .collect()
        };
        let inputs = info(session.inputs());
        let outputs = info(session.outputs());
        let spec_json = session
            .metadata()
            .map_err(|e| DeployError::BadModel {
                path: path.into(),
                backend,
                reason: format!("cannot read metadata: {e}"),
            })?
            .custom(super::SPEC_KEY);
        tracing::info!(backend, "session ready for {}", path.display());
        Ok(Loaded {
            runner: Self {
                session: Mutex::new(session),
                backend,
            },
            inputs,
            outputs,
            spec_json,
        })
    }

    /// Runs with `inputs` already checked and in graph order.
    pub(crate) fn run(&self, inputs: &[TensorView<'_>], infos: &[TensorInfo], outputs: &mut [Tensor]) -> Result<()> {
        let backend = self.backend;
        let fail = |reason: String| DeployError::Inference { backend, reason };
        let values = inputs
            .iter()
            .map(|v| {
                TensorRef::from_array_view((v.shape, v.data))
                    .map(|t| (v.name, SessionInputValue::from(t)))
                    .map_err(|e| fail(format!("input `{}`: {e}", v.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        // A poisoned lock only means another thread panicked mid-run; the session itself is intact.
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let results = session.run(values).map_err(|e| fail(e.to_string()))?;
        for (info, out) in infos.iter().zip(outputs.iter_mut()) {
            let value = results
                .get(&info.name)
                .ok_or_else(|| fail(format!("no output `{}`", info.name)))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| {
                DeployError::Output(format!("output `{}`: {e}; prism reads f32 outputs", info.name))
            })?;
            out.assign(&info.name, shape.iter().map(|&d| d.max(0) as usize), data);
        }
        Ok(())
    }
}

/// The execution providers for `options.backend`, each with `error_on_failure()`. Before ORT tries,
/// checks that the loaded build has the provider at all, so a CPU-only wheel gives a message that
/// names the missing provider library instead of a generic failure.
fn execution_providers(options: &EngineOptions, lib: &Path) -> Result<Vec<ep::ExecutionProviderDispatch>> {
    let backend = options.backend.name();
    let require = |available: ort::Result<bool>, provider: &str, file: &str| -> Result<()> {
        let compiled_in = available.unwrap_or(false);
        let dir = lib.parent().unwrap_or(Path::new("."));
        if !compiled_in || !dir.join(file).is_file() {
            return Err(DeployError::Provider {
                backend,
                reason: format!(
                    "the ONNX Runtime at {} has no {provider}: {file} is missing from {} \
                     (the CPU `onnxruntime` wheel has none; install `onnxruntime-gpu`, which needs \
                     CUDA 13, cuDNN 9{} on LD_LIBRARY_PATH)",
                    lib.display(),
                    dir.display(),
                    if provider.starts_with("Tensorrt") { " and TensorRT 10" } else { "" }
                ),
            });
        }
        Ok(())
    };
    let cuda = || {
        ep::CUDA::default()
            .with_device_id(options.device_id)
            .build()
            .error_on_failure()
    };
    Ok(match options.backend {
        Backend::Tract => Vec::new(),
        Backend::OrtCpu => vec![ep::CPU::default().build().error_on_failure()],
        Backend::OrtCuda => {
            require(<ep::CUDA as ExecutionProvider>::is_available(), "CUDAExecutionProvider", "libonnxruntime_providers_cuda.so")?;
            vec![cuda()]
        }
        Backend::OrtTensorRt => {
            require(
                <ep::TensorRT as ExecutionProvider>::is_available(),
                "TensorrtExecutionProvider",
                "libonnxruntime_providers_tensorrt.so",
            )?;
            require(<ep::CUDA as ExecutionProvider>::is_available(), "CUDAExecutionProvider", "libonnxruntime_providers_cuda.so")?;
            let t = &options.tensorrt;
            let mut trt = ep::TensorRT::default()
                .with_device_id(options.device_id)
                .with_fp16(t.fp16)
                .with_int8(t.int8);
            if let Some(dir) = &t.cache_dir {
                std::fs::create_dir_all(dir).map_err(|e| DeployError::io(dir, e))?;
                let dir = dir.to_string_lossy().into_owned();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&dir);
            }
            // TensorRT first; CUDA runs the nodes TensorRT does not take.
            vec![trt.build().error_on_failure(), cuda()]
        }
    })
}
