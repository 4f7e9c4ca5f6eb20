"""Independent NumPy reference for prism's RVT stacked histogram and window slicing.

Transcribed from RVT @ b80f568 (`data/utils/representations.py::StackedHistogram.construct`,
`scripts/genx/preprocess_dataset.py`) as documented in shared/reference/rvt.md §2 and
event-data.md §3.1, without looking at prism's Rust code:

    t_norm = (t - t[0]) / max(t[-1] - t[0], 1) * bins      (float64)
    t_idx  = min(floor(t_norm), bins - 1)
    idx    = x + W*y + H*W*t_idx + bins*H*W*p
    hist.flat[idx] += 1   (uint8, wraps), then clip to [0, cutoff]
    1Mpx: F.interpolate(scale_factor=0.5, mode='nearest-exact') on the finished tensor,
          src = min(floor((dst + 0.5) * (1/0.5)), n - 1) in float32, out = floor(n * 0.5)
    pad with zeros at bottom/right to a multiple of `pad`.
    windows end on a grid; [searchsorted(t, T - len, 'left'), searchsorted(t, T, 'right')).

Usage: python rvt_stacked_histogram.py jobs.json
Each job: {"dat" | "events": path, "width", "height", "bins", "cutoff",
           "window": null | {"length", "step", "first_end" (or null)},
           "outputs": [{"downsample": bool, "pad": int, "out": path}, ...]}
Output file per output: u64 n_windows, u64 C, H, W; then per window:
    i64 end, i64 start_idx, i64 stop_idx, u64 nnz, u32[nnz] flat index, u8[nnz] value.
"""
import json
import sys

import numpy as np


def read_dat(path):
    data = open(path, "rb").read()
    pos = 0
    while data.startswith(b"% ", pos):
        pos = data.index(b"\n", pos) + 1
    ev_type, ev_size = data[pos], data[pos + 1]
    assert ev_size == 8, ev_size
    rec = np.frombuffer(data, dtype=[("t", "<u4"), ("w", "<u4")], offset=pos + 2,
                        count=(len(data) - pos - 2) // 8)
    w = rec["w"]
    return (rec["t"].astype(np.int64), (w & 0x3FFF).astype(np.int64),
            ((w >> 14) & 0x3FFF).astype(np.int64), ((w >> 28) & 1).astype(np.int64))


def read_events(path):
    data = open(path, "rb").read()
    n = int(np.frombuffer(data, "<u8", 1, 0)[0])
    off = 8
    t = np.frombuffer(data, "<i8", n, off); off += 8 * n
    x = np.frombuffer(data, "<u2", n, off); off += 2 * n
    y = np.frombuffer(data, "<u2", n, off); off += 2 * n
    p = np.frombuffer(data, "u1", n, off)
    return t.astype(np.int64), x.astype(np.int64), y.astype(np.int64), p.astype(np.int64)


def stacked_histogram(t, x, y, p, bins, cutoff, H, W):
    hist = np.zeros(2 * bins * H * W, dtype=np.uint8)
    if len(t) > 0:
        t0, t1 = int(t[0]), int(t[-1])
        assert t1 >= t0
        t_norm = (t - t0) / max(t1 - t0, 1)
        t_norm = t_norm * bins
        t_idx = np.minimum(np.floor(t_norm), bins - 1).astype(np.int64)
        idx = x + W * y + H * W * t_idx + bins * H * W * p
        np.add.at(hist, idx, np.uint8(1))  # uint8 accumulation wraps at 256
        np.clip(hist, 0, cutoff, out=hist)
    return hist.reshape(2 * bins, H, W)


def nearest_exact_half(h):
    _, H, W = h.shape
    oh, ow = int(np.floor(H * 0.5)), int(np.floor(W * 0.5))
    scale = np.float32(1.0 / 0.5)
    sy = np.minimum(np.floor((np.arange(oh, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64), H - 1)
    sx = np.minimum(np.floor((np.arange(ow, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64), W - 1)
    # Gather with the formula's indices; an arithmetic progression becomes a plain slice (same
    # elements, no fancy-indexing copy of the whole tensor).
    def as_index(src):
        if len(src) > 1 and np.all(np.diff(src) == src[1] - src[0]) and src[1] > src[0]:
            return slice(int(src[0]), int(src[-1]) + 1, int(src[1] - src[0]))
        return src
    return h[:, as_index(sy)][:, :, as_index(sx)]


def pad_to(h, multiple):
    if multiple <= 1:
        return h
    c, H, W = h.shape
    ph, pw = -(-H // multiple) * multiple, -(-W // multiple) * multiple
    out = np.zeros((c, ph, pw), dtype=h.dtype)
    out[:, :H, :W] = h
    return out


def flatnonzero(flat):
    """np.flatnonzero, faster on sparse uint8 data: find non-zero 8-byte words first."""
    n8 = len(flat) // 8 * 8
    words = np.flatnonzero(np.ascontiguousarray(flat[:n8]).view("<u8"))
    cand = (words[:, None] * 8 + np.arange(8)).ravel()
    cand = np.concatenate([cand, np.arange(n8, len(flat))])
    return cand[flat[cand] != 0]


def windows(t, spec):
    if spec is None:
        return [(int(t[-1]) if len(t) else 0, 0, len(t))]
    length, step = spec["length"], spec["step"]
    if len(t) == 0:
        return []
    end = spec.get("first_end")
    if end is None:
        end = -(-int(t[0]) // step) * step
    out = []
    while end - length <= t[-1]:
        a = int(np.searchsorted(t, end - length, side="left"))
        b = int(np.searchsorted(t, end, side="right"))
        out.append((end, a, b))
        end += step
    return out


def run(job):
    t, x, y, p = read_dat(job["dat"]) if "dat" in job else read_events(job["events"])
    H, W, bins, cutoff = job["height"], job["width"], job["bins"], job["cutoff"]
    wins = windows(t, job["window"])
    files = []
    for o in job["outputs"]:
        f = open(o["out"], "wb")
        files.append((o, f))
    for i, (end, a, b) in enumerate(wins):
        h = stacked_histogram(t[a:b], x[a:b], y[a:b], p[a:b], bins, cutoff, H, W)
        for o, f in files:
            r = nearest_exact_half(h) if o["downsample"] else h
            r = pad_to(r, o["pad"])
            if i == 0:
                f.write(np.array([len(wins), *r.shape], dtype="<u8").tobytes())
            flat = r.reshape(-1)
            nz = flatnonzero(flat)
            f.write(np.array([end, a, b], dtype="<i8").tobytes())
            f.write(np.array([len(nz)], dtype="<u8").tobytes())
            f.write(nz.astype("<u4").tobytes())
            f.write(flat[nz].astype("u1").tobytes())
    for o, f in files:
        if not wins:
            f.write(np.array([0, 0, 0, 0], dtype="<u8").tobytes())
        f.close()


if __name__ == "__main__":
    for job in json.load(open(sys.argv[1])):
        run(job)
