//! MiT encoder: the published parameter counts, NVlabs module names, stage shapes.

use burn::tensor::{Device, Tensor};
use prism_models::mit::{MitConfig, MIT_PRESETS};
use prism_models::rvt::params::{count_params, list_tensors};

/// Backbone-only parameters with a 3-channel stem (`../shared/reference/fusion.md`, table 1).
const PUBLISHED_M: [f64; 6] = [3.32, 13.15, 24.20, 44.07, 60.84, 81.44];

#[test]
fn parameter_counts_match_the_reference_within_half_a_percent() {
    let device = Device::flex();
    for (name, published) in MIT_PRESETS.iter().zip(PUBLISHED_M) {
        let model = MitConfig::preset(name).unwrap().init(&device);
        let m = count_params(&model) as f64 / 1e6;
        let off = (m - published).abs() / published;
        assert!(off < 0.005, "{name}: {m:.3} M, published {published} M");
    }
}

#[test]
fn a_two_channel_stem_adds_only_its_first_convolution() {
    let device = Device::flex();
    let rgb = MitConfig::preset("mit-b0").unwrap();
    let aux = rgb.clone().with_in_channels(2);
    let diff = count_params(&rgb.init(&device)) as i64 - count_params(&aux.init(&device)) as i64;
    assert_eq!(
        diff,
        32 * 7 * 7,
        "one input channel less: 32 x 7 x 7 weights fewer"
    );
}

#[test]
fn module_paths_follow_nvlabs_names() {
    let device = Device::flex();
    let model = MitConfig::preset("mit-b0").unwrap().init(&device);
    let paths: Vec<String> = list_tensors(&model).into_iter().map(|p| p.path).collect();
    for expected in [
        "patch_embed1.proj.weight",
        "patch_embed1.norm.gamma",
        "block1.0.attn.q.weight",
        "block1.0.attn.kv.bias",
        "block1.0.attn.sr.weight",
        "block1.0.attn.norm.beta",
        "block1.1.mlp.dwconv.dwconv.weight",
        "block3.1.mlp.fc2.weight",
        "norm4.gamma",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} missing: {paths:?}"
        );
    }
    // Stage 4 has no spatial reduction (R = 1), so no `sr` or attention norm.
    assert!(!paths.iter().any(|p| p.starts_with("block4.0.attn.sr")));
}

#[test]
fn stages_return_nchw_maps_at_strides_4_to_32() {
    let device = Device::flex();
    let config = MitConfig::preset("mit-b0").unwrap();
    let model = config.init(&device);
    let x = Tensor::<4>::random(
        [2, 3, 64, 96],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let outs = model.forward(x);
    for (i, out) in outs.iter().enumerate() {
        let s = config.strides()[i];
        assert_eq!(out.dims(), [2, config.embed_dims[i], 64 / s, 96 / s]);
        let data: Vec<f32> = out.clone().into_data().try_into_vec::<f32>().unwrap();
        assert!(data.iter().all(|v| v.is_finite()));
    }
}
