#!/usr/bin/env bash
# prism quantize against ONNX Runtime's quantize_static on one float export, in one run:
# the same calibration windows (saved by prism, state carried on both sides), held-out mAP
# through `prism eval` on ONNX Runtime CPU, and paired per-window latency in one process.
#
# Usage: benchmarks/quantize_compare.sh MODEL.onnx DATA_DIR OUT_DIR [CALIB_WINDOWS]
#   DATA_DIR: a prepared dataset (calibration on train, mAP on val).
# Needs: a release `prism` (cargo build --release), the provisioned Python environment.
set -euo pipefail
model=$1 data=$2 out=$3 windows=${4:-240}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
prism=${PRISM_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/prism}
python=${PRISM_ENV:-$root/target/prism-env}/venv/bin/python
mkdir -p "$out"
cp "$model" "$out/fp32.onnx"

q() { "$prism" quantize --model "$out/fp32.onnx" --calib "$data" --calib-windows "$windows" "$@" 2>&1 | grep -v '^quantize:'; }
q --out "$out/prism-s8s8.onnx" --save-calib "$out/calib"
q --out "$out/prism-s8s8-7bit.onnx" --reduce-range
q --out "$out/prism-u8s8-7bit.onnx" --reduce-range --activations uint8
"$python" "$here/peers/ort_quantize.py" "$out/fp32.onnx" "$out/calib" "$out"
rm -rf "$out/calib"

files=(fp32 prism-s8s8 prism-s8s8-7bit prism-u8s8-7bit ort-minmax ort-percentile ort-entropy)
for f in "${files[@]}"; do
  "$prism" eval --model "$out/$f.onnx" --backend ort-cpu --data "$data" --out "$out/map-$f.json" > "$out/map-$f.txt" 2>/dev/null
  echo "$f: $(grep -m1 'IoU=0.50:0.95' "$out/map-$f.txt")"
done
paths=()
for f in "${files[@]}"; do paths+=("$out/$f.onnx"); done
"$python" "$here/peers/ort_paired_latency.py" "${ROUNDS:-60}" 2 "${paths[@]}" | sed "s#\.onnx##; s#$out/##" > "$out/latency.json"

"$python" - "$out" "${files[@]}" <<'PY'
import json, os, platform, subprocess, sys, datetime
out, files = sys.argv[1], sys.argv[2:]
lat = json.load(open(os.path.join(out, "latency.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = open("/proc/cpuinfo").read()
isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
vnni = "VNNI" if "vnni" in flags else "no VNNI"
import onnxruntime
rows = [f"Machine: {cpu}, {os.cpu_count()} cores, {isa}, {vnni}; ONNX Runtime {onnxruntime.__version__}, 2 threads; {datetime.date.today()}.", "",
        "| file | mAP@[.5:.95] | mAP@.5 | size MB | ORT CPU ms/window (median) | / fp32 (95 % CI) |", "|---|---|---|---|---|---|"]
for f in files:
    m = json.load(open(os.path.join(out, f"map-{f}.json")))
    l = lat[f]
    size = os.path.getsize(os.path.join(out, f + ".onnx")) / 1e6
    rows.append(f"| {f} | {m['stats'][0]:.3f} | {m['stats'][1]:.3f} | {size:.1f} | {l['median_ms']:.2f} | {l['ratio_to_first']:.2f} ({l['ratio_ci95'][0]:.2f}-{l['ratio_ci95'][1]:.2f}) |")
open(os.path.join(out, "quantize.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
