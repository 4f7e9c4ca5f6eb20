"""The peer of `prism quantize`: ONNX Runtime's own static quantizer on the same float file and
the same calibration windows.

Usage: ort_quantize.py FLOAT.onnx CALIB_DIR OUT_DIR [--reduce-range]

CALIB_DIR holds what `prism quantize --save-calib CALIB_DIR` wrote: windows.npy (f32, one model
input per window) and starts.npy (1 where a window starts a sequence). The recurrent state is
carried the way prism carries it: the float model runs the windows in order, its state outputs
feed the next window's state inputs, and each window's feed (input and state) is one
calibration sample. Writes OUT_DIR/ort-{minmax,percentile,entropy}.onnx with QDQ, S8S8
(symmetric int8 activations and weights), per-channel weights, and the float file's metadata.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)


class CarriedState(CalibrationDataReader):
    def __init__(self, model_path, windows, starts):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        model = onnx.load(model_path, load_external_data=False)
        self.data_input = model.graph.input[0].name
        self.state_inputs = [i.name for i in model.graph.input[1:]]
        self.outputs = [o.name for o in model.graph.output]
        # prism exports state outputs as `<input>_out`.
        self.state_outputs = [f"{name}_out" for name in self.state_inputs]
        self.shapes = {
            i.name: [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input
        }
        self.windows = windows
        self.starts = starts
        self.rewind()

    def rewind(self):
        self.k = 0
        self.state = None

    def get_next(self):
        if self.k >= len(self.windows):
            return None
        if self.starts[self.k] or self.state is None:
            self.state = {n: np.zeros(self.shapes[n], np.float32) for n in self.state_inputs}
        feed = {self.data_input: self.windows[self.k][None].astype(np.float32), **self.state}
        outs = dict(zip(self.outputs, self.session.run(self.outputs, feed)))
        self.state = {i: outs[o] for i, o in zip(self.state_inputs, self.state_outputs)}
        self.k += 1
        return feed


def main():
    float_path, calib_dir, out_dir = sys.argv[1:4]
    reduce_range = "--reduce-range" in sys.argv[4:]
    windows = np.load(os.path.join(calib_dir, "windows.npy"), mmap_mode="r")
    starts = np.load(os.path.join(calib_dir, "starts.npy"))
    os.makedirs(out_dir, exist_ok=True)
    metadata = onnx.load(float_path, load_external_data=False).metadata_props
    for name, method in [
        ("minmax", CalibrationMethod.MinMax),
        ("percentile", CalibrationMethod.Percentile),
        ("entropy", CalibrationMethod.Entropy),
    ]:
        out = os.path.join(out_dir, f"ort-{name}.onnx")
        quantize_static(
            float_path,
            out,
            CarriedState(float_path, windows, starts),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        model = onnx.load(out)
        del model.metadata_props[:]
        model.metadata_props.extend(metadata)
        onnx.save(model, out)
        print(out, flush=True)


if __name__ == "__main__":
    main()
