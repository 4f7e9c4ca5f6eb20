//! `prism data prepare`: recordings with labels (`<split>/<stem>_td.dat|.h5` + `<stem>_bbox.npy`)
//! become stored stacked histograms for a model card, once, so training reads them fast.
//! Sequences already prepared are skipped, so an interrupted run can simply be started again.
//!
//! `--jobs N` prepares N recordings at once; `--shard I/N` prepares every N-th recording from
//! the I-th, so N machines split a dataset; `--executor slurm --shards N` submits those N shards
//! as one Slurm job array (as `prism ablate --executor slurm` does), waits for it, then checks
//! the whole tree here. Any split writes the same files as one run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use prism_data::{prepare_tree_with, LabelClock, LabelFilter, PrepareEvent, Shard, TreeOptions};
use prism_models::zoo::ModelCard;

use crate::commands::ablate::Executor;
use crate::commands::slurm::{absolute, in_queue, quote, quote_text, submit_array, ArraySpec};

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Folder with `train/`, `val/`, `test/` holding `<stem>_td.dat` (or `_td.h5`, `_td.raw`)
    /// and `<stem>_bbox.npy`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (`<split>/<stem>/` per sequence).
    #[arg(long)]
    pub out: PathBuf,
    /// Model card whose representation to build (`rvt-tiny-gen1`, `rvt-base-1mpx`, or a file).
    #[arg(long)]
    pub model: String,
    /// Label filter: gen1 (diagonal >= 30, side >= 10), gen4 (side >= 5), none, or auto (RVT's
    /// for the card's sensor: gen1 for 304x240, gen4 for 1280x720, else none).
    #[arg(long, default_value = "auto")]
    pub filter: String,
    /// Which label frames are kept and where windows end, by RVT's rule: gen1 (a frame every
    /// 250 ms), gen4 (30 or 60 Hz labels, a frame every 3 or 6 periods), every-frame (not RVT's:
    /// every frame of a periodic clock), or auto (gen1 for 304x240, gen4 for 1280x720, else
    /// every-frame).
    #[arg(long, default_value = "auto")]
    pub label_clock: String,
    /// Recordings prepared at once, each on its own core.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Only part I of N (`I/N`, from 0): every N-th recording of the sorted list from the I-th.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// `local` (here) or `slurm` (`--shards` tasks of one job array, then a check here).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Tasks of the Slurm job array (`--executor slurm`).
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Extra `sbatch` options for `--executor slurm`, e.g. `--sbatch-arg=--time=4:00:00`.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Seconds between queue checks of `--executor slurm`.
    #[arg(long, default_value_t = 10.0)]
    pub poll_s: f64,
}

pub fn run(args: PrepareArgs) -> Result<()> {
    let card = ModelCard::resolve(&args.model)?;
    let [width, height] = card.data.sensor;
    let auto_clock = LabelClock::for_sensor(width, height);
    let filter = match args.filter.as_str() {
        "gen1" => LabelFilter::gen1(),
        "gen4" | "1mpx" => LabelFilter::gen4(),
        "none" => LabelFilter::none(),
        "auto" => match auto_clock {
            LabelClock::Gen1 => LabelFilter::gen1(),
            LabelClock::Gen4 => LabelFilter::gen4(),
            LabelClock::EveryFrame => LabelFilter::none(),
        },
        other => bail!("unknown filter {other:?} (gen1, gen4, none, auto)"),
    };
    let label_clock = match args.label_clock.as_str() {
        "auto" => auto_clock,
        name => LabelClock::from_name(name).with_context(|| {
            format!("unknown label clock {name:?} (gen1, gen4, every-frame, auto)")
        })?,
    };
    let opts = prism_train::data::prepare_options(&card, filter, label_clock);
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    if args.executor == Executor::Slurm {
        if shard.is_some() {
            bail!(
                "--shard is what each Slurm task is given; with --executor slurm give --shards N"
            );
        }
        run_slurm_array(&args)?;
    }
    let tree = TreeOptions {
        jobs: args.jobs,
        shard,
    };
    let report = prepare_tree_with(&args.input, &args.out, &opts, tree, |event| match event {
        PrepareEvent::Start {
            split,
            name,
            index,
            total,
        } => eprintln!("[{}/{total}] {split}/{name}", index + 1),
        PrepareEvent::Failed { entry, error } => eprintln!("FAILED {entry:?}: {error}"),
        _ => {}
    })?;
    let part = shard.map_or(String::new(), |s| {
        format!(" (shard {}/{})", s.index, s.count)
    });
    outln!(
        "prepared {} sequences{part}, {} already there, {} without labels after filtering, {} failed -> {}",
        report.prepared.len(),
        report.resumed.len(),
        report.no_labels.len(),
        report.failed.len(),
        args.out.display()
    )?;
    if !report.failed.is_empty() {
        bail!("{} sequences failed (listed above)", report.failed.len());
    }
    Ok(())
}

/// Submits `args.shards` tasks, task I running this command with `--shard I/N`, and waits for
/// the array to leave the queue. The caller then runs over the whole tree: what the tasks
/// prepared is found there, and what they could not is prepared or reported there.
fn run_slurm_array(args: &PrepareArgs) -> Result<()> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let exe = std::env::current_exe().context("locating the prism binary")?;
    let cwd = std::env::current_dir().context("the working directory")?;
    let command = format!(
        "{exe} data prepare --input {input} --out {out} --model {model} --filter {filter} \
         --label-clock {clock} --jobs {jobs} --shard $SLURM_ARRAY_TASK_ID/{shards}",
        exe = quote(&exe),
        input = quote(&absolute(&args.input)?),
        out = quote(&absolute(&args.out)?),
        model = quote_text(&args.model),
        filter = quote_text(&args.filter),
        clock = quote_text(&args.label_clock),
        jobs = args.jobs,
        shards = args.shards,
    );
    let logs = args.out.join("slurm");
    let indices: Vec<usize> = (0..args.shards).collect();
    let job = submit_array(&ArraySpec {
        name: "prism-prepare",
        logs: &logs,
        cwd: &cwd,
        indices: &indices,
        command: &command,
        sbatch_args: &args.sbatch_args,
    })?;
    eprintln!(
        "submitted job array {job} ({} shards), logs in {}",
        args.shards,
        logs.display()
    );
    let poll = Duration::from_secs_f64(args.poll_s.clamp(0.1, 3600.0));
    while in_queue(&job)? {
        std::thread::sleep(poll);
    }
    eprintln!("job array {job} done; checking the whole tree here");
    Ok(())
}
