//! Verification: run the Burn forward pass and the exported file in ONNX runtimes on the same
//! random inputs, and report the error of every output.
//!
//! Runtimes plug in through [`OnnxRunner`]: [`TractRunner`] (feature `tract`) runs in-process;
//! [`PythonRunner`] runs ONNX Runtime and/or the `onnx` reference evaluator (and the checker)
//! through the bundled `check_onnx.py` in a Python environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use burn::tensor::{DType, TensorData};

use crate::capture::TensorSet;
use crate::error::{ExportError, Result};
use crate::npy;

/// The helper script run by [`PythonRunner`].
pub const CHECK_SCRIPT: &str = include_str!("../py/check_onnx.py");

/// Something that can run an ONNX file.
pub trait OnnxRunner {
    /// Short name for reports (`tract`, `ort`, `ref`).
    fn name(&self) -> String;
    /// Run `model` on named inputs; outputs in graph output order.
    fn run(&self, model: &Path, inputs: &[(String, TensorData)]) -> Result<Vec<TensorData>>;
}

/// Error of one output in one runtime.
#[derive(Debug, Clone)]
pub struct OutputError {
    /// Runtime name.
    pub runtime: String,
    /// Output name.
    pub output: String,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// `max_abs` divided by the largest magnitude of the Burn output (scale-relative error,
    /// robust to outputs that cross zero).
    pub max_rel: f64,
}

/// All errors of a verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// One entry per runtime and output.
    pub errors: Vec<OutputError>,
}

impl VerifyReport {
    /// Largest relative error over everything.
    pub fn max_rel(&self) -> f64 {
        self.errors.iter().map(|e| e.max_rel).fold(0.0, f64::max)
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(
                f,
                "{:>6} {:<24} max_abs {:.3e} max_rel {:.3e}",
                e.runtime, e.output, e.max_abs, e.max_rel
            )?;
        }
        Ok(())
    }
}

/// Verification settings.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Fail when any output's relative error exceeds this (1e-4 by default).
    pub tolerance: f64,
    /// Seed for the random float inputs.
    pub seed: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            tolerance: 1e-4,
            seed: 0x5eed,
        }
    }
}

/// Values as f64 for comparison.
pub fn to_f64(data: &TensorData) -> Result<Vec<f64>> {
    let err = |e| ExportError::Verify(format!("reading {:?} data: {e:?}", data.dtype()));
    Ok(match data.dtype() {
        DType::Bool(_) => data
            .try_to_vec::<bool>()
            .map_err(err)?
            .into_iter()
            .map(|b| f64::from(u8::from(b)))
            .collect(),
        DType::I64 => data
            .try_to_vec::<i64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        DType::I32 => data
            .try_to_vec::<i32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
        DType::F64 => data.try_to_vec::<f64>().map_err(err)?,
        _ => data
            .clone()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(err)?
            .into_iter()
            .map(f64::from)
            .collect(),
    })
}

/// Compare `actual` to `expected` (shapes must match).
pub fn compare(
    runtime: &str,
    output: &str,
    expected: &TensorData,
    actual: &TensorData,
) -> Result<OutputError> {
    if expected.shape() != actual.shape() {
        return Err(ExportError::Verify(format!(
            "{runtime}: output `{output}` has shape {:?}, Burn gives {:?}",
            actual.shape(),
            expected.shape()
        )));
    }
    let (e, a) = (to_f64(expected)?, to_f64(actual)?);
    let mut max_abs: f64 = 0.0;
    let mut scale: f64 = 0.0;
    for (x, y) in e.iter().zip(&a) {
        let d = if x == y { 0.0 } else { (x - y).abs() };
        max_abs = max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
        if x.is_finite() {
            scale = scale.max(x.abs());
        }
    }
    Ok(OutputError {
        runtime: runtime.into(),
        output: output.into(),
        max_abs,
        max_rel: max_abs / scale.max(1e-12),
    })
}

/// Run Burn and every runner on the same random inputs and compare.
///
/// `sample` gives the input shapes and dtypes (float inputs are replaced by random values, int
/// and bool inputs are used as given); `names` are the model's input and output names.
#[allow(clippy::too_many_arguments)] // one call does it all; a builder would add no safety
pub fn verify<M, I, O, F>(
    module: &M,
    sample: &I,
    forward: F,
    model: &Path,
    input_names: &[String],
    output_names: &[String],
    runners: &[&dyn OnnxRunner],
    options: &VerifyOptions,
) -> Result<VerifyReport>
where
    M: Module,
    I: TensorSet,
    O: TensorSet,
    F: Fn(&M, I) -> O,
{
    let mut seed = options.seed;
    let inputs = sample.randomized(&mut seed);
    let mut input_data = Vec::new();
    inputs.collect_data(&mut input_data);
    let mut expected = Vec::new();
    forward(module, inputs).collect_data(&mut expected);
    if input_data.len() != input_names.len() || expected.len() != output_names.len() {
        return Err(ExportError::Verify(
            "input/output names do not match the forward pass".into(),
        ));
    }
    let named: Vec<(String, TensorData)> = input_names.iter().cloned().zip(input_data).collect();
    let mut report = VerifyReport::default();
    for runner in runners {
        let actual = runner.run(model, &named)?;
        if actual.len() != expected.len() {
            return Err(ExportError::Verify(format!(
                "{}: {} outputs, expected {}",
                runner.name(),
                actual.len(),
                expected.len()
            )));
        }
        for ((name, e), a) in output_names.iter().zip(&expected).zip(&actual) {
            report.errors.push(compare(&runner.name(), name, e, a)?);
        }
    }
    if report.max_rel() > options.tolerance {
        return Err(ExportError::Verify(format!(
            "error above {:e}:\n{report}",
            options.tolerance
        )));
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------

/// The Python environment: `$PRISM_ENV` or `<workspace>/target/prism-env`, with `venv/bin/python`.
pub fn python_env() -> Option<PathBuf> {
    let root = std::env::var_os("PRISM_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("prism-env")
        });
    let python = root.join("venv").join("bin").join("python");
    python.exists().then_some(python)
}

/// One model for [`run_python_jobs`].
#[derive(Debug, Clone)]
pub struct PythonJob {
    /// The ONNX file.
    pub model: PathBuf,
    /// Named inputs.
    pub inputs: Vec<(String, TensorData)>,
    /// Runtimes: `ort`, `ref`.
    pub runtimes: Vec<String>,
    /// Run `onnx.checker.check_model(full_check=True)`.
    pub check: bool,
    /// Extra timed ORT runs (0 = none).
    pub timing_runs: usize,
}

/// What Python reported for one job.
#[derive(Debug, Clone, Default)]
pub struct PythonResult {
    /// Checker verdict: `ok` or the message.
    pub check: Option<String>,
    /// Per runtime: outputs, or the error message.
    pub outputs: Vec<(String, std::result::Result<Vec<TensorData>, String>)>,
    /// Mean ORT run time in ms when timed.
    pub ort_ms: Option<f64>,
}

/// Run many models through `check_onnx.py` in one Python process (start-up costs ~1 s).
pub fn run_python_jobs(python: &Path, jobs: &[PythonJob]) -> Result<Vec<PythonResult>> {
    let dir = std::env::temp_dir().join(format!(
        "prism-export-py-{}-{}",
        std::process::id(),
        unique()
    ));
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| ExportError::Io {
            path: p.clone(),
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let script = dir.join("check_onnx.py");
    std::fs::write(&script, CHECK_SCRIPT).map_err(io(&script))?;
    let mut spec = Vec::new();
    let mut out_dirs = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        let jd = dir.join(format!("job{j}"));
        std::fs::create_dir_all(&jd).map_err(io(&jd))?;
        let mut inputs = serde_json::Map::new();
        for (k, (name, data)) in job.inputs.iter().enumerate() {
            let p = jd.join(format!("in_{k}.npy"));
            npy::write(&p, data)?;
            inputs.insert(name.clone(), p.display().to_string().into());
        }
        spec.push(serde_json::json!({
            "model": job.model.display().to_string(),
            "inputs": inputs,
            "out_dir": jd.display().to_string(),
            "check": job.check,
            "runtimes": job.runtimes,
            "timing_runs": job.timing_runs,
        }));
        out_dirs.push(jd);
    }
    let spec_path = dir.join("jobs.json");
    std::fs::write(&spec_path, serde_json::Value::Array(spec).to_string())
        .map_err(io(&spec_path))?;
    let out = Command::new(python)
        .arg(&script)
        .arg(&spec_path)
        .output()
        .map_err(io(python))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    if lines.len() != jobs.len() {
        return Err(ExportError::Verify(format!(
            "python helper answered {} of {} jobs: {}",
            lines.len(),
            jobs.len(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut results = Vec::new();
    for ((line, job), jd) in lines.iter().zip(jobs).zip(&out_dirs) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| ExportError::Verify(format!("helper output: {e}")))?;
        if let Some(e) = v.get("error") {
            return Err(ExportError::Verify(format!(
                "python helper failed on {}: {e}",
                job.model.display()
            )));
        }
        let mut r = PythonResult {
            check: v.get("check").and_then(|c| c.as_str()).map(String::from),
            ort_ms: v.get("ort_ms").and_then(|m| m.as_f64()),
            ..Default::default()
        };
        for rt in &job.runtimes {
            let status = v.get(rt).and_then(|s| s.as_str()).unwrap_or("missing");
            let outs = if status == "ok" {
                let mut outs = Vec::new();
                let mut k = 0;
                loop {
                    let p = jd.join(format!("{rt}_{k}.npy"));
                    if !p.exists() {
                        break;
                    }
                    outs.push(npy::read(&p)?);
                    k += 1;
                }
                Ok(outs)
            } else {
                Err(status.to_string())
            };
            r.outputs.push((rt.clone(), outs));
        }
        results.push(r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// ONNX Runtime or the reference evaluator through Python.
#[derive(Debug, Clone)]
pub struct PythonRunner {
    /// Python interpreter with numpy, onnx and onnxruntime.
    pub python: PathBuf,
    /// `ort` or `ref`.
    pub runtime: String,
}

impl OnnxRunner for PythonRunner {
    fn name(&self) -> String {
        self.runtime.clone()
    }
    fn run(&self, model: &Path, inputs: &[(String, TensorData)]) -> Result<Vec<TensorData>> {
        let job = PythonJob {
            model: model.to_path_buf(),
            inputs: inputs.to_vec(),
            runtimes: vec![self.runtime.clone()],
            check: false,
            timing_runs: 0,
        };
        let mut r = run_python_jobs(&self.python, &[job])?;
        match r.pop().and_then(|mut r| r.outputs.pop()) {
            Some((_, Ok(outs))) => Ok(outs),
            Some((_, Err(e))) => Err(ExportError::Verify(format!("{}: {e}", self.runtime))),
            None => Err(ExportError::Verify("no result".into())),
        }
    }
}

/// tract, in process.
#[cfg(feature = "tract")]
#[derive(Debug, Clone, Default)]
pub struct TractRunner;

#[cfg(feature = "tract")]
impl OnnxRunner for TractRunner {
    fn name(&self) -> String {
        "tract".into()
    }
    fn run(&self, model: &Path, inputs: &[(String, TensorData)]) -> Result<Vec<TensorData>> {
        tract::run(model, inputs)
    }
}

#[cfg(feature = "tract")]
mod tract {
    use super::*;
    use tract_onnx::prelude::*;

    fn err(e: impl std::fmt::Display) -> ExportError {
        ExportError::Verify(format!("tract: {e:#}"))
    }

    fn to_tract(data: &TensorData) -> Result<Tensor> {
        let shape = data.shape().to_vec();
        let e = |x: burn::tensor::DataError| err(format!("{x:?}"));
        match data.dtype() {
            DType::F32 => {
                Tensor::from_shape(&shape, data.as_slice::<f32>().map_err(e)?).map_err(err)
            }
            DType::F64 => {
                Tensor::from_shape(&shape, data.as_slice::<f64>().map_err(e)?).map_err(err)
            }
            DType::I64 => {
                Tensor::from_shape(&shape, data.as_slice::<i64>().map_err(e)?).map_err(err)
            }
            DType::I32 => {
                Tensor::from_shape(&shape, data.as_slice::<i32>().map_err(e)?).map_err(err)
            }
            DType::Bool(_) => {
                Tensor::from_shape(&shape, &data.try_to_vec::<bool>().map_err(e)?).map_err(err)
            }
            other => Err(err(format!("input dtype {other:?}"))),
        }
    }

    fn from_tract(t: &Tensor) -> Result<TensorData> {
        let shape = t.shape().to_vec();
        let dt = t.datum_type();
        if dt == bool::datum_type() {
            let v: Vec<bool> = t
                .to_plain_array_view::<bool>()
                .map_err(err)?
                .iter()
                .copied()
                .collect();
            return Ok(TensorData::new(v, shape));
        }
        if dt.is_integer() {
            let c = t.cast_to::<i64>().map_err(err)?;
            let v: Vec<i64> = c
                .to_plain_array_view::<i64>()
                .map_err(err)?
                .iter()
                .copied()
                .collect();
            return Ok(TensorData::new(v, shape));
        }
        let c = t.cast_to::<f32>().map_err(err)?;
        let v: Vec<f32> = c
            .to_plain_array_view::<f32>()
            .map_err(err)?
            .iter()
            .copied()
            .collect();
        Ok(TensorData::new(v, shape))
    }

    pub(super) fn run(model: &Path, inputs: &[(String, TensorData)]) -> Result<Vec<TensorData>> {
        let mut m = tract_onnx::onnx().model_for_path(model).map_err(err)?;
        let mut values = TVec::new();
        for (i, (_, data)) in inputs.iter().enumerate() {
            let t = to_tract(data)?;
            m = m
                .with_input_fact(i, InferenceFact::dt_shape_from_tensor(&t))
                .map_err(err)?;
            values.push(t.into_tvalue());
        }
        let plan = m
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        let outs = plan.run(values).map_err(err)?;
        outs.iter().map(|v| from_tract(v)).collect()
    }
}
