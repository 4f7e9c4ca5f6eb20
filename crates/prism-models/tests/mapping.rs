//! The checkpoint key mapping is complete and 1:1 for every size and dataset, survives an
//! export -> import round trip, and rejects missing / unexpected / mis-shaped keys by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::Device;
use prism_models::rvt::import::{
    export_reference_state_dict, load_rvt_state_dict, reference_key_map, ImportError, RefTensor,
};
use prism_models::rvt::params::{list_tensors, list_tensors_with_data};
use prism_models::rvt::{RvtConfig, RVT_PRESETS};

#[test]
fn mapping_is_one_to_one_for_all_presets() {
    let device = Device::flex();
    for name in RVT_PRESETS {
        let config = RvtConfig::preset(name).expect("preset");
        let model = config.init(&device);
        let ours: BTreeSet<String> = list_tensors(&model).into_iter().map(|p| p.path).collect();
        let table = reference_key_map(&config);
        let refs: BTreeSet<&str> = table.iter().map(|m| m.reference.as_str()).collect();
        assert_eq!(refs.len(), table.len(), "{name}: duplicate reference keys");
        let mapped: Vec<&String> = table.iter().filter_map(|m| m.ours.as_ref()).collect();
        let mapped_set: BTreeSet<String> = mapped.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            mapped.len(),
            mapped_set.len(),
            "{name}: two reference keys map to one parameter"
        );
        assert_eq!(
            mapped_set, ours,
            "{name}: mapping does not cover our parameters 1:1"
        );
        // Every ignored entry is a BatchNorm counter, one per BatchNorm.
        let ignored: Vec<&str> = table
            .iter()
            .filter(|m| m.ours.is_none())
            .map(|m| m.reference.as_str())
            .collect();
        assert!(ignored.iter().all(|k| k.ends_with(".num_batches_tracked")));
        let bns = table
            .iter()
            .filter(|m| m.reference.ends_with(".running_var"))
            .count();
        assert_eq!(ignored.len(), bns);
    }
}

#[test]
fn fixture_checkpoint_has_exactly_the_mapped_keys() {
    let Some(dir) = common::rvt_fixture_dir() else {
        return;
    };
    let path = dir.join("rvt-tiny-gen1.ckpt");
    let tensors =
        prism_models::rvt::import::read_pytorch_tensors(&path, Some("state_dict")).expect("read");
    let keys: BTreeSet<String> = tensors.keys().cloned().collect();
    let config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
    let expected: BTreeSet<String> = reference_key_map(&config)
        .into_iter()
        .map(|m| format!("mdl.{}", m.reference))
        .collect();
    assert_eq!(keys.len(), 376);
    assert_eq!(keys, expected);
}

fn roundtrip(name: &str) {
    let device = Device::flex();
    let config = RvtConfig::preset(name).expect("preset");
    let model = config.init(&device);
    let sd = export_reference_state_dict(&model, &config);
    let back = load_rvt_state_dict(&sd, &config, &device).expect("import");
    let a = list_tensors_with_data(&model);
    let b = list_tensors_with_data(&back);
    assert_eq!(a.len(), b.len());
    for ((pa, da), (pb, db)) in a.into_iter().zip(b) {
        assert_eq!(pa.path, pb.path);
        assert_eq!(da, db, "{name}: {}", pa.path);
    }
}

#[test]
fn export_import_roundtrip_all_presets() {
    for name in RVT_PRESETS {
        roundtrip(name);
    }
}

fn tiny_sd() -> (RvtConfig, BTreeMap<String, RefTensor>) {
    let config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
    let model = config.init(&Device::flex());
    let sd = export_reference_state_dict(&model, &config);
    (config, sd)
}

#[test]
fn missing_unexpected_and_misshaped_keys_are_named() {
    let device = Device::flex();
    let (config, sd) = tiny_sd();

    let key = "backbone.stages.2.att_blocks.0.att_grid.self_attn.qkv.weight";
    let mut missing = sd.clone();
    missing.remove(key);
    match load_rvt_state_dict(&missing, &config, &device) {
        Err(ImportError::MissingKey(k)) => assert_eq!(k, key),
        other => panic!("expected MissingKey, got {other:?}"),
    }

    let mut extra = sd.clone();
    extra.insert(
        "backbone.stages.0.mask_token".into(),
        RefTensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    match load_rvt_state_dict(&extra, &config, &device) {
        Err(ImportError::UnexpectedKeys(k)) => {
            assert_eq!(k, vec!["backbone.stages.0.mask_token".to_string()])
        }
        other => panic!("expected UnexpectedKeys, got {other:?}"),
    }

    let mut bad = sd.clone();
    bad.insert(
        key.into(),
        RefTensor {
            shape: vec![64, 64],
            data: vec![0.0; 64 * 64],
        },
    );
    let err = load_rvt_state_dict(&bad, &config, &device).expect_err("shape mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains(key) && msg.contains("[64, 64]") && msg.contains("[384, 128]"),
        "{msg}"
    );

    // A small model's checkpoint does not load into a larger config.
    let base = RvtConfig::preset("rvt-base-gen1").expect("preset");
    assert!(matches!(
        load_rvt_state_dict(&sd, &base, &device),
        Err(ImportError::MissingKey(_) | ImportError::ShapeMismatch { .. })
    ));
}

#[test]
fn dws_lstm_variant_maps_and_counts() {
    let device = Device::flex();
    for only_hidden in [true, false] {
        let mut config = RvtConfig::preset("rvt-tiny-gen1").expect("preset");
        config.lstm_dws_conv = true;
        config.lstm_dws_conv_only_hidden = only_hidden;
        let model = config.init(&device);
        let base = RvtConfig::preset("rvt-tiny-gen1")
            .expect("preset")
            .init(&device)
            .param_breakdown();
        // Depthwise 3x3 with bias on C (h only) or 2C (cat(x, h)) channels per stage.
        let mult = if only_hidden { 1 } else { 2 };
        let extra: usize = config.stage_dims().iter().map(|c| mult * c * (9 + 1)).sum();
        assert_eq!(model.param_breakdown().backbone, base.backbone + extra);
        let sd = export_reference_state_dict(&model, &config);
        assert!(sd.contains_key("backbone.stages.3.lstm.conv3x3_dws.weight"));
        assert_eq!(
            sd["backbone.stages.3.lstm.conv3x3_dws.weight"].shape,
            vec![256 * mult, 1, 3, 3]
        );
        let back = load_rvt_state_dict(&sd, &config, &device).expect("import");
        let a = list_tensors_with_data(&model);
        let b = list_tensors_with_data(&back);
        for ((pa, da), (_, db)) in a.into_iter().zip(b) {
            assert_eq!(da, db, "{}", pa.path);
        }
        // It runs: a 64x96 input with partition 2x3.
        let mut small = config.clone();
        small.partition_size = [2, 3];
        let m = small.init(&device);
        let x = burn::tensor::Tensor::<4>::ones([1, 20, 64, 96], &device);
        let (y, _) = m.forward(
            x,
            prism_models::rvt::RvtState::zeros(&small, 1, [64, 96], &device),
        );
        // Anchors: 8x12 + 4x6 + 2x3 = 126; 4 box + 1 obj + 2 classes.
        assert_eq!(y.dims(), [1, 126, 7]);
    }
}
