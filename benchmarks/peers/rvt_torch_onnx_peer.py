"""The issue-4 peer for bench-rvt: RVT in PyTorch, exported with torch.onnx (opset 17).

usage: rvt_torch_onnx_peer.py CONFIG_JSON OUT.onnx [EXTRA_SITE_DIR]

CONFIG_JSON holds `embed_dim`, `dim_head`, `fpn_depth`, `num_classes`, `partition_size` and
`input_size` (the model card's values), and optionally `lstm_split`: "slices" (default) or
"tensor_split", the LSTM gate split RVT's own code uses, which torch.onnx exports as `Loop` blocks
(the reference export's form). The network is `benchmarks/python/rvt_torch.py`, the same
network as prism's (and so as uzh-rpg/RVT), with random weights; it is exported the way a PyTorch
user would export it (`torch.onnx.export`, TorchScript exporter, opset 17, static shapes) with
prism's input and output names (`histogram`, `h1` ... `c4` in; `detections`, `h1_out` ... out),
so that `rvt_ort_python.py` times both files the same way.

Run it with the PyTorch environment's Python (`$PRISM_ENV/torch-venv`). That environment has no
`onnx` package, which torch.onnx needs to write the file: EXTRA_SITE_DIR (the main prism venv's
site-packages) is appended to `sys.path`, after the PyTorch environment's own packages.
Prints one JSON line: the file, its node count and the export time.
"""
import json
import os
import sys
import time

config = json.loads(sys.argv[1])
out_path = sys.argv[2]
if len(sys.argv) > 3:
    sys.path.append(sys.argv[3])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import torch  # noqa: E402
from rvt_torch import Rvt, RvtConfig  # noqa: E402


class Flat(torch.nn.Module):
    """One streaming step with flat tensors: histogram, h1, c1, ..., h4, c4."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, h1, c1, h2, c2, h3, c3, h4, c4):
        raw, states = self.model(x, [(h1, c1), (h2, c2), (h3, c3), (h4, c4)])
        return (raw,) + tuple(t for hc in states for t in hc)


def main():
    h, w = config["input_size"]
    cfg = RvtConfig(
        embed_dim=config["embed_dim"],
        dim_head=config["dim_head"],
        fpn_depth=config["fpn_depth"],
        num_classes=config["num_classes"],
        partition_size=tuple(config["partition_size"]),
        lstm_split=config.get("lstm_split", "slices"),
    )
    torch.manual_seed(0)
    model = Flat(Rvt(cfg).eval()).eval()
    args = [torch.zeros(1, 20, h, w)]
    for s, d in enumerate(cfg.stage_dims()):
        f = 4 * 2**s
        args += [torch.zeros(1, d, h // f, w // f), torch.zeros(1, d, h // f, w // f)]
    inputs = ["histogram"] + [f"{k}{i}" for i in range(1, 5) for k in "hc"]
    outputs = ["detections"] + [f"{k}{i}_out" for i in range(1, 5) for k in "hc"]
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            model,
            tuple(args),
            out_path,
            opset_version=17,
            input_names=inputs,
            output_names=outputs,
            dynamo=False,
        )
    elapsed = time.perf_counter() - start
    import onnx

    nodes = len(onnx.load(out_path, load_external_data=False).graph.node)
    print(json.dumps({"file": out_path, "nodes": nodes, "export_s": elapsed, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
