//! The study of `seeds/sequence-models-comparison.md`, measured here on real sentence embeddings:
//! the MLP, the LSTM and the Transformer with cosine loss, and the Transformer with InfoNCE, each
//! trained with the recipe of its card (`models/seq-*.toml`) on the same split by document; then
//! the table the seed has (parameters, best validation cosine, best epoch, CPU training time) and
//! the retrieval check of `prism_train::seq_eval` on the best checkpoints, beside the baselines
//! that predict the last context vector and the mean training vector.
//!
//! usage: bench-seq [--data DIR] [--out benchmarks/results/seq] [--runs DIR] [--epochs N]
//! The data defaults to `$PRISM_ENV/data/seq-shakespeare-minilm` (`cargo xtask seq-data`).
//! Runs resume: a finished run is read back, a stopped one continues from its last epoch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use prism_data::sequence::VectorCorpus;
use prism_train::seq_config::SeqTrainConfig;
use prism_train::seq_eval::{
    last_vector_predictions, mean_vector_predictions, retrieval, Retrieval,
};
use prism_train::seq_run::{predict, read_epochs, EpochRecord, SeqEvent, SeqRun, SeqRunOptions};
use prism_train::trainer::best_checkpoint;

#[derive(Debug, Parser)]
struct Args {
    /// Vector corpus (default: $PRISM_ENV/data/seq-shakespeare-minilm).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the table, JSON and curves go.
    #[arg(long, default_value = "benchmarks/results/seq")]
    out: PathBuf,
    /// Run folders (default: OUT/runs).
    #[arg(long)]
    runs: Option<PathBuf>,
    /// Cap on the epochs of every run (default: each card's).
    #[arg(long)]
    epochs: Option<usize>,
}

/// One row of the study: a card and its overrides.
struct Study {
    label: &'static str,
    card: &'static str,
    overrides: &'static [&'static str],
}

const STUDIES: &[Study] = &[
    Study {
        label: "MLP, cosine",
        card: "seq-mlp",
        overrides: &[],
    },
    Study {
        label: "LSTM, cosine",
        card: "seq-lstm",
        overrides: &[],
    },
    Study {
        label: "Transformer, cosine",
        card: "seq-transformer",
        overrides: &[],
    },
    Study {
        label: "Transformer, InfoNCE",
        card: "seq-transformer",
        overrides: &["train.loss=\"infonce\""],
    },
];

#[derive(serde::Serialize)]
struct Row {
    label: String,
    card: String,
    loss: String,
    parameters: usize,
    best_val_cosine: f64,
    best_epoch: usize,
    epochs_run: usize,
    train_seconds: f64,
    retrieval: Retrieval,
    epochs: Vec<EpochRecord>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = match &args.data {
        Some(d) => d.clone(),
        None => prism_benchmarks::stats::prism_env().join("data/seq-shakespeare-minilm"),
    };
    let corpus = VectorCorpus::load(&data).with_context(|| {
        format!(
            "loading {} (make it with `cargo xtask seq-data`)",
            data.display()
        )
    })?;
    let runs = args.runs.clone().unwrap_or_else(|| args.out.join("runs"));
    std::fs::create_dir_all(&args.out)?;
    eprintln!(
        "corpus {}: {} documents, {} vectors of width {}; {} threads",
        data.display(),
        corpus.num_documents(),
        corpus.len(),
        corpus.dim,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let device = Device::flex();
    let mut rows = Vec::new();
    let mut baselines = None;
    for (i, study) in STUDIES.iter().enumerate() {
        let mut config = SeqTrainConfig::resolve(study.card)?;
        let mut overrides: Vec<String> = study.overrides.iter().map(|s| s.to_string()).collect();
        if let Some(e) = args.epochs {
            overrides.push(format!("train.epochs={e}"));
        }
        config.apply_overrides(&overrides)?;
        let run_dir = runs.join(format!("{}-{}", study.card, config.train.loss.name()));
        // A finished run resumes to nothing; a stopped one continues from its last epoch.
        let resume =
            prism_train::seq_run::find_checkpoint(&prism_train::trainer::last_checkpoint(&run_dir))
                .is_some();
        let opts = SeqRunOptions {
            run_dir: run_dir.clone(),
            resume,
            stop_after: None,
            device: Default::default(),
        };
        let run = SeqRun::new(config.clone(), opts, corpus.clone())?;
        eprintln!("[{}/{}] {}: {run:?}", i + 1, STUDIES.len(), study.label);
        let started = Instant::now();
        run.run(|event| match event {
            SeqEvent::Epoch { record: r, best } => eprintln!(
                "  epoch {:>2}: train {:.4} val cosine {:.4}{} ({:.0} samples/s, {:.0} s)",
                r.epoch,
                r.train_loss,
                r.val_cosine,
                if *best { " best" } else { "" },
                r.samples_per_s,
                started.elapsed().as_secs_f64()
            ),
            SeqEvent::EarlyStop { epoch, best_epoch } => {
                eprintln!("  early stop after epoch {epoch} (best {best_epoch})")
            }
            _ => {}
        })?;
        let epochs = read_epochs(&run_dir.join("metrics.jsonl"))?;
        let (best_epoch, best_cos) = epochs
            .iter()
            .map(|r| (r.epoch, r.val_cosine))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let (card, model) =
            prism_models::seq::card::load_checkpoint(&best_checkpoint(&run_dir), &device)?;
        let split = corpus.split(config.train.val_fraction, config.train.split_seed)?;
        let context = card.model.context;
        let targets = corpus.targets(&split.val, context);
        let candidates = corpus.rows(&split.val);
        let predictions = predict(&model, &corpus, &targets, context, &device);
        let r = retrieval(&corpus, &predictions, &targets, &candidates, context);
        if baselines.is_none() {
            let copy = last_vector_predictions(&corpus, &targets);
            let centroid =
                mean_vector_predictions(&corpus, &corpus.rows(&split.train), targets.len());
            baselines = Some((
                retrieval(&corpus, &copy, &targets, &candidates, context),
                retrieval(&corpus, &centroid, &targets, &candidates, context),
            ));
        }
        rows.push(Row {
            label: study.label.into(),
            card: study.card.into(),
            loss: config.train.loss.name().into(),
            parameters: prism_models::seq::parameter_count(&model),
            best_val_cosine: best_cos,
            best_epoch,
            epochs_run: epochs.len(),
            train_seconds: epochs.last().map_or(0.0, |r| r.elapsed_s),
            retrieval: r,
            epochs,
        });
    }
    let (last, mean) = baselines.context("no study ran")?;
    write_results(&args.out, &data, &corpus, &rows, &last, &mean)
}

fn write_results(
    out: &Path,
    data: &Path,
    corpus: &VectorCorpus,
    rows: &[Row],
    baseline: &Retrieval,
    mean: &Retrieval,
) -> Result<()> {
    let mut md = String::new();
    md.push_str(&format!(
        "Corpus `{}`: {} documents, {} vectors of width {}; split by document 90 / 10 (seed 0); {} validation contexts, each ranked among {} candidates.\n\n",
        data.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        corpus.num_documents(),
        corpus.len(),
        corpus.dim,
        baseline.queries,
        baseline.candidates,
    ));
    md.push_str("| model | loss | parameters | best val cosine | best epoch | epochs run | CPU training time | median rank | recall@10 | MRR |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.2} M | {:.4} | {} | {} | {:.1} min | {:.0} | {:.3} | {:.3} |\n",
            r.label,
            r.loss,
            r.parameters as f64 / 1e6,
            r.best_val_cosine,
            r.best_epoch,
            r.epochs_run,
            r.train_seconds / 60.0,
            r.retrieval.median_rank,
            r.retrieval.recall_at_10,
            r.retrieval.mrr
        ));
    }
    md.push_str(&format!(
        "| last context vector (baseline) | – | 0 | {:.4} | – | – | – | {:.0} | {:.3} | {:.3} |\n",
        baseline.mean_cosine, baseline.median_rank, baseline.recall_at_10, baseline.mrr
    ));
    md.push_str(&format!(
        "| mean training vector (baseline) | – | 0 | {:.4} | – | – | – | {:.0} | {:.3} | {:.3} |\n",
        mean.mean_cosine, mean.median_rank, mean.recall_at_10, mean.mrr
    ));
    std::fs::write(out.join("results.md"), &md)?;
    let json = serde_json::json!({
        "rows": rows,
        "last_vector_baseline": baseline,
        "mean_vector_baseline": mean,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;

    let mut fig = prism_plot::Figure::new(1400, 560)
        .grid(1, 2)
        .title("next-vector models on real sentence embeddings");
    for r in rows {
        let x: Vec<f64> = r.epochs.iter().map(|e| e.epoch as f64).collect();
        let val: Vec<f64> = r.epochs.iter().map(|e| e.val_cosine).collect();
        let train: Vec<f64> = r.epochs.iter().map(|e| e.train_cosine).collect();
        fig.panel(0)
            .title("validation cosine")
            .x_label("epoch")
            .line_markers(&r.label, &x, &val);
        fig.panel(1)
            .title("training cosine (dropout on)")
            .x_label("epoch")
            .line_markers(&r.label, &x, &train);
    }
    fig.save_png(out.join("curves.png"))?;
    print!("{md}");
    Ok(())
}
