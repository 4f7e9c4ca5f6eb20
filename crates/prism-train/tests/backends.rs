//! Training is the same on every backend: the same seed gives the same initial weights and
//! batches, so flex and LibTorch follow the same loss curve, and a checkpoint written on one
//! backend resumes on the other where the uninterrupted run would be.
//!
//! Built only with the `tch` feature (`cargo xtask test` runs it against the torch venv's
//! libtorch); without it the single check is that the LibTorch devices are refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use prism_train::{RunOptions, TrainDevice, Trainer};

/// Relative tolerance between the backends' loss curves. Flex and LibTorch sum in different
/// orders (blocked matmuls, convolution algorithms), so they round differently from the first
/// step and the optimizer carries it on. Measured on this test (rvt-tiny at 64x64, batch 4, 3
/// windows, AdamW at RVT's learning rate 2e-4): step 1 agrees to 1e-7 and the 20 steps to
/// 1.4e-5 at most, so 1e-4 fails on any real difference in the network, the loss or the data.
/// At ten times that learning rate the gap grows tenfold a step (2e-5 at step 3, 4.5e-2 at
/// step 6): AdamW turns rounding-level gradients into full-size updates and SimOTA's discrete
/// assignment then flips.
#[cfg(feature = "tch")]
const TOLERANCE: f32 = 1e-4;

/// Steps compared, the first of a 20-step schedule. On an Intel Xeon with AVX-512 the two
/// backends' curves stayed within 1e-4 (1.8e-5 at most) for 8 steps and then parted (7.5e-4 at step 9: a rounding-level difference that SimOTA's
/// discrete assignment turns into a different target); on the AMD EPYC they were first
/// measured on, all 20 steps agreed to 1.4e-5.
#[cfg(feature = "tch")]
const STEPS: usize = 8;

#[cfg(feature = "tch")]
fn assert_same_curve(a: &[(usize, f32)], b: &[(usize, f32)], what: &str) {
    assert_eq!(
        a.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        b.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "{what}: the same steps"
    );
    let mut largest = 0.0f32;
    for ((step, x), (_, y)) in a.iter().zip(b) {
        let gap = (x - y).abs() / x.abs().max(1.0);
        assert!(
            gap <= TOLERANCE,
            "{what}, step {step}: {x} vs {y} ({gap:.1e})"
        );
        largest = largest.max(gap);
    }
    eprintln!(
        "{what}: largest relative gap {largest:.1e} over {} steps",
        a.len()
    );
}

#[cfg(feature = "tch")]
#[test]
fn flex_and_libtorch_follow_the_same_loss_curve_and_resume_each_others_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    // A 20-step schedule (the learning rate follows it), of which the first STEPS run.
    let mut config = common::small_config(20, "");
    // RVT's own learning rate (the test card's 2e-3 is ten times it; see TOLERANCE).
    config.train.lr = 2e-4;
    let (train, val) = common::splits(&config, &dir.path().join("data"));
    let opts = |name: &str, device, resume, stop_after| RunOptions {
        run_dir: dir.path().join(name),
        resume,
        stop_after,
        eval_filter: prism_eval::prophesee::BoxFilter::none(),
        device,
    };
    let run = |name: &str, device, resume, stop_after| {
        Trainer::new(
            config.clone(),
            opts(name, device, resume, stop_after),
            &train,
            &val,
        )
        .unwrap()
        .run(|_| {})
        .unwrap();
    };

    run("flex", TrainDevice::Flex, false, Some(STEPS));
    run("tch", TrainDevice::TchCpu, false, Some(STEPS));
    let flex = common::train_losses(&dir.path().join("flex"));
    assert_eq!(flex.len(), STEPS);
    assert_same_curve(
        &flex,
        &common::train_losses(&dir.path().join("tch")),
        "flex vs tch-cpu",
    );

    // Half the steps on one backend, the rest on the other from its checkpoint, both ways round.
    for (first, then) in [
        (TrainDevice::TchCpu, TrainDevice::Flex),
        (TrainDevice::Flex, TrainDevice::TchCpu),
    ] {
        let name = format!("{first}-then-{then}");
        run(&name, first, false, Some(STEPS / 2));
        run(&name, then, true, Some(STEPS - STEPS / 2));
        assert_same_curve(
            &flex,
            &common::train_losses(&dir.path().join(&name)),
            &format!("uninterrupted flex vs {first} resumed on {then}"),
        );
    }
}

#[cfg(not(feature = "tch"))]
#[test]
fn libtorch_devices_are_refused_without_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::small_config(2, "");
    let (train, val) = common::splits(&config, &dir.path().join("data"));
    let opts = RunOptions {
        run_dir: dir.path().join("run"),
        resume: false,
        stop_after: None,
        eval_filter: prism_eval::prophesee::BoxFilter::none(),
        device: TrainDevice::TchCpu,
    };
    let err = Trainer::new(config, opts, &train, &val)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cargo xtask build-tch"), "{err}");
    assert!(!dir.path().join("run").exists(), "nothing trained");
}
