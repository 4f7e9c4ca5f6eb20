"""The serving benchmark's peer: KServe's Python model server (the PyPI `kserve` package) serving
one ONNX file through ONNX Runtime with the Open Inference (v2) protocol, as a user would set it
up instead of `prism serve`.

Usage (from bench-serve): kserve_peer.py MODEL.onnx NAME HTTP_PORT GRPC_PORT THREADS

KServe reads its own options from the command line when it is imported, so they are passed in
KServe's form: everything after `--` goes to KServe (`--http_port`, `--grpc_port`, ...).
"""

import sys

model_path, name, http_port, grpc_port, threads = sys.argv[1:6]
# KServe parses sys.argv at import; hand it its own options only.
# gRPC messages up to 64 MiB, as prism's body limit (KServe's default, 8 MiB, refuses a 1Mpx
# window's 9 MB request).
limit = str(64 << 20)
sys.argv = [
    sys.argv[0], "--http_port", http_port, "--grpc_port", grpc_port, "--workers", "1",
    "--grpc_max_send_message_length", limit, "--grpc_max_receive_message_length", limit,
]

import onnxruntime as ort  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402


class OnnxModel(Model):
    """One ONNX Runtime session, every output returned (binary when the request asks)."""

    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        results = self.session.run(None, feeds)
        outputs = []
        for output_name, value in zip(self.output_names, results):
            out = InferOutput(name=output_name, shape=list(value.shape), datatype="FP32")
            out.set_data_from_numpy(value, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )


if __name__ == "__main__":
    ModelServer().start([OnnxModel(name, model_path, int(threads))])
