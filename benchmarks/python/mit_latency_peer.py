"""The PyTorch peer of bench-mit: the MiT backbone as the PyPI `transformers` package's
SegformerModel, in PyTorch eager on the CPU, against prism's exported backbone in onnxruntime,
interleaved in this one process.

usage: mit_latency_peer.py make VARIANT DIR
         SegformerModel with MiT-VARIANT's configuration (NVlabs values), random initialisation
         (seed 0, offline), saved with save_pretrained into DIR (model.safetensors, config.json).
       mit_latency_peer.py time DIR PRISM.onnx HEIGHT WIDTH THREADS ROUNDS
         Loads DIR back, and prism's file (which prism imported from DIR and exported), feeds both
         the same random image [1, 3, HEIGHT, WIDTH], checks the four stage outputs agree, then
         times both in turn, one inference each per round (the first of each round alternates;
         one untimed inference of the same engine before each timed one). Prints one JSON line:
         median ms of each, the paired ratio (torch / onnxruntime per round, its median and a 95%
         bootstrap interval), the largest relative difference per stage, versions.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import numpy as np
import torch
from transformers import SegformerConfig, SegformerModel

WIDE = [64, 128, 320, 512]
PRESETS = {
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2]),
    "b1": (WIDE, [2, 2, 2, 2]),
    "b2": (WIDE, [3, 4, 6, 3]),
    "b3": (WIDE, [3, 4, 18, 3]),
    "b4": (WIDE, [3, 8, 27, 3]),
    "b5": (WIDE, [3, 6, 40, 3]),
}


def make(variant, out):
    dims, depths = PRESETS[variant]
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=depths, sr_ratios=[8, 4, 2, 1],
        hidden_sizes=dims, patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
        num_attention_heads=[1, 2, 5, 8], mlp_ratios=[4, 4, 4, 4], hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
        layer_norm_eps=1e-6, reshape_last_stage=True,
    )
    torch.manual_seed(0)
    SegformerModel(config).eval().save_pretrained(out)


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def interval(r):
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(r, size=(2000, len(r)), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def time_both(folder, onnx_path, h, w, threads, rounds):
    import onnxruntime as ort

    torch.set_num_threads(threads)
    model = SegformerModel.from_pretrained(folder).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    xt = torch.from_numpy(x)

    def run_torch():
        with torch.inference_mode():
            return model(xt, output_hidden_states=True).hidden_states

    def run_ort():
        return session.run(None, {name: x})

    want = [t.numpy() for t in run_torch()]
    got = run_ort()
    errors = [float(np.abs(g - t).max() / np.abs(t).max()) for g, t in zip(got, want)]
    for f in (run_torch, run_ort):
        f()
    times = {"torch": [], "ort": []}
    engines = [("torch", run_torch), ("ort", run_ort)]
    for i in range(rounds):
        order = engines if i % 2 == 0 else engines[::-1]
        for key, f in order:
            f()
            times[key].append(timed(f))
            time.sleep(0.02)
    ratio = np.array(times["torch"]) / np.array(times["ort"])
    print(json.dumps({
        "torch_ms": float(np.median(times["torch"])),
        "ort_ms": float(np.median(times["ort"])),
        "torch_over_ort": float(np.median(ratio)),
        "ci95": interval(ratio),
        "stage_rel_errors": errors,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "rounds": rounds,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "time":
        d, f, h, w, t, r = sys.argv[2:8]
        time_both(d, f, int(h), int(w), int(t), int(r))
    else:
        sys.exit(__doc__)
