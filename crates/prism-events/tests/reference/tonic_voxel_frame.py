"""NumPy reference for prism's voxel grid and event frame, transcribed from tonic 1.7.0
(`to_voxel_grid_numpy`, `to_frame_numpy`) as documented in shared/reference/event-data.md §3.2.

The grid is accumulated in float32 (tonic: float64) with tonic's order of additions, so prism's
f32 output must match byte for byte.

Usage: python tonic_voxel_frame.py events.bin width height bins a b voxel.f32 frame.f32 clip
(events.bin: u64 n, i64 t[n], u16 x[n], u16 y[n], u8 p[n]; window = events[a:b])
"""
import sys

import numpy as np

path, W, H, nbins, a, b, vout, fout, clip = sys.argv[1:]
W, H, nbins, a, b, clip = int(W), int(H), int(nbins), int(a), int(b), float(clip)
data = open(path, "rb").read()
n = int(np.frombuffer(data, "<u8", 1, 0)[0])
off = 8
t = np.frombuffer(data, "<i8", n, off)[a:b]; off += 8 * n
x = np.frombuffer(data, "<u2", n, off)[a:b].astype(int); off += 2 * n
y = np.frombuffer(data, "<u2", n, off)[a:b].astype(int); off += 2 * n
p = np.frombuffer(data, "u1", n, off)[a:b].astype(int)

voxel = np.zeros(nbins * H * W, np.float32)
if len(t):
    span = t[-1] - t[0]
    # tonic: ts = n_time_bins * (t.astype(float) - t[0]) / (t[-1] - t[0]); prism: 0 when span == 0
    ts = nbins * (t.astype(float) - t[0]) / span if span else np.zeros(len(t))
    pols = p.copy()
    pols[pols == 0] = -1
    tis = ts.astype(int)
    dts = ts - tis
    vals_left = (pols * (1.0 - dts)).astype(np.float32)
    vals_right = (pols * dts).astype(np.float32)
    valid = tis < nbins
    np.add.at(voxel, x[valid] + y[valid] * W + tis[valid] * W * H, vals_left[valid])
    valid = (tis + 1) < nbins
    np.add.at(voxel, x[valid] + y[valid] * W + (tis[valid] + 1) * W * H, vals_right[valid])
voxel.astype("<f4").tofile(vout)

frame = np.zeros(2 * H * W, np.float32)
np.add.at(frame, p * H * W + y * W + x, np.float32(1))
if clip >= 0:
    np.minimum(frame, np.float32(clip), out=frame)
frame.astype("<f4").tofile(fout)
