"""PyTorch's side of bench-train's per-operation profile: the same operations with the same
shapes as `benchmarks/src/op_profile.rs` (rvt-tiny at Gen1 size), timed the same way (one
warm-up, then the median of --reps repetitions of the forward pass to the summed output and of
the backward pass from it).

Prints one JSON line: {"version": ..., "ops": [{"name", "forward_ms", "backward_ms"}, ...]}; the
names are those of the Rust side, which checks them.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def ops(b):
    """(name, prepare) pairs; prepare() returns the forward pass as a closure."""

    def x(*shape):
        return torch.randn(*shape, requires_grad=True)

    out = []

    def stem():
        conv, inp = torch.nn.Conv2d(20, 32, 7, stride=4, padding=3), x(b, 20, 256, 320)
        return lambda: conv(inp).sum()

    out.append(("stem conv 7x7/4, 20->32 @ 256x320", stem))
    for s, (c, h, w) in enumerate([(32, 64, 80), (64, 32, 40), (128, 16, 20), (256, 8, 10)], 1):
        tokens = b * h * w
        groups = b * (h * w // 80) * (c // 32)

        def norm(c=c, h=h, w=w):
            ln, inp = torch.nn.LayerNorm(c), x(b, h, w, c)
            return lambda: ln(inp).sum()

        def qkv(c=c, tokens=tokens):
            lin, inp = torch.nn.Linear(c, 3 * c), x(tokens, c)
            return lambda: lin(inp).sum()

        def attention(groups=groups):
            q, k, v = x(groups, 80, 32), x(groups, 80, 32), x(groups, 80, 32)
            return lambda: (torch.softmax(q @ k.transpose(1, 2) * 32 ** -0.5, dim=2) @ v).sum()

        def mlp(c=c, tokens=tokens):
            up, down, inp = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c), x(tokens, c)
            return lambda: down(F.gelu(up(inp))).sum()

        def lstm(c=c, h=h, w=w):
            conv, inp = torch.nn.Conv2d(2 * c, 4 * c, 1), x(b, 2 * c, h, w)
            return lambda: conv(inp).sum()

        def down(c=c, h=h, w=w):
            conv, inp = torch.nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), x(b, c, h, w)
            return lambda: conv(inp).sum()

        out.append((f"s{s} LayerNorm {c} @ {h}x{w}", norm))
        out.append((f"s{s} linear q/k/v {c}->{3 * c} ({tokens} tokens)", qkv))
        out.append((f"s{s} window attention {groups}x80 tokens, head 32", attention))
        out.append((f"s{s} MLP {c}->{4 * c}->{c} GELU", mlp))
        out.append((f"s{s} ConvLSTM 1x1 {2 * c}->{4 * c} @ {h}x{w}", lstm))
        if s < 4:
            out.append((f"s{s} downsample conv 3x3/2 {c}->{2 * c} @ {h}x{w}", down))

    def head():
        conv, inp = torch.nn.Conv2d(64, 64, 3, padding=1), x(b, 64, 32, 40)
        return lambda: conv(inp).sum()

    out.append(("FPN/head conv 3x3 64->64 @ 32x40", head))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, prepare in ops(args.batch):
        forward, backward = [], []
        for rep in range(args.reps + 1):
            run = prepare()
            t0 = time.perf_counter()
            out = run()
            out.item()
            t1 = time.perf_counter()
            out.backward()
            t2 = time.perf_counter()
            if rep > 0:
                forward.append((t1 - t0) * 1e3)
                backward.append((t2 - t1) * 1e3)
        rows.append({"name": name, "forward_ms": statistics.median(forward),
                     "backward_ms": statistics.median(backward)})
    print(json.dumps({"version": torch.__version__, "threads": args.threads, "ops": rows}))


if __name__ == "__main__":
    main()
