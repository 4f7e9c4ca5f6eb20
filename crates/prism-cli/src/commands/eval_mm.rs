//! `prism eval` of an RGB + thermal + event detector: COCO mAP on the validation split (the
//! seeded 80 / 20 split of the dataset's pool) and on every extra test folder (`daytest`,
//! `nighttest`, ...), each scored apart, for a Burn checkpoint or an exported ONNX file on any
//! backend, so the numbers can be compared across export and quantization.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use prism_data::multimodal::{MmFolder, MmSample};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_eval::coco::CocoMetrics;
use prism_train::frame_eval::{evaluate_samples, FrameEvalOptions};
use prism_train::TrainError;
use serde::Serialize;

use super::progress::Meter;

/// What is scored, and how the validation split is drawn.
#[derive(Debug, Clone)]
pub struct MmEvalRequest<'a> {
    pub data: &'a Path,
    /// `val`, a test folder's name, or `all` (validation and every test folder).
    pub split: &'a str,
    pub split_seed: u64,
    pub val_fraction: f64,
}

/// One split's scores.
#[derive(Debug, Clone, Serialize)]
pub struct SplitScore {
    pub split: String,
    pub images: usize,
    pub metrics: CocoMetrics,
}

/// The model being scored.
enum Scorer {
    Burn(Box<prism_models::mm::MmDetector>, Device),
    Engine(Box<Engine>),
}

/// Whether `prism eval` should take this path: a multimodal checkpoint, or a dataset folder in
/// the multimodal layout.
pub fn applies(checkpoint: Option<&Path>, data: Option<&Path>) -> bool {
    checkpoint.is_some_and(prism_models::mm::card::is_mm_checkpoint)
        || data.is_some_and(|d| d.join("classes.txt").is_file())
}

/// Scores a checkpoint or an ONNX file; prints one table and returns the rows.
pub fn run(
    checkpoint: Option<&PathBuf>,
    model: Option<(&PathBuf, Backend, Option<PathBuf>)>,
    request: &MmEvalRequest<'_>,
) -> Result<Vec<SplitScore>> {
    let folder = MmFolder::open(request.data)
        .with_context(|| format!("opening the dataset {}", request.data.display()))?;
    let (name, classes, input_hw, scorer) = match (checkpoint, model) {
        (Some(dir), None) => {
            let device = Device::flex();
            let (card, model) = prism_models::mm::card::load_checkpoint(dir, &device)
                .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
            (
                card.name.clone(),
                card.data.classes.clone(),
                card.model.input_size,
                Scorer::Burn(Box::new(model), device),
            )
        }
        (None, Some((file, backend, library))) => {
            let mut opts = EngineOptions::new(backend);
            opts.ort_library = library;
            let engine =
                Engine::load(file, &opts).with_context(|| format!("loading {}", file.display()))?;
            let spec = engine.spec().clone();
            if spec.task != prism_core::spec::Task::FrameDetection {
                bail!(
                    "{} is an event model; {} is a multimodal image dataset",
                    file.display(),
                    request.data.display()
                );
            }
            if spec.output.decoded {
                bail!(
                    "{}: decoded outputs; prism's multimodal exports are raw",
                    file.display()
                );
            }
            let dims: Vec<usize> = spec.input.shape.iter().map(|d| d.unwrap_or(0)).collect();
            let [_, _, h, w] = dims[..] else {
                bail!(
                    "{}: input {:?} is not [N, 5, H, W]",
                    file.display(),
                    spec.input.shape
                );
            };
            (
                spec.model.clone(),
                spec.classes.clone(),
                [h, w],
                Scorer::Engine(Box::new(engine)),
            )
        }
        _ => bail!("give --checkpoint DIR or --model FILE.onnx"),
    };
    if classes != folder.classes {
        bail!(
            "{name} predicts {classes:?}; {} has {:?}",
            request.data.join("classes.txt").display(),
            folder.classes
        );
    }
    let (_, val) = folder.split(request.split_seed, request.val_fraction);
    let mut splits: Vec<(String, Vec<MmSample>)> = vec![("val".into(), val)];
    splits.extend(
        folder
            .tests
            .iter()
            .map(|t| (t.name.clone(), t.samples.clone())),
    );
    if request.split != "all" {
        splits.retain(|(n, _)| n == request.split);
        if splits.is_empty() {
            bail!(
                "no split {:?} in {}: val, all, or one of {:?}",
                request.split,
                request.data.display(),
                folder.tests.iter().map(|t| &t.name).collect::<Vec<_>>()
            );
        }
    }
    let mut rows = Vec::new();
    for (split, samples) in splits {
        let mut meter = Meter::new("eval", samples.len() as u64);
        let mut done = 0u64;
        let metrics = score(&scorer, &folder, &samples, input_hw, |n| {
            done += n as u64;
            meter.set(done, || format!("{split}: {done} images"));
        })?;
        meter.finish();
        rows.push(SplitScore {
            split,
            images: samples.len(),
            metrics,
        });
    }
    outln!("{name} on {}", request.data.display())?;
    outln!(
        "{:<12} {:>6} {:>7} {:>7} {:>7}",
        "split",
        "images",
        "mAP",
        "AP50",
        "AP75"
    )?;
    for r in &rows {
        outln!(
            "{:<12} {:>6} {:>7.4} {:>7.4} {:>7.4}",
            r.split,
            r.images,
            r.metrics.ap(),
            r.metrics.ap50(),
            r.metrics.ap75()
        )?;
    }
    Ok(rows)
}

fn score(
    scorer: &Scorer,
    folder: &MmFolder,
    samples: &[MmSample],
    [h, w]: [usize; 2],
    on_images: impl FnMut(usize),
) -> Result<CocoMetrics> {
    let metrics = match scorer {
        Scorer::Burn(model, device) => prism_train::frame_run::evaluate_burn(
            model,
            folder,
            samples,
            [h, w],
            device,
            on_images,
        )?,
        Scorer::Engine(engine) => {
            let spec = engine.spec();
            // An export with a fixed batch runs image by image.
            let batch = spec.input.shape.first().copied().flatten().unwrap_or(8);
            let opts = FrameEvalOptions {
                batch,
                ..FrameEvalOptions::default()
            };
            evaluate_samples(
                folder,
                samples,
                [h, w],
                &opts,
                |input, n| {
                    let shape = [n, prism_data::multimodal::MM_CHANNELS, h, w];
                    let view = TensorView::new(&spec.input.name, &shape, &input);
                    let outputs = engine
                        .run(&[view])
                        .map_err(|e| TrainError::Device(e.to_string()))?;
                    outputs
                        .into_iter()
                        .find(|o| o.name == spec.output.name)
                        .map(|o| o.data)
                        .ok_or_else(|| {
                            TrainError::Device(format!("no output {:?}", spec.output.name))
                        })
                },
                on_images,
            )?
        }
    };
    Ok(metrics)
}
