//! Generate Burn code for every committed ONNX model with burn-onnx's `ModelGen`.
//!
//! A model file that is missing (first checkout of a fresh model, before
//! `cargo test -p prism-export-roundtrip -- --ignored regenerate` has written it) is skipped
//! and reported through the `missing_models` cfg; the `committed_models_are_our_exports` test
//! then fails, so a missing file never passes silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use burn_onnx::{LoadStrategy, ModelGen};

/// Keep in sync with `MODELS` in src/lib.rs.
const MODELS: [&str; 3] = ["mlp", "convnet", "encoder"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(missing_models)");
    println!("cargo::rerun-if-changed=build.rs");
    let mut gen = ModelGen::new();
    // Weights compiled into the test binary: no path to carry around at run time.
    gen.load_strategy(LoadStrategy::Embedded).out_dir("model/");
    let mut missing = false;
    for name in MODELS {
        let path = format!("models/{name}.onnx");
        println!("cargo::rerun-if-changed={path}");
        if Path::new(&path).exists() {
            gen.input(&path);
        } else {
            println!("cargo::warning={path} is missing: regenerate the models (see README.md)");
            missing = true;
        }
    }
    if missing {
        println!("cargo::rustc-cfg=missing_models");
    } else {
        gen.run_from_script();
    }
}
