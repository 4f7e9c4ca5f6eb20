//! Parameter counts of RVT-T/S/B equal the official implementation's (recounted with the
//! reference code: backbone / FPN / head), and the published 4.4M / 9.9M / 18.5M within 0.5%.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use prism_models::rvt::{ParamBreakdown, RvtConfig, RVT_PRESETS};

fn breakdown(name: &str) -> ParamBreakdown {
    let config = RvtConfig::preset(name).expect("preset");
    config.init(&Device::flex()).param_breakdown()
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
