"""Writes `crates/prism-data/tests/fixtures/rvt-preprocessed/` with RVT's own preprocessing.

For every scene of `scenes.json` in the fixture folder: `prism data synth` writes the recording
and its labels into a Gen1- or 1Mpx-style split (`train`, `val`, `test`), `rvt_input_h5.py` turns
the `.dat` into the `events/{x,y,p,t}` HDF5 file RVT reads, and RVT's
`scripts/genx/preprocess_dataset.py` (stacked_hist, const_duration and filter_gen1 / filter_gen4
configs, as RVT's README runs it) writes the preprocessed dataset, which replaces the fixture's
`gen1/` and `gen4/` folders. RVT's code is run from the checkout given, never copied.

Usage (through `cargo xtask rvt-fixture`): rvt_fixture.py PRISM_BINARY RVT_CHECKOUT FIXTURE_DIR
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    prism, rvt, fixture = (Path(a).resolve() for a in sys.argv[1:4])
    scenes = json.loads((fixture / "scenes.json").read_text())
    genx = rvt / "scripts" / "genx"
    conf = genx / "conf_preprocess"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        datasets = sorted({s["dataset"] for s in scenes})
        for ds in datasets:
            for split in ("train", "val", "test"):
                (tmp / "in" / ds / split).mkdir(parents=True, exist_ok=True)
        for s in scenes:
            out = tmp / "in" / s["dataset"] / s["split"] / s["name"]
            subprocess.run(
                [str(prism), "data", "synth", "--out", str(out),
                 "--width", str(s["width"]), "--height", str(s["height"]),
                 "--duration-s", str(s["duration_s"]), "--objects", str(s["objects"]),
                 "--label-hz", str(s["label_hz"]), "--seed", str(s["seed"])],
                check=True)
        for ds in datasets:
            subprocess.run([sys.executable, str(HERE / "rvt_input_h5.py"), str(tmp / "in" / ds), ds],
                           check=True)
            subprocess.run(
                [sys.executable, "preprocess_dataset.py", str(tmp / "in" / ds), str(tmp / "out" / ds),
                 str(conf / "representation" / "stacked_hist.yaml"),
                 str(conf / "extraction" / "const_duration.yaml"),
                 str(conf / f"filter_{ds}.yaml"), "-ds", ds, "-np", "1"],
                cwd=genx, check=True)
            target = fixture / ds
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(tmp / "out" / ds, target)
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
