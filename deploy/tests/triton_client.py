"""Drives `prism serve` with Triton's own Python client (tritonclient, from PyPI) and checks every
answer against ONNX Runtime running the same ONNX file in this process.

Usage: triton_client.py http|grpc HOST:PORT MODEL_NAME MODEL.onnx
       triton_client.py http|grpc HOST:PORT --repository NAME_A NAME_B MODEL.onnx

Checks, over HTTP (tritonclient.http) or gRPC (tritonclient.grpc): health, server and model
metadata, model readiness; infer (over HTTP with JSON tensors, with binary tensors in both
directions and mixed; over gRPC with raw tensor contents); an RVT sequence (sequence_id / sequence_start /
sequence_end) whose detections equal ONNX Runtime's with the state fed back by hand; errors
come back as InferenceServerException with the server's message. Prints one line per check and
exits non-zero on the first failure.

With `--repository` the server serves a model repository holding NAME_A and NAME_B (both copies
of MODEL.onnx): the repository index, unloading and loading a model, a reload, and the refusals
(an unknown model, load parameters) through the client's repository API.
"""

import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def main():
    protocol, url, model, onnx_path = sys.argv[1:5]
    grpc = protocol == "grpc"
    api = grpcclient if grpc else httpclient
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    client = api.InferenceServerClient(url=url)
    # gRPC answers protobuf messages unless asked for JSON-like dicts.
    as_json = {"as_json": True} if grpc else {}

    def tensor(name, value, binary):
        t = api.InferInput(name, list(value.shape), "FP32")
        if grpc:
            t.set_data_from_numpy(value)
        else:
            t.set_data_from_numpy(value, binary_data=binary)
        return t

    def requested(name, binary):
        return api.InferRequestedOutput(name) if grpc else api.InferRequestedOutput(name, binary_data=binary)

    check(client.is_server_live(), "server live")
    check(client.is_server_ready(), "server ready")
    check(client.is_model_ready(model), "model ready")
    server = client.get_server_metadata(**as_json)
    check("binary_tensor_data" in server["extensions"], f"server metadata {server}")
    meta = client.get_model_metadata(model, **as_json)
    names = [i["name"] for i in meta["inputs"]]
    check(names == [i.name for i in session.get_inputs()], f"model inputs {names}")

    rng = np.random.default_rng(7)
    feeds = {
        i.name: rng.integers(0, 5, size=i.shape).astype(np.float32) for i in session.get_inputs()
    }
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    modes = [(True, True)] if grpc else [(False, False), (True, True), (True, False), (False, True)]
    for binary_in, binary_out in modes:
        inputs = [tensor(name, value, binary_in) for name, value in feeds.items()]
        outputs = [requested(n, binary_out) for n in expected]
        result = client.infer(model, inputs, outputs=outputs, request_id="r1")
        for name, want in expected.items():
            got = result.as_numpy(name)
            check(
                got is not None and got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-5),
                f"infer {name} (binary in {binary_in}, out {binary_out}) equals onnxruntime",
            )
    # No outputs named: every output (over HTTP the client asks for them as binary).
    result = client.infer(model, inputs)
    check(
        all(result.as_numpy(n) is not None for n in expected),
        "infer with every output, binary by default",
    )

    # A sequence: the server carries the recurrent state between requests.
    # The fixture's state inputs follow the histogram; each has an output named `<input>_out`.
    first, state_inputs = names[0], names[1:]
    carried = {n: np.zeros(feeds[n].shape, np.float32) for n in state_inputs}
    output_names = [o.name for o in session.get_outputs()]
    windows = [rng.integers(0, 5, size=feeds[first].shape).astype(np.float32) for _ in range(4)]
    for k, window in enumerate(windows):
        result = client.infer(
            model,
            [tensor(first, window, True)],
            sequence_id=1234,
            sequence_start=k == 0,
            sequence_end=k == len(windows) - 1,
        )
        by_hand = dict(zip(output_names, session.run(None, {first: window, **carried})))
        detections = output_names[0]
        check(
            np.allclose(result.as_numpy(detections), by_hand[detections], rtol=1e-4, atol=1e-5),
            f"sequence window {k}: {detections} equals onnxruntime with the state fed back",
        )
        carried = {n: by_hand[n + "_out"] for n in state_inputs}

    # Errors: the server's message reaches the client.
    try:
        client.infer(model, [tensor(first, window, True)], sequence_id=99)
        check(False, "a sequence that was never started is refused")
    except InferenceServerException as e:
        check("is not open" in str(e), f"unknown sequence refused: {e}")
    try:
        client.infer("no-such-model", [tensor(first, window, True)])
        check(False, "an unknown model is refused")
    except InferenceServerException as e:
        check("unknown model" in str(e), f"unknown model refused: {e}")
    try:
        client.infer(model, [tensor(first, window, True)], sequence_id=5, sequence_start=True, outputs=[requested("nope", True)])
        check(False, "an unknown output is refused")
    except InferenceServerException as e:
        check("no output `nope`" in str(e), f"unknown output refused: {e}")
    if grpc:
        # The status codes a gRPC client branches on.
        try:
            client.infer("no-such-model", [tensor(first, window, True)])
        except InferenceServerException as e:
            check(e.status() == "StatusCode.NOT_FOUND", f"unknown model is NOT_FOUND ({e.status()})")
        try:
            client.infer(model, [tensor(first, window, True)], sequence_id=98)
        except InferenceServerException as e:
            check(e.status() == "StatusCode.INVALID_ARGUMENT", f"bad request is INVALID_ARGUMENT ({e.status()})")
    print("all checks passed")


def repository(protocol, url, names, onnx_path):
    grpc = protocol == "grpc"
    api = grpcclient if grpc else httpclient
    client = api.InferenceServerClient(url=url)
    a, b = names
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    def index():
        got = client.get_model_repository_index(as_json=True) if grpc else client.get_model_repository_index()
        models = got.get("models", []) if grpc else got
        return {m["name"]: (m.get("state"), m.get("reason", "")) for m in models}

    def ready(name):
        try:
            return client.is_model_ready(name)
        except InferenceServerException:
            return False

    def raises(call, text):
        try:
            call()
        except InferenceServerException as e:
            return text in str(e)
        return False

    check(index() == {a: ("READY", ""), b: ("READY", "")}, f"repository index lists {a} and {b} as READY")
    client.unload_model(a)
    check(not ready(a) and ready(b), f"{a} unloaded, {b} still ready")
    check(index()[a] == ("UNAVAILABLE", "unloaded"), f"the index says why {a} is unavailable")
    check(raises(lambda: client.get_model_metadata(a), "unknown model"), f"{a} refused while unloaded")
    client.load_model(a)
    check(ready(a), f"{a} loaded again")
    feeds = {i.name: np.ones(i.shape, np.float32) for i in session.get_inputs()}
    want = session.run(None, feeds)[0]
    inputs = []
    for name, value in feeds.items():
        t = api.InferInput(name, list(value.shape), "FP32")
        t.set_data_from_numpy(value)
        inputs.append(t)
    got = client.infer(a, inputs).as_numpy(session.get_outputs()[0].name)
    check(np.allclose(got, want, rtol=1e-4, atol=1e-5), f"the reloaded {a} infers as onnxruntime does")
    client.load_model(b)
    check(ready(b), f"{b} reloaded in place")
    check(raises(lambda: client.load_model("nope"), "no such model file"), "loading an unknown model is refused")
    if grpc:
        check(
            raises(lambda: client.load_model(a, config="{}"), "load parameter `config`"),
            "load parameters are refused with their name",
        )
    check(ready(a) and ready(b), "both models ready at the end")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    if sys.argv[3:4] == ["--repository"]:
        repository(sys.argv[1], sys.argv[2], sys.argv[4:6], sys.argv[6])
    else:
        main()
