//! Every fusion configuration of the RGB + thermal + event detector exports: no fusion (RGB
//! only, early), CSSA and GAFF at stage sets {1}, {3}, {2, 3} and {1, 2, 3, 4}. tract and ONNX
//! Runtime give Burn's raw detector outputs and the encoder's four stage maps within 1e-4
//! relative, and every file passes `onnx.checker.check_model(full_check=True)`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::{Device, Distribution, Tensor};
use prism_export::verify::{python_env, run_python_jobs, PythonJob, PythonRunner, TractRunner};
use prism_export::{export, verify, ExportOptions, OnnxRunner, VerifyOptions};
use prism_models::mm::{MmDetector, MmDetectorConfig};

/// The raw outputs `[1, A, 5 + K]` and the four stage maps, flattened to rank 3 so one
/// function returns them all.
fn outputs(m: &MmDetector, x: Tensor<4>) -> Vec<Tensor<3>> {
    let mut outs = vec![m.forward(x.clone())];
    outs.extend(m.encoder.forward(x).into_iter().map(|s| s.flatten(2, 3)));
    outs
}

fn configurations() -> Vec<String> {
    let mut names = vec!["mm-mit-b0-rgb".to_string(), "mm-mit-b0-early".to_string()];
    for kind in ["cssa", "gaff"] {
        for stages in ["1", "3", "23", "1234"] {
            names.push(format!("mm-mit-b0-{kind}-s{stages}"));
        }
    }
    names
}

#[test]
fn every_fusion_configuration_exports_and_matches_burn() {
    let device = Device::flex();
    let python = python_env();
    if python.is_none() {
        if std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
            panic!("the prism Python environment is missing (cargo xtask provision)");
        }
        eprintln!("SKIPPED: ONNX Runtime and the checker (no Python environment)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for name in configurations() {
        let model = MmDetectorConfig::from_name(&name, 3)
            .unwrap()
            .init(&device)
            .unwrap();
        let sample = Tensor::<4>::random([1, 5, 64, 96], Distribution::Uniform(0.0, 1.0), &device);
        let options = ExportOptions::default()
            .inputs(["image"])
            .outputs(["raw", "s1", "s2", "s3", "s4"]);
        let onnx = export(&model, sample.clone(), outputs, &options).unwrap();
        let path = dir.path().join(format!("{name}.onnx"));
        onnx.save(&path).unwrap();
        let mut runners: Vec<Box<dyn OnnxRunner>> = vec![Box::new(TractRunner)];
        if let Some(p) = &python {
            runners.push(Box::new(PythonRunner {
                python: p.clone(),
                runtime: "ort".into(),
            }));
        }
        let refs: Vec<&dyn OnnxRunner> = runners.iter().map(|r| r.as_ref()).collect();
        let report = verify(
            &model,
            &sample,
            outputs,
            &path,
            &onnx.input_names(),
            &onnx.output_names(),
            &refs,
            &VerifyOptions::default(),
        )
        .unwrap();
        eprintln!("{name}: max rel {:.2e}", report.max_rel());
        assert_eq!(report.errors.len(), 5 * refs.len(), "{name}");
        assert!(report.max_rel() <= 1e-4, "{name}: {report}");
        jobs.push(PythonJob {
            model: path,
            inputs: Vec::new(),
            runtimes: Vec::new(),
            check: true,
            timing_runs: 0,
        });
    }
    if let Some(python) = python {
        let results = run_python_jobs(&python, &jobs).unwrap();
        for (job, result) in jobs.iter().zip(&results) {
            assert_eq!(
                result.check.as_deref(),
                Some("ok"),
                "{}: {:?}",
                job.model.display(),
                result.check
            );
        }
    }
}
