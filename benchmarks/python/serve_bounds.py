"""What this machine allows any server of an RVT file, whatever its code (issue 17's two goals).

Usage: serve_bounds.py MODEL.onnx THREADS [SECONDS]
MODEL.onnx: an export with a dynamic batch axis (`prism export onnx --dynamic-batch`).

1. The loopback floor of the binary path: one request's bytes (every input as raw float32) sent
   over a loopback TCP connection and the outputs' bytes sent back, with preallocated buffers and
   nothing parsed or computed. A server that adds no time at all to the model still pays this at
   one client; the goal (within 10 % of the bare model) leaves 0.1 x the bare model's time for it.
2. The compute ceiling of throughput: ONNX Runtime CPU alone, back to back, at batch 1, 4 and 16
   (as if a server batched its clients' windows perfectly, sending and parsing nothing). No
   server of this file on this machine can answer more windows per second than the best of these.

Prints one JSON object.
"""

import json
import socket
import statistics
import sys
import threading
import time

import numpy as np
import onnxruntime as ort


def loopback_round_trip_ms(n_in: int, n_out: int, seconds: float) -> float:
    """Median time to send `n_in` bytes to a loopback peer and read its `n_out`-byte answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def echo():
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = memoryview(bytearray(n_in))
        answer = bytes(n_out)
        while True:
            got = 0
            while got < n_in:
                k = conn.recv_into(request[got:])
                if k == 0:
                    return
                got += k
            conn.sendall(answer)

    threading.Thread(target=echo, daemon=True).start()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request, answer = bytes(n_in), memoryview(bytearray(n_out))
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 50:
        t = time.perf_counter()
        client.sendall(request)
        got = 0
        while got < n_out:
            got += client.recv_into(answer[got:])
        times.append((time.perf_counter() - t) * 1e3)
    client.close()
    return statistics.median(times[10:])


def feeds_at(session: ort.InferenceSession, batch: int) -> dict:
    """The histogram of small counts and zero states, at `batch`."""
    feeds = {}
    for k, i in enumerate(session.get_inputs()):
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        n = int(np.prod(shape))
        data = (np.arange(n) * 7919 % 11) if k == 0 else np.zeros(n)
        feeds[i.name] = data.astype(np.float32).reshape(shape)
    return feeds


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 6.0
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    one = feeds_at(session, 1)
    outputs = session.run(None, one)
    n_in = sum(v.nbytes for v in one.values())
    n_out = sum(o.nbytes for o in outputs)
    compute = {}
    for batch in (1, 4, 16):
        feeds = feeds_at(session, batch)
        for _ in range(2):
            session.run(None, feeds)
        times = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 5:
            t = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        compute[batch] = {"ms_per_run": median * 1e3, "windows_per_s": batch / median}
    bare_ms = compute[1]["ms_per_run"]
    floor = loopback_round_trip_ms(n_in, n_out, seconds)
    print(json.dumps({
        "model": path,
        "onnxruntime": ort.__version__,
        "threads": threads,
        "request_bytes": n_in,
        "response_bytes": n_out,
        "bare_model_ms": bare_ms,
        "loopback_round_trip_ms": floor,
        "allowed_by_goal_ms": 0.1 * bare_ms,
        "floor_over_bare": (bare_ms + floor) / bare_ms,
        "compute_ceiling": compute,
        "max_windows_per_s": max(c["windows_per_s"] for c in compute.values()),
    }, indent=1))


if __name__ == "__main__":
    main()
