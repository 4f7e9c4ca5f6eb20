//! `train.gradient_checkpointing` (Burn's balanced strategy) lowers the peak memory of an
//! rvt-base training step and leaves its gradients as they were.
//!
//! Each setting runs in a child process of this test binary, so that memory the allocator
//! keeps from one run cannot hide the other's peak; the parent compares what they report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use prism_models::rvt::{RvtConfig, RvtState};
use prism_train::device::fork_initialised;
use prism_train::memory::StepPeak;
use prism_train::TrainDevice;

/// The child's switch: `on` or `off`, and where it writes its report.
const MODE: &str = "PRISM_CHECKPOINTING_CHILD";
const REPORT: &str = "PRISM_CHECKPOINTING_REPORT";

/// Every gradient, flattened in module order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.out.extend(g.into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

/// One step of rvt-base at Gen1 input size (batch 1, three windows with the state carried):
/// the step's peak resident memory in MiB and the gradients.
fn one_step(checkpointing: bool) -> (f64, Vec<f32>) {
    let device = TrainDevice::Flex.burn_training(checkpointing).unwrap();
    let init = TrainDevice::init_device(&device);
    init.seed(5);
    let (h, w) = (256, 320);
    // rvt-base: embedding width 64, FPN depth 0.67 (RVT's base preset).
    let config = RvtConfig::new(64, 32, 2, [h / 32, w / 32], [h, w], 0.67);
    let model = fork_initialised(config.init(&init), &device);
    let windows: Vec<Vec<f32>> = (0..3)
        .map(|t| {
            (0..20 * h * w)
                .map(|i| ((i * 31 + t * 7) % 5) as f32)
                .collect()
        })
        .collect();
    let peak = StepPeak::start();
    let mut state = RvtState::zeros(&config, 1, [h, w], &device);
    let mut loss = None;
    for x in windows {
        let x = Tensor::<4>::from_data(TensorData::new(x, [1, 20, h, w]), &device);
        let (raw, next) = model.forward(x, state);
        state = next;
        let term = raw.square().mean();
        loss = Some(match loss {
            None => term,
            Some(sum) => sum + term,
        });
    }
    let grads = GradientsParams::from_grads(loss.unwrap().backward(), &model);
    let peak_mib = peak.peak_mib().expect("a Linux /proc that resets the peak");
    let mut flat = Flatten {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut flat);
    (peak_mib, flat.out)
}

/// Runs `one_step` in a child process and reads its report.
fn in_child(mode: &str, dir: &Path) -> (f64, Vec<f32>) {
    let report = dir.join(mode);
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_step",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(MODE, mode)
        .env(REPORT, &report)
        .status()
        .unwrap();
    assert!(status.success(), "the {mode} child failed");
    let bytes = std::fs::read(&report).unwrap();
    let peak = f64::from_le_bytes(bytes[..8].try_into().unwrap());
    let grads = bytes[8..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (peak, grads)
}

/// The child: does one step when the parent asks, nothing otherwise.
#[test]
fn child_step() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let (peak, grads) = one_step(mode == "on");
    let mut bytes = peak.to_le_bytes().to_vec();
    for g in grads {
        bytes.extend(g.to_le_bytes());
    }
    std::fs::write(std::env::var(REPORT).unwrap(), bytes).unwrap();
}

#[test]
fn checkpointing_lowers_the_peak_of_an_rvt_base_step_with_the_same_gradients() {
    if std::env::var_os(MODE).is_some() || !cfg!(target_os = "linux") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (peak_off, grads_off) = in_child("off", dir.path());
    let (peak_on, grads_on) = in_child("on", dir.path());
    eprintln!("rvt-base step peak: {peak_off:.0} MiB without, {peak_on:.0} MiB with checkpointing");
    assert_eq!(grads_off.len(), grads_on.len());
    let scale = grads_off.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    let worst = grads_off
        .iter()
        .zip(&grads_on)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "gradients differ by {worst} (largest {scale})"
    );
    assert!(
        peak_on < 0.9 * peak_off,
        "checkpointing should lower the peak: {peak_off:.0} MiB without, {peak_on:.0} MiB with"
    );
}
