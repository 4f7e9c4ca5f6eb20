"""Check and run ONNX models for prism-export.

Usage: check_onnx.py JOBS.json
JOBS.json: [{"model": path, "inputs": {name: npy path}, "out_dir": dir,
             "check": bool, "runtimes": ["ort", "ref"]}]
For each job: onnx.checker.check_model(full_check=True), then every runtime's outputs are
written to out_dir/<runtime>_<k>.npy in graph output order (k = position). One JSON line per job
is printed: {"model", "check": "ok" | message, "<runtime>": "ok" | message, "ort_ms": float}.
"""
import json
import os
import sys
import time
import traceback

import numpy as np
import onnx


def run_job(job):
    result = {"model": job["model"]}
    model = onnx.load(job["model"])
    if job.get("check", True):
        try:
            onnx.checker.check_model(model, full_check=True)
            result["check"] = "ok"
        except Exception as e:  # noqa: BLE001
            result["check"] = f"{type(e).__name__}: {e}"
    feeds = {name: np.load(path) for name, path in job.get("inputs", {}).items()}
    out_names = [o.name for o in model.graph.output]
    for rt in job.get("runtimes", []):
        try:
            if rt == "ort":
                import onnxruntime as ort
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                sess = ort.InferenceSession(job["model"], opts, providers=["CPUExecutionProvider"])
                outs = sess.run(out_names, feeds)
                reps = int(job.get("timing_runs", 0))
                if reps:
                    t = time.perf_counter()
                    for _ in range(reps):
                        sess.run(out_names, feeds)
                    result["ort_ms"] = (time.perf_counter() - t) * 1000.0 / reps
            elif rt == "ref":
                from onnx.reference import ReferenceEvaluator
                outs = ReferenceEvaluator(model).run(out_names, feeds)
            else:
                raise ValueError(f"unknown runtime {rt}")
            for k, o in enumerate(outs):
                np.save(os.path.join(job["out_dir"], f"{rt}_{k}.npy"), np.ascontiguousarray(o))
            result[rt] = "ok"
        except Exception as e:  # noqa: BLE001
            result[rt] = f"{type(e).__name__}: {e} {traceback.format_exc(limit=2)}"
    return result


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        try:
            res = run_job(job)
        except Exception as e:  # noqa: BLE001
            res = {"model": job.get("model"), "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
