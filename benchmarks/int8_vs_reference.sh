#!/usr/bin/env bash
# prism's int8 RVT against the reference formulation's fp32 torch.onnx export, in one run
# (issue 14): the latency goal the fp32 graph could not reach (bench-rvt), tried with int8.
#
# Files, all of one model card with random weights (latency does not depend on them):
#   reference-loops   the PyTorch RVT (`python/rvt_torch.py`) exported with torch.onnx, opset 17,
#                     with RVT's own LSTM gate split (`Loop` blocks, as in the reference export)
#   reference-slices  the same with plain slices (a cleaner file than the reference's)
#   prism-fp32        `prism export onnx`
#   prism-s8s8        `prism quantize` with the defaults (int8 activations and weights)
#   prism-u8s8-7bit   `prism quantize --activations uint8 --reduce-range` (the fast variant on
#                     x86 CPUs without VNNI)
# int8 is calibrated on a synthetic scene at the sensor size. Python onnxruntime (CPU, 2 threads)
# times every file in one process, window by window with the state carried, the files
# interleaved (`peers/rvt_ort_python.py`); ratios are paired per round against the first file,
# the reference export with `Loop`s.
#
# Usage: benchmarks/int8_vs_reference.sh OUT_DIR [MODEL] [ROUNDS]
# Needs: a release `prism` (cargo build --release -p prism-cli), the provisioned Python
# environment and the PyTorch one (`cargo xtask provision-torch`).
set -euo pipefail
out=$1 name=${2:-rvt-tiny-gen1} rounds=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
env=${PRISM_ENV:-$root/target/prism-env}
prism=${PRISM_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/prism}
python=$env/venv/bin/python
torch_python=$env/torch-venv/bin/python
for exe in "$prism" "$python" "$torch_python"; do
  [ -x "$exe" ] || { echo "missing $exe (see the usage above)" >&2; exit 2; }
done
mkdir -p "$out"

card=$root/models/$name.toml
"$prism" export onnx --model "$name" --out "$out/prism-fp32.onnx" > /dev/null
read -r width height < <("$python" -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); print(*c["data"]["sensor"])' "$card")
"$prism" data synth --out "$out/scene" --width "$width" --height "$height" --duration-s 6 --seed 7 > /dev/null
scene=$(ls "$out"/scene_td.*)
q() { "$prism" quantize --model "$out/prism-fp32.onnx" --calib "$scene" --calib-windows 64 "$@" 2>&1 | grep -v '^quantize:' || true; }
q --out "$out/prism-s8s8.onnx"
q --out "$out/prism-u8s8-7bit.onnx" --activations uint8 --reduce-range

# The reference network's hyper-parameters, from the same card.
config=$("$python" - "$card" <<'PY'
import json, sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))["model"]
print(json.dumps({k: m[k] for k in ("embed_dim", "dim_head", "fpn_depth", "num_classes", "partition_size", "input_size")}))
PY
)
site=$("$python" -c 'import site; print(site.getsitepackages()[0])')
for split in tensor_split slices; do
  label=$([ "$split" = tensor_split ] && echo loops || echo slices)
  "$torch_python" "$here/peers/rvt_torch_onnx_peer.py" \
    "$("$python" -c 'import json, sys; c = json.loads(sys.argv[1]); c["lstm_split"] = sys.argv[2]; print(json.dumps(c))' "$config" "$split")" \
    "$out/reference-$label.onnx" "$site" > "$out/reference-$label.json"
done

files=(reference-loops reference-slices prism-fp32 prism-s8s8 prism-u8s8-7bit)
paths=()
for f in "${files[@]}"; do paths+=("$out/$f.onnx"); done
(IFS=,; "$python" "$here/peers/rvt_ort_python.py" "${paths[*]}" 2 "$rounds") > "$out/latency.json"

"$python" - "$out" "$name" "$rounds" "${files[@]}" <<'PY'
import datetime, json, os, sys
out, name, rounds, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
lat = json.load(open(os.path.join(out, "latency.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = open("/proc/cpuinfo").read()
isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
vnni = "VNNI" if "vnni" in flags else "no VNNI"
torch = json.load(open(os.path.join(out, "reference-loops.json")))["torch"]
rows = [f"**{name}**: {cpu}, {os.cpu_count()} cores, {isa}, {vnni}; ONNX Runtime {lat['onnxruntime']} (Python, CPU, 2 threads), torch {torch}; {rounds} rounds; {datetime.date.today()}.", "",
        "| file | size MB | ms/window (median) | / reference with `Loop`s (paired; 95 % interval) | rounds slower than the reference |", "|---|---|---|---|---|"]
for k, f in enumerate(files):
    size = os.path.getsize(os.path.join(out, f + ".onnx")) / 1e6
    lo, hi = lat["paired_ci95"][k]
    rows.append(f"| {f} | {size:.1f} | {lat['median_ms'][k]:.2f} | {lat['paired_ratio'][k]:.2f} ({lo:.2f}-{hi:.2f}) | {lat['rounds_slower'][k]}/{rounds} |")
open(os.path.join(out, "int8-vs-reference.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
