//! The training run of a next-vector sequence model, as `seeds/sequence-models-comparison.md`
//! trains them: epochs of shuffled (context → next vector) samples, cosine or InfoNCE loss, Adam
//! at a constant learning rate, the validation cosine after every epoch, the best epoch kept
//! (`checkpoints/best`) and early stopping after `patience` epochs without a better one.
//!
//! A run folder holds `config.toml`, `metrics.jsonl` (one line per epoch), `curves.png` and
//! `checkpoints/{best,last}`; `last` is resumable (weights, Adam's moments, the epoch and the
//! early-stopping state). Epoch `e`'s order is a shuffle seeded by `(seed, e)` and its dropout
//! masks come from a generator seeded the same way, so a resumed run trains exactly the epochs an
//! uninterrupted one would have.

use crate::precision::{take_step, LossScaler};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use prism_data::sequence::{DocumentSplit, SequenceBatch, VectorCorpus};
use prism_events::synth::rng::{mix, SplitMix64};
use prism_models::seq::card::save_checkpoint;
use prism_models::seq::{l2_normalize, SeqModel};
use serde::{Deserialize, Serialize};

use crate::resumable;
use crate::seq_config::{SeqLoss, SeqTrainConfig};
use crate::trainer::{best_checkpoint, last_checkpoint};
use crate::{TrainDevice, TrainError};

/// Samples per forward pass when scoring (no gradients, so larger than a training batch).
const EVAL_BATCH: usize = 512;

/// Where a run lives and how it was started.
#[derive(Debug, Clone)]
pub struct SeqRunOptions {
    pub run_dir: PathBuf,
    /// Continue from `run_dir/checkpoints/last` if present.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many epochs in this session.
    pub stop_after: Option<usize>,
    pub device: TrainDevice,
}

/// One epoch, as `metrics.jsonl` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    /// Mean cosine between prediction and target on the training batches (dropout on).
    pub train_cosine: f64,
    pub val_loss: f64,
    /// Mean cosine between prediction and target on the validation documents.
    pub val_cosine: f64,
    pub samples_per_s: f64,
    pub elapsed_s: f64,
    /// fp16: the loss scale at the end of the epoch and the batches whose gradients overflowed
    /// (no update made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_batches: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a run reports as it goes.
#[derive(Debug, Clone)]
pub enum SeqEvent {
    Started {
        start_epoch: usize,
        epochs: usize,
        batches_per_epoch: usize,
        resumed: bool,
    },
    /// A batch of epoch `epoch` (1-based) done.
    Batch {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    Epoch {
        record: EpochRecord,
        /// The validation cosine improved: this epoch is the new best checkpoint.
        best: bool,
    },
    /// `patience` epochs without a better validation cosine.
    EarlyStop { epoch: usize, best_epoch: usize },
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct SeqSummary {
    pub epochs_done: usize,
    pub epochs: usize,
    /// Best validation cosine and its epoch.
    pub best: Option<(f64, usize)>,
    pub stopped_early: bool,
    pub elapsed_s: f64,
    pub run_dir: PathBuf,
}

/// Where training stands, saved with each resumable checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeqTrainerState {
    epoch: usize,
    best: Option<(f64, usize)>,
    /// Epochs since the best one.
    stale: usize,
    elapsed_s: f64,
    /// fp16: the loss scaler's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<LossScaler>,
}

/// A training session on a vector corpus.
pub struct SeqRun {
    config: SeqTrainConfig,
    opts: SeqRunOptions,
    corpus: VectorCorpus,
    split: DocumentSplit,
    train: Vec<usize>,
    val: Vec<usize>,
    device: Device,
    inference_device: Device,
}

impl std::fmt::Debug for SeqRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} train / {} val documents, {} / {} samples, {}-wide vectors",
            self.split.train.len(),
            self.split.val.len(),
            self.train.len(),
            self.val.len(),
            self.corpus.dim
        )
    }
}

impl SeqRun {
    pub fn new(
        config: SeqTrainConfig,
        opts: SeqRunOptions,
        corpus: VectorCorpus,
    ) -> Result<Self, TrainError> {
        if corpus.dim != config.model.dim {
            return Err(TrainError::Splits(format!(
                "the corpus holds {}-wide vectors, the model reads {} (set --set model.dim={})",
                corpus.dim, config.model.dim, corpus.dim
            )));
        }
        let split = corpus.split(config.train.val_fraction, config.train.split_seed)?;
        let context = config.model.context;
        let train = corpus.targets(&split.train, context);
        let val = corpus.targets(&split.val, context);
        if train.is_empty() || val.is_empty() {
            return Err(TrainError::Splits(format!(
                "{} training and {} validation samples with {context} vectors of context: both need at least one",
                train.len(),
                val.len()
            )));
        }
        Ok(Self {
            device: opts.device.burn_autodiff()?,
            inference_device: opts.device.burn()?,
            config,
            opts,
            corpus,
            split,
            train,
            val,
        })
    }

    /// The documents of each side of the split.
    pub fn split(&self) -> &DocumentSplit {
        &self.split
    }

    fn fresh_optimizer(&self) -> ModuleOptimizer {
        AdamConfig::new().init()
    }

    fn fresh_model(&self) -> Result<SeqModel, TrainError> {
        // Drawn on flex and moved: the same initial weights on every backend.
        let init_device = TrainDevice::init_device(&self.device);
        init_device.seed(self.config.train.seed);
        self.config
            .card()
            .init(&init_device)
            .map(|m| crate::device::fork_initialised(m, &self.device))
            .map_err(|e| TrainError::Model(e.to_string()))
    }

    /// Trains until the last epoch, early stopping or `stop_after`, calling `on_event`.
    pub fn run(&self, mut on_event: impl FnMut(&SeqEvent)) -> Result<SeqSummary, TrainError> {
        let run_dir = &self.opts.run_dir;
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        std::fs::write(run_dir.join("config.toml"), self.config.to_toml())
            .map_err(|e| TrainError::io(run_dir, e))?;
        let fresh = self.fresh_model()?;
        let resume_from = if self.opts.resume {
            find_checkpoint(&last_checkpoint(run_dir))
        } else {
            None
        };
        let (mut model, mut optim, mut state) = match &resume_from {
            Some(dir) => resumable::load(dir, fresh, self.fresh_optimizer())?,
            None => (
                fresh,
                self.fresh_optimizer(),
                SeqTrainerState {
                    epoch: 0,
                    best: None,
                    stale: 0,
                    elapsed_s: 0.0,
                    loss_scale: None,
                },
            ),
        };
        let mut log = EpochLog::open(run_dir, resume_from.as_ref().map(|_| state.epoch))?;
        let t = self.config.train.clone();
        let precision = t.precision;
        let mut scaler = LossScaler::resumed(precision, state.loss_scale);
        let batches = self.train.len().div_ceil(t.batch_size);
        on_event(&SeqEvent::Started {
            start_epoch: state.epoch,
            epochs: t.epochs,
            batches_per_epoch: batches,
            resumed: resume_from.is_some(),
        });
        let session = Instant::now();
        let elapsed0 = state.elapsed_s;
        let stop_at = self
            .opts
            .stop_after
            .map_or(t.epochs, |n| (state.epoch + n).min(t.epochs));
        let done = |state: &SeqTrainerState| t.patience > 0 && state.stale >= t.patience;
        let mut stopped_early = done(&state);
        while state.epoch < stop_at && !stopped_early {
            let epoch = state.epoch + 1;
            let t0 = Instant::now();
            let order = epoch_order(t.seed, epoch, &self.train);
            // Dropout draws from the backend's generator: seeding it per epoch makes the masks a
            // function of (seed, epoch) too, so a resumed run is exact.
            self.device.seed(mix(mix(t.seed, 0xD80_9007), epoch as u64));
            let (mut loss_sum, mut cos_sum, mut seen) = (0.0, 0.0, 0usize);
            let mut skipped = 0;
            for (b, targets) in order.chunks(t.batch_size).enumerate() {
                let batch = self.corpus.batch(targets, self.config.model.context);
                let (context, target) = tensors(&batch, &self.device);
                // bf16 / fp16: the batch runs on a half-precision copy of the weights.
                let compute = precision.compute_copy(&model);
                let prediction = precision.to_f32(compute.forward(precision.to_compute(context)));
                let (loss, cosine) = seq_loss(prediction, target, t.loss, t.temperature);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    return Err(TrainError::Diverged {
                        step: epoch,
                        loss: value as f32,
                    });
                }
                let n = targets.len();
                loss_sum += value * n as f64;
                cos_sum += cosine.into_scalar::<f32>() as f64 * n as f64;
                seen += n;
                let grads = match scaler {
                    Some(s) => (loss * s.scale).backward(),
                    None => loss.backward(),
                };
                let mut grads = GradientsParams::from_grads(grads, &model);
                let take = take_step(&mut scaler, &model, &mut grads);
                if take {
                    model = optim.step(t.lr, model, grads);
                } else {
                    skipped += 1;
                }
                model = precision.restore_buffers(model);
                on_event(&SeqEvent::Batch {
                    epoch,
                    batch: b + 1,
                    loss: value,
                });
            }
            let train_s = t0.elapsed().as_secs_f64();
            let scores = score(
                &model.valid(),
                &self.corpus,
                &self.val,
                self.config.model.context,
                t.loss,
                t.temperature,
                &self.inference_device,
            );
            state.epoch = epoch;
            state.elapsed_s = elapsed0 + session.elapsed().as_secs_f64();
            let record = EpochRecord {
                epoch,
                train_loss: loss_sum / seen.max(1) as f64,
                train_cosine: cos_sum / seen.max(1) as f64,
                val_loss: scores.loss,
                val_cosine: scores.cosine,
                samples_per_s: seen as f64 / train_s.max(1e-9),
                elapsed_s: state.elapsed_s,
                loss_scale: scaler.map(|s| s.scale),
                skipped_batches: skipped,
            };
            state.loss_scale = scaler;
            log.append(&record)?;
            let best = state.best.is_none_or(|(b, _)| record.val_cosine > b);
            if best {
                state.best = Some((record.val_cosine, epoch));
                state.stale = 0;
                save_checkpoint(
                    &model.valid(),
                    &self.config.card(),
                    &best_checkpoint(run_dir),
                )?;
            } else {
                state.stale += 1;
            }
            on_event(&SeqEvent::Epoch { record, best });
            let card = self.config.card().to_toml();
            resumable::save(&last_checkpoint(run_dir), &card, &model, &optim, &state)?;
            if done(&state) {
                stopped_early = true;
                on_event(&SeqEvent::EarlyStop {
                    epoch,
                    best_epoch: state.best.map_or(0, |(_, e)| e),
                });
            }
        }
        draw_curves(run_dir)?;
        Ok(SeqSummary {
            epochs_done: state.epoch,
            epochs: t.epochs,
            best: state.best,
            stopped_early,
            elapsed_s: state.elapsed_s,
            run_dir: run_dir.clone(),
        })
    }
}

/// Epoch `epoch`'s order of the training samples: a Fisher-Yates shuffle seeded by (seed, epoch).
fn epoch_order(seed: u64, epoch: usize, samples: &[usize]) -> Vec<usize> {
    let mut order = samples.to_vec();
    let mut rng = SplitMix64::new(mix(mix(seed, 0x5E0_0DE5), epoch as u64));
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The batch as tensors on `device`: contexts `[B, C, D]` and targets `[B, D]`.
pub fn tensors(batch: &SequenceBatch, device: &Device) -> (Tensor<3>, Tensor<2>) {
    let context = Tensor::<3>::from_data(
        TensorData::new(
            batch.contexts.clone(),
            [batch.size, batch.context, batch.dim],
        ),
        device,
    );
    let target = Tensor::<2>::from_data(
        TensorData::new(batch.targets.clone(), [batch.size, batch.dim]),
        device,
    );
    (context, target)
}

/// The loss of unit-length `prediction`s against `target`s `[B, D]` (normalised here), and the
/// batch's mean cosine.
pub fn seq_loss(
    prediction: Tensor<2>,
    target: Tensor<2>,
    kind: SeqLoss,
    temperature: f64,
) -> (Tensor<1>, Tensor<1>) {
    let target = l2_normalize(target);
    let cosine = (prediction.clone() * target.clone()).sum_dim(1).mean();
    let loss = match kind {
        SeqLoss::Cosine => cosine.clone().neg().add_scalar(1.0),
        SeqLoss::Infonce => {
            let b = prediction.dims()[0];
            let logits = prediction
                .matmul(target.transpose())
                .div_scalar(temperature);
            let eye = Tensor::<2>::eye(b, &logits.device());
            (log_softmax(logits, 1) * eye)
                .sum()
                .neg()
                .div_scalar(b as f64)
        }
    };
    (loss, cosine)
}

/// Loss and mean cosine over a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub loss: f64,
    pub cosine: f64,
}

/// Scores `model` (no autodiff, no dropout) on the samples whose targets are `targets`, in
/// batches of 512; InfoNCE is averaged per batch, as in training.
pub fn score(
    model: &SeqModel,
    corpus: &VectorCorpus,
    targets: &[usize],
    context: usize,
    loss: SeqLoss,
    temperature: f64,
    device: &Device,
) -> Scores {
    let (mut loss_sum, mut cos_sum) = (0.0, 0.0);
    for chunk in targets.chunks(EVAL_BATCH) {
        let batch = corpus.batch(chunk, context);
        let (c, t) = tensors(&batch, device);
        let (l, cos) = seq_loss(model.forward(c), t, loss, temperature);
        let n = chunk.len() as f64;
        loss_sum += l.into_scalar::<f32>() as f64 * n;
        cos_sum += cos.into_scalar::<f32>() as f64 * n;
    }
    let n = targets.len().max(1) as f64;
    Scores {
        loss: loss_sum / n,
        cosine: cos_sum / n,
    }
}

/// Predictions of `model` for the samples whose targets are `targets`: `[len, dim]` row-major.
pub fn predict(
    model: &SeqModel,
    corpus: &VectorCorpus,
    targets: &[usize],
    context: usize,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(targets.len() * corpus.dim);
    for chunk in targets.chunks(EVAL_BATCH) {
        let batch = corpus.batch(chunk, context);
        let (c, _) = tensors(&batch, device);
        let p: Vec<f32> = model
            .forward(c)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        out.extend(p);
    }
    out
}

/// The epochs of `metrics.jsonl`; on resume, records past the checkpoint's epoch are dropped.
struct EpochLog {
    path: PathBuf,
}

impl EpochLog {
    fn open(run_dir: &Path, keep_until: Option<usize>) -> Result<Self, TrainError> {
        let path = run_dir.join("metrics.jsonl");
        let kept: Vec<EpochRecord> = match keep_until {
            Some(epoch) => read_epochs(&path)?
                .into_iter()
                .filter(|r| r.epoch <= epoch)
                .collect(),
            None => Vec::new(),
        };
        let text: String = kept
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
            .collect();
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path })
    }

    fn append(&mut self, record: &EpochRecord) -> Result<(), TrainError> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(
            file,
            "{}",
            serde_json::to_string(record).unwrap_or_default()
        )
        .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// The epoch records of a run's `metrics.jsonl` (a torn last line is skipped).
pub fn read_epochs(path: &Path) -> Result<Vec<EpochRecord>, TrainError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(TrainError::io(path, e)),
    }
}

/// `curves.png`: training and validation loss, and validation cosine, per epoch.
pub fn draw_curves(run_dir: &Path) -> Result<(), TrainError> {
    let records = read_epochs(&run_dir.join("metrics.jsonl"))?;
    let epochs: Vec<f64> = records.iter().map(|r| r.epoch as f64).collect();
    let col = |f: fn(&EpochRecord) -> f64| records.iter().map(f).collect::<Vec<f64>>();
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut fig = prism_plot::Figure::new(1200, 500)
        .grid(1, 2)
        .title(&format!("training: {name}"));
    fig.panel(0)
        .title("loss")
        .x_label("epoch")
        .line_markers("train", &epochs, &col(|r| r.train_loss))
        .line_markers("validation", &epochs, &col(|r| r.val_loss));
    fig.panel(1)
        .title("cosine(prediction, next vector)")
        .x_label("epoch")
        .line_markers("train", &epochs, &col(|r| r.train_cosine))
        .line_markers("validation", &epochs, &col(|r| r.val_cosine));
    fig.save_png(run_dir.join("curves.png"))
        .map_err(|e| TrainError::Plot(crate::curves::CurvesError::Plot(e)))
}

/// The resumable checkpoint folder, if there is one.
pub use crate::resumable::find as find_checkpoint;

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(rows: &[[f32; 2]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &Device::flex())
    }

    #[test]
    fn cosine_loss_is_one_minus_the_mean_cosine() {
        let p = t2(&[[1.0, 0.0], [0.0, 1.0]]);
        let t = t2(&[[2.0, 0.0], [1.0, 1.0]]);
        let (loss, cos) = seq_loss(p, t, SeqLoss::Cosine, 0.07);
        let expected = (1.0 + std::f32::consts::FRAC_1_SQRT_2) / 2.0;
        assert!((cos.into_scalar::<f32>() - expected).abs() < 1e-6);
        assert!((loss.into_scalar::<f32>() - (1.0 - expected)).abs() < 1e-6);
    }

    #[test]
    fn infonce_matches_a_hand_computed_cross_entropy() {
        let p = t2(&[[1.0, 0.0], [0.0, 1.0]]);
        let t = t2(&[[1.0, 0.0], [0.6, 0.8]]);
        let tau = 0.5;
        let (loss, _) = seq_loss(p, t, SeqLoss::Infonce, tau);
        // Row 0: logits [1, 0.6] / tau, class 0; row 1: logits [0, 0.8] / tau, class 1.
        let ce = |logits: [f64; 2], k: usize| {
            let z = logits.map(|l| (l / tau).exp());
            -((z[k]) / (z[0] + z[1])).ln()
        };
        let expected = (ce([1.0, 0.6], 0) + ce([0.0, 0.8], 1)) / 2.0;
        assert!(
            (loss.into_scalar::<f32>() as f64 - expected).abs() < 1e-5,
            "{expected}"
        );
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let samples: Vec<usize> = (10..60).collect();
        let a = epoch_order(3, 1, &samples);
        assert_eq!(a, epoch_order(3, 1, &samples));
        assert_ne!(a, epoch_order(3, 2, &samples));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, samples);
    }
}
