//! Test support (feature `python`): ONNX Runtime, the `onnx` reference evaluator and the checker,
//! run through the bundled `check_onnx.py` in the Python environment `cargo xtask` provisions.
//! Not part of a shipped build: it looks for the environment in the build tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::TensorData;

use crate::error::{ExportError, Result};
use crate::npy;
use crate::verify::OnnxRunner;

/// The helper script run by [`PythonRunner`].
pub const CHECK_SCRIPT: &str = include_str!("../py/check_onnx.py");

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
        let p = p.to_path_buf();
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
