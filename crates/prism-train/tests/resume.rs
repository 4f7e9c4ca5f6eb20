//! A run interrupted after a checkpoint and resumed continues exactly where it stopped: the same
//! steps, the same batches, the same carried state, the same optimizer moments, so its loss
//! curve follows the uninterrupted run's and no step is lost or repeated. A finished run resumed
//! again reports its final validation without training further.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;

use prism_train::{RunOptions, Trainer};

#[test]
fn a_resumed_run_follows_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::small_config(8, "");
    let (train, val) = common::splits(&config, &dir.path().join("data"));
    let opts = |name: &str, resume: bool, stop_after: Option<usize>| RunOptions {
        run_dir: dir.path().join(name),
        resume,
        stop_after,
        eval_filter: prism_eval::prophesee::BoxFilter::none(),
        device: prism_train::TrainDevice::Flex,
    };

    let whole_run = Trainer::new(config.clone(), opts("whole", false, None), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    // Interrupted after 3 steps (a checkpoint is written when a session stops), then a later
    // session that resumes; the checkpoint every 10 steps is never reached in between.
    Trainer::new(config.clone(), opts("split", false, Some(3)), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    let mut starts = Vec::new();
    Trainer::new(config.clone(), opts("split", true, None), &train, &val)
        .unwrap()
        .run(|e| {
            if let prism_train::Event::Started {
                start_step,
                resumed,
                ..
            } = e
            {
                starts.push((*start_step, *resumed));
            }
        })
        .unwrap();
    assert_eq!(starts, vec![(3, true)]);

    let whole = common::train_losses(&dir.path().join("whole"));
    let split = common::train_losses(&dir.path().join("split"));
    let steps: Vec<usize> = split.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        (1..=8).collect::<Vec<_>>(),
        "every step exactly once"
    );
    for ((s, a), (_, b)) in whole.iter().zip(&split) {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1.0),
            "step {s}: {a} uninterrupted vs {b} resumed"
        );
    }

    // A finished run resumed again (as `prism ablate` does for a run killed after training but
    // before its export) trains nothing more and reports the validation it logged at the end.
    let log_before = std::fs::read(dir.path().join("whole/metrics.jsonl")).unwrap();
    let again = Trainer::new(config, opts("whole", true, None), &train, &val)
        .unwrap()
        .run(|_| {})
        .unwrap();
    assert_eq!(again.steps_done, 8);
    assert!(whole_run.last_val.is_some());
    assert_eq!(again.last_val, whole_run.last_val);
    assert_eq!(
        std::fs::read(dir.path().join("whole/metrics.jsonl")).unwrap(),
        log_before
    );
}
