//! `prism demo`: the main job end to end on the embedded default (`rvt-tiny-synth`):
//! synthesize labelled scenes → train briefly → export ONNX → verify Burn against tract and
//! ONNX Runtime → stream a new recording through the exported model → mAP, latency and a
//! rendered frame with detections.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use prism_deploy::engine::Backend;

use super::data::synth;
use super::engine_args::{EngineArgs, RuntimeArgs};
use super::eval::{self, EvalArgs};
use super::export::{self, OnnxArgs};
use super::infer::{self, InferArgs};
use super::model_source::ModelSource;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo writes its data, run, model and frames.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training steps (the full recipe in models/rvt-tiny-synth.toml runs 360).
    #[arg(long, default_value_t = 60)]
    pub steps: usize,
    /// Seed of the recording streamed at the end.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();

    outln!(
        "1/5 train rvt-tiny-synth for {} steps on synthetic scenes (160x128, cars and pedestrians)",
        args.steps
    )?;
    let mut config = prism_train::TrainConfig::resolve("rvt-tiny-synth")?;
    config.apply_overrides(&[
        format!("train.steps={}", args.steps),
        format!("train.val_every={}", args.steps),
        "dataset.train_sequences=12".into(),
        "dataset.val_sequences=2".into(),
    ])?;
    let data = out.join("data");
    let (train, val) = prism_train::data::load_splits(&config, &data, |m| {
        let _ = outln!("    {m}");
    })?;
    let run_dir = out.join("run");
    let opts = prism_train::RunOptions {
        run_dir: run_dir.clone(),
        resume: true,
        stop_after: None,
        eval_filter: prism_train::evaluate::filter_by_name("synthetic").context("filter")?,
        device: prism_train::TrainDevice::Flex,
    };
    let t = Instant::now();
    let summary = prism_train::Trainer::new(config, opts, &train, &val)?.run(|e| {
        if let prism_train::Event::Step(r) = e {
            if r.step % 10 == 0 {
                // Progress only: a closed pipe shows at the next step of the demo.
                let _ = outln!(
                    "    step {:>4}  loss {:.3}  {:.1} windows/s",
                    r.step,
                    r.loss,
                    r.windows_per_s
                );
            }
        }
    })?;
    let val_line = summary
        .last_val
        .as_ref()
        .map(|v| format!("validation mAP@.5 {:.3}, mAP@[.5:.95] {:.3}", v.ap50, v.map))
        .unwrap_or_else(|| "already trained".into());
    outln!(
        "    {} in {:.0} s; curves {}",
        val_line,
        t.elapsed().as_secs_f64(),
        run_dir.join("curves.png").display()
    )?;
    let checkpoint = prism_train::trainer::last_checkpoint(&run_dir);

    outln!("2/5 export to ONNX and verify Burn vs tract vs ONNX Runtime (when provisioned)")?;
    let model = out.join("rvt-tiny-synth.onnx");
    let verify = ort_available();
    export::export_onnx(&OnnxArgs {
        source: ModelSource {
            model: None,
            checkpoint: Some(checkpoint.clone()),
            overrides: Vec::new(),
        },
        out: model.clone(),
        dynamic_batch: false,
        opset: prism_export::DEFAULT_OPSET,
        verify,
        precision: export::PrecisionArg::Fp32,
        calib: None,
        ort_library: None,
    })?;

    outln!("3/5 mAP on the validation scenes: Burn checkpoint and exported model in tract")?;
    for (label, checkpoint, model) in [
        ("Burn", Some(checkpoint.clone()), None),
        ("tract", None, Some(model.clone())),
    ] {
        outln!("    {label}:")?;
        eval::run(EvalArgs {
            checkpoint,
            model,
            backend: "tract".into(),
            data: Some(data.clone()),
            split: Some("val".into()),
            split_seed: None,
            val_fraction: None,
            filter: "synthetic".into(),
            coco_gt: None,
            coco_dt: None,
            out: Some(out.join(format!("map-{}.json", label.to_lowercase()))),
            ort_library: None,
        })?;
    }

    outln!("4/5 stream a new 5 s recording (EVT3) through the exported model")?;
    let synth_args = synth::SynthArgs {
        out: out.join("scene"),
        format: synth::SynthFormat::Evt3,
        width: 160,
        height: 128,
        duration_s: 5.0,
        objects: 4,
        label_hz: 20.0,
        seed: args.seed,
    };
    let files = synth::synthesize(&synth_args)?;
    let frames = out.join("frames");
    let backends: Vec<Backend> = if verify {
        vec![Backend::Tract, Backend::OrtCpu]
    } else {
        vec![Backend::Tract]
    };
    for backend in backends {
        let detections = out.join(format!("detections-{backend}.jsonl"));
        let t = Instant::now();
        infer::run(InferArgs {
            engine: EngineArgs {
                model: model.clone(),
                runtime: RuntimeArgs::on(backend),
            },
            input: files.events_path.clone(),
            out: Some(detections.clone()),
            render: (backend == Backend::Tract).then(|| frames.clone()),
            sensor: None,
            format: None,
            max_gap_ms: 1000,
            window_ms: None,
        })?;
        outln!(
            "    {backend}: {} detections in {:.2} s -> {}",
            count_lines(&detections),
            t.elapsed().as_secs_f64(),
            detections.display()
        )?;
    }

    outln!("5/5 summary ({:.0} s)", started.elapsed().as_secs_f64())?;
    outln!("    curves      {}", run_dir.join("curves.png").display())?;
    outln!("    model       {}", model.display())?;
    outln!("    frames      {} (detections drawn)", frames.display())?;
    Ok(())
}

/// Whether ONNX Runtime can be loaded (the `cargo xtask` wheel or ORT_DYLIB_PATH).
fn ort_available() -> bool {
    prism_deploy::engine::onnxruntime::library_path(None).is_ok()
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}
