//! Burn → ONNX (prism-export) → Burn (burn-onnx `ModelGen`, at build time) round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Tensor;
use prism_export::verify::compare;
use prism_export_roundtrip::{device, models_dir, reference, regenerate, MODELS};

/// Relative tolerance (scale-relative, as `verify::compare`).
const TOL: f64 = 1e-5;

/// (a) Each committed file is exactly what prism-export writes for the deterministic module
/// today, and the committed input/output pair is the module's: so the code generated from it
/// (and tested below) is generated from our exporter's output.
#[test]
fn committed_models_are_our_exports() {
    let dir = models_dir();
    for name in MODELS {
        let r = reference(name).unwrap();
        let path = dir.join(format!("{name}.onnx"));
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate the models, see README.md)",
                path.display()
            )
        });
        let fresh = r.onnx.to_bytes();
        assert!(
            committed == fresh,
            "{name}: {} ({} B) differs from a fresh export ({} B); regenerate (see README.md)",
            path.display(),
            committed.len(),
            fresh.len()
        );
        let input = prism_export::npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
        let output = prism_export::npy::read(&dir.join(format!("{name}.output.npy"))).unwrap();
        assert_eq!(input, r.input, "{name}: committed input");
        let err = compare("burn", name, &r.output, &output).unwrap();
        assert!(
            err.max_rel <= TOL,
            "{name}: committed output differs from Burn's: {:.3e}",
            err.max_rel
        );
        eprintln!(
            "{name}: {} B, {} nodes {:?}",
            fresh.len(),
            r.onnx.stats().nodes,
            r.onnx.stats().op_counts
        );
    }
}

/// Export twice in one process: identical bytes (names do not depend on global state).
#[test]
fn export_is_deterministic() {
    for name in MODELS {
        let a = reference(name).unwrap().onnx.to_bytes();
        let b = reference(name).unwrap().onnx.to_bytes();
        assert!(a == b, "{name}: two exports differ");
    }
}

/// The generated model (weights embedded from the .bpk ModelGen wrote) on the committed input.
#[cfg_attr(missing_models, allow(dead_code))]
fn check_generated<const D: usize, const O: usize>(
    name: &'static str,
    forward: impl Fn(Tensor<D>) -> Tensor<O>,
) {
    let dir = models_dir();
    let input = prism_export::npy::read(&dir.join(format!("{name}.input.npy"))).unwrap();
    let committed = prism_export::npy::read(&dir.join(format!("{name}.output.npy"))).unwrap();
    let burn = reference(name).unwrap().output;
    let out = forward(Tensor::<D>::from_data(input, &device())).to_data();
    for (what, expected) in [
        ("the Burn module", &burn),
        ("the committed output", &committed),
    ] {
        let err = compare("modelgen", name, expected, &out).unwrap();
        eprintln!(
            "{name}: ModelGen model vs {what}: max_abs {:.2e} max_rel {:.2e}",
            err.max_abs, err.max_rel
        );
        assert!(
            err.max_rel <= TOL,
            "{name}: ModelGen model vs {what}: rel error {:.3e}",
            err.max_rel
        );
    }
}

#[cfg(not(missing_models))]
mod generated {
    use super::*;
    use prism_export_roundtrip::generated;

    #[test]
    fn mlp_round_trips() {
        let m = generated::mlp::Model::from_embedded(&device());
        check_generated::<2, 2>("mlp", |x| m.forward(x));
    }

    #[test]
    fn convnet_round_trips() {
        let m = generated::convnet::Model::from_embedded(&device());
        check_generated::<4, 2>("convnet", |x| m.forward(x));
    }

    #[test]
    fn encoder_round_trips() {
        let m = generated::encoder::Model::from_embedded(&device());
        check_generated::<3, 3>("encoder", |x| m.forward(x));
    }
}

#[cfg(missing_models)]
#[test]
fn generated_models_are_built() {
    panic!(
        "models/ is incomplete, so no code was generated: regenerate the models (see README.md)"
    );
}

/// Rewrite models/ from the modules (run after changing prism-export's output or a module):
/// `cargo test -p prism-export-roundtrip -- --ignored regenerate_models`.
#[test]
#[ignore = "writes models/; run by hand"]
fn regenerate_models() {
    regenerate().unwrap();
}
