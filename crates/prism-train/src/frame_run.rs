//! The training run of the RGB + thermal + event detector: epochs of shuffled, augmented,
//! letterboxed images, the YOLOX loss with SimOTA, AdamW with global-norm clipping, gradient
//! accumulation (`train.accumulate`) and a one-cycle schedule; COCO mAP on the validation split,
//! resumable checkpoints, a metrics log and curves, in the same run-folder layout as RVT's.
//!
//! The batch order is a function of (seed, step): epoch `e` is a Fisher-Yates shuffle seeded by
//! `e`, so a resumed run draws exactly the batches an uninterrupted one would have.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use prism_data::multimodal::{MmAugment, MmFolder, MmImage, MmSample, YoloBox};
use prism_events::synth::rng::{mix, SplitMix64};
use prism_models::checkpoint::replace_folder;
use prism_models::mm::card::save_checkpoint;
use prism_models::mm::MmDetector;
use serde::{Deserialize, Serialize};

use crate::clip::clip_global_norm;
use crate::frame::frame_batch;
use crate::frame_eval::{evaluate_samples, FrameEvalOptions};
use crate::loss::YoloxLoss;
use crate::memory::StepPeak;
use crate::metrics_log::{MetricsLog, Record, StepRecord, ValRecord};
use crate::mm_config::MmTrainConfig;
use crate::optim::OptimizerPlan;
use crate::precision::{take_step, LossScaler};
use crate::resumable;
use crate::trainer::{best_checkpoint, last_checkpoint, Event, TrainSummary};
use crate::{TrainDevice, TrainError};

/// Images kept in memory between epochs (beyond that they are read from disk each time).
const CACHE_BYTES: usize = 1 << 30;

/// Where a run lives and how it was started.
#[derive(Debug, Clone)]
pub struct FrameRunOptions {
    pub run_dir: PathBuf,
    /// Continue from `run_dir/checkpoints/last` if present.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in this session.
    pub stop_after: Option<usize>,
    pub device: TrainDevice,
}

/// Where training stands, saved with each resumable checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FrameTrainerState {
    step: usize,
    /// Best validation mAP so far and its step.
    best_map: Option<(f64, usize)>,
    elapsed_s: f64,
    /// float16 training: the loss scaler's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<LossScaler>,
}

/// A training session on a multimodal dataset folder.
pub struct FrameRun {
    config: MmTrainConfig,
    opts: FrameRunOptions,
    folder: MmFolder,
    train: Vec<MmSample>,
    val: Vec<MmSample>,
    device: Device,
    inference_device: Device,
    /// Optimizer, learning rate and schedule of each parameter group.
    optimizer_plan: OptimizerPlan,
}

impl std::fmt::Debug for FrameRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRun")
            .field("model", &self.config.card.name)
            .field("train", &self.train.len())
            .field("val", &self.val.len())
            .finish_non_exhaustive()
    }
}

impl FrameRun {
    /// A run of `config` on `folder`, split as the config says.
    pub fn new(
        config: MmTrainConfig,
        opts: FrameRunOptions,
        folder: MmFolder,
    ) -> Result<Self, TrainError> {
        if folder.classes != config.card.data.classes {
            return Err(TrainError::Splits(format!(
                "{} has classes {:?}, the model {:?}",
                folder.root.join("classes.txt").display(),
                folder.classes,
                config.card.data.classes
            )));
        }
        let (seed, fraction) = config.dataset.split();
        let (train, val) = folder.split(seed, fraction);
        if train.is_empty() || val.is_empty() {
            return Err(TrainError::Splits(format!(
                "{} images split into {} for training and {} for validation: both need at least one",
                folder.pool.samples.len(),
                train.len(),
                val.len()
            )));
        }
        let optimizer_plan = config.train.optimizer_plan()?;
        Ok(Self {
            device: opts
                .device
                .burn_training(config.train.gradient_checkpointing)?,
            inference_device: opts.device.burn()?,
            optimizer_plan,
            config,
            opts,
            folder,
            train,
            val,
        })
    }

    /// The validation images.
    pub fn val_samples(&self) -> &[MmSample] {
        &self.val
    }

    fn fresh_optimizer(&self) -> ModuleOptimizer {
        self.optimizer_plan.init()
    }

    fn fresh_model(&self) -> Result<MmDetector, TrainError> {
        let config = self
            .config
            .card
            .detector_config()
            .map_err(|e| TrainError::Model(e.to_string()))?;
        // Drawn on flex and moved: the same initial weights on every backend.
        let init_device = TrainDevice::init_device(&self.device);
        init_device.seed(self.config.train.seed);
        self.device.seed(self.config.train.seed);
        let model = match &self.config.train.pretrained {
            Some(dir) => {
                let (_, backbone) =
                    prism_models::mit::checkpoint::load_backbone(dir, &init_device)?;
                config.init_pretrained(backbone, &init_device)
            }
            None => config.init(&init_device),
        };
        model
            .map(|m| crate::device::fork_initialised(m, &self.device))
            .map_err(|e| TrainError::Model(e.to_string()))
    }

    /// Trains until the schedule ends (or `stop_after` steps), calling `on_event` as it goes.
    pub fn run(&self, mut on_event: impl FnMut(&Event)) -> Result<TrainSummary, TrainError> {
        let run_dir = &self.opts.run_dir;
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        std::fs::write(run_dir.join("config.toml"), self.config.to_toml())
            .map_err(|e| TrainError::io(run_dir, e))?;
        let fresh = self.fresh_model()?;
        self.optimizer_plan.check_against(&fresh)?;
        let resume_from = if self.opts.resume {
            find_checkpoint(&last_checkpoint(run_dir))
        } else {
            None
        };
        let (mut model, mut optim, state) = match &resume_from {
            Some(dir) => resumable::load(dir, fresh, self.fresh_optimizer())?,
            None => (
                fresh,
                self.fresh_optimizer(),
                FrameTrainerState {
                    step: 0,
                    best_map: None,
                    elapsed_s: 0.0,
                    loss_scale: None,
                },
            ),
        };
        let start = state.step;
        let mut best = state.best_map;
        let elapsed0 = state.elapsed_s;
        let mut scaler = LossScaler::resumed(self.config.train.precision, state.loss_scale);
        let mut log = MetricsLog::open(run_dir, resume_from.as_ref().map(|_| start))
            .map_err(|e| TrainError::io(run_dir, e))?;
        let t = self.config.train.clone();
        on_event(&Event::Started {
            start_step: start,
            total_steps: t.steps,
            resumed: resume_from.is_some(),
        });
        let [h, w] = self.config.card.model.input_size;
        let loss_fn = YoloxLoss::new(
            [h, w],
            &model.yolox_head.strides,
            self.config.card.model.num_classes,
        );
        let augment = MmAugment {
            zoom: if t.augment { t.zoom } else { [1.0, 1.0] },
            flip: if t.augment { 0.5 } else { 0.0 },
        };
        let mut cache = ImageCache::default();
        let session = Instant::now();
        // A run resumed at its last step reports the validation it logged there.
        let mut last_val = log.resumed_validation();
        let mut step = start;
        let stop_at = self
            .opts
            .stop_after
            .map_or(t.steps, |n| (start + n).min(t.steps));
        while step < stop_at {
            let t0 = Instant::now();
            // A GPU step's memory is on the device, not in the resident set.
            let peak = self.opts.device.is_cpu().then(StepPeak::start);
            let lr = self.optimizer_plan.base_lr(step);
            let mut accumulator = GradientsAccumulator::<MmDetector>::new();
            let (mut loss, mut iou, mut obj, mut cls) = (0.0, 0.0, 0.0, 0.0);
            let (mut num_fg, mut num_gt) = (0, 0);
            let loss_scale = scaler.map(|s| s.scale);
            for micro in 0..t.accumulate {
                let ids = self.batch_ids(step * t.accumulate + micro);
                let mut samples = Vec::with_capacity(ids.len());
                for &i in &ids {
                    let (image, boxes) = cache.get(&self.folder, &self.train[i])?;
                    let mut rng = SplitMix64::new(mix(mix(t.seed, step as u64), i as u64));
                    samples.push(augment.apply(&image, &boxes, [w, h], &mut rng));
                }
                let batch = frame_batch(&samples, &self.device);
                // bf16 / fp16: this micro-batch runs on its own half-precision copy of the
                // weights (each backward consumes the copy's casts); fp16 scales the loss.
                let compute = t.precision.compute_copy(&model);
                let raw = t
                    .precision
                    .to_f32(compute.forward(t.precision.to_compute(batch.images)));
                let out = loss_fn.forward(raw, &batch.targets);
                let scale = 1.0 / t.accumulate as f32;
                loss += (out.iou + out.obj + out.cls) * scale;
                iou += out.iou * scale;
                obj += out.obj * scale;
                cls += out.cls * scale;
                num_fg += out.num_fg;
                num_gt += out.num_gt;
                let grads = (out.total * (scale * loss_scale.unwrap_or(1.0))).backward();
                accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
            }
            let mut grads = accumulator.grads();
            let take = take_step(&mut scaler, &model, &mut grads);
            let mut grad_norm = 0.0;
            if take {
                grad_norm = clip_global_norm(&model, &mut grads, t.grad_clip);
                model = optim.step(self.optimizer_plan.module_lr(step), model, grads);
            }
            model = t.precision.restore_buffers(model);
            step += 1;
            let dt = t0.elapsed().as_secs_f64();
            let record = StepRecord {
                step,
                loss,
                iou,
                obj,
                cls,
                lr,
                grad_norm,
                num_fg,
                num_gt,
                windows_per_s: (t.batch_size * t.accumulate) as f64 / dt.max(1e-9),
                elapsed_s: elapsed0 + session.elapsed().as_secs_f64(),
                peak_rss_mib: peak.and_then(StepPeak::peak_mib),
                group_lr: self.optimizer_plan.named_group_lrs(step - 1),
                loss_scale,
                skipped: !take,
            };
            if !record.loss.is_finite() {
                return Err(TrainError::Diverged {
                    step,
                    loss: record.loss,
                });
            }
            log.append(&Record::Train(record.clone()))
                .map_err(|e| TrainError::io(log.path(), e))?;
            on_event(&Event::Step(record));

            if step == t.steps || (t.val_every > 0 && step % t.val_every == 0) {
                let val = self.validate(
                    &model.valid(),
                    step,
                    elapsed0 + session.elapsed().as_secs_f64(),
                )?;
                log.append(&Record::Val(val.clone()))
                    .map_err(|e| TrainError::io(log.path(), e))?;
                on_event(&Event::Validated(val.clone()));
                if best.is_none_or(|(b, _)| val.map > b) {
                    best = Some((val.map, step));
                    save_checkpoint(&model.valid(), &self.config.card, &best_checkpoint(run_dir))?;
                }
                last_val = Some(val);
            }
            if step % t.checkpoint_every.max(1) == 0 || step == stop_at {
                let dir = last_checkpoint(run_dir);
                let state = FrameTrainerState {
                    step,
                    best_map: best,
                    elapsed_s: elapsed0 + session.elapsed().as_secs_f64(),
                    loss_scale: scaler,
                };
                resumable::save(&dir, &self.config.card.to_toml(), &model, &optim, &state)?;
                on_event(&Event::Checkpoint { step, dir });
            }
        }
        crate::curves::draw_labelled(run_dir, crate::curves::FRAME_RUN)?;
        Ok(TrainSummary {
            steps_done: step,
            total_steps: t.steps,
            last_val,
            best_ap50: best,
            run_dir: run_dir.clone(),
        })
    }

    /// Indices (into the training images) of micro-batch `k`: epoch by epoch, each epoch a
    /// seeded shuffle of every image.
    fn batch_ids(&self, k: usize) -> Vec<usize> {
        let n = self.train.len();
        let bs = self.config.train.batch_size;
        (k * bs..(k + 1) * bs)
            .map(|slot| {
                let (epoch, pos) = (slot / n, slot % n);
                epoch_order(self.config.train.seed, epoch, n)[pos]
            })
            .collect()
    }

    /// COCO metrics of `model` on the validation split.
    fn validate(
        &self,
        model: &MmDetector,
        step: usize,
        elapsed_s: f64,
    ) -> Result<ValRecord, TrainError> {
        let metrics = evaluate_burn(
            model,
            &self.folder,
            &self.val,
            self.config.card.model.input_size,
            &self.inference_device,
            |_| {},
        )?;
        Ok(ValRecord {
            step,
            map: metrics.ap(),
            ap50: metrics.ap50(),
            ap75: metrics.ap75(),
            elapsed_s,
        })
    }
}

/// Scores `model` (no autodiff) on `samples` with the COCO protocol of [`crate::frame_eval`].
pub fn evaluate_burn(
    model: &MmDetector,
    folder: &MmFolder,
    samples: &[MmSample],
    [h, w]: [usize; 2],
    device: &Device,
    on_images: impl FnMut(usize),
) -> Result<prism_eval::coco::CocoMetrics, TrainError> {
    evaluate_samples(
        folder,
        samples,
        [h, w],
        &FrameEvalOptions::default(),
        |input, n| {
            let x = burn::tensor::Tensor::<4>::from_data(
                burn::tensor::TensorData::new(
                    input,
                    [n, prism_data::multimodal::MM_CHANNELS, h, w],
                ),
                device,
            );
            model
                .forward(x)
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Device(format!("{e:?}")))
        },
        on_images,
    )
}

/// Epoch `epoch`'s order of `n` images.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(mix(seed ^ 0x6d6d_6261_7463_6821, epoch as u64));
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Training images kept in memory up to [`CACHE_BYTES`].
#[derive(Default)]
struct ImageCache {
    images: std::collections::HashMap<PathBuf, (MmImage, Vec<YoloBox>)>,
    bytes: usize,
}

impl ImageCache {
    fn get(
        &mut self,
        folder: &MmFolder,
        sample: &MmSample,
    ) -> Result<(MmImage, Vec<YoloBox>), TrainError> {
        if let Some(hit) = self.images.get(&sample.image) {
            return Ok(hit.clone());
        }
        let loaded = folder.load(sample)?;
        if self.bytes + loaded.0.chw.len() <= CACHE_BYTES {
            self.bytes += loaded.0.chw.len();
            self.images.insert(sample.image.clone(), loaded.clone());
        }
        Ok(loaded)
    }
}

/// The checkpoint folder to resume from, if there is one.
pub use crate::resumable::find as find_checkpoint;

/// The dataset folder of `config`: the folder itself for `kind = "folder"`; for synthetic
/// scenes, `data_dir` after generating them there once (into a staging folder renamed into
/// place, so an interrupted generation is redone, never half-read).
pub fn open_dataset(
    config: &MmTrainConfig,
    data_dir: &Path,
    mut on_note: impl FnMut(&str),
) -> Result<MmFolder, TrainError> {
    use crate::mm_config::MmDatasetSection;
    if let MmDatasetSection::Synthetic {
        images, size, seed, ..
    } = &config.dataset
    {
        if !data_dir.join("classes.txt").is_file() {
            on_note(&format!(
                "generating {images} synthetic scenes ({}x{}, seed {seed}) into {}",
                size[0],
                size[1],
                data_dir.display()
            ));
            let options = prism_data::multimodal::SynthMmOptions {
                images: *images,
                seed: *seed,
                size: *size,
                clutter: true,
            };
            replace_folder(data_dir, |staging| {
                prism_data::multimodal::synth_mm(staging, &options)
                    .map(|_| ())
                    .map_err(|e| prism_models::checkpoint::CheckpointError::Weights {
                        path: staging.to_path_buf(),
                        message: e.to_string(),
                    })
            })?;
        }
    }
    Ok(MmFolder::open(data_dir)?)
}

/// Where synthetic scenes of `config` go by default: one folder per generator setting, so
/// cards that train on the same scenes share them.
pub fn default_synthetic_dir(config: &MmTrainConfig) -> Option<PathBuf> {
    match &config.dataset {
        crate::mm_config::MmDatasetSection::Synthetic {
            images, size, seed, ..
        } => Some(PathBuf::from("data").join(format!(
            "synth-mm-{}x{}-{images}-seed{seed}",
            size[0], size[1]
        ))),
        crate::mm_config::MmDatasetSection::Folder { root, .. } => root.clone(),
    }
}
