"""Reference evaluations for prism-eval's cross-check tests.

usage: pycoco_eval.py coco CASES_DIR OUT_JSON
       pycoco_eval.py prophesee CASES_DIR OUT_JSON

coco:      every CASES_DIR/<case>/{gt,dt}.json is evaluated with pycocotools
           COCOeval(iouType='bbox'): evaluate(), accumulate(), summarize().
prophesee: every CASES_DIR/<case>.json (per-sequence ground truth and detections) goes through a
           transcription of RVT's evaluation (uzh-rpg/RVT@b80f568,
           utils/evaluation/prophesee/{evaluation.py,io/box_filtering.py,metrics/coco_eval.py})
           and pycocotools.

Every float is reported as its IEEE-754 bits (an unsigned 64-bit integer), so the Rust side can
compare exactly. Per case: the 12 `stats`, and per category (sorted ids) AP@[.5:.95] and AP@.5
at area "all", maxDets 100 (mean of precision[:, :, k, 0, 2] over entries > -1).
"""

import contextlib
import io
import json
import os
import struct
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def mean_valid(s):
    s = s[s > -1]
    return -1.0 if len(s) == 0 else float(np.mean(s))


def per_class(coco_eval):
    precision = coco_eval.eval["precision"]
    aps, ap50s = [], []
    for k in range(precision.shape[2]):
        aps.append(mean_valid(precision[:, :, k, 0, 2]))
        ap50s.append(mean_valid(precision[0, :, k, 0, 2]))
    return aps, ap50s


def run_cocoeval(coco_gt, coco_dt, img_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        if img_ids is not None:
            coco_eval.params.imgIds = img_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    aps, ap50s = per_class(coco_eval)
    return {
        "stats": [bits(v) for v in coco_eval.stats],
        "ap": [bits(v) for v in aps],
        "ap50": [bits(v) for v in ap50s],
    }


def empty_results(coco_gt):
    """What loadRes would build for an empty list (loadRes itself indexes anns[0])."""
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def coco_case(case_dir):
    gt_path = os.path.join(case_dir, "gt.json")
    dt_path = os.path.join(case_dir, "dt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
    with open(dt_path) as f:
        dts = json.load(f)
    if len(dts) == 0:
        coco_dt = empty_results(coco_gt)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dt_path)
    return run_cocoeval(coco_gt, coco_dt)


# ---- RVT, transcribed -------------------------------------------------------------------------

# utils/evaluation/prophesee/io/box_loading.py
BBOX_DTYPE = np.dtype({
    "names": ["t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence"],
    "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
    "offsets": [0, 8, 12, 16, 20, 24, 28, 32],
    "itemsize": 40,
})


# utils/evaluation/prophesee/io/box_filtering.py: filter_boxes
def filter_boxes(boxes, skip_ts=int(5e5), min_box_diag=60, min_box_side=20):
    ts = boxes["t"]
    width = boxes["w"]
    height = boxes["h"]
    diag_square = width ** 2 + height ** 2
    mask = (ts > skip_ts) * (diag_square >= min_box_diag ** 2) * (width >= min_box_side) * (height >= min_box_side)
    return boxes[mask]


# utils/evaluation/prophesee/metrics/coco_eval.py: _match_times
def _match_times(all_ts, gt_boxes, dt_boxes, time_tol):
    gt_size = len(gt_boxes)
    dt_size = len(dt_boxes)
    windowed_gt = []
    windowed_dt = []
    low_gt, high_gt = 0, 0
    low_dt, high_dt = 0, 0
    for ts in all_ts:
        while low_gt < gt_size and gt_boxes[low_gt]["t"] < ts:
            low_gt += 1
        high_gt = max(low_gt, high_gt)
        while high_gt < gt_size and gt_boxes[high_gt]["t"] <= ts:
            high_gt += 1
        low = ts - time_tol
        high = ts + time_tol
        while low_dt < dt_size and dt_boxes[low_dt]["t"] < low:
            low_dt += 1
        high_dt = max(low_dt, high_dt)
        while high_dt < dt_size and dt_boxes[high_dt]["t"] <= high:
            high_dt += 1
        windowed_gt.append(gt_boxes[low_gt:high_gt])
        windowed_dt.append(dt_boxes[low_dt:high_dt])
    return windowed_gt, windowed_dt


# utils/evaluation/prophesee/metrics/coco_eval.py: _to_coco_format
def _to_coco_format(gts, detections, categories, height=240, width=304):
    annotations = []
    results = []
    images = []
    for image_id, (gt, pred) in enumerate(zip(gts, detections)):
        im_id = image_id + 1
        images.append({"date_captured": "2019", "file_name": "n.a", "id": im_id, "license": 1,
                       "url": "", "height": height, "width": width})
        for bbox in gt:
            x1, y1 = bbox["x"], bbox["y"]
            w, h = bbox["w"], bbox["h"]
            area = w * h
            annotation = {
                "area": float(area),
                "iscrowd": False,
                "image_id": im_id,
                "bbox": [x1, y1, w, h],
                "category_id": int(bbox["class_id"]) + 1,
                "id": len(annotations) + 1,
            }
            annotations.append(annotation)
        for bbox in pred:
            image_result = {
                "image_id": im_id,
                "category_id": int(bbox["class_id"]) + 1,
                "score": float(bbox["class_confidence"]),
                "bbox": [bbox["x"], bbox["y"], bbox["w"], bbox["h"]],
            }
            results.append(image_result)
    dataset = {"info": {}, "licenses": [], "type": "instances", "images": images,
               "annotations": annotations, "categories": categories}
    return dataset, results


# utils/evaluation/prophesee/metrics/coco_eval.py: _coco_eval (returns all 12 stats and the
# per-class APs instead of RVT's six-key dict; the zero-detection shortcut is RVT's)
def _coco_eval(gts, detections, height, width, labelmap):
    categories = [{"id": id + 1, "name": class_name, "supercategory": "none"}
                  for id, class_name in enumerate(labelmap)]
    num_detections = 0
    for detection in detections:
        num_detections += detection.size
    if num_detections == 0:
        zero = bits(0.0)
        return {"stats": [zero] * 12, "ap": [zero] * len(labelmap), "ap50": [zero] * len(labelmap)}
    dataset, results = _to_coco_format(gts, detections, categories, height=height, width=width)
    coco_gt = COCO()
    coco_gt.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_pred = coco_gt.loadRes(results)
    return run_cocoeval(coco_gt, coco_pred, np.arange(1, len(gts) + 1, dtype=int))


# utils/evaluation/prophesee/metrics/coco_eval.py: evaluate_detection
def evaluate_detection(gt_boxes_list, dt_boxes_list, classes, height, width, time_tol):
    flattened_gt = []
    flattened_dt = []
    for gt_boxes, dt_boxes in zip(gt_boxes_list, dt_boxes_list):
        assert np.all(gt_boxes["t"][1:] >= gt_boxes["t"][:-1])
        assert np.all(dt_boxes["t"][1:] >= dt_boxes["t"][:-1])
        all_ts = np.unique(gt_boxes["t"])
        gt_win, dt_win = _match_times(all_ts, gt_boxes, dt_boxes, time_tol)
        flattened_gt = flattened_gt + gt_win
        flattened_dt = flattened_dt + dt_win
    return _coco_eval(flattened_gt, flattened_dt, height, width, labelmap=classes)


def to_boxes(rows):
    boxes = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, class_id, score) in enumerate(rows):
        boxes[i] = (t, x, y, w, h, class_id, 0, score)
    return boxes


# utils/evaluation/prophesee/evaluation.py: evaluate_list, with the filter given explicitly
def prophesee_case(path):
    with open(path) as f:
        case = json.load(f)
    gt_list = [to_boxes(s["gt"]) for s in case["sequences"]]
    dt_list = [to_boxes(s["dt"]) for s in case["sequences"]]
    if case["filter"] is not None:
        skip_ts, min_box_diag, min_box_side = case["filter"]
        filter_boxes_fn = lambda x: filter_boxes(x, skip_ts, min_box_diag, min_box_side)
        gt_list = list(map(filter_boxes_fn, gt_list))
        dt_list = list(map(filter_boxes_fn, dt_list))
    return evaluate_detection(gt_list, dt_list, case["classes"], case["height"], case["width"],
                              case["time_tol"])


def main():
    mode, cases_dir, out_path = sys.argv[1:4]
    results = {}
    for name in sorted(os.listdir(cases_dir)):
        path = os.path.join(cases_dir, name)
        if mode == "coco":
            results[name] = coco_case(path)
        elif mode == "prophesee":
            results[name] = prophesee_case(path)
        else:
            raise SystemExit(f"unknown mode {mode}")
    params = COCOeval(iouType="bbox").params
    out = {
        "cases": results,
        "iou_thrs": [bits(v) for v in params.iouThrs],
        "rec_thrs": [bits(v) for v in params.recThrs],
    }
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
