//! `prism train`: trains a model card's `[train]` recipe on its `[dataset]`, with a progress bar,
//! a metrics log, resumable checkpoints and training curves in the run folder.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prism_train::evaluate::filter_by_name;
use prism_train::{DatasetSection, Event, RunOptions, TrainConfig, TrainDevice, Trainer};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model card with `[train]` and `[dataset]` tables (a file such as
    /// models/rvt-tiny-synth.toml, or a shipped name).
    #[arg(long)]
    pub config: String,
    /// Run folder (checkpoints, metrics.jsonl, curves.png). Default: runs/<card name>.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Data folder: prepared `train/` and `val/` splits (synthetic data is generated there once).
    /// Default: the card's `dataset.root`, or data/<card name> for synthetic data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Continue from the run folder's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Config overrides of any card key, e.g. `--set train.steps=200 --set train.lr=1e-3
    /// --set model.memory=dws-lstm --set model.fpn_scales=4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Stop after this many steps (sequence models: epochs) in this session (a checkpoint is
    /// written; `--resume` goes on).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Where to train: `flex` (Burn's CPU backend), `tch-cpu` / `tch-cuda[:N]` (Burn's LibTorch
    /// backend; a prism built by `cargo xtask build-tch`) or `cuda[:N]` (Burn's CUDA backend; a
    /// prism built with `--features cuda`).
    #[arg(long, default_value = "flex")]
    pub device: TrainDevice,
}

pub fn run(args: TrainArgs) -> Result<()> {
    // Refuse a device this build cannot use before any data is generated or loaded.
    args.device.burn()?;
    if names_a_multimodal_card(&args.config) {
        return run_multimodal(args);
    }
    if prism_models::seq::card::is_seq_card(&args.config) {
        return run_sequence(args);
    }
    let mut config = TrainConfig::resolve(&args.config)?;
    config.apply_overrides(&args.overrides)?;
    let name = config.card.name.clone();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let last = prism_train::trainer::last_checkpoint(&run_dir);
    if args.resume && prism_train::run_checkpoint::find(&last).is_none() {
        bail!(
            "--resume: no checkpoint in {} to resume from (leave out --resume to start a new run there)",
            last.display()
        );
    }
    let (data_dir, filter) = match &config.dataset {
        DatasetSection::Synthetic { .. } => (
            args.data
                .clone()
                .unwrap_or_else(|| PathBuf::from("data").join(&name)),
            "synthetic".to_string(),
        ),
        DatasetSection::Prepared { root, eval_filter } => (
            args.data.clone().or_else(|| root.clone()).context(
                "this card trains on prepared data: give --data DIR (see `prism data prepare`)",
            )?,
            eval_filter.clone(),
        ),
    };
    let eval_filter = filter_by_name(&filter).context("unknown evaluation filter")?;
    let (train, val) = prism_train::data::load_splits(&config, &data_dir, |m| eprintln!("{m}"))?;
    eprintln!(
        "{name}: {} train sequences ({} windows), {} val sequences; run folder {}",
        train.sequences.len(),
        train
            .sequences
            .iter()
            .map(|s| s.num_windows())
            .sum::<usize>(),
        val.sequences.len(),
        run_dir.display()
    );
    let opts = RunOptions {
        run_dir: run_dir.clone(),
        resume: args.resume,
        stop_after: args.stop_after,
        eval_filter,
        device: args.device,
    };
    let trainer = Trainer::new(config, opts, &train, &val)?;
    let progress = Progress::new();
    let summary = trainer.run(|event| progress.on(event))?;
    progress.finish();
    print_summary(&summary, "AP50")
}

/// A progress bar on a terminal; plain lines every 25 steps otherwise (logs, CI).
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn on(&self, event: &Event) {
        match event {
            Event::Started {
                start_step,
                total_steps,
                resumed,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total_steps as u64);
                    bar.set_position(*start_step as u64);
                }
                if *resumed {
                    self.line(format!("resumed at step {start_step} of {total_steps}"));
                }
            }
            Event::Step(r) => {
                let msg = format!(
                    "loss {:.3} (iou {:.3} obj {:.3} cls {:.3}) lr {:.2e} {:.1} samples/s",
                    r.loss, r.iou, r.obj, r.cls, r.lr, r.windows_per_s
                );
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(r.step as u64);
                        bar.set_message(msg);
                    }
                    None if r.step % 25 == 0 || r.step == 1 => eprintln!("step {} {msg}", r.step),
                    None => {}
                }
            }
            Event::Validated(v) => self.line(format!(
                "step {}: validation mAP {:.4} AP50 {:.4} AP75 {:.4}",
                v.step, v.map, v.ap50, v.ap75
            )),
            Event::Checkpoint { .. } => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Whether `--config` is a multimodal card (`mm-*` name, or a file whose card says so).
pub fn names_a_multimodal_card(arg: &str) -> bool {
    if prism_models::zoo::looks_like_a_path(arg) {
        std::fs::read_to_string(arg)
            .is_ok_and(|text| prism_models::mm::card::is_mm_card_text(&text))
    } else {
        arg.starts_with("mm-")
    }
}

/// `prism train` of an RGB + thermal + event detector.
fn run_multimodal(args: TrainArgs) -> Result<()> {
    use prism_train::frame_run::{default_synthetic_dir, open_dataset, FrameRun, FrameRunOptions};
    let mut config = prism_train::mm_config::MmTrainConfig::resolve(&args.config)?;
    config.apply_overrides(&args.overrides)?;
    let name = config.card.name.clone();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let last = prism_train::trainer::last_checkpoint(&run_dir);
    if args.resume && prism_train::frame_run::find_checkpoint(&last).is_none() {
        bail!(
            "--resume: no checkpoint in {} to resume from (leave out --resume to start a new run there)",
            last.display()
        );
    }
    let data_dir = args
        .data
        .clone()
        .or_else(|| default_synthetic_dir(&config))
        .context("this card trains on a dataset folder: give --data DIR or dataset.root")?;
    let folder = open_dataset(&config, &data_dir, |m| eprintln!("{m}"))?;
    let opts = FrameRunOptions {
        run_dir: run_dir.clone(),
        resume: args.resume,
        stop_after: args.stop_after,
        device: args.device,
    };
    let run = FrameRun::new(config, opts, folder)?;
    eprintln!("{name}: {run:?}; run folder {}", run_dir.display());
    let progress = Progress::new();
    let summary = run.run(|event| progress.on(event))?;
    progress.finish();
    // The multimodal run keeps its best checkpoint by mAP (in the summary's best slot).
    print_summary(&summary, "mAP")
}

/// `prism train` of a next-vector sequence model on a vector corpus (`--data DIR`, from
/// `cargo xtask seq-data` or `prism data synth-seq`).
fn run_sequence(args: TrainArgs) -> Result<()> {
    use prism_train::seq_config::SeqTrainConfig;
    use prism_train::seq_run::{find_checkpoint, SeqEvent, SeqRun, SeqRunOptions};
    let mut config = SeqTrainConfig::resolve(&args.config)?;
    config.apply_overrides(&args.overrides)?;
    let name = config.name.clone();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let last = prism_train::trainer::last_checkpoint(&run_dir);
    if args.resume && find_checkpoint(&last).is_none() {
        bail!(
            "--resume: no checkpoint in {} to resume from (leave out --resume to start a new run there)",
            last.display()
        );
    }
    let data = args
        .data
        .clone()
        .or_else(|| config.dataset.root.clone())
        .context(
            "this card trains on a vector corpus: give --data DIR (`cargo xtask seq-data` writes the real one, `prism data synth-seq` a synthetic one)",
        )?;
    let corpus = prism_data::sequence::VectorCorpus::load(&data)
        .with_context(|| format!("loading the corpus {}", data.display()))?;
    let opts = SeqRunOptions {
        run_dir: run_dir.clone(),
        resume: args.resume,
        stop_after: args.stop_after,
        device: args.device,
    };
    let loss = config.train.loss.name();
    let run = SeqRun::new(config, opts, corpus)?;
    eprintln!(
        "{name} ({loss} loss): {run:?}; run folder {}",
        run_dir.display()
    );
    let bar = Progress::new();
    let mut batches = 0u64;
    let summary = run.run(|event| match event {
        SeqEvent::Started {
            start_epoch,
            epochs,
            batches_per_epoch,
            resumed,
        } => {
            batches = *batches_per_epoch as u64;
            if let Some(b) = &bar.bar {
                b.set_length((*epochs as u64) * batches);
                b.set_position(*start_epoch as u64 * batches);
            }
            if *resumed {
                bar.line(format!("resumed after epoch {start_epoch} of {epochs}"));
            }
        }
        SeqEvent::Batch { epoch, batch, loss } => {
            if let Some(b) = &bar.bar {
                b.set_position((*epoch as u64 - 1) * batches + *batch as u64);
                b.set_message(format!("epoch {epoch} loss {loss:.4}"));
            }
        }
        SeqEvent::Epoch { record: r, best } => bar.line(format!(
            "epoch {:>3}: train loss {:.4} cosine {:.4} | val loss {:.4} cosine {:.4}{} | {:.0} samples/s",
            r.epoch,
            r.train_loss,
            r.train_cosine,
            r.val_loss,
            r.val_cosine,
            if *best { " (best)" } else { "" },
            r.samples_per_s
        )),
        SeqEvent::EarlyStop { epoch, best_epoch } => bar.line(format!(
            "stopped early after epoch {epoch}: no better validation cosine since epoch {best_epoch}"
        )),
    })?;
    bar.finish();
    outln!(
        "trained {} / {} epochs in {:.0} s{} -> {}",
        summary.epochs_done,
        summary.epochs,
        summary.elapsed_s,
        if summary.stopped_early {
            " (early stop)"
        } else {
            ""
        },
        summary.run_dir.display()
    )?;
    if let Some((cosine, epoch)) = summary.best {
        outln!(
            "best validation cosine {cosine:.4} at epoch {epoch} -> {}",
            prism_train::trainer::best_checkpoint(&summary.run_dir).display()
        )?;
    }
    outln!("curves: {}", summary.run_dir.join("curves.png").display())?;
    Ok(())
}

/// The end of a run: steps, the last validation, the best checkpoint (by `best_metric`), the
/// curves.
fn print_summary(summary: &prism_train::TrainSummary, best_metric: &str) -> Result<()> {
    outln!(
        "trained {} / {} steps in {}",
        summary.steps_done,
        summary.total_steps,
        summary.run_dir.display()
    )?;
    if let Some(v) = &summary.last_val {
        outln!(
            "validation at step {}: mAP {:.4}, AP50 {:.4}, AP75 {:.4}",
            v.step,
            v.map,
            v.ap50,
            v.ap75
        )?;
    }
    if let Some((value, step)) = summary.best_ap50 {
        outln!(
            "best {best_metric} {value:.4} at step {step} -> {}",
            prism_train::trainer::best_checkpoint(&summary.run_dir).display()
        )?;
    }
    outln!("curves: {}", summary.run_dir.join("curves.png").display())?;
    Ok(())
}
