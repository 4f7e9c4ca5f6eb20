"""RVT's label-frame and window-end rule, transcribed for prism's tests.

A line-by-line transcription of `get_base_delta_ts_for_labels_us` and of the timestamp part of
`labels_and_ev_repr_timestamps` in RVT's `scripts/genx/preprocess_dataset.py`
(uzh-rpg/RVT @ b80f5683a6e2d5de65d4bde8105d796ccb50dbb1), with numpy doing the arithmetic as it
does there (`round` of a float64, `np.median`, `np.linspace` cast to int64). RVT's box filters are
left out: the test cases hold only boxes that every filter keeps.

Usage: rvt_labels.py CASES.json OUT.json, where CASES is a list of
{"dataset": "gen1" | "gen4", "times": [label time in us, ...]}; OUT gets, per case,
{"frames": [...], "ends": [...], "frame_to_repr": [...]}, or {"error": "..."} where RVT's code
stops with an assertion or an exception. Also, per case, "gt_after_skip": the number of kept frames
with t > 0.5 s (RVT's evaluation drops t <= skip_ts = 5e5 in `filter_boxes`).
"""
import json
import sys

import numpy as np


def get_base_delta_ts_for_labels_us(unique_label_ts_us, dataset_type):
    if dataset_type == 'gen1':
        delta_t_us_4hz = 250000
        return delta_t_us_4hz
    assert dataset_type == 'gen4'
    diff_us = np.diff(unique_label_ts_us)
    median_diff_us = np.median(diff_us)

    hz = int(np.rint(10 ** 6 / median_diff_us))
    assert hz in {30, 60}, f'{hz=} but should be either 30 or 60'

    delta_t_us_approx_10hz = int(6 * median_diff_us if hz == 60 else 3 * median_diff_us)
    return delta_t_us_approx_10hz


def label_and_window_timestamps(label_ts_us, dataset_type, align_t_ms=100, ts_step_ev_repr_ms=50):
    ts_step_frame_ms = 100
    assert ts_step_frame_ms >= ts_step_ev_repr_ms
    assert ts_step_frame_ms % ts_step_ev_repr_ms == 0 and ts_step_ev_repr_ms > 0

    align_t_us = align_t_ms * 1000
    delta_t_us = ts_step_ev_repr_ms * 1000

    unique_ts_us = np.unique(np.asarray(label_ts_us, dtype='int64'))

    base_delta_ts_labels_us = get_base_delta_ts_for_labels_us(unique_ts_us, dataset_type)

    unique_ts_idx_first = np.searchsorted(unique_ts_us, align_t_us, side='left')

    num_ev_reprs_between_frame_ts = []
    frame_timestamps_us = [unique_ts_us[unique_ts_idx_first]]
    for unique_ts_idx in range(unique_ts_idx_first + 1, len(unique_ts_us)):
        reference_time = frame_timestamps_us[-1]
        ts = unique_ts_us[unique_ts_idx]
        diff_to_ref = ts - reference_time
        base_delta_count = round(diff_to_ref / base_delta_ts_labels_us)
        diff_to_ref_rounded = base_delta_count * base_delta_ts_labels_us
        if np.abs(diff_to_ref - diff_to_ref_rounded) <= 2000:
            assert base_delta_count > 0
            frame_timestamps_us.append(ts)
            num_ev_reprs_between_frame_ts.append(base_delta_count * (ts_step_frame_ms // ts_step_ev_repr_ms))
    frame_timestamps_us = np.asarray(frame_timestamps_us, dtype='int64')
    assert len(frame_timestamps_us) > 0

    if len(frame_timestamps_us) > 1:
        assert np.diff(frame_timestamps_us).min() > 98000, f'{np.diff(frame_timestamps_us).min()=}'

    ev_repr_timestamps_us_end = list(reversed(range(frame_timestamps_us[0], 0, -delta_t_us)))[1:-1]
    for idx, (num_ev_repr_between, frame_ts_us_start, frame_ts_us_end) in enumerate(zip(
            num_ev_reprs_between_frame_ts, frame_timestamps_us[:-1], frame_timestamps_us[1:])):
        new_edge_timestamps = np.asarray(np.linspace(frame_ts_us_start, frame_ts_us_end, num_ev_repr_between + 1),
                                         dtype='int64').tolist()
        is_last_iter = idx == len(num_ev_reprs_between_frame_ts) - 1
        if not is_last_iter:
            new_edge_timestamps = new_edge_timestamps[:-1]
        ev_repr_timestamps_us_end.extend(new_edge_timestamps)
    if len(frame_timestamps_us) == 1:
        ev_repr_timestamps_us_end.append(frame_timestamps_us[0])
    ev_repr_timestamps_us_end = np.asarray(ev_repr_timestamps_us_end, dtype='int64')

    frameidx_2_repridx = np.searchsorted(ev_repr_timestamps_us_end, frame_timestamps_us, side='left')
    for frame_ts_us, repr_idx in zip(frame_timestamps_us, frameidx_2_repridx):
        assert frame_ts_us == ev_repr_timestamps_us_end[repr_idx]
    return frame_timestamps_us, ev_repr_timestamps_us_end, frameidx_2_repridx


def main():
    cases = json.load(open(sys.argv[1]))
    out = []
    for case in cases:
        try:
            frames, ends, frame_to_repr = label_and_window_timestamps(case['times'], case['dataset'])
        except (AssertionError, IndexError, ValueError) as e:
            out.append({'error': f'{type(e).__name__}: {e}'})
            continue
        out.append({
            'frames': [int(v) for v in frames],
            'ends': [int(v) for v in ends],
            'frame_to_repr': [int(v) for v in frame_to_repr],
            'gt_after_skip': int(np.sum(frames > 500000)),
        })
    json.dump(out, open(sys.argv[2], 'w'))


if __name__ == '__main__':
    main()
