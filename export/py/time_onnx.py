"""Time ONNX models against each other in ONNX Runtime, in one process.

Usage: time_onnx.py SPEC.json
SPEC.json: {"models": [{"model": path, "inputs": {name: npy path}}, ...],
            "runs": 200, "warmup": 20, "threads": 1}
Every model gets its own session (CPU, `threads` intra-op threads, all graph optimizations).
After `warmup` runs of each, the models are run in turn `runs` times (interleaved, so drift in
machine load hits all of them alike) and every run is timed on its own. One JSON line is
printed: {"models": [{"model", "median_ms", "min_ms", "p90_ms"}, ...]}.

Also usable by hand: time_onnx.py --models a.onnx b.onnx (random float inputs of the declared
shapes; symbolic axes become 1).
"""
import json
import sys
import time

import numpy as np


def session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def random_feeds(sess, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_models(models, runs=200, warmup=20, threads=1):
    """models: [(path, feeds or None)]. Returns one dict per model."""
    sessions = []
    for path, feeds in models:
        sess = session(path, threads)
        if feeds is None:
            feeds = random_feeds(sess)
        sessions.append((sess, [o.name for o in sess.get_outputs()], feeds))
    for sess, outs, feeds in sessions:
        for _ in range(warmup):
            sess.run(outs, feeds)
    samples = [[] for _ in sessions]
    for _ in range(runs):
        for k, (sess, outs, feeds) in enumerate(sessions):
            t = time.perf_counter()
            sess.run(outs, feeds)
            samples[k].append((time.perf_counter() - t) * 1000.0)
    result = []
    for (path, _), s in zip(models, samples):
        a = np.array(s)
        result.append({
            "model": path,
            "median_ms": float(np.median(a)),
            "min_ms": float(a.min()),
            "p90_ms": float(np.percentile(a, 90)),
        })
    return result


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--models":
        res = time_models([(p, None) for p in sys.argv[2:]])
    else:
        with open(sys.argv[1]) as f:
            spec = json.load(f)
        models = [
            (m["model"], {n: np.load(p) for n, p in m.get("inputs", {}).items()} or None)
            for m in spec["models"]
        ]
        res = time_models(
            models,
            runs=int(spec.get("runs", 200)),
            warmup=int(spec.get("warmup", 20)),
            threads=int(spec.get("threads", 1)),
        )
    print(json.dumps({"models": res}), flush=True)


if __name__ == "__main__":
    main()
