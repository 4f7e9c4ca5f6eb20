//! `prism data synth-seq --out DIR`: a synthetic vector corpus in the layout the sequence models
//! train on (`embeddings.npy`, `documents.npy`, `dataset.json`), from the documented process of
//! [`prism_data::sequence::SyntheticSequences`]: nothing to download.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prism_data::sequence::{synthetic_corpus, SyntheticSequences};

#[derive(Debug, Args)]
pub struct SynthSeqArgs {
    /// Corpus folder to write.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub documents: usize,
    /// Vector width (the sequence cards read 384, all-MiniLM-L6-v2's).
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Vectors per document are uniform in [min_len, max_len].
    #[arg(long, default_value_t = 40)]
    pub min_len: usize,
    #[arg(long, default_value_t = 120)]
    pub max_len: usize,
    /// Noise of each step (0: fully determined by the two vectors before).
    #[arg(long, default_value_t = 0.5)]
    pub noise: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn run(args: SynthSeqArgs) -> Result<()> {
    let config = SyntheticSequences {
        seed: args.seed,
        documents: args.documents,
        min_len: args.min_len,
        max_len: args.max_len,
        dim: args.dim,
        noise: args.noise,
        ..SyntheticSequences::default()
    };
    let corpus = synthetic_corpus(&config)?;
    corpus
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    outln!(
        "wrote {}: {} documents, {} vectors of width {}",
        args.out.display(),
        corpus.num_documents(),
        corpus.len(),
        corpus.dim
    )?;
    Ok(())
}
