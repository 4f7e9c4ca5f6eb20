"""The Python peer for bench-rvt: onnxruntime's InferenceSession.run on the same exported file.

usage: rvt_ort_python.py MODEL.onnx THREADS RUNS -> prints the median ms per window as JSON.
The state is carried from window to window, as a streaming user would.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
feed = {i.name: np.zeros(i.shape, dtype=np.float32) for i in session.get_inputs()}
rng = np.random.default_rng(0)
feed["histogram"] = rng.integers(0, 11, size=feed["histogram"].shape).astype(np.float32)
names = [o.name for o in session.get_outputs()]
times = []
for i in range(runs + 3):
    start = time.perf_counter()
    out = dict(zip(names, session.run(names, feed)))
    elapsed = time.perf_counter() - start
    for name in feed:
        if name != "histogram":
            feed[name] = out[name + "_out"]
    if i >= 3:
        times.append(elapsed * 1e3)
print(json.dumps({"median_ms": float(np.median(times)), "onnxruntime": ort.__version__}))
