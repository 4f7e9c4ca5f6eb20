//! `prism eval`: COCO mAP of a detector with RVT's protocol (stream each sequence with carried
//! state, predict at label timestamps, drop the first 0.5 s and small boxes), for a Burn
//! checkpoint or an exported ONNX model on any backend, so accuracy can be compared across
//! export and quantization; or score any detections given as COCO JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::Args;
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_train::evaluate::{
    filter_by_name, predict_split_with_progress, BurnRunner, EvalOptions, RunnerError,
    SequenceRunner,
};

use super::progress::Meter;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint folder (`prism train` writes `runs/<name>/checkpoints/{best,last}`).
    #[arg(long, conflicts_with_all = ["model", "coco_gt"])]
    pub checkpoint: Option<PathBuf>,
    /// An exported ONNX model (`prism export onnx`).
    #[arg(long, conflicts_with = "coco_gt")]
    pub model: Option<PathBuf>,
    /// Backend for `--model`: tract, ort-cpu, ort-cuda, ort-tensorrt.
    #[arg(long, default_value = "tract")]
    pub backend: String,
    /// Prepared data folder (`prism data prepare`, or the synthetic data `prism train` made).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split to score (default `val`). Multimodal datasets: `val`, a test folder (`nighttest`)
    /// or `all` (the default there: validation and every test folder, scored apart).
    #[arg(long)]
    pub split: Option<String>,
    /// Seed of the train / validation split the model trained on (multimodal datasets: 42 by
    /// default; sequence corpora: the run's `config.toml`, else 0).
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// The validation share of that split (multimodal: 0.2; sequence corpora: the run's, else
    /// 0.1).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Label filter of the protocol: gen1, gen4 (1Mpx), synthetic (0.5 s skip only), none, or
    /// auto (by the sensor size of the data).
    #[arg(long, default_value = "auto")]
    pub filter: String,
    /// Ground truth in COCO JSON (with `--coco-dt`: score those detections, no model).
    #[arg(long, requires = "coco_dt")]
    pub coco_gt: Option<PathBuf>,
    /// Detections in COCO result JSON (a list of {image_id, category_id, bbox, score}).
    #[arg(long, requires = "coco_gt")]
    pub coco_dt: Option<PathBuf>,
    /// Write the metrics as JSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// ONNX Runtime library (else ORT_DYLIB_PATH or the provisioned one).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let (Some(gt), Some(dt)) = (&args.coco_gt, &args.coco_dt) {
        let ground_truth = prism_eval::coco::load_ground_truth(gt)?;
        let detections = prism_eval::coco::load_detections(dt)?;
        let metrics = prism_eval::coco::evaluate(&ground_truth, &detections)
            .with_context(|| format!("scoring {} against {}", dt.display(), gt.display()))?;
        outln!("{}", metrics.table(&[]))?;
        return write_out(&args, &metrics);
    }
    let data = args
        .data
        .as_ref()
        .context("give --data DIR (prepared sequences), or --coco-gt/--coco-dt")?;
    if super::eval_seq::applies(args.checkpoint.as_deref(), data) {
        return super::eval_seq::run(&args, data);
    }
    if super::eval_mm::applies(args.checkpoint.as_deref(), Some(data)) {
        return eval_multimodal(&args, data);
    }
    let split_name = args.split.as_deref().unwrap_or("val");
    let split = prism_data::load_split(data, split_name)
        .with_context(|| format!("loading {}/{split_name}", data.display()))?;
    let first = split
        .sequences
        .first()
        .with_context(|| format!("{}/{split_name} holds no sequence", data.display()))?;
    let meta = first.meta.clone();
    let filter_name = match args.filter.as_str() {
        "auto" => prism_train::evaluate::filter_for_sensor(meta.sensor),
        other => other,
    };
    let filter = filter_by_name(filter_name)
        .with_context(|| format!("unknown filter {:?} (gen1, gen4, none)", args.filter))?;
    let mut opts = EvalOptions::default();
    let (classes, mut runner): (Vec<String>, Box<dyn SequenceRunner>) =
        match (&args.checkpoint, &args.model) {
            (Some(dir), None) => {
                let (card, model) = prism_models::checkpoint::load(dir, &Device::flex())
                    .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
                if card.model.input_size != meta.input_hw {
                    bail!(
                        "the checkpoint takes {:?} inputs, the data is {:?}",
                        card.model.input_size,
                        meta.input_hw
                    );
                }
                let runner = BurnRunner::new(
                    &model,
                    card.rvt_config(),
                    [meta.channels, meta.input_hw[0], meta.input_hw[1]],
                );
                (card.data.classes.clone(), Box::new(runner))
            }
            (None, Some(file)) => {
                let backend: Backend = args.backend.parse()?;
                let mut engine_opts = EngineOptions::new(backend);
                engine_opts.ort_library = args.ort_library.clone();
                let engine = Engine::load(file, &engine_opts)
                    .with_context(|| format!("loading {}", file.display()))?;
                let spec = engine.spec().clone();
                opts.outputs_decoded = spec.output.decoded;
                if spec.input.shape.first().copied().flatten().is_some() {
                    opts.lockstep = spec.input.shape[0].unwrap_or(1);
                }
                let runner = EngineRunner::new(
                    Arc::new(engine),
                    [meta.channels, meta.input_hw[0], meta.input_hw[1]],
                )?;
                (spec.classes.clone(), Box::new(runner))
            }
            _ => bail!("give --checkpoint DIR or --model FILE.onnx"),
        };
    let started = std::time::Instant::now();
    let total: usize = split.sequences.iter().map(|s| s.num_windows()).sum();
    let mut meter = Meter::new("eval", total as u64);
    let mut done = 0usize;
    let preds = predict_split_with_progress(runner.as_mut(), &split, &opts, &mut |n| {
        done += n;
        meter.set(done as u64, || format!("{done} of {total} windows"));
    })?;
    meter.finish();
    let metrics = prism_train::evaluate::score(&preds, &classes, meta.sensor, &filter)?;
    eprintln!(
        "scored {} sequences ({} windows) in {:.1} s",
        split.sequences.len(),
        split
            .sequences
            .iter()
            .map(|s| s.num_windows())
            .sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    outln!("{}", metrics.table(&names))?;
    write_out(&args, &metrics)
}

/// `prism eval` on a multimodal dataset folder.
fn eval_multimodal(args: &EvalArgs, data: &std::path::Path) -> Result<()> {
    let model = match &args.model {
        Some(file) => Some((
            file,
            args.backend.parse::<Backend>()?,
            args.ort_library.clone(),
        )),
        None => None,
    };
    let request = super::eval_mm::MmEvalRequest {
        data,
        split: args.split.as_deref().unwrap_or("all"),
        split_seed: args.split_seed.unwrap_or(42),
        val_fraction: args.val_fraction.unwrap_or(0.2),
    };
    let rows = super::eval_mm::run(args.checkpoint.as_ref(), model, &request)?;
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn write_out(args: &EvalArgs, metrics: &prism_eval::coco::CocoMetrics) -> Result<()> {
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(metrics)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// [`SequenceRunner`] over an exported model: the histogram, the 8 state inputs (and the
/// window durations, for SSM memory) in, raw detections and the 8 new states out.
struct EngineRunner {
    engine: Arc<Engine>,
    input_shape: [usize; 3],
    batch: usize,
    /// (input name, shape, values) per state tensor.
    states: Vec<(String, String, Vec<usize>, Vec<f32>)>,
}

impl EngineRunner {
    fn new(engine: Arc<Engine>, input_shape: [usize; 3]) -> Result<Self> {
        if engine.spec().state.is_empty() {
            bail!(
                "{} has no recurrent state: not an RVT export",
                engine.path().display()
            );
        }
        Ok(Self {
            engine,
            input_shape,
            batch: 0,
            states: Vec::new(),
        })
    }
}

impl SequenceRunner for EngineRunner {
    fn strides(&self) -> Vec<usize> {
        self.engine.spec().output.strides.clone()
    }

    fn reset(&mut self, batch: usize) -> Result<(), RunnerError> {
        self.batch = batch;
        self.states = self
            .engine
            .spec()
            .state
            .iter()
            .map(|s| {
                let mut shape = s.shape.clone();
                if let Some(first) = shape.first_mut() {
                    *first = batch;
                }
                let n = shape.iter().product();
                (s.input.clone(), s.output.clone(), shape, vec![0.0; n])
            })
            .collect();
        Ok(())
    }

    fn step(
        &mut self,
        input: &[f32],
        batch: usize,
        durations_s: &[f32],
    ) -> Result<Vec<f32>, RunnerError> {
        let [c, h, w] = self.input_shape;
        let shape = [batch, c, h, w];
        let spec = self.engine.spec();
        let mut views = vec![TensorView::new(&spec.input.name, &shape, input)];
        views.extend(
            self.states
                .iter()
                .map(|(name, _, shape, data)| TensorView::new(name, shape, data)),
        );
        let duration_shape = [batch, 1];
        if let Some(name) = &spec.duration_input {
            views.push(TensorView::new(name, &duration_shape, durations_s));
        }
        let outputs = self.engine.run(&views)?;
        let mut raw = None;
        for out in outputs {
            if out.name == spec.output.name {
                raw = Some(out.data);
            } else if let Some(slot) = self.states.iter_mut().find(|s| s.1 == out.name) {
                slot.3 = out.data;
            }
        }
        raw.ok_or_else(|| format!("the model has no output {:?}", spec.output.name).into())
    }
}
