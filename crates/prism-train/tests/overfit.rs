//! Overfitting a few clips to near-perfect mAP shows that the loss, the SimOTA assignment, the
//! decoding and the evaluation agree with each other: a mismatch in any of them (box
//! convention, anchor centres, class order, coordinate scale) caps the mAP far below 1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use prism_eval::prophesee::BoxFilter;
use prism_train::{RunOptions, Trainer};

#[test]
fn training_on_the_evaluation_clips_reaches_near_perfect_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::small_config(
        320,
        "augment = false\nrandom_weight = 1.0\nstream_weight = 0.0",
    );
    config.apply_overrides(&["train.lr=3e-3".into()]).unwrap();
    let (train, _) = common::splits(&config, &dir.path().join("data"));
    // Validate on the training scenes themselves.
    let val = prism_data::PreparedSplit::new(train.sequences.clone()).unwrap();
    let opts = RunOptions {
        run_dir: dir.path().join("run"),
        resume: false,
        stop_after: None,
        // Score every label, including the first 0.5 s.
        eval_filter: BoxFilter::none(),
        device: prism_train::TrainDevice::Flex,
    };
    let trainer = Trainer::new(config, opts, &train, &val).unwrap();
    let mut losses = Vec::new();
    let summary = trainer
        .run(|e| {
            if let prism_train::Event::Step(r) = e {
                losses.push(r.loss);
            }
        })
        .unwrap();
    let val = summary.last_val.expect("validated at the end");
    eprintln!(
        "loss {:.3} -> {:.3}; AP50 {:.3} mAP {:.3}",
        losses[0],
        losses[losses.len() - 1],
        val.ap50,
        val.map
    );
    let tail = &losses[losses.len() - 10..];
    let late = tail.iter().sum::<f32>() / tail.len() as f32;
    assert!(
        late < 0.35 * losses[0],
        "loss did not fall: {} -> {late}",
        losses[0]
    );
    assert!(val.ap50 > 0.9, "AP50 {} after overfitting", val.ap50);
    assert!(dir.path().join("run/curves.png").is_file());
}
