//! The training loop: RVT's mixed random / streaming clips, truncated BPTT with the state
//! detached between batches, the YOLOX loss on labelled windows, AdamW with global-norm clipping
//! and the one-cycle schedule; resumable checkpoints, a metrics log, validation mAP and curves.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use prism_data::{assemble, ClipBatch, ClipSampler, PreparedSplit, SamplerConfig};
use prism_eval::prophesee::BoxFilter;
use prism_models::rvt::{Rvt, RvtState};

use crate::clip::clip_global_norm;
use crate::config::TrainConfig;
use crate::device::TrainDevice;
use crate::evaluate::{predict_split, BurnRunner, EvalOptions};
use crate::loss::YoloxLoss;
use crate::memory::StepPeak;
use crate::metrics_log::{MetricsLog, Record, StepRecord, ValRecord};
use crate::optim::OptimizerPlan;
use crate::precision::{take_step, LossScaler};
use crate::run_checkpoint::{self, Snapshot, TrainerState};
use crate::simota::GtBox;
use crate::TrainError;

/// Where a run lives and how it was started.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run folder: checkpoints, `metrics.jsonl`, `curves.png`, `config.toml`.
    pub run_dir: PathBuf,
    /// Continue from `run_dir/checkpoints/last` if present.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many steps in this session; for tests and for
    /// splitting a long run.
    pub stop_after: Option<usize>,
    /// Label filter of the validation protocol.
    pub eval_filter: BoxFilter,
    /// Where to train (validation runs there too).
    pub device: TrainDevice,
}

/// What the loop reports to its caller (the CLI draws the progress bar from it).
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        start_step: usize,
        total_steps: usize,
        resumed: bool,
    },
    Step(StepRecord),
    Validated(ValRecord),
    Checkpoint {
        step: usize,
        dir: PathBuf,
    },
}

/// The end of a session of training.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps_done: usize,
    pub total_steps: usize,
    pub last_val: Option<ValRecord>,
    pub best_ap50: Option<(f64, usize)>,
    pub run_dir: PathBuf,
}

/// Names of the checkpoint folders inside a run.
pub fn last_checkpoint(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints").join("last")
}

pub fn best_checkpoint(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints").join("best")
}

/// A training session over prepared train / validation splits.
pub struct Trainer<'a> {
    config: TrainConfig,
    opts: RunOptions,
    train: &'a PreparedSplit,
    val: &'a PreparedSplit,
    device: Device,
    /// The same device without autodiff, for validation.
    inference_device: Device,
    loss: YoloxLoss,
    /// Optimizer, learning rate and schedule of each parameter group.
    optimizer_plan: OptimizerPlan,
}

impl<'a> Trainer<'a> {
    pub fn new(
        config: TrainConfig,
        opts: RunOptions,
        train: &'a PreparedSplit,
        val: &'a PreparedSplit,
    ) -> Result<Self, TrainError> {
        let first = train
            .sequences
            .first()
            .ok_or(TrainError::Splits("the training split is empty".into()))?;
        let input_hw = config.card.model.input_size;
        if first.meta.input_hw != input_hw || first.meta.channels != 2 * config.card.data.bins {
            return Err(TrainError::Splits(format!(
                "prepared data is {}x{:?}, the model takes {}x{:?}: prepare it for this card",
                first.meta.channels,
                first.meta.input_hw,
                2 * config.card.data.bins,
                input_hw
            )));
        }
        let optimizer_plan = config.train.optimizer_plan()?;
        Ok(Self {
            loss: YoloxLoss::new(
                input_hw,
                &config.card.rvt_config().strides(),
                config.card.model.num_classes,
            ),
            device: opts
                .device
                .burn_training(config.train.gradient_checkpointing)?,
            inference_device: opts.device.burn()?,
            optimizer_plan,
            config,
            opts,
            train,
            val,
        })
    }

    fn sampler_config(&self) -> SamplerConfig {
        let t = &self.config.train;
        let mut augment = prism_data::AugmentConfig::default();
        if !t.augment {
            augment.hflip_p = 0.0;
            augment.zoom_p_random = 0.0;
            augment.zoom_p_stream = 0.0;
        }
        SamplerConfig {
            batch_size: t.batch_size,
            seq_len: t.seq_len,
            random_weight: t.random_weight,
            stream_weight: t.stream_weight,
            seed: t.seed,
            augment,
        }
    }

    fn fresh_optimizer(&self) -> ModuleOptimizer {
        self.optimizer_plan.init()
    }

    /// Trains until the schedule ends (or `stop_after` steps), calling `on_event` as it goes.
    pub fn run(&self, mut on_event: impl FnMut(&Event)) -> Result<TrainSummary, TrainError> {
        let run_dir = &self.opts.run_dir;
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        std::fs::write(run_dir.join("config.toml"), self.config.to_toml())
            .map_err(|e| TrainError::io(run_dir, e))?;
        let rvt_config = self.config.card.rvt_config();
        // Same seed, same initial weights, on every backend: runs are reproducible.
        let init_device = TrainDevice::init_device(&self.device);
        init_device.seed(self.config.train.seed);
        self.device.seed(self.config.train.seed);
        let fresh = crate::device::fork_initialised(rvt_config.init(&init_device), &self.device);
        let fresh = Rvt {
            yolox_head: fresh.yolox_head.with_prior_biases(0.01),
            ..fresh
        };
        self.optimizer_plan.check_against(&fresh)?;

        let resume_from = if self.opts.resume {
            run_checkpoint::find(&last_checkpoint(run_dir))
        } else {
            None
        };
        let precision = self.config.train.precision;
        let mut scaler = LossScaler::for_precision(precision);
        let (mut model, mut optim, mut sampler, mut carried, mut best, start, elapsed0) =
            match &resume_from {
                Some(dir) => {
                    let r = run_checkpoint::load(dir, fresh, self.fresh_optimizer(), &self.device)?;
                    let sampler = ClipSampler::restore(
                        self.sampler_config(),
                        self.train,
                        r.trainer.sampler.clone(),
                    )?;
                    scaler = LossScaler::resumed(precision, r.trainer.loss_scale);
                    (
                        r.model,
                        r.optimizer,
                        sampler,
                        r.stream_state,
                        r.trainer.best_ap50,
                        r.trainer.step,
                        r.trainer.elapsed_s,
                    )
                }
                None => {
                    let sampler = ClipSampler::new(self.sampler_config(), self.train)?;
                    (fresh, self.fresh_optimizer(), sampler, None, None, 0, 0.0)
                }
            };
        let mut log = MetricsLog::open(run_dir, resume_from.as_ref().map(|_| start))
            .map_err(|e| TrainError::io(run_dir, e))?;
        let total = self.config.train.steps;
        on_event(&Event::Started {
            start_step: start,
            total_steps: total,
            resumed: resume_from.is_some(),
        });

        let session = Instant::now();
        // A run resumed at its last step reports the validation it logged there.
        let mut last_val = log.resumed_validation();
        let mut step = start;
        let stop_at = self
            .opts
            .stop_after
            .map_or(total, |n| (start + n).min(total));
        while step < stop_at {
            let t0 = Instant::now();
            // A GPU step's memory is on the device, not in the resident set.
            let peak = self.opts.device.is_cpu().then(StepPeak::start);
            let batch = assemble(&sampler.next_batch(self.train), self.train);
            let lr = self.optimizer_plan.base_lr(step);
            let (loss, new_state) = self.forward_batch(&model, &batch, carried.take())?;
            carried = Some(new_state);
            let mut grad_norm = 0.0;
            let loss_scale = scaler.map(|s| s.scale);
            let mut skipped = false;
            if let Some(out) = &loss {
                let grads = match loss_scale {
                    Some(scale) => (out.total.clone() * scale).backward(),
                    None => out.total.backward(),
                };
                let mut grads = GradientsParams::from_grads(grads, &model);
                let take = take_step(&mut scaler, &model, &mut grads);
                if take {
                    grad_norm = clip_global_norm(&model, &mut grads, self.config.train.grad_clip);
                    model = optim.step(self.optimizer_plan.module_lr(step), model, grads);
                } else {
                    skipped = true;
                }
            }
            model = precision.restore_buffers(model);
            step += 1;
            let dt = t0.elapsed().as_secs_f64();
            let record = StepRecord {
                step,
                loss: loss.as_ref().map_or(0.0, |l| l.iou + l.obj + l.cls),
                iou: loss.as_ref().map_or(0.0, |l| l.iou),
                obj: loss.as_ref().map_or(0.0, |l| l.obj),
                cls: loss.as_ref().map_or(0.0, |l| l.cls),
                lr,
                grad_norm,
                num_fg: loss.as_ref().map_or(0, |l| l.num_fg),
                num_gt: loss.as_ref().map_or(0, |l| l.num_gt),
                windows_per_s: (batch.batch * batch.seq_len) as f64 / dt.max(1e-9),
                elapsed_s: elapsed0 + session.elapsed().as_secs_f64(),
                peak_rss_mib: peak.and_then(StepPeak::peak_mib),
                group_lr: self.optimizer_plan.named_group_lrs(step - 1),
                loss_scale,
                skipped,
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

            let t = &self.config.train;
            let validate = step == total || (t.val_every > 0 && step % t.val_every == 0);
            if validate {
                let val =
                    self.validate(&model, step, elapsed0 + session.elapsed().as_secs_f64())?;
                log.append(&Record::Val(val.clone()))
                    .map_err(|e| TrainError::io(log.path(), e))?;
                on_event(&Event::Validated(val.clone()));
                if best.is_none_or(|(b, _)| val.ap50 > b) {
                    best = Some((val.ap50, step));
                    let dir = best_checkpoint(run_dir);
                    prism_models::checkpoint::save(&model.valid(), &self.config.card, &dir)?;
                }
                last_val = Some(val);
            }
            if step % t.checkpoint_every.max(1) == 0 || step == stop_at {
                let dir = last_checkpoint(run_dir);
                let trainer = TrainerState {
                    step,
                    sampler: sampler.state(),
                    best_ap50: best,
                    elapsed_s: elapsed0 + session.elapsed().as_secs_f64(),
                    stream_state_shapes: None,
                    loss_scale: scaler,
                };
                let snap = Snapshot {
                    model: &model,
                    card: &self.config.card,
                    optimizer: &optim,
                    stream_state: carried.as_ref(),
                    trainer,
                };
                run_checkpoint::save(&dir, snap)?;
                on_event(&Event::Checkpoint { step, dir });
            }
        }
        crate::curves::draw(run_dir)?;
        Ok(TrainSummary {
            steps_done: step,
            total_steps: total,
            last_val,
            best_ap50: best,
            run_dir: run_dir.clone(),
        })
    }

    /// Forward over a clip batch; returns the loss over labelled windows (None if the batch has
    /// no label) and the detached state to carry into the next batch.
    fn forward_batch(
        &self,
        model: &Rvt,
        batch: &ClipBatch,
        carried: Option<RvtState>,
    ) -> Result<(Option<crate::loss::LossOutput>, RvtState), TrainError> {
        let [h, w] = batch.input_hw;
        let (b, c) = (batch.batch, batch.channels);
        let rvt_config = self.config.card.rvt_config();
        let keep: Vec<bool> = batch.reset.iter().map(|r| !r).collect();
        let state = match carried {
            Some(s) if s.h[0].dims()[0] == b => s.reset_where(&keep),
            _ => RvtState::zeros(&rvt_config, b, [h, w], &self.device),
        };
        // bf16: the network runs on a bfloat16 copy of the weights, inputs and state.
        let precision = self.config.train.precision;
        let compute_model = precision.compute_copy(model);
        let model = &compute_model;
        let mut state = state.map(|t| precision.to_compute(t));
        let mut raws = Vec::new();
        let mut targets: Vec<Vec<GtBox>> = Vec::new();
        for t in 0..batch.seq_len {
            let x = Tensor::<4>::from_data(
                TensorData::new(batch.windows[t].clone(), [b, c, h, w]),
                &self.device,
            );
            let x = precision.to_compute(x);
            let (raw, next) = if model.takes_duration() {
                // SSM memory: each window's real duration drives the discretization.
                let dt_s = Tensor::<2>::from_data(
                    TensorData::new(batch.durations_s[t].clone(), [b, 1]),
                    &self.device,
                );
                model.forward_timed(x, state, precision.to_compute(dt_s))
            } else {
                model.forward(x, state)
            };
            let raw = precision.to_f32(raw);
            state = next;
            let labelled: Vec<usize> = (0..b)
                .filter(|&i| batch.valid[t][i] && batch.labels[t][i].is_some())
                .collect();
            if labelled.is_empty() {
                continue;
            }
            let index: Vec<i64> = labelled.iter().map(|&i| i as i64).collect();
            let index =
                Tensor::<1, Int>::from_data(TensorData::new(index, [labelled.len()]), &self.device);
            raws.push(raw.select(0, index));
            for &i in &labelled {
                let boxes = batch.labels[t][i].as_deref().unwrap_or(&[]);
                targets.push(
                    boxes
                        .iter()
                        .map(|bx| GtBox {
                            cx: bx.x + bx.w / 2.0,
                            cy: bx.y + bx.h / 2.0,
                            w: bx.w,
                            h: bx.h,
                            class_id: bx.class_id as usize,
                        })
                        .collect(),
                );
            }
        }
        let loss = (!raws.is_empty()).then(|| self.loss.forward(Tensor::cat(raws, 0), &targets));
        // The carried state (and a checkpoint of it) stays float32.
        Ok((loss, state.detach().map(|t| precision.to_f32(t))))
    }

    /// mAP on the validation split with the current weights.
    fn validate(&self, model: &Rvt, step: usize, elapsed_s: f64) -> Result<ValRecord, TrainError> {
        let meta = &self
            .val
            .sequences
            .first()
            .ok_or(TrainError::Splits("the validation split is empty".into()))?
            .meta;
        let mut runner = BurnRunner::on(
            model,
            self.config.card.rvt_config(),
            [meta.channels, meta.input_hw[0], meta.input_hw[1]],
            self.inference_device.clone(),
        );
        let preds = predict_split(&mut runner, self.val, &EvalOptions::default())?;
        let metrics = crate::evaluate::score(
            &preds,
            &self.config.card.data.classes,
            meta.sensor,
            &self.opts.eval_filter,
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
