//! `prism eval` of a next-vector sequence model on a vector corpus: the mean cosine to the true
//! next vector on the validation documents, and the retrieval check of [`prism_train::seq_eval`]
//! (rank of the true next vector among every validation vector), beside the baselines that
//! predict the last context vector and the mean training vector. A Burn checkpoint or an exported ONNX file on any backend.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use prism_data::sequence::{VectorCorpus, DOCUMENTS_FILE, EMBEDDINGS_FILE};
use prism_deploy::engine::{Backend, Engine, EngineOptions, TensorView};
use prism_train::seq_eval::{
    last_vector_predictions, mean_vector_predictions, retrieval, Retrieval,
};

use super::eval::EvalArgs;
use super::progress::Meter;

/// Whether `prism eval` is about a sequence model: a sequence checkpoint, or a corpus folder.
pub fn applies(checkpoint: Option<&Path>, data: &Path) -> bool {
    checkpoint.is_some_and(prism_models::seq::card::is_seq_checkpoint)
        || (data.join(EMBEDDINGS_FILE).is_file() && data.join(DOCUMENTS_FILE).is_file())
}

/// The split the run used: `--split-seed` / `--val-fraction`, else the run folder's
/// `config.toml` (two levels above `checkpoints/best`), else the cards' defaults.
fn split_settings(args: &EvalArgs) -> (u64, f64) {
    let from_run = args
        .checkpoint
        .as_deref()
        .and_then(|dir| dir.parent()?.parent().map(|run| run.join("config.toml")))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| prism_train::seq_config::SeqTrainConfig::parse(&text, "run").ok())
        .map(|c| (c.train.split_seed, c.train.val_fraction));
    let (seed, fraction) = from_run.unwrap_or((0, 0.1));
    (
        args.split_seed.unwrap_or(seed),
        args.val_fraction.unwrap_or(fraction),
    )
}

pub fn run(args: &EvalArgs, data: &Path) -> Result<()> {
    let corpus = VectorCorpus::load(data)
        .with_context(|| format!("loading the corpus {}", data.display()))?;
    let (split_seed, val_fraction) = split_settings(args);
    let split = corpus.split(val_fraction, split_seed)?;
    let (name, context, predictions, targets) = match (&args.checkpoint, &args.model) {
        (Some(dir), None) => {
            let device = Device::flex();
            let (card, model) = prism_models::seq::card::load_checkpoint(dir, &device)
                .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
            check_width(card.model.dim, &corpus)?;
            let context = card.model.context;
            let targets = corpus.targets(&split.val, context);
            let p = prism_train::seq_run::predict(&model, &corpus, &targets, context, &device);
            (card.name, context, p, targets)
        }
        (None, Some(path)) => {
            let backend: Backend = args.backend.parse().map_err(anyhow::Error::msg)?;
            let mut options = EngineOptions::new(backend);
            options.ort_library = args.ort_library.clone();
            let engine = Engine::load(path, &options)
                .with_context(|| format!("loading {} on {backend}", path.display()))?;
            let spec = engine.spec().clone();
            let seq = spec
                .sequence
                .clone()
                .with_context(|| format!("{} is not a next-vector model", path.display()))?;
            check_width(seq.dim, &corpus)?;
            let targets = corpus.targets(&split.val, seq.context);
            let p = predict_onnx(&engine, &corpus, &targets, seq.context)?;
            (spec.model, seq.context, p, targets)
        }
        _ => bail!("give --checkpoint DIR or --model FILE.onnx"),
    };
    if targets.is_empty() {
        bail!("the validation documents hold no sample with {context} vectors of context");
    }
    let candidates = corpus.rows(&split.val);
    let model = retrieval(&corpus, &predictions, &targets, &candidates, context);
    let copy = last_vector_predictions(&corpus, &targets);
    let baseline = retrieval(&corpus, &copy, &targets, &candidates, context);
    let centroid = mean_vector_predictions(&corpus, &corpus.rows(&split.train), targets.len());
    let mean_baseline = retrieval(&corpus, &centroid, &targets, &candidates, context);
    outln!(
        "{name} on {}: {} validation documents, {} contexts, {} candidates each",
        data.display(),
        split.val.len(),
        model.queries,
        model.candidates
    )?;
    outln!(
        "{:<22} {:>11} {:>11} {:>9} {:>10} {:>7}",
        "prediction",
        "mean cosine",
        "median rank",
        "recall@1",
        "recall@10",
        "MRR"
    )?;
    for (label, r) in [
        (name.as_str(), &model),
        ("last context vector", &baseline),
        ("mean training vector", &mean_baseline),
    ] {
        outln!(
            "{:<22} {:>11.4} {:>11.1} {:>9.4} {:>10.4} {:>7.4}",
            label,
            r.mean_cosine,
            r.median_rank,
            r.recall_at_1,
            r.recall_at_10,
            r.mrr
        )?;
    }
    if let Some(out) = &args.out {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            model: &'a str,
            split_seed: u64,
            val_fraction: f64,
            validation_documents: usize,
            retrieval: &'a Retrieval,
            last_vector_baseline: &'a Retrieval,
            mean_vector_baseline: &'a Retrieval,
        }
        let report = Report {
            model: &name,
            split_seed,
            val_fraction,
            validation_documents: split.val.len(),
            retrieval: &model,
            last_vector_baseline: &baseline,
            mean_vector_baseline: &mean_baseline,
        };
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn check_width(dim: usize, corpus: &VectorCorpus) -> Result<()> {
    if dim != corpus.dim {
        bail!(
            "the model reads {dim}-wide vectors, the corpus holds {}-wide ones",
            corpus.dim
        );
    }
    Ok(())
}

/// Predictions of an exported model, one context per run (the file's batch may be static).
fn predict_onnx(
    engine: &Engine,
    corpus: &VectorCorpus,
    targets: &[usize],
    context: usize,
) -> Result<Vec<f32>> {
    let spec = engine.spec();
    let shape = [1, context, corpus.dim];
    let mut out = Vec::with_capacity(targets.len() * corpus.dim);
    let mut meter = Meter::new("eval", targets.len() as u64);
    for (i, &t) in targets.iter().enumerate() {
        let batch = corpus.batch(&[t], context);
        let view = TensorView::new(&spec.input.name, &shape, &batch.contexts);
        let outputs = engine.run(&[view])?;
        let next = outputs
            .iter()
            .find(|o| o.name == spec.output.name)
            .context("the model did not return its output")?;
        out.extend_from_slice(&next.data);
        meter.set(i as u64 + 1, || format!("{} contexts", i + 1));
    }
    meter.finish();
    Ok(out)
}
