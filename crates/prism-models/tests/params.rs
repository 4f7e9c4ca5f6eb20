//! Parameter counts of RVT-T/S/B equal the official implementation's (recounted with the
//! reference code: backbone / FPN / head), and the published 4.4M / 9.9M / 18.5M within 0.5%.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use prism_models::rvt::{ParamBreakdown, RvtConfig, RVT_PRESETS};

fn breakdown(name: &str) -> ParamBreakdown {
    let config = RvtConfig::preset(name).expect("preset");
    config.init(&Device::flex()).param_breakdown()
}

/// RVT's released cell per stage: one 1x1 convolution 2C -> 4C with bias, 8C² + 4C.
fn plain_lstm_params(name: &str) -> usize {
    let config = RvtConfig::preset(name).expect("preset");
    config.stage_dims().iter().map(|&c| 8 * c * c + 4 * c).sum()
}

#[test]
fn gen1_counts_match_reference_code_exactly() {
    // (preset, backbone, fpn, head, total, published)
    let expected = [
        (
            "rvt-tiny-gen1",
            3_220_032,
            710_784,
            474_325,
            4_405_141,
            4.4e6,
        ),
        (
            "rvt-small-gen1",
            7_209_312,
            1_596_096,
            1_064_757,
            9_870_165,
            9.9e6,
        ),
        (
            "rvt-base-gen1",
            12_784_768,
            3_860_992,
            1_890_709,
            18_536_469,
            18.5e6,
        ),
    ];
    for (name, bb, fpn, head, total, published) in expected {
        let b = breakdown(name);
        println!("{name}: {b:?}");
        assert_eq!(
            b,
            ParamBreakdown {
                backbone: bb,
                memory: plain_lstm_params(name),
                fpn,
                head,
                total
            },
            "{name}"
        );
        let rel = (b.total as f64 - published).abs() / published;
        assert!(
            rel < 0.005,
            "{name}: {} vs published {published}: {rel}",
            b.total
        );
    }
}

#[test]
fn one_mpx_differs_only_by_the_extra_class() {
    // 1Mpx has 3 classes instead of 2: one more output channel in each of the 3 cls_preds
    // (hidden weights + 1 bias); backbone and FPN do not depend on the dataset.
    for size in ["tiny", "small", "base"] {
        let g = breakdown(&format!("rvt-{size}-gen1"));
        let m = breakdown(&format!("rvt-{size}-1mpx"));
        let hidden = RvtConfig::preset(&format!("rvt-{size}-1mpx"))
            .expect("preset")
            .head_hidden();
        assert_eq!(m.backbone, g.backbone);
        assert_eq!(m.fpn, g.fpn);
        assert_eq!(m.head, g.head + 3 * (hidden + 1), "{size}");
    }
    assert_eq!(RVT_PRESETS.len(), 6);
}

#[test]
fn burn_num_params_also_counts_batchnorm_running_stats() {
    use burn::module::Module;
    use prism_models::rvt::params::list_tensors;
    let model = RvtConfig::preset("rvt-tiny-gen1")
        .expect("preset")
        .init(&Device::flex());
    let running: usize = list_tensors(&model)
        .iter()
        .filter(|p| p.running_stat)
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    assert!(running > 0);
    assert_eq!(model.num_params(), model.param_breakdown().total + running);
}

#[test]
fn the_dws_lstm_adds_a_depthwise_kernel_per_stage_and_four_scales_add_a_level() {
    // The depthwise 3x3 on h (RVT's DWSConvLSTM2d, dws_conv_only_hidden): 9C + C per stage.
    let plain = RvtConfig::preset("rvt-tiny-gen1").unwrap();
    let dws = RvtConfig::preset("rvt-tiny-gen1")
        .unwrap()
        .with_lstm_dws_conv(true);
    let (a, b) = (
        plain.init(&Device::flex()).param_breakdown(),
        dws.init(&Device::flex()).param_breakdown(),
    );
    let extra: usize = plain.stage_dims().iter().map(|&c| 10 * c).sum();
    assert_eq!(b.memory, a.memory + extra);
    assert_eq!(b.total, a.total + extra);
    assert_eq!((b.fpn, b.head), (a.fpn, a.head));

    // Four scales: only neck and head grow, by the stride-4 level's layers.
    let four = RvtConfig::preset("rvt-tiny-gen1")
        .unwrap()
        .with_fpn_scales(4);
    let c = four.init(&Device::flex()).param_breakdown();
    assert_eq!((c.backbone, c.memory), (a.backbone, a.memory));
    let (cs, c0, hidden, k) = (32, 64, four.head_hidden(), 2);
    let bn = |ch: usize| 2 * ch;
    let base_conv = |i: usize, o: usize, kk: usize| i * o * kk * kk + bn(o);
    // A CSP layer (depth 1 at tiny): conv1, conv2 (i -> o/2), conv3 (o -> o), one bottleneck.
    let csp = |i: usize, o: usize| {
        let h = o / 2;
        2 * base_conv(i, h, 1) + base_conv(2 * h, o, 1) + base_conv(h, h, 1) + base_conv(h, h, 3)
    };
    let neck_level =
        base_conv(c0, cs, 1) + csp(2 * cs, cs) + base_conv(cs, cs, 3) + csp(2 * cs, c0);
    let head_level = base_conv(cs, hidden, 1)
        + 4 * base_conv(hidden, hidden, 3)
        + (hidden * k + k)
        + (hidden * 4 + 4)
        + (hidden + 1);
    assert_eq!(c.fpn, a.fpn + neck_level);
    assert_eq!(c.head, a.head + head_level);
}
