//! `prism import mit-checkpoint`: SegFormer weights made by the PyPI `transformers` package (the
//! models crate's reference script) become a backbone checkpoint folder; bad input is an error
//! and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{prism, stderr, stdout};
use prism_events::testdata::torch_python;

#[test]
fn mit_checkpoints_import_from_both_layouts_and_bad_ones_write_nothing() {
    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../prism-models/tests/py/segformer_reference.py");
    let made = Command::new(&python)
        .arg(script)
        .arg("b0")
        .arg(dir.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (file, folder) in [
        ("hf/model.safetensors", "from-hf"),
        ("nvlabs.pth", "from-nvlabs"),
    ] {
        let out = dir.path().join(folder);
        let o = prism(&[
            "import",
            "mit-checkpoint",
            dir.path().join(file).to_str().unwrap(),
            "--model",
            "mit-b0",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains("imported mit-b0"), "{}", stdout(&o));
        let card = std::fs::read_to_string(out.join("backbone.toml")).unwrap();
        assert!(
            card.contains("model = \"mit-b0\"") && card.contains("in_channels = 3"),
            "{card}"
        );
        assert!(out.join("model.safetensors").is_file());
    }
    // The two layouts hold the same weights: the two folders hold the same tensors, bit for bit.
    let compare = "import sys\nfrom safetensors.numpy import load_file\n\
        a, b = load_file(sys.argv[1]), load_file(sys.argv[2])\n\
        assert a.keys() == b.keys(), a.keys() ^ b.keys()\n\
        bad = [k for k in a if a[k].shape != b[k].shape or (a[k] != b[k]).any()]\n\
        assert not bad, bad\nprint(len(a))";
    let o = Command::new(&python)
        .arg("-c")
        .arg(compare)
        .arg(dir.path().join("from-hf/model.safetensors"))
        .arg(dir.path().join("from-nvlabs/model.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "the imports differ: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "176", "tensors in a mit-b0 checkpoint");
    // Bad input: a clear error, and no folder.
    let out = dir.path().join("bad");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let nvlabs = dir.path().join("nvlabs.pth");
    for (file, model, says) in [
        (nvlabs.as_path(), "mit-b1", "shape"),
        (nvlabs.as_path(), "mit-b9", "unknown backbone"),
        (junk.as_path(), "mit-b0", "junk.pth"),
    ] {
        let o = prism(&[
            "import",
            "mit-checkpoint",
            file.to_str().unwrap(),
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{model}");
        let err = stderr(&o);
        assert!(
            err.to_lowercase().contains(says) && !err.contains("panicked"),
            "{model}: {err}"
        );
        assert!(!out.exists(), "{model}: something was written");
    }
}
