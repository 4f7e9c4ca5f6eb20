//! A small RVT on small synthetic scenes, so training tests finish in minutes on 2 cores.

#![allow(dead_code)]

use prism_data::PreparedSplit;
use prism_train::TrainConfig;

/// rvt-tiny on a 64x64 sensor with 2 bins (4 input channels), trained with `steps` steps.
pub fn small_config(steps: usize, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
name = "rvt-test-64"
[model]
embed_dim = 32
dim_head = 32
fpn_depth = 0.33
num_classes = 2
input_size = [64, 64]
partition_size = [2, 2]
[data]
classes = ["car", "pedestrian"]
sensor = [64, 64]
downsample = 1
window_ms = 50
bins = 2
count_cutoff = 10
[train]
batch_size = 4
seq_len = 3
lr = 2e-3
steps = {steps}
warmup_pct = 0.05
val_every = 0
checkpoint_every = 10
seed = 7
{extra}
[dataset]
kind = "synthetic"
train_sequences = 2
val_sequences = 2
duration_s = 1.5
objects = 2
seed = 3
"#
    );
    TrainConfig::parse(&text, "test card").expect("test card parses")
}

/// The synthetic splits of `config` generated under `dir`.
pub fn splits(config: &TrainConfig, dir: &std::path::Path) -> (PreparedSplit, PreparedSplit) {
    prism_train::data::load_splits(config, dir, |_| {}).expect("synthetic splits")
}

/// `(step, loss)` of every training step in a run's `metrics.jsonl`.
/// How many of a run's training steps the fp16 loss scaler skipped (an overflowed step).
pub fn skipped_steps(run_dir: &std::path::Path) -> usize {
    use prism_train::metrics_log::{read, Record};
    read(&run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .iter()
        .filter(|r| matches!(r, Record::Train(s) if s.skipped))
        .count()
}

pub fn train_losses(run_dir: &std::path::Path) -> Vec<(usize, f32)> {
    use prism_train::metrics_log::{read, Record};
    read(&run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(s) => Some((s.step, s.loss)),
            Record::Val(_) => None,
        })
        .collect()
}
