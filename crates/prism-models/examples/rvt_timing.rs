//! Median forward time (backbone + FPN + head + decode, state carried) of RVT-T/S/B on the
//! flex CPU backend at Gen1 size: `cargo run -p prism-models --example rvt_timing [--release]`.
#![allow(clippy::expect_used)]

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use prism_models::rvt::{RvtConfig, RvtState};

fn main() {
    let device = Device::flex();
    for name in ["rvt-tiny-gen1", "rvt-small-gen1", "rvt-base-gen1"] {
        let config = RvtConfig::preset(name).expect("preset");
        let model = config.init(&device);
        let hw = config.input_size;
        let mut state = RvtState::zeros(&config, 1, hw, &device);
        let mut times = Vec::new();
        for i in 0..7 {
            let x = Tensor::<4>::random(
                [1, 20, hw[0], hw[1]],
                Distribution::Uniform(0.0, 10.0),
                &device,
            );
            let t = Instant::now();
            let (det, next) = model.forward_decoded(x, state);
            let _ = det.into_data();
            state = next;
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: {} params, median {:.1} ms (min {:.1})",
            model.param_breakdown().total,
            times[times.len() / 2],
            times[0]
        );
    }
}
