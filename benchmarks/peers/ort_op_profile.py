"""Where ONNX Runtime CPU spends a window's time, per operator type of its optimized graph.

Usage: ort_op_profile.py THREADS WINDOWS FILE.onnx [FILE.onnx ...]

Each file runs WINDOWS times on the same inputs (the first input a histogram of small counts,
the others zero, as bench-serve's request and `python/serve_bounds.py` feed them) with
`SessionOptions.enable_profiling`;
the kernel time of every node is summed per operator type (after ONNX Runtime's fusions, so a
quantized convolution shows as `QLinearConv`, a fused SiLU as `QuickGelu`). Prints a markdown
table per file: ms per window, share of the kernel time, and nodes per window.
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def feeds_for(session):
    feeds = {}
    for k, i in enumerate(session.get_inputs()):
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        n = int(np.prod(shape))
        data = (np.arange(n) * 7919 % 11) if k == 0 else np.zeros(n)
        feeds[i.name] = data.astype(np.float32).reshape(shape)
    return feeds


def profile(path, threads, windows, out_dir):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(out_dir, os.path.basename(path))
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = feeds_for(session)
    for _ in range(windows):
        session.run(None, feeds)
    events = json.load(open(session.end_profiling()))
    time_us, nodes = collections.defaultdict(float), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            time_us[op] += e["dur"]
            nodes[op] += 1
    return time_us, nodes


def main():
    threads, windows, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    with tempfile.TemporaryDirectory() as out_dir:
        for path in files:
            time_us, nodes = profile(path, threads, windows, out_dir)
            total = sum(time_us.values())
            print(f"\n{path}: kernel time {total / windows / 1e3:.2f} ms per window "
                  f"(ONNX Runtime {ort.__version__}, {threads} threads, {windows} windows)\n")
            print("| operator | ms / window | share | nodes |\n|---|---|---|---|")
            for op, t in sorted(time_us.items(), key=lambda kv: -kv[1]):
                print(f"| {op} | {t / windows / 1e3:.2f} | {100 * t / total:.1f} % | "
                      f"{nodes[op] // windows} |")


if __name__ == "__main__":
    main()
