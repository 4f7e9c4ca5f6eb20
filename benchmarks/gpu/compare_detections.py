"""Compare two `prism infer` detection files window by window.

Boxes of the same window and class are paired greedily by IoU (best first, IoU >= 0.5); the
report gives the pairs' largest coordinate and score gaps and every detection left unpaired with
its score, so that a difference near the score threshold is told apart from a wrong result.

usage: python compare_detections.py REFERENCE.jsonl OTHER.jsonl
"""
import json
import sys
from collections import defaultdict


def load(path):
    by_window = defaultdict(list)
    for line in open(path):
        d = json.loads(line)
        by_window[(d["window"], d["class_id"])].append(d)
    return by_window


def iou(a, b):
    ix = max(0.0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    iy = max(0.0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = ix * iy
    area = lambda d: (d["x2"] - d["x1"]) * (d["y2"] - d["y1"])  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def main():
    ref, other = load(sys.argv[1]), load(sys.argv[2])
    pairs, unpaired = [], []
    for key in sorted(set(ref) | set(other)):
        a, b = list(ref.get(key, [])), list(other.get(key, []))
        cand = sorted(((iou(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)), reverse=True)
        used_a, used_b = set(), set()
        for v, i, j in cand:
            if v < 0.5 or i in used_a or j in used_b:
                continue
            used_a.add(i), used_b.add(j)
            pairs.append((a[i], b[j]))
        unpaired += [("reference", a[i]) for i in range(len(a)) if i not in used_a]
        unpaired += [("other", b[j]) for j in range(len(b)) if j not in used_b]
    n_ref = sum(len(v) for v in ref.values())
    n_other = sum(len(v) for v in other.values())
    box = max((max(abs(x[k] - y[k]) for k in ("x1", "y1", "x2", "y2")) for x, y in pairs), default=0.0)
    score = max((abs(x["score"] - y["score"]) for x, y in pairs), default=0.0)
    print(f"{n_ref} vs {n_other} detections, {len(pairs)} paired: largest box gap {box:.2e} px, "
          f"largest score gap {score:.2e}; unpaired: "
          + (", ".join(f"{side} window {d['window']} {d['class']} score {d['score']:.4f}" for side, d in unpaired) or "none"))


if __name__ == "__main__":
    main()
