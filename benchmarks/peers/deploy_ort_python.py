"""The Python peer of bench-deploy: onnxruntime's InferenceSession.run on the same exported file
and the same input, as a persistent process so its windows interleave with prism's.

usage: deploy_ort_python.py MODEL.onnx THREADS INPUT.f32 LEVEL
  INPUT.f32: the network input (raw little-endian float32, the model's input shape).
  LEVEL: "default" (what a Python user gets: ORT_ENABLE_ALL, as prism's engine) or "layout"
  (ORT_ENABLE_LAYOUT, which prism's engine used before; ONNX Runtime < 1.22 does not know it).
Prints one JSON line when ready, then answers each stdin line "run N" with a JSON line
{"times_ms": [...]} (N windows, state carried from window to window); "quit" or EOF ends it.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

path, threads, input_path, level = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
options = ort.SessionOptions()
options.intra_op_num_threads = threads
if level == "layout":
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
inputs = session.get_inputs()
feed = {i.name: np.zeros(i.shape, dtype=np.float32) for i in inputs}
first = inputs[0].name
feed[first] = np.fromfile(input_path, dtype="<f4").reshape(inputs[0].shape)
names = [o.name for o in session.get_outputs()]
# State inputs are fed from the outputs of the same name with `_out` appended (prism's export).
carried = [(name, name + "_out") for name in feed if name != first and name + "_out" in names]
print(json.dumps({"ready": True, "onnxruntime": ort.__version__, "level": str(options.graph_optimization_level)}), flush=True)

for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
        break
    n = int(words[1])
    times = []
    for _ in range(n):
        start = time.perf_counter()
        out = session.run(names, feed)
        times.append((time.perf_counter() - start) * 1e3)
        got = dict(zip(names, out))
        for state_in, state_out in carried:
            feed[state_in] = got[state_out]
    print(json.dumps({"times_ms": times}), flush=True)
