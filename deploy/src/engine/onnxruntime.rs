//! The ONNX Runtime backends (`ort-cpu`, `ort-cuda`, `ort-tensorrt`) through `ort` 2.0.0-rc.15
//! with `load-dynamic`.
//!
//! The library is loaded at run time, once per process (ONNX Runtime allows one environment per
//! process; `ort` enforces it). Which file, first match wins:
//! 1. [`EngineOptions::ort_library`],
//! 2. the `ORT_DYLIB_PATH` environment variable,
//! 3. the wheel `cargo xtask` provisions in the environment `$PRISM_ENV` names:
//!    `venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1`. A shipped
//!    binary looks nowhere else (no path of the build machine is compiled in); inside the
//!    workspace, `.cargo/config.toml` points `PRISM_ENV` at `target/prism-env` for `cargo run` and
//!    `cargo test`.
//!
//! Execution providers are registered with `error_on_failure()`: asking for CUDA or TensorRT on
//! a machine or a wheel without them is an error naming what is missing, never a silent CPU
//! fallback.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{
    HasSelectedOutputs, OutputSelector, RunOptions, Session, SessionInputValue, SessionOutputs,
};
use ort::value::{DynTensorValueType, DynValue, TensorRef};

use super::recurrent::{Feed, Layout};
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
    let Some(env_dir) = std::env::var_os("PRISM_ENV").filter(|p| !p.is_empty()) else {
        return Err(DeployError::Runtime(
            "libonnxruntime not found: pass its path (--ort-library), set ORT_DYLIB_PATH, or set \
             PRISM_ENV to an environment `cargo xtask provision` made"
                .into(),
        ));
    };
    let lib_dir = PathBuf::from(env_dir).join("venv/lib");
    let found = std::fs::read_dir(&lib_dir).ok().and_then(|entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| {
                e.path()
                    .join("site-packages/onnxruntime/capi")
                    .join(LIBRARY_FILE)
            })
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
        Err(DeployError::Runtime(format!(
            "{} (from {from}) does not exist",
            p.display()
        )))
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

/// The `ort` crate prism-deploy is built with, for callers that use ONNX Runtime directly in the
/// same process (one environment per process: get it from [`environment`]).
pub use ort;

/// An ONNX Runtime session for `path` configured exactly as an [`super::Engine`] with `options`
/// configures its own (providers with `error_on_failure`, graph optimisation, threads): for
/// measuring the bare `Session::run` beside an engine, or for using ORT directly.
pub fn session(path: &Path, options: &EngineOptions) -> Result<Session> {
    let backend = options.backend.name();
    let (lib, env) = environment(options.ort_library.as_deref())?;
    let providers = execution_providers(options, &lib)?;
    let builder_err =
        |what: &str, e: ort::Error<ort::session::builder::SessionBuilder>| DeployError::Provider {
            backend,
            reason: format!("{what}: {e}"),
        };
    let mut builder = Session::builder(&env)
        .map_err(|e| DeployError::Runtime(format!("cannot create a session builder: {e}")))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| builder_err("optimization level", e))?;
    if let Some(n) = options.intra_threads {
        builder = builder
            .with_intra_threads(n)
            .map_err(|e| builder_err("intra-op threads", e))?;
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
    builder
        .commit_from_file(path)
        .map_err(|e| DeployError::BadModel {
            path: path.into(),
            backend,
            reason: e.to_string(),
        })
}

/// An ORT session behind a mutex (`Session::run` takes `&mut self`).
pub(crate) struct OrtRunner {
    session: Mutex<Session>,
    backend: &'static str,
    /// The CUDA device whose memory holds a [`super::Recurrent`]'s state (`ort-cuda`,
    /// `ort-tensorrt`); `None`: host memory (`ort-cpu`).
    state_device: Option<i32>,
}

impl OrtRunner {
    pub(crate) fn load(path: &Path, options: &EngineOptions) -> Result<Loaded<Self>> {
        let backend = options.backend.name();
        let session = session(path, options)?;
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
                state_device: match options.backend {
                    Backend::OrtCuda | Backend::OrtTensorRt => Some(options.device_id),
                    Backend::Tract | Backend::OrtCpu => None,
                },
            },
            inputs,
            outputs,
            spec_json,
        })
    }

    /// Runs with `inputs` already checked and in graph order.
    pub(crate) fn run(
        &self,
        inputs: &[TensorView<'_>],
        infos: &[TensorInfo],
        outputs: &mut [Tensor],
    ) -> Result<()> {
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
                DeployError::Output(format!(
                    "output `{}`: {e}; prism reads f32 outputs",
                    info.name
                ))
            })?;
            out.assign(&info.name, shape.iter().map(|&d| d.max(0) as usize), data);
        }
        Ok(())
    }
}

/// One stream's tensors for [`super::Recurrent`] on ONNX Runtime; see that module's documentation.
///
/// Two buffer sets, A and B, each with every state tensor and the detections tensor. The state
/// being read is held here; the set being written sits in the [`OutputSelector`] of the run
/// options that preallocate it (`write_a`, `write_b`), and ORT writes the outputs straight into it.
/// After a run the handles to the written set come back from the session outputs and become the
/// state to read; the set just read is left to its run options for the window after.
///
/// Where the state lives: on `ort-cpu` in host memory; on `ort-cuda` / `ort-tensorrt` both sets
/// are allocated in the CUDA device's memory (the session's CUDA allocator). ONNX Runtime reads
/// device-resident inputs in place and writes preallocated device-resident outputs in place (the
/// same fetch path its `IoBinding` uses), so between windows the state never crosses to the host:
/// per window only the input histogram goes up and the detections come down (they are
/// preallocated in host memory). We use preallocated run outputs rather than `ort`'s `IoBinding`
/// because `run_binding` wraps every bound output in a fresh handle per run, which would add
/// Rust-side allocations to every window.
pub(crate) struct OrtRecurrent {
    backend: &'static str,
    /// Allocates the state sets: the host's default allocator, or the session's CUDA allocator.
    state_allocator: Allocator,
    /// The network input; `None` only while a run holds it.
    input: Option<DynValue>,
    /// The window duration `[1, 1]` of a model with a duration input; `None` while a run
    /// holds it.
    duration: Option<DynValue>,
    /// The state to read next, spec order; `None` only while a run holds them.
    states: Vec<Option<DynValue>>,
    /// The state just read, kept between taking it back from a run and handing it to `write_a`.
    read: Vec<Option<DynValue>>,
    detections: Option<DynValue>,
    /// Run options whose output selector preallocates set A / set B.
    write_a: Option<RunOptions<HasSelectedOutputs>>,
    write_b: Option<RunOptions<HasSelectedOutputs>>,
    /// Whether `states` is set A (so this run writes set B).
    reading_a: bool,
    /// Preallocate outputs (every output shape is known); else ORT allocates them per run.
    preallocate: bool,
    /// The run's inputs in graph order; empty between runs, its capacity reused.
    feed: Vec<SessionInputValue<'static>>,
    /// What feeds each graph input.
    slots: Vec<Feed>,
    state_outputs: Vec<String>,
    state_shapes: Vec<Vec<usize>>,
    detections_name: String,
    detections_shape: Vec<usize>,
}

impl OrtRunner {
    pub(crate) fn recurrent(
        &self,
        layout: &Layout,
        inputs: &[TensorInfo],
        outputs: &[TensorInfo],
    ) -> Result<OrtRecurrent> {
        let backend = self.backend;
        let slots = layout.feeds.clone();
        let name = |i: usize| {
            outputs
                .get(i)
                .map(|o| o.name.clone())
                .ok_or_else(|| DeployError::BadSpec(format!("graph output {i} out of range")))
        };
        let state_outputs = layout
            .states
            .iter()
            .map(|(_, o, _)| name(*o))
            .collect::<Result<Vec<_>>>()?;
        let state_allocator = match self.state_device {
            None => Allocator::default(),
            Some(device_id) => {
                let fail = |e: ort::Error| DeployError::Inference {
                    backend,
                    reason: format!(
                        "cannot get the CUDA allocator of device {device_id} for the state: {e}"
                    ),
                };
                let info = MemoryInfo::new(
                    AllocationDevice::CUDA,
                    device_id,
                    AllocatorType::Device,
                    MemoryType::Default,
                )
                .map_err(fail)?;
                let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
                Allocator::new(&session, info).map_err(fail)?
            }
        };
        let mut r = OrtRecurrent {
            backend,
            state_allocator,
            input: Some(zeros(backend, &layout.input_shape)?),
            duration: Some(zeros(backend, &[1, 1])?),
            states: Vec::new(),
            read: Vec::new(),
            detections: None,
            write_a: None,
            write_b: None,
            reading_a: true,
            preallocate: layout.detections_shape.is_some(),
            feed: Vec::with_capacity(inputs.len()),
            slots,
            state_outputs,
            state_shapes: layout.states.iter().map(|(_, _, s)| s.clone()).collect(),
            detections_name: name(layout.detections_index)?,
            detections_shape: layout.detections_shape.clone().unwrap_or_default(),
        };
        r.states = r.zero_set()?;
        r.read = r.states.iter().map(|_| None).collect();
        r.set_duration(layout.duration_s)?;
        if r.preallocate {
            let b = r.zero_set()?;
            r.write_b = Some(r.writer(b)?);
        }
        Ok(r)
    }
}

/// Takes the state and detections outputs of a run.
fn absorb(
    mut outputs: SessionOutputs<'_>,
    state_outputs: &[String],
    states: &mut [Option<DynValue>],
    detections_name: &str,
    detections: &mut Option<DynValue>,
) -> std::result::Result<(), String> {
    let missing = |name: &str| format!("the run did not produce output `{name}`");
    for (state, name) in states.iter_mut().zip(state_outputs) {
        *state = Some(outputs.remove(name.as_str()).ok_or_else(|| missing(name))?);
    }
    *detections = Some(
        outputs
            .remove(detections_name)
            .ok_or_else(|| missing(detections_name))?,
    );
    Ok(())
}

/// A zeroed `f32` tensor of `shape` in ORT's default CPU allocator.
fn zeros(backend: &'static str, shape: &[usize]) -> Result<DynValue> {
    let fail = |e: ort::Error| DeployError::Inference {
        backend,
        reason: format!("cannot allocate a {shape:?} tensor: {e}"),
    };
    let mut t =
        ort::value::Tensor::<f32>::new(&Allocator::default(), shape.to_vec()).map_err(fail)?;
    t.extract_tensor_mut().1.fill(0.0);
    Ok(t.into_dyn())
}

impl OrtRecurrent {
    fn fail(&self, reason: String) -> DeployError {
        DeployError::Inference {
            backend: self.backend,
            reason,
        }
    }

    /// Whether the state lives in host memory (readable and writable in place).
    fn state_on_host(&self) -> bool {
        self.state_allocator.memory_info().allocation_device() == AllocationDevice::CPU
    }

    fn zero_set(&self) -> Result<Vec<Option<DynValue>>> {
        self.state_shapes
            .iter()
            .map(|s| self.zero_state(s).map(Some))
            .collect()
    }

    /// A zeroed state tensor of `shape` where the state lives: filled in place in host memory,
    /// copied from a host tensor of zeros into device memory.
    fn zero_state(&self, shape: &[usize]) -> Result<DynValue> {
        if self.state_on_host() {
            return zeros(self.backend, shape);
        }
        let fail = |e: ort::Error| {
            self.fail(format!(
                "cannot zero a {shape:?} state tensor on the device: {e}"
            ))
        };
        let mut on_device =
            ort::value::Tensor::<f32>::new(&self.state_allocator, shape.to_vec()).map_err(fail)?;
        let mut host =
            ort::value::Tensor::<f32>::new(&Allocator::default(), shape.to_vec()).map_err(fail)?;
        host.extract_tensor_mut().1.fill(0.0);
        host.copy_into(&mut on_device).map_err(fail)?;
        Ok(on_device.into_dyn())
    }

    /// Run options that make ORT write the state outputs into `set` and the detections into a
    /// tensor of their own.
    fn writer(&self, set: Vec<Option<DynValue>>) -> Result<RunOptions<HasSelectedOutputs>> {
        let mut selector = OutputSelector::default().preallocate(
            self.detections_name.as_str(),
            zeros(self.backend, &self.detections_shape)?,
        );
        for (name, value) in self.state_outputs.iter().zip(set) {
            let value = value.ok_or_else(|| self.fail("state buffer missing".into()))?;
            selector = selector.preallocate(name.as_str(), value);
        }
        Ok(RunOptions::new()
            .map_err(|e| self.fail(format!("run options: {e}")))?
            .with_outputs(selector))
    }

    pub(crate) fn input_mut(&mut self) -> Result<&mut [f32]> {
        let backend = self.backend;
        let input = self.input.as_mut().ok_or_else(|| DeployError::Inference {
            backend,
            reason: "the input is held by a failed run".into(),
        })?;
        input
            .try_extract_tensor_mut::<f32>()
            .map(|(_, data)| data)
            .map_err(|e| DeployError::Inference {
                backend,
                reason: format!("input: {e}"),
            })
    }

    pub(crate) fn set_duration(&mut self, seconds: f32) -> Result<()> {
        let backend = self.backend;
        let duration = self
            .duration
            .as_mut()
            .ok_or_else(|| DeployError::Inference {
                backend,
                reason: "the duration is held by a failed run".into(),
            })?;
        duration
            .try_extract_tensor_mut::<f32>()
            .map_err(|e| DeployError::Inference {
                backend,
                reason: format!("duration: {e}"),
            })?
            .1
            .fill(seconds);
        Ok(())
    }

    pub(crate) fn run(&mut self, runner: &OrtRunner) -> Result<&[f32]> {
        // The inputs in graph order, moved (not copied) into the reused feed vector.
        self.feed.clear();
        for slot in &self.slots {
            let value = match slot {
                Feed::Input => self.input.take(),
                Feed::Duration => self.duration.take(),
                Feed::State(k) => self.states[*k].take(),
            };
            match value {
                Some(v) => self.feed.push(SessionInputValue::Owned(v)),
                None => {
                    self.restore_feed();
                    return Err(self.fail("an input is missing (a previous run failed)".into()));
                }
            }
        }
        let writer = if self.reading_a {
            self.write_b.as_ref()
        } else {
            self.write_a.as_ref()
        };
        let result = {
            // A poisoned lock only means another thread panicked mid-run; the session is intact.
            let mut session = runner.session.lock().unwrap_or_else(|e| e.into_inner());
            let outputs = match writer {
                Some(options) => session.run_with_options(self.feed.as_slice(), options),
                None => session.run(self.feed.as_slice()),
            };
            outputs.map_err(|e| e.to_string()).and_then(|outputs| {
                absorb(
                    outputs,
                    &self.state_outputs,
                    &mut self.states,
                    &self.detections_name,
                    &mut self.detections,
                )
            })
        };
        self.restore_feed();
        if let Err(e) = result {
            // Back to ORT-allocated outputs: which buffer set holds what is no longer certain.
            self.write_a = None;
            self.write_b = None;
            self.preallocate = false;
            self.reset()?;
            return Err(self.fail(e));
        }
        // `states` now holds the set just written; `read` the set just read.
        if self.preallocate && self.reading_a && self.write_a.is_none() {
            let set = self.read.iter_mut().map(Option::take).collect();
            self.write_a = Some(self.writer(set)?);
        } else {
            self.read.iter_mut().for_each(|v| *v = None);
        }
        if self.preallocate {
            self.reading_a = !self.reading_a;
        }
        self.detections()
    }

    /// Moves the feed's values back: the input to `input`, the states read to `read` (or back to
    /// `states` where a run did not replace them).
    fn restore_feed(&mut self) {
        for (slot, value) in self.slots.iter().zip(self.feed.drain(..)) {
            let SessionInputValue::Owned(v) = value else {
                continue;
            };
            match slot {
                Feed::Input => self.input = Some(v),
                Feed::Duration => self.duration = Some(v),
                Feed::State(k) => {
                    if self.states[*k].is_none() {
                        self.states[*k] = Some(v);
                    } else {
                        self.read[*k] = Some(v);
                    }
                }
            }
        }
    }

    pub(crate) fn detections(&self) -> Result<&[f32]> {
        match &self.detections {
            Some(v) => v.try_extract_tensor::<f32>().map(|(_, d)| d).map_err(|e| {
                DeployError::Output(format!(
                    "output `{}`: {e}; prism reads f32 outputs",
                    self.detections_name
                ))
            }),
            None => Ok(&[]),
        }
    }

    /// State `k`: borrowed from host memory, or copied from the device.
    pub(crate) fn state(&self, k: usize) -> Result<Cow<'_, [f32]>> {
        let fail = |e: ort::Error| DeployError::Output(format!("state {k}: {e}"));
        let Some(Some(v)) = self.states.get(k) else {
            return Err(DeployError::Input(format!("no state {k}")));
        };
        if self.state_on_host() {
            return v
                .try_extract_tensor::<f32>()
                .map(|(_, d)| Cow::Borrowed(d))
                .map_err(fail);
        }
        let on_host = v
            .view()
            .downcast::<DynTensorValueType>()
            .and_then(|t| t.to(AllocationDevice::CPU, 0))
            .map_err(fail)?;
        let data = on_host
            .try_extract_tensor::<f32>()
            .map_err(fail)?
            .1
            .to_vec();
        Ok(Cow::Owned(data))
    }

    /// Zeroes the state to read. A state lost to a failed run, or one in device memory, is
    /// allocated again, zeroed.
    pub(crate) fn reset(&mut self) -> Result<()> {
        let on_host = self.state_on_host();
        for (k, shape) in self.state_shapes.iter().enumerate() {
            match &mut self.states[k] {
                Some(v) if on_host => v
                    .try_extract_tensor_mut::<f32>()
                    .map_err(|e| DeployError::Inference {
                        backend: self.backend,
                        reason: format!("state {k}: {e}"),
                    })?
                    .1
                    .fill(0.0),
                _ => {
                    let zeroed = self.zero_state(shape)?;
                    self.states[k] = Some(zeroed);
                }
            }
        }
        Ok(())
    }
}

/// The execution providers for `options.backend`, each with `error_on_failure()`. Before ORT tries,
/// checks that the loaded build has the provider at all, so a CPU-only wheel gives a message that
/// names the missing provider library instead of a generic failure.
fn execution_providers(
    options: &EngineOptions,
    lib: &Path,
) -> Result<Vec<ep::ExecutionProviderDispatch>> {
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
                    if provider.starts_with("Tensorrt") {
                        " and TensorRT 10"
                    } else {
                        ""
                    }
                ),
            });
        }
        Ok(())
    };
    let cuda = || {
        ep::CUDA::default()
            .with_device_id(options.device_id)
            .with_tf32(options.cuda_tf32)
            .build()
            .error_on_failure()
    };
    Ok(match options.backend {
        Backend::Tract => Vec::new(),
        // The arena, as ONNX Runtime's own default (and Python's) has it: ort's `CPU::default()`
        // disables it, and without it every intermediate tensor of every run is a fresh
        // malloc / free (mmap / munmap and page faults for the large ones): that cost prism's
        // ONNX Runtime path up to 1.35x the Python call on the 1Mpx models.
        Backend::OrtCpu => vec![ep::CPU::default()
            .with_arena_allocator(true)
            .build()
            .error_on_failure()],
        Backend::OrtCuda => {
            require(
                <ep::CUDA as ExecutionProvider>::is_available(),
                "CUDAExecutionProvider",
                "libonnxruntime_providers_cuda.so",
            )?;
            vec![cuda()]
        }
        Backend::OrtTensorRt => {
            require(
                <ep::TensorRT as ExecutionProvider>::is_available(),
                "TensorrtExecutionProvider",
                "libonnxruntime_providers_tensorrt.so",
            )?;
            require(
                <ep::CUDA as ExecutionProvider>::is_available(),
                "CUDAExecutionProvider",
                "libonnxruntime_providers_cuda.so",
            )?;
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
