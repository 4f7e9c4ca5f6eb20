"""The Python timing for bench-rvt: onnxruntime's InferenceSession.run on exported RVT files.

usage: rvt_ort_python.py MODEL.onnx[,OTHER.onnx...] THREADS RUNS

Every file gets its own session (THREADS intra-op threads, CPU provider, the default graph
optimisation level) and its own carried state, fed the same random histogram. The files are
run in turn, window by window (each timed window follows an untimed one of the same file, and a
20 ms pause lets the previous session's thread pool stop spinning), so that drift in the
machine's speed hits every file alike. Prints one JSON line: the median ms per window of each
file, in order, and for each file the median over rounds of its time divided by the first
file's time in the same round (the paired ratio, robust to drift), a 95% bootstrap interval of
that median (2000 resamples of the rounds, fixed seed) and the number of rounds in which the
file was slower than the first file.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

paths, threads, runs = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])


class Stream:
    """One file's session and its carried state."""

    def __init__(self, path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.feed = {i.name: np.zeros(i.shape, dtype=np.float32) for i in self.session.get_inputs()}
        rng = np.random.default_rng(0)
        self.feed["histogram"] = rng.integers(0, 11, size=self.feed["histogram"].shape).astype(np.float32)
        self.names = [o.name for o in self.session.get_outputs()]

    def window(self):
        """Run one window, carry the state; returns ms."""
        start = time.perf_counter()
        out = dict(zip(self.names, self.session.run(self.names, self.feed)))
        elapsed = time.perf_counter() - start
        for name in self.feed:
            if name != "histogram":
                self.feed[name] = out[name + "_out"]
        return elapsed * 1e3


streams = [Stream(p) for p in paths]
for s in streams:
    for _ in range(3):
        s.window()
times = [[] for _ in streams]
for i in range(runs):
    for k in range(len(streams)):
        # The first file of each round rotates, so no file always runs right after another.
        j = (i + k) % len(streams)
        streams[j].window()
        times[j].append(streams[j].window())
        time.sleep(0.02)
per_round = [np.array(t) / np.array(times[0]) for t in times]


def interval(r):
    """95% bootstrap interval of the median of the per-round ratios `r`."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(r, size=(2000, len(r)), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


print(json.dumps({
    "median_ms": [float(np.median(t)) for t in times],
    "paired_ratio": [float(np.median(r)) for r in per_round],
    "paired_ci95": [interval(r) for r in per_round],
    "rounds_slower": [int(np.sum(r > 1.0)) for r in per_round],
    "onnxruntime": ort.__version__,
}))
