"""Peer measurements for `bench-events`: what a user would otherwise run for the event layer.

Prints one JSON object on stdout: {"peers": [{"task", "name", "events", "windows", "median_s"}, ...],
"versions": {...}, "errors": {...}}. Each task is timed `--runs` times (after one warm-up run) and
the median reported. Single-threaded: the caller sets OMP/MKL/OPENBLAS/POLARS/RAYON threads to 1
(and pins the process to one core).

Tasks (the same work prism does in the same run):
  decode_dat   NumPy .dat reader (frombuffer + bit operations) on gen4.dat, whole file;
               faery's decoder (events_stream_from_file, packets counted).
  decode_evt3  evlib.load_events(evt3.raw).collect(); the PyPI evt3 package's decode_file;
               faery's decoder; whole file.
  decode_evt2  evlib and faery on evt2.raw (the evt3 package misreads EVT 2.0 without an error,
               see shared/reference/peer-baselines.md, so it is left out there).
Each decoder row carries the number of events it returned, which bench-events checks against
prism's: a peer that returns another count is marked, not ranked.
  histogram    RVT stacked histogram, 720x1280, 10 bins, cutoff 10, 50 ms windows ending on a
               50 ms grid, bounds by np.searchsorted:
                 numpy: np.add.at into a reused uint8 buffer, then np.clip in place with uint8 bounds (its fast path)
                        (the peer of shared/reference/peer-baselines.md);
                 evlib: evlib.rvt.build_sparse_histogram (Polars), batches of 16 windows.
"""
import argparse
import json
import statistics
import sys
import time


def timed(fn, runs):
    fn()  # warm-up (page cache, imports, JIT-free but allocator-warm)
    times = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        times.append(time.perf_counter() - s)
    return statistics.median(times)


def read_dat(path):
    import numpy as np

    data = open(path, "rb").read()
    pos = 0
    while data.startswith(b"% ", pos):
        pos = data.index(b"\n", pos) + 1
    rec = np.frombuffer(data, dtype=[("t", "<u4"), ("w", "<u4")], offset=pos + 2,
                        count=(len(data) - pos - 2) // 8)
    w = rec["w"]
    t = rec["t"].astype(np.int64)
    x = (w & 0x3FFF).astype(np.uint16)
    y = ((w >> 14) & 0x3FFF).astype(np.uint16)
    p = ((w >> 28) & 1).astype(np.uint8)
    return t, x, y, p


def window_grid(t, length, step):
    import numpy as np

    first = -(-int(t[0]) // step) * step
    ends = np.arange(first, int(t[-1]) + length + 1, step, dtype=np.int64)
    return ends[ends - length <= t[-1]]


def numpy_histogram_all(t, x, y, p, ends, length, bins, cutoff, H, W, buf):
    import numpy as np

    flat = buf.reshape(-1)
    starts = np.searchsorted(t, ends - length, side="left")
    stops = np.searchsorted(t, ends, side="right")
    for a, b in zip(starts, stops):
        buf.fill(0)
        if b > a:
            tt = t[a:b]
            t0, t1 = int(tt[0]), int(tt[-1])
            t_idx = np.minimum(np.floor((tt - t0) / max(t1 - t0, 1) * bins), bins - 1).astype(np.int64)
            idx = x[a:b].astype(np.int64) + W * y[a:b].astype(np.int64) + H * W * t_idx \
                + bins * H * W * p[a:b].astype(np.int64)
            np.add.at(flat, idx, np.uint8(1))
            # uint8 bounds keep np.clip on its fast path (Python ints make it ~15x slower).
            np.clip(buf, np.uint8(0), np.uint8(cutoff), out=buf)
    return int((stops - starts).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dat", required=True)
    ap.add_argument("--evt3", required=True)
    ap.add_argument("--evt2", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--evlib-hist-runs", type=int, default=1)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    args = ap.parse_args()

    import numpy as np

    out = {"peers": [], "versions": {"python": sys.version.split()[0], "numpy": np.__version__},
           "errors": {}}
    H, W, bins, cutoff, length = args.height, args.width, 10, 10, 50_000

    t, x, y, p = read_dat(args.dat)
    s = timed(lambda: read_dat(args.dat), args.runs)
    out["peers"].append({"task": "decode_dat", "name": "NumPy .dat reader", "events": len(t),
                         "median_s": s})

    ends = window_grid(t, length, length)
    buf = np.zeros((2 * bins, H, W), dtype=np.uint8)
    n_ev = numpy_histogram_all(t, x, y, p, ends, length, bins, cutoff, H, W, buf)
    s = timed(lambda: numpy_histogram_all(t, x, y, p, ends, length, bins, cutoff, H, W, buf),
              args.runs)
    out["peers"].append({"task": "histogram", "name": "NumPy add.at + clip, reused buf", "events": n_ev,
                         "windows": len(ends), "median_s": s})

    try:
        import evlib
        import polars as pl

        from importlib.metadata import version

        out["versions"]["evlib"] = version("evlib")
        out["versions"]["polars"] = pl.__version__

        def decode():
            lf = evlib.load_events(args.evt3)
            return lf.collect() if hasattr(lf, "collect") else lf

        df = decode()
        s = timed(decode, args.runs)
        out["peers"].append({"task": "decode_evt3", "name": "evlib load_events", "events": df.height,
                             "median_s": s})

        from evlib.rvt import build_sparse_histogram

        ev = pl.DataFrame({"t": t, "x": x.astype(np.int16), "y": y.astype(np.int16),
                           "p": p.astype(np.int8)})

        def evlib_hist():
            for i in range(0, len(ends), 16):
                e = ends[i:i + 16]
                sub = ev.filter((pl.col("t") >= int(e[0]) - length) & (pl.col("t") <= int(e[-1])))
                build_sparse_histogram(sub, e, length, bins, cutoff, H, W, False)

        s = timed(evlib_hist, args.evlib_hist_runs)
        out["peers"].append({"task": "histogram", "name": "evlib rvt sparse (Polars)", "events": n_ev,
                             "windows": len(ends), "median_s": s})
    except Exception as e:  # a broken peer is reported, not fatal
        out["errors"]["evlib"] = repr(e)

    try:
        import evt3

        from importlib.metadata import version

        out["versions"]["evt3"] = version("evt3")
        n = len(evt3.decode_file(args.evt3))
        s = timed(lambda: evt3.decode_file(args.evt3), args.runs)
        out["peers"].append({"task": "decode_evt3", "name": "evt3 decode_file", "events": n,
                             "median_s": s})
    except Exception as e:
        out["errors"]["evt3"] = repr(e)

    try:
        import faery

        out["versions"]["faery"] = faery.__version__

        def faery_decode(path, dimensions):
            n = 0
            for packet in faery.events_stream_from_file(path, dimensions_fallback=dimensions):
                n += len(packet)
            return n

        for task, path, dims in [("decode_dat", args.dat, (args.width, args.height)),
                                 ("decode_evt3", args.evt3, (args.width, args.height)),
                                 ("decode_evt2", args.evt2, (640, 480))]:
            n = faery_decode(path, dims)
            s = timed(lambda: faery_decode(path, dims), args.runs)
            out["peers"].append({"task": task, "name": "faery events_stream_from_file",
                                 "events": n, "median_s": s})
    except Exception as e:
        out["errors"]["faery"] = repr(e)

    try:
        import evlib

        def evlib_decode(path):
            lf = evlib.load_events(path)
            return lf.collect() if hasattr(lf, "collect") else lf

        n = evlib_decode(args.evt2).height
        s = timed(lambda: evlib_decode(args.evt2), args.runs)
        out["peers"].append({"task": "decode_evt2", "name": "evlib load_events", "events": n,
                             "median_s": s})
    except Exception as e:
        out["errors"]["evlib_evt2"] = repr(e)

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
