"""Paired per-window latency of several ONNX files in ONNX Runtime CPU, in one process.

Usage: ort_paired_latency.py ROUNDS THREADS FILE.onnx [FILE.onnx ...]

Every file runs the same real-looking window (a stacked histogram of small counts) with zero
state; rounds interleave the files so load changes hit all of them alike. Each timed run follows
an untimed run of the same file after a 20 ms pause, as in `rvt_ort_python.py`: every session
has its own intra-op thread pool, whose threads spin for a while after a run, and without the
pause the previous file's spinning threads share the cores with the file being timed. Prints one JSON
object: per file the median and p90 ms, and per file the paired ratio to the first file
(median over rounds of file / first) with a 95 % bootstrap interval.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    rounds, threads = int(sys.argv[1]), int(sys.argv[2])
    files = sys.argv[3:]
    sessions, feeds = [], []
    rng = np.random.default_rng(0)
    for f in files:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
        feed = {}
        for k, i in enumerate(s.get_inputs()):
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            if k == 0:
                feed[i.name] = (rng.random(shape) < 0.05).astype(np.float32) * 3
            else:
                feed[i.name] = np.zeros(shape, np.float32)
        sessions.append(s)
        feeds.append(feed)
    for s, d in zip(sessions, feeds):
        for _ in range(5):
            s.run(None, d)
    times = np.zeros((rounds, len(files)))
    for r in range(rounds):
        for j, (s, d) in enumerate(zip(sessions, feeds)):
            time.sleep(0.02)
            s.run(None, d)
            t = time.perf_counter()
            s.run(None, d)
            times[r, j] = (time.perf_counter() - t) * 1e3
    ratios = times / times[:, :1]
    boot = rng.integers(0, rounds, (2000, rounds))
    result = {}
    for j, f in enumerate(files):
        meds = np.median(ratios[boot, j], axis=1)
        result[f] = {
            "median_ms": float(np.median(times[:, j])),
            "p90_ms": float(np.percentile(times[:, j], 90)),
            "ratio_to_first": float(np.median(ratios[:, j])),
            "ratio_ci95": [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))],
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
