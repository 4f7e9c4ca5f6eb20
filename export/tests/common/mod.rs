//! Shared test harness: export a module, then check the file with the ONNX checker and compare
//! tract, ONNX Runtime and the ONNX reference evaluator against Burn.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, TensorData};
use prism_export::verify::{compare, python_env, run_python_jobs, PythonJob, TractRunner};
use prism_export::{export, ExportOptions, OnnxModel, OnnxRunner, TensorSet};

/// Relative tolerance required by the issue.
pub const TOL: f64 = 1e-4;

pub fn device() -> Device {
    Device::flex()
}

/// One exported model with the inputs and Burn outputs to compare against.
pub struct Case {
    pub name: String,
    pub model: OnnxModel,
    pub path: PathBuf,
    pub inputs: Vec<(String, TensorData)>,
    pub expected: Vec<TensorData>,
    /// Extra ORT timing runs (0 = none).
    pub timing_runs: usize,
    pub tolerance: f64,
}

pub fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prism-export");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Export `forward` and compute Burn's outputs on random float inputs.
pub fn case<M, I, O, F>(
    name: &str,
    module: &M,
    sample: I,
    forward: F,
    options: &ExportOptions,
) -> Case
where
    M: Module,
    I: TensorSet,
    O: TensorSet,
    F: Fn(&M, I) -> O,
{
    let mut seed = 7u64;
    let inputs = sample.randomized(&mut seed);
    let model = export(module, sample, &forward, options)
        .unwrap_or_else(|e| panic!("{name}: export failed: {e}"));
    let path = out_dir().join(format!("{name}.onnx"));
    model.save(&path).unwrap();
    let mut input_data = Vec::new();
    inputs.collect_data(&mut input_data);
    let mut expected = Vec::new();
    forward(module, inputs).collect_data(&mut expected);
    let inputs = model.input_names().into_iter().zip(input_data).collect();
    Case {
        name: name.into(),
        model,
        path,
        inputs,
        expected,
        timing_runs: 0,
        tolerance: TOL,
    }
}

/// Whether Python-based checks must run (else they are skipped with a message).
fn require_fixtures() -> bool {
    std::env::var("PRISM_REQUIRE_FIXTURES").is_ok_and(|v| v == "1")
}

/// Check every case: tract in process, then checker + ORT + reference evaluator in one Python
/// run. Panics with a table on any failure; prints the error table otherwise.
pub fn check(cases: &[Case]) -> Vec<Option<f64>> {
    let mut failures = Vec::new();
    for c in cases {
        match TractRunner.run(&c.path, &c.inputs) {
            Ok(outs) => compare_all(c, "tract", &outs, &mut failures),
            Err(e) => failures.push(format!("{}: tract failed: {e}", c.name)),
        }
    }
    let mut timings = vec![None; cases.len()];
    match python_env() {
        None if require_fixtures() => {
            panic!("PRISM_REQUIRE_FIXTURES=1 but no Python env (PRISM_ENV)")
        }
        None => {
            eprintln!("SKIPPED: onnx checker / onnxruntime / reference evaluator (no Python env)")
        }
        Some(python) => {
            let jobs: Vec<PythonJob> = cases
                .iter()
                .map(|c| PythonJob {
                    model: c.path.clone(),
                    inputs: c.inputs.clone(),
                    runtimes: vec!["ort".into(), "ref".into()],
                    check: true,
                    timing_runs: c.timing_runs,
                })
                .collect();
            let results = run_python_jobs(&python, &jobs).unwrap();
            for ((c, r), t) in cases.iter().zip(results).zip(timings.iter_mut()) {
                *t = r.ort_ms;
                if r.check.as_deref() != Some("ok") {
                    failures.push(format!("{}: checker: {:?}", c.name, r.check));
                }
                for (rt, outs) in r.outputs {
                    match outs {
                        Ok(outs) => compare_all(c, &rt, &outs, &mut failures),
                        Err(e) => failures.push(format!("{}: {rt} failed: {e}", c.name)),
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    timings
}

fn compare_all(c: &Case, rt: &str, outs: &[TensorData], failures: &mut Vec<String>) {
    if outs.len() != c.expected.len() {
        failures.push(format!(
            "{}: {rt} gave {} outputs, expected {}",
            c.name,
            outs.len(),
            c.expected.len()
        ));
        return;
    }
    for (k, (e, a)) in c.expected.iter().zip(outs).enumerate() {
        match compare(rt, &format!("out{k}"), e, a) {
            Ok(err) => {
                eprintln!(
                    "{:<28} {:>5} out{k}: max_abs {:.2e} max_rel {:.2e}",
                    c.name, rt, err.max_abs, err.max_rel
                );
                if err.max_rel.is_nan() || err.max_rel > c.tolerance {
                    failures.push(format!(
                        "{}: {rt} out{k} rel error {:.3e} > {:e}",
                        c.name, err.max_rel, c.tolerance
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
    }
}

/// Histogram of ONNX op types.
pub fn ops(model: &OnnxModel) -> Vec<String> {
    model
        .proto()
        .graph
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect()
}

/// Parameter-free module for op tests.
#[derive(Module, Debug)]
pub struct NoParams;

/// Median ONNX Runtime latency (ms) of each model, timed in one Python process by
/// `py/time_onnx.py`: warm-up, then `runs` rounds that run every model once in turn.
pub fn ort_median_ms(
    python: &std::path::Path,
    models: &[(PathBuf, Vec<(String, TensorData)>)],
    runs: usize,
) -> Vec<f64> {
    // One folder per call: the tests of a binary run in parallel threads of one process, and
    // two timings sharing a folder read each other's inputs.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = out_dir().join(format!("timing-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut spec = Vec::new();
    for (m, (path, inputs)) in models.iter().enumerate() {
        let mut feeds = serde_json::Map::new();
        for (k, (name, data)) in inputs.iter().enumerate() {
            let p = dir.join(format!("m{m}_in{k}.npy"));
            prism_export::npy::write(&p, data).unwrap();
            feeds.insert(name.clone(), p.display().to_string().into());
        }
        spec.push(serde_json::json!({"model": path.display().to_string(), "inputs": feeds}));
    }
    let spec_path = dir.join("timing.json");
    let spec = serde_json::json!({"models": spec, "runs": runs, "warmup": 20, "threads": 1});
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join("time_onnx.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&spec_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "time_onnx.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["median_ms"].as_f64().unwrap())
        .collect()
}

/// Whether Python-based checks are required (`PRISM_REQUIRE_FIXTURES=1`).
pub fn python_required() -> bool {
    require_fixtures()
}
