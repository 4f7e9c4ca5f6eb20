"""Times RVT's own preprocessing of one recording: `process_sequence` of RVT's
`scripts/genx/preprocess_dataset.py`, called as its `__main__` calls it for a 1Mpx (`gen4`) or
Gen1 dataset with the stacked_hist / const_duration / filter configs of RVT's README, inside this
process so that Python's start-up and imports are not timed. The first call is a warm-up (numba
compiles `_correct_time` then); each timed call starts from an empty output folder, because RVT
skips sequences it finds written. Prints JSON: {"seconds": [...], "median_s": ..., "out": dir}.

Usage: rvt_prepare_peer.py RVT_CHECKOUT DATASET_DIR OUT_DIR gen1|gen4 SPLIT STEM RUNS
"""
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path


def main():
    rvt, dataset_dir, out_dir = (Path(a).resolve() for a in sys.argv[1:4])
    dataset, split, stem, runs = sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
    genx = rvt / "scripts" / "genx"
    os.chdir(genx)
    sys.path.insert(0, str(genx))
    sys.path.insert(0, str(rvt))
    import preprocess_dataset as pp  # RVT's module, run from the checkout
    from omegaconf import OmegaConf

    conf = genx / "conf_preprocess"
    config = pp.get_configuration(ev_repr_yaml_config=conf / "representation" / "stacked_hist.yaml",
                                  extraction_yaml_config=conf / "extraction" / "const_duration.yaml")
    filter_cfg = OmegaConf.merge(OmegaConf.structured(pp.FilterConf),
                                 OmegaConf.load(str(conf / f"filter_{dataset}.yaml")))
    factory = pp.name_2_ev_repr_factory[config.name](config)
    ev_repr = factory.create(height=pp.dataset_2_height[dataset], width=pp.dataset_2_width[dataset])
    h5_name = f"{stem}_td{'.dat' if dataset == 'gen1' else ''}.h5"
    seq_out = out_dir / split / stem

    def run_once():
        if seq_out.exists():
            shutil.rmtree(seq_out)
        labels_dir = seq_out / "labels_v2"
        repr_dir = seq_out / "event_representations_v2" / factory.name
        labels_dir.mkdir(parents=True)
        repr_dir.mkdir(parents=True)
        start = time.perf_counter()
        pp.process_sequence(
            dataset=dataset,
            filter_cfg=filter_cfg,
            event_representation=ev_repr,
            ev_repr_num_events=None,
            ev_repr_delta_ts_ms=config.event_window_extraction.value,
            ts_step_ev_repr_ms=50,
            downsample_by_2=dataset == "gen4",
            sequence_data={
                pp.DataKeys.InNPY: dataset_dir / split / f"{stem}_bbox.npy",
                pp.DataKeys.InH5: dataset_dir / split / h5_name,
                pp.DataKeys.OutLabelDir: labels_dir,
                pp.DataKeys.OutEvReprDir: repr_dir,
                pp.DataKeys.SplitType: pp.split_name_2_type[split],
            })
        return time.perf_counter() - start

    run_once()
    seconds = [run_once() for _ in range(runs)]
    print(json.dumps({"seconds": seconds, "median_s": statistics.median(seconds), "out": str(out_dir)}))


if __name__ == "__main__":
    main()
