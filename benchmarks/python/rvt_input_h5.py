"""Arranges Prophesee `.dat` recordings as the input of RVT's `preprocess_dataset.py`.

RVT's script reads `<stem>_td.dat.h5` (Gen1) or `<stem>_td.h5` (1Mpx) beside `<stem>_bbox.npy`:
an `events` group with `x`, `y`, `p`, `t` columns and the sensor's `height` and `width`, as the
dataset archives RVT links ship them. This writes that file for every `*_td.dat` under a split
folder, reading the `.dat` with NumPy (`frombuffer` and bit operations, as the DAT peer of
`../shared/reference/peer-baselines.md`), and removes the `.dat` so that only RVT's inputs remain.

Usage: rvt_input_h5.py DATASET_DIR gen1|gen4
"""
import sys
from pathlib import Path

import h5py
import numpy as np


def read_dat(path: Path):
    data = path.read_bytes()
    pos = 0
    width = height = None
    while data[pos:pos + 1] == b"%":
        end = data.index(b"\n", pos)
        line = data[pos + 1:end].decode("latin-1").strip()
        key, _, value = line.partition(" ")
        if key == "Width":
            width = int(value)
        elif key == "Height":
            height = int(value)
        pos = end + 1
    ev_type, ev_size = data[pos], data[pos + 1]
    assert ev_size == 8, f"{path}: event size {ev_size}"
    records = np.frombuffer(data, dtype="<u4", offset=pos + 2).reshape(-1, 2)
    t = records[:, 0].astype(np.int64)
    addr = records[:, 1]
    x = (addr & 0x3FFF).astype(np.uint16)
    y = ((addr >> 14) & 0x3FFF).astype(np.uint16)
    p = ((addr >> 28) & 0xF).astype(np.uint8)
    return x, y, p, t, width, height


def main():
    root, dataset = Path(sys.argv[1]), sys.argv[2]
    assert dataset in ("gen1", "gen4")
    suffix = "_td.dat.h5" if dataset == "gen1" else "_td.h5"
    for dat in sorted(root.glob("*/*_td.dat")):
        x, y, p, t, width, height = read_dat(dat)
        out = dat.with_name(dat.name[: -len("_td.dat")] + suffix)
        with h5py.File(out, "w") as f:
            g = f.create_group("events")
            for name, column in (("x", x), ("y", y), ("p", p), ("t", t)):
                g.create_dataset(name, data=column)
            g.create_dataset("height", data=np.int64(height))
            g.create_dataset("width", data=np.int64(width))
        dat.unlink()
        print(f"{out}: {len(t)} events, {width}x{height}")


if __name__ == "__main__":
    main()
