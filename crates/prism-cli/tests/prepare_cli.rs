//! `prism data prepare` spread out: `--jobs`, `--shard I/N` and `--executor slurm` (against the
//! one-node Slurm `cargo xtask test` provisions) write exactly the files one plain run writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{prism, stderr, stdout};

/// Every file under `root` but the Slurm logs, by relative path, with its bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if name == "slurm" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}\n{}", stdout(o), stderr(o));
    stdout(o)
}

#[test]
fn jobs_shards_and_slurm_write_what_one_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    for k in 0..6 {
        let split = if k < 4 { "train" } else { "val" };
        std::fs::create_dir_all(p(&format!("in/{split}"))).unwrap();
        let format = if k % 2 == 0 { "dat" } else { "evt3" };
        let seed = (10 + k).to_string();
        ok(&prism(&[
            "data",
            "synth",
            "--out",
            &p(&format!("in/{split}/seq_{k}")),
            "--format",
            format,
            "--duration-s",
            "1",
            "--seed",
            &seed,
        ]));
    }
    let prepare = |out: &str, extra: &[&str]| {
        let mut args = vec!["data", "prepare", "--model", "rvt-tiny-synth", "--input"];
        let (input, out) = (p("in"), p(out));
        args.extend([input.as_str(), "--out", out.as_str()]);
        args.extend(extra);
        ok(&prism(&args))
    };
    let one = prepare("one", &[]);
    assert!(one.contains("prepared 6 sequences"), "{one}");
    let want = files(&dir.path().join("one"));
    assert!(want.len() >= 6, "{} files", want.len());

    prepare("jobs", &["--jobs", "3"]);
    assert!(
        files(&dir.path().join("jobs")) == want,
        "--jobs 3 wrote other bytes"
    );

    let first = prepare("shards", &["--shard", "0/2", "--jobs", "2"]);
    assert!(
        first.contains("prepared 3 sequences (shard 0/2)"),
        "{first}"
    );
    prepare("shards", &["--shard", "1/2"]);
    assert!(
        files(&dir.path().join("shards")) == want,
        "the shards wrote other bytes"
    );
    let again = prepare("shards", &["--shard", "1/2"]);
    assert!(
        again.contains("prepared 0 sequences (shard 1/2), 3 already there"),
        "{again}"
    );

    for bad in ["2/2", "x", "1/0"] {
        let o = prism(&[
            "data",
            "prepare",
            "--model",
            "rvt-tiny-synth",
            "--input",
            &p("in"),
            "--out",
            &p("bad"),
            "--shard",
            bad,
        ]);
        assert!(!o.status.success(), "--shard {bad} accepted");
        assert!(stderr(&o).contains("I/N"), "{}", stderr(&o));
    }

    let Some(conf) = common::slurm_conf() else {
        return;
    };
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "data",
            "prepare",
            "--model",
            "rvt-tiny-synth",
            "--input",
            &p("in"),
        ])
        .args(["--out", &p("slurm"), "--executor", "slurm", "--shards", "3"])
        .args(["--poll-s", "0.5"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(stderr(&o).contains("submitted job array"), "{}", stderr(&o));
    // The tasks did the work; the check here found it all done.
    assert!(
        out.contains("prepared 0 sequences, 6 already there"),
        "{out}"
    );
    assert!(
        files(&dir.path().join("slurm")) == want,
        "the Slurm shards wrote other bytes"
    );
}
