"""Training throughput of RVT in PyTorch (CPU or CUDA): the peer of prism's Burn training benchmark.

One training step = truncated BPTT over L windows of a batch of B sequences: the network runs
window by window carrying the LSTM states (which enter the step detached from the previous step,
zeros at the first), the raw outputs of all L windows are concatenated and the YOLOX loss (SimOTA,
normalised by the foreground count of the whole step) is taken on every window against a fixed
set of random boxes (seeded). Then backward, `clip_grad_norm_(1.0)` and AdamW (lr 2e-4, weight
decay 0). Inputs are random stacked-histogram counts 0..10, fixed per window.

`--head-mode per-window` (default) runs backbone + PAFPN + head per window, as prism-train's
trainer does; `batched` runs only the backbone per window and PAFPN + head once on the L*B
stacked features, as RVT's training step does (`forward_detect`); the arithmetic is the same,
BatchNorm batch statistics differ (B vs L*B items).

Under CPU contention (other processes on the cores), OpenMP's spinning barriers make 2 threads
far slower than 1; OMP_WAIT_POLICY=PASSIVE softens that. Measure on an idle machine.

usage: python train_throughput_torch.py [--size tiny] [--batch 2] [--seq-len 5] [--height 256 --width 320]
                                        [--threads 2] [--warmup 1] [--steps 5] [--device cpu|cuda]
Prints one JSON line (the median step time over --steps timed steps, after --warmup untimed ones).

`--lockstep`: after the warm-up, one timed step per `step` line read from stdin, each answered at
once with a JSON line `{"step_s": ..., "loss": ...}`; at the end of stdin the summary line as
above. prism's bench-train drives it this way, so that each PyTorch step runs right beside the
Burn step it is compared with and a slow spell of a shared machine falls on both.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rvt_torch import Rvt, RvtConfig, detach_states, yolox_loss  # noqa: E402


def random_labels(gen, seq_len, batch, height, width, num_classes, max_boxes):
    """labels[t][b]: [G, 5] (class, cx, cy, w, h) in input pixels, G in 1..max_boxes, boxes inside the image."""
    scale = min(height / 256, width / 320)
    out = []
    for _ in range(seq_len):
        per_t = []
        for _ in range(batch):
            g = int(torch.randint(1, max_boxes + 1, (1,), generator=gen))
            cls = torch.randint(0, num_classes, (g,), generator=gen).float()
            wh = (10 + torch.rand(g, 2, generator=gen) * 90) * scale
            lo = wh / 2
            hi = torch.tensor([float(width), float(height)]) - wh / 2
            cxy = lo + torch.rand(g, 2, generator=gen) * (hi - lo)
            per_t.append(torch.cat((cls[:, None], cxy, wh), dim=1))
        out.append(per_t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "small", "base"], default="tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=5)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--num-classes", type=int, default=2)
    ap.add_argument("--partition", type=int, nargs=2, default=None, metavar=("PH", "PW"),
                    help="window/grid partition size; default RVT's rule (H/32, W/32): 8 10 at 256x320")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--head-mode", choices=["per-window", "batched"], default="per-window")
    ap.add_argument("--max-boxes", type=int, default=8, help="boxes per window and sequence: 1..N")
    ap.add_argument("--sdpa", action="store_true",
                    help="F.scaled_dot_product_attention instead of RVT's explicit softmax(q k^T) v")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (each step ends in a synchronize)")
    ap.add_argument("--lockstep", action="store_true",
                    help="after the warm-up, one timed step per `step` line on stdin (--steps ignored)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    h, w, b, seq = args.height, args.width, args.batch, args.seq_len
    partition = tuple(args.partition) if args.partition else RvtConfig.partition_for(h, w)
    cfg = RvtConfig.preset(args.size, num_classes=args.num_classes, partition_size=partition,
                           use_sdpa=args.sdpa)
    device = torch.device(args.device)
    model = Rvt(cfg).train().to(device)
    params = model.param_breakdown()["total"]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)

    gen = torch.Generator().manual_seed(args.seed)
    windows = [torch.randint(0, 11, (b, 20, h, w), generator=gen).float().to(device) for _ in range(seq)]
    labels = [[lab.to(device) for lab in per_t]
              for per_t in random_labels(gen, seq, b, h, w, args.num_classes, args.max_boxes)]
    flat_labels = [lab for per_t in labels for lab in per_t]  # (t, b) order, like the batched features

    states = None
    phases = {}

    def step():
        nonlocal states
        t0 = time.perf_counter()
        if args.head_mode == "batched":
            feats = []
            for x in windows:
                f, states = model.forward_backbone(x, states)
                feats.append(f[1:])
            raw = model.forward_detect([torch.cat([f[i] for f in feats]) for i in range(3)])
        else:
            raws = []
            for x in windows:
                r, states = model(x, states)
                raws.append(r)
            raw = torch.cat(raws)
        t_forward = time.perf_counter()
        loss, parts = yolox_loss(raw, flat_labels, (h, w), args.num_classes)
        t_loss = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t_backward = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        states = detach_states(states)
        # Where a step goes (exact on the CPU, where every call is synchronous).
        phases.update(forward=t_forward - t0, loss=t_loss - t_forward,
                      backward=t_backward - t_loss, optim=time.perf_counter() - t_backward)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return float(loss.detach()), parts["num_fg"]

    times, losses = [], []

    def timed_step(i, timed):
        t0 = time.perf_counter()
        loss, num_fg = step()
        dt = time.perf_counter() - t0
        if timed:
            times.append(dt)
        losses.append(loss)
        print(f"step {i} {'timed' if timed else 'warmup'}: {dt:.3f} s (forward {phases['forward']:.3f}, "
              f"loss + assignment {phases['loss']:.3f}, backward {phases['backward']:.3f}, "
              f"clip + AdamW {phases['optim']:.3f}), loss {loss:.4f}, num_fg {num_fg}",
              file=sys.stderr)
        return dt, loss

    for i in range(args.warmup):
        timed_step(i, False)
    if args.lockstep:
        print(json.dumps({"ready": True}), flush=True)
        for i, line in enumerate(sys.stdin, start=args.warmup):
            if line.strip() != "step":
                sys.exit(f"lockstep: expected `step`, got {line.strip()!r}")
            dt, loss = timed_step(i, True)
            print(json.dumps({"step_s": dt, "loss": loss}), flush=True)
    else:
        for i in range(args.warmup, args.warmup + args.steps):
            timed_step(i, True)
    if not times:
        sys.exit("no timed steps")
    median = statistics.median(times)
    print(json.dumps({
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "batch": b,
        "seq_len": seq,
        "height": h,
        "width": w,
        "median_step_s": median,
        "windows_per_s": b * seq / median,
        "params": params,
        "model": f"rvt-{args.size}",
        "partition": list(partition),
        "head_mode": args.head_mode,
        "attention": "sdpa" if args.sdpa else "explicit",
        "warmup": args.warmup,
        "steps": len(times),
        "step_s": times,
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }))


if __name__ == "__main__":
    main()
