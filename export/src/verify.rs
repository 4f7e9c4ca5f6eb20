//! Verification: run the Burn forward pass and the exported file in ONNX runtimes on the same
//! random inputs, and report the error of every output.
//!
//! Runtimes plug in through [`OnnxRunner`]: [`TractRunner`] (feature `tract`) runs in-process;
//! with the test-support feature `python`, `PythonRunner` runs ONNX Runtime and/or the `onnx`
//! reference evaluator (and the checker) in the provisioned Python environment.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{DType, TensorData};

use crate::capture::TensorSet;
use crate::error::{ExportError, Result};
#[cfg(feature = "python")]
pub use crate::python::{
    python_env, run_python_jobs, PythonJob, PythonResult, PythonRunner, CHECK_SCRIPT,
};

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
