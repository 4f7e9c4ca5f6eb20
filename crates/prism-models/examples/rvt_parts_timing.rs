//! Per-part forward time of RVT-T on flex at 256x320 (backbone stages, FPN, head).
#![allow(clippy::expect_used)]

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use prism_models::rvt::{RvtConfig, RvtState};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let device = Device::flex();
    let config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
    let model = config.init(&device);
    let hw = config.input_size;
    for _ in 0..3 {
        let state = RvtState::zeros(&config, 1, hw, &device);
        let mut x = Tensor::<4>::random(
            [1, 20, hw[0], hw[1]],
            Distribution::Uniform(0.0, 10.0),
            &device,
        );
        let mut hs = Vec::new();
        let mut line = String::new();
        for (s, stage) in model.backbone.stages.iter().enumerate() {
            let t = Instant::now();
            let y = stage.downsample_cf2cl.forward(x.clone());
            let _ = y.clone().into_data();
            let a = ms(t);
            let t = Instant::now();
            let y = stage.att_blocks[0].att_window.forward(y);
            let _ = y.clone().into_data();
            let w = ms(t);
            let t = Instant::now();
            let y = stage.att_blocks[0].att_grid.forward(y);
            let _ = y.clone().into_data();
            let g = ms(t);
            let t = Instant::now();
            // Only the memory: the stage's own forward would run its attention again. The
            // rvt-tiny-gen1 preset has an LSTM.
            let lstm = stage.lstm.as_ref().expect("rvt-tiny-gen1 has LSTM memory");
            let (h, _) = lstm.forward(
                y.permute([0, 3, 1, 2]),
                state.h[s].clone(),
                state.c[s].clone(),
            );
            let _ = h.clone().into_data();
            let l = ms(t);
            line += &format!("s{s}: down {a:.1} win {w:.1} grid {g:.1} lstm {l:.1} | ");
            x = h.clone();
            hs.push(h);
        }
        let t = Instant::now();
        let f = model
            .fpn
            .forward(vec![hs[1].clone(), hs[2].clone(), hs[3].clone()]);
        let _ = f[0].clone().into_data();
        let fp = ms(t);
        let t = Instant::now();
        let o = model.yolox_head.forward(f);
        let _ = o.into_data();
        println!("{line}fpn {fp:.1} head {:.1}", ms(t));
    }
}
