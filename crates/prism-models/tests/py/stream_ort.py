"""Runs an exported RVT model over a sequence of windows in ONNX Runtime, carrying its own state.

usage: stream_ort.py MODEL.onnx DIR N
Reads DIR/x{i}.npy for i in 0..N (and DIR/dt{i}.npy, the window duration, for a model with a
`window_duration_s` input), writes DIR/ort_det{i}.npy and DIR/ort_state{i}_{name}.npy
(states after window i), and the onnx checker verdict on stdout.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
onnx.checker.check_model(onnx.load(model_path), full_check=True)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
DURATION = "window_duration_s"
state_inputs = [i for i in session.get_inputs() if i.name not in ("histogram", DURATION)]
timed = any(i.name == DURATION for i in session.get_inputs())
state = {i.name: np.zeros(i.shape, dtype=np.float32) for i in state_inputs}
outputs = [o.name for o in session.get_outputs()]
for step in range(n):
    feed = {"histogram": np.load(f"{folder}/x{step}.npy"), **state}
    if timed:
        feed[DURATION] = np.load(f"{folder}/dt{step}.npy")
    values = dict(zip(outputs, session.run(outputs, feed)))
    np.save(f"{folder}/ort_det{step}.npy", values["detections"])
    for i in state_inputs:
        state[i.name] = values[i.name + "_out"]
        np.save(f"{folder}/ort_state{step}_{i.name}.npy", state[i.name])
print("checker ok")
