//! MiT import parity against an independent reference: the PyPI `transformers` package's
//! `SegformerModel` (random weights, offline) for b0 and b2, saved in the Hub's layout, in
//! transformers 5's `state_dict()` layout and as an NVlabs `mit_b*.pth`; prism imports each
//! and must give the same four stage outputs within 1e-4 relative. Bad checkpoints are errors
//! that name the key. Needs the PyTorch environment (`cargo xtask provision-torch`, which
//! `cargo xtask test` provisions).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use prism_events::testdata::torch_python;
use prism_models::mit::{import_mit_checkpoint, MitConfig};
use prism_models::torch_weights::ImportError;

/// Runs the reference script for `variant` into a fresh folder.
fn reference(python: &Path, variant: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/segformer_reference.py");
    let out = Command::new(python)
        .arg(script)
        .arg(variant)
        .arg(dir.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "segformer_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn npz(dir: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let mut npz = npyz::npz::NpzArchive::open(dir.join("io.npz")).unwrap();
    let arr = npz.by_name(name).unwrap().unwrap();
    let shape = arr.shape().iter().map(|&d| d as usize).collect();
    (shape, arr.into_vec::<f32>().unwrap())
}

/// Largest absolute difference over the reference's largest magnitude, per stage.
fn parity(dir: &Path, file: &Path, config: &MitConfig) -> [f64; 4] {
    let device = Device::flex();
    let model = import_mit_checkpoint(file, config, &device)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (shape, x) = npz(dir, "x");
    let x = Tensor::<4>::from_data(TensorData::new(x, shape), &device);
    let outs = model.forward(x);
    let mut errs = [0.0; 4];
    for (i, out) in outs.into_iter().enumerate() {
        let (shape, want) = npz(dir, &format!("s{}", i + 1));
        assert_eq!(out.dims().to_vec(), shape, "stage {}", i + 1);
        let got: Vec<f32> = out.into_data().try_into_vec::<f32>().unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let diff = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
        errs[i] = diff / scale;
    }
    errs
}

#[test]
fn b0_and_b2_match_transformers_segformer_in_every_layout() {
    let Some(python) = torch_python() else { return };
    for variant in ["b0", "b2"] {
        let dir = reference(&python, variant);
        let config = MitConfig::preset(variant).unwrap();
        for file in ["hf/model.safetensors", "hf-v5.safetensors", "nvlabs.pth"] {
            let errs = parity(dir.path(), &dir.path().join(file), &config);
            eprintln!("mit-{variant} {file}: stage errors {errs:?}");
            assert!(
                errs.iter().all(|&e| e < 1e-4),
                "mit-{variant} {file}: {errs:?}"
            );
        }
    }
}

#[test]
fn bad_checkpoints_are_errors_naming_the_key() {
    let Some(python) = torch_python() else { return };
    let dir = reference(&python, "b0");
    let device = Device::flex();
    let b0 = MitConfig::preset("mit-b0").unwrap();
    // A b0 checkpoint is not a b1 (same depths, wider stages): a shape error naming the key.
    let b1 = MitConfig::preset("mit-b1").unwrap();
    match import_mit_checkpoint(dir.path().join("nvlabs.pth"), &b1, &device) {
        Err(ImportError::ShapeMismatch { key, .. }) => assert!(key.contains('.'), "{key}"),
        other => panic!("expected a shape mismatch, got {:?}", other.map(|_| ())),
    }
    // A third stage-1 block the b0 file does not hold: the first missing key is named.
    let deeper = MitConfig::new([32, 64, 160, 256], [3, 2, 2, 2]);
    match import_mit_checkpoint(dir.path().join("nvlabs.pth"), &deeper, &device) {
        Err(ImportError::MissingKey(key)) => assert!(key.starts_with("block1.2."), "{key}"),
        Err(ImportError::ShapeMismatch { key, .. }) => panic!("shape before missing: {key}"),
        other => panic!("expected a missing key, got {:?}", other.map(|_| ())),
    }
    // Not a checkpoint at all.
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a zip").unwrap();
    assert!(matches!(
        import_mit_checkpoint(&junk, &b0, &device),
        Err(ImportError::Read { .. })
    ));
}

#[test]
fn a_two_channel_stem_is_made_from_the_rgb_stem() {
    let Some(python) = torch_python() else { return };
    let dir = reference(&python, "b0");
    let device = Device::flex();
    let rgb = MitConfig::preset("mit-b0").unwrap();
    let aux = rgb.clone().with_in_channels(2);
    let rgb_model = import_mit_checkpoint(dir.path().join("nvlabs.pth"), &rgb, &device).unwrap();
    let aux_model = import_mit_checkpoint(dir.path().join("nvlabs.pth"), &aux, &device).unwrap();
    // A grey image in every channel gives both stems the same first-stage output.
    let grey = Tensor::<4>::random(
        [1, 1, 64, 96],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let a = rgb_model.forward_stage(0, grey.clone().repeat_dim(1, 3));
    let b = aux_model.forward_stage(0, grey.repeat_dim(1, 2));
    let diff: f32 = (a - b).abs().max().into_scalar();
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn a_backbone_checkpoint_round_trips_and_starts_every_multimodal_layout() {
    use prism_models::mit::{load_backbone, save_backbone, BackboneCard};
    use prism_models::mm::MmDetectorConfig;
    let Some(python) = torch_python() else { return };
    let dir = reference(&python, "b0");
    let device = Device::flex();
    let config = MitConfig::preset("mit-b0").unwrap();
    let file = dir.path().join("hf/model.safetensors");
    let imported = import_mit_checkpoint(&file, &config, &device).unwrap();
    let card = BackboneCard {
        model: "mit-b0".into(),
        in_channels: 3,
        source: file.display().to_string(),
    };
    let out = dir.path().join("backbone");
    save_backbone(&imported, &card, &out).unwrap();
    let (read_card, backbone) = load_backbone(&out, &device).unwrap();
    assert_eq!(read_card, card);
    let (shape, x) = npz(dir.path(), "x");
    let x = Tensor::<4>::from_data(TensorData::new(x, shape), &device);
    let (shape, s1) = npz(dir.path(), "s1");
    let want = Tensor::<4>::from_data(TensorData::new(s1, shape), &device);
    let close = |got: Tensor<4>, want: Tensor<4>| {
        let scale: f32 = want.clone().abs().max().into_scalar();
        let diff: f32 = (got - want).abs().max().into_scalar();
        diff / scale
    };
    let e = close(backbone.forward_stage(0, x.clone()), want.clone());
    assert!(e < 1e-4, "reloaded backbone: {e}");
    // Every layout starts from it: the RGB stream is the backbone; the thermal + event and
    // early-fusion stems answer a grey image as the RGB stem does.
    let grey = Tensor::<4>::random(
        [1, 1, 64, 96],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let rgb_grey = backbone.forward_stage(0, grey.clone().repeat_dim(1, 3));
    for name in ["mm-mit-b0-rgb", "mm-mit-b0-early", "mm-mit-b0-gaff-s3"] {
        let det = MmDetectorConfig::from_name(name, 2)
            .unwrap()
            .init_pretrained(backbone.clone(), &device)
            .unwrap();
        let enc = &det.encoder;
        let single = enc.rgb.in_channels();
        let e = close(
            enc.rgb.forward_stage(0, grey.clone().repeat_dim(1, single)),
            rgb_grey.clone(),
        );
        assert!(e < 1e-4, "{name} main stream on grey: {e}");
        if single == 3 {
            let e = close(enc.rgb.forward_stage(0, x.clone()), want.clone());
            assert!(e < 1e-4, "{name} RGB stream: {e}");
        }
        if let Some(aux) = &enc.aux {
            let e = close(
                aux.forward_stage(0, grey.clone().repeat_dim(1, 2)),
                rgb_grey.clone(),
            );
            assert!(e < 1e-4, "{name} aux stream on grey: {e}");
        }
    }
    // A backbone of another size is refused, naming what it found.
    let b1 = MitConfig::preset("mit-b1").unwrap().init(&device);
    let err = MmDetectorConfig::from_name("mm-mit-b0-rgb", 2)
        .unwrap()
        .init_pretrained(b1, &device)
        .unwrap_err();
    assert!(err.to_string().contains("[64, 128, 320, 512]"), "{err}");
}
