//! The whole pipeline as a user runs it, each step checking what it hands the next:
//! synthetic scenes -> a few training steps -> export fp32 and fp16 -> quantize to int8 ->
//! run in tract and ONNX Runtime -> evaluate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use burn::tensor::Device;
use prism_core::spec::Precision;
use prism_core::ModelSpec;
use prism_data::PreparedSplit;
use prism_deploy::engine::{onnxruntime, Recurrent, TensorView};
use prism_deploy::{Backend, Engine, EngineOptions};
use prism_export::quantize::{
    self, CalibrationData, CalibrationWindow, Feeds, QuantizeOptions, SourceError, StateLink,
};
use prism_train::evaluate::{self, EvalOptions, RunnerError, SequenceRunner};

/// The first windows of every sequence of a split, as model inputs.
struct SplitWindows<'a> {
    split: &'a PreparedSplit,
    per_sequence: usize,
}

impl CalibrationData for SplitWindows<'_> {
    fn len(&self) -> usize {
        self.split
            .sequences
            .iter()
            .map(|s| s.num_windows().min(self.per_sequence))
            .sum()
    }
    fn windows(&mut self) -> Box<dyn Iterator<Item = Result<CalibrationWindow, SourceError>> + '_> {
        let per = self.per_sequence;
        Box::new(self.split.sequences.iter().flat_map(move |seq| {
            (0..seq.num_windows().min(per)).map(move |i| {
                Ok(CalibrationWindow {
                    input: seq.window(i).iter().map(|&v| f32::from(v)).collect(),
                    new_sequence: i == 0,
                })
            })
        }))
    }
}

/// An exported file on a deployment engine, as `prism eval` drives it.
struct EngineRunner {
    engine: Arc<Engine>,
    input_shape: [usize; 3],
    state: Vec<(String, String, Vec<usize>, Vec<f32>)>,
}

impl SequenceRunner for EngineRunner {
    fn strides(&self) -> Vec<usize> {
        self.engine.spec().output.strides.clone()
    }
    fn reset(&mut self, _batch: usize) -> Result<(), RunnerError> {
        self.state = self
            .engine
            .spec()
            .state
            .iter()
            .map(|s| {
                let n = s.shape.iter().product();
                (
                    s.input.clone(),
                    s.output.clone(),
                    s.shape.clone(),
                    vec![0.0; n],
                )
            })
            .collect();
        Ok(())
    }
    fn step(
        &mut self,
        input: &[f32],
        batch: usize,
        _durations_s: &[f32],
    ) -> Result<Vec<f32>, RunnerError> {
        let [c, h, w] = self.input_shape;
        let shape = [batch, c, h, w];
        let spec = self.engine.spec();
        let mut views = vec![TensorView::new(&spec.input.name, &shape, input)];
        views.extend(
            self.state
                .iter()
                .map(|(name, _, shape, data)| TensorView::new(name, shape, data)),
        );
        let mut detections = None;
        for out in self.engine.run(&views)? {
            if out.name == spec.output.name {
                detections = Some(out.data);
            } else if let Some(slot) = self.state.iter_mut().find(|s| s.1 == out.name) {
                slot.3 = out.data;
            }
        }
        detections.ok_or_else(|| "no detections output".into())
    }
}

fn spec_of(path: &Path) -> ModelSpec {
    let proto = quantize::read_model(&std::fs::read(path).unwrap()).unwrap();
    let json = &proto
        .metadata_props
        .iter()
        .find(|p| p.key == quantize::METADATA_KEY)
        .unwrap_or_else(|| panic!("{} lost its metadata", path.display()))
        .value;
    ModelSpec::from_json(json).unwrap()
}

/// Raw detections of the first `n` windows of the first sequence, state carried.
fn detections(path: &Path, backend: Backend, split: &PreparedSplit, n: usize) -> Vec<f32> {
    let engine = Arc::new(Engine::load(path, &EngineOptions::new(backend)).unwrap());
    let mut stream = Recurrent::new(engine).unwrap();
    let seq = &split.sequences[0];
    let mut out = Vec::new();
    for i in 0..n.min(seq.num_windows()) {
        for (d, &v) in stream
            .input_mut()
            .unwrap()
            .iter_mut()
            .zip(seq.window(i).iter())
        {
            *d = f32::from(v);
        }
        out.extend_from_slice(stream.run().unwrap());
    }
    out
}

/// Largest difference over the largest magnitude of `reference`.
fn relative(reference: &[f32], other: &[f32]) -> f32 {
    assert_eq!(reference.len(), other.len());
    let peak = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    reference
        .iter()
        .zip(other)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / peak
}

fn map(runner: &mut dyn SequenceRunner, split: &PreparedSplit, classes: &[String]) -> f64 {
    let opts = EvalOptions {
        lockstep: 1,
        ..EvalOptions::default()
    };
    let preds = evaluate::predict_split(runner, split, &opts).unwrap();
    let filter = evaluate::filter_by_name("synthetic").unwrap();
    let sensor = split.sequences[0].meta.sensor;
    evaluate::score(&preds, classes, sensor, &filter)
        .unwrap()
        .stats[1]
}

#[test]
fn train_export_quantize_infer_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // 1. Synthetic scenes and a few training steps.
    let mut config = prism_train::TrainConfig::resolve("rvt-tiny-synth").unwrap();
    config
        .apply_overrides(&[
            "train.steps=3".into(),
            "train.val_every=3".into(),
            "dataset.train_sequences=2".into(),
            "dataset.val_sequences=1".into(),
        ])
        .unwrap();
    let (train, val) = prism_train::data::load_splits(&config, &root.join("data"), |_| {}).unwrap();
    assert!(!train.sequences.is_empty() && !val.sequences.is_empty());
    let run_dir = root.join("run");
    let options = prism_train::RunOptions {
        run_dir: run_dir.clone(),
        resume: false,
        stop_after: None,
        eval_filter: evaluate::filter_by_name("synthetic").unwrap(),
        device: prism_train::TrainDevice::Flex,
    };
    let summary = prism_train::Trainer::new(config, options, &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    assert_eq!(summary.steps_done, 3);
    let checkpoint = prism_train::trainer::last_checkpoint(&run_dir);

    // 2. Export: the file carries the card's classes and state.
    let device = Device::flex();
    let (card, model) = prism_models::checkpoint::load(&checkpoint, &device).unwrap();
    let fp32 = root.join("model.onnx");
    prism_models::onnx::export_rvt(&model, &card, &Default::default(), &device)
        .unwrap()
        .save(&fp32)
        .unwrap();
    let spec = spec_of(&fp32);
    assert_eq!(spec.classes, card.data.classes);
    assert_eq!(spec.precision, Precision::Fp32);
    assert_eq!(spec.state.len(), 8);

    // 3. fp16 and int8 from the float file, the int8 calibrated on training windows.
    let proto = quantize::read_model(&std::fs::read(&fp32).unwrap()).unwrap();
    let fp16 = root.join("model.fp16.onnx");
    let half = prism_export::fp16::to_fp16(&proto, &Default::default()).unwrap();
    std::fs::write(&fp16, prost::Message::encode_to_vec(&half)).unwrap();
    let feeds = Feeds {
        input: spec.input.name.clone(),
        input_shape: spec.input.shape.iter().map(|d| d.unwrap_or(1)).collect(),
        state: spec
            .state
            .iter()
            .map(|s| StateLink {
                input: s.input.clone(),
                output: s.output.clone(),
                shape: s.shape.clone(),
            })
            .collect(),
        duration: None,
    };
    let int8 = root.join("model.int8.onnx");
    let options = QuantizeOptions {
        // 7-bit weights: ONNX Runtime's int8 kernels then match tract on any x86 CPU.
        reduce_range: true,
        ..QuantizeOptions::default()
    };
    let mut windows = SplitWindows {
        split: &train,
        per_sequence: 8,
    };
    let q = quantize::quantize(&proto, &feeds, &mut windows, &options, &mut |_, _, _| {}).unwrap();
    assert_eq!(q.report.windows, 16);
    q.save(&int8).unwrap();
    for (file, precision) in [(&fp16, Precision::Fp16), (&int8, Precision::Int8)] {
        let s = spec_of(file);
        assert_eq!(s.precision, precision, "{}", file.display());
        assert_eq!(
            (s.classes.clone(), s.state.len()),
            (spec.classes.clone(), 8)
        );
    }

    // 4. Every file streams in tract, and in ONNX Runtime where provisioned; they agree.
    let ort = onnxruntime::library_path(None).is_ok();
    let reference = detections(&fp32, Backend::Tract, &val, 3);
    for (file, vs_fp32) in [(&fp32, 1e-6), (&fp16, 2e-2), (&int8, 0.25)] {
        let tract = detections(file, Backend::Tract, &val, 3);
        let err = relative(&reference, &tract);
        assert!(err <= vs_fp32, "{}: tract vs fp32 {err}", file.display());
        if ort {
            let onnxrt = detections(file, Backend::OrtCpu, &val, 3);
            // fp16: tract computes in fp16, ONNX Runtime's CPU kernels mostly in fp32.
            let limit = if file == &fp16 { 2e-2 } else { 1e-3 };
            let err = relative(&tract, &onnxrt);
            assert!(
                err <= limit,
                "{}: tract vs ONNX Runtime {err}",
                file.display()
            );
        }
    }

    // 5. mAP@.5 on the held-out scene: the export scores what Burn scores, and so do the
    // fp16 and int8 files within a detection or two.
    let classes = card.data.classes.clone();
    let meta = &val.sequences[0].meta;
    let input_shape = [meta.channels, meta.input_hw[0], meta.input_hw[1]];
    let mut burn = evaluate::BurnRunner::new(&model, card.rvt_config(), input_shape);
    let burn_map = map(&mut burn, &val, &classes);
    let mut scores = Vec::new();
    for file in [&fp32, &fp16, &int8] {
        let engine = Arc::new(Engine::load(file, &EngineOptions::new(Backend::Tract)).unwrap());
        let mut runner = EngineRunner {
            engine,
            input_shape,
            state: Vec::new(),
        };
        scores.push((file.clone(), map(&mut runner, &val, &classes)));
    }
    let fp32_map = scores[0].1;
    assert!(
        (fp32_map - burn_map).abs() < 1e-3,
        "Burn {burn_map} vs export {fp32_map}"
    );
    for (file, m) in &scores[1..] {
        assert!(
            (m - fp32_map).abs() < 0.05,
            "{}: {m} vs fp32 {fp32_map}",
            name(file)
        );
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}
