#!/usr/bin/env bash
# The GPU check: ONNX Runtime's CUDA provider and Burn's LibTorch backend on a CUDA machine, run
# from prebuilt binaries (the GPU machine has no Rust toolchain and no network).
#
# usage: benchmarks/gpu/device_check.sh STAGE OUT
#   Run from the repository root. STAGE holds what was put together on the build machine:
#     prism            prism (release) built as usual
#     prism-tch        prism built with `--features tch` against the GPU machine's own torch release
#     bench-train      bench-train built the same way
#     ort/             libonnxruntime.so.1.31.1, libonnxruntime_providers_{shared,cuda}.so from
#                      the PyPI onnxruntime-gpu 1.31.1 wheel (CUDA 13)
#     demo/            a `prism demo` run: checkpoint (card.toml, model.safetensors), the prepared
#                      data (a train seed, the val split) and scene_td.raw (an EVT3 recording)
#   OUT receives logs, detections and every `prism bench` table.
#   SECTIONS (default: all) picks parts: `parity` (one recording through every engine, TF32 off
#   and on), `synth` (bench with mAP), `gen1` (rvt-tiny/base-gen1), `1mpx` (rvt-base-1mpx),
#   `mm` (a multimodal detector), `train` (LibTorch on CUDA; needs only prism-tch, bench-train
#   and demo/data).
# The CUDA libraries (cuBLAS, cuDNN, cuFFT, cuRAND, the runtime) and libtorch are the machine's own
# PyTorch's (`python3 -c 'import torch'`). Each step has its own time limit; a failing step is
# logged and the next one runs.
set -u
STAGE=$(realpath "$1")
OUT=$(realpath "$2")
mkdir -p "$OUT"
LOG="$OUT/check.log"
step() { echo "=== $* ($(date -u +%T))" | tee -a "$LOG"; }

PY=${PY:-python3}
SITE=$($PY -c 'import site; print(site.getsitepackages()[0])')
TORCH_LIB=$($PY -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
NV_LIBS=$(find "$SITE/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$STAGE/ort:$NV_LIBS:$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$STAGE/ort/libonnxruntime.so.1.31.1"
REPO=$(pwd)
# LibTorch registers CUDA when libtorch_cuda.so is loaded; a binary linked as needed may not load it.
TCH_PRELOAD="$TORCH_LIB/libtorch_cuda.so"
P="$STAGE/prism"
PT="$STAGE/prism-tch"
D="$STAGE/demo"
W=$(mktemp -d)

step versions
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  nproc; uname -r
  echo "missing libraries of the CUDA provider:"
  ldd "$STAGE/ort/libonnxruntime_providers_cuda.so" | grep 'not found' || echo none
} >>"$LOG" 2>&1

SECTIONS=${SECTIONS:-parity,synth,gen1,1mpx,mm,train}
want() { [[ ,$SECTIONS, == *,$1,* ]]; }

if want parity; then
step "export the demo checkpoint"
timeout 120 "$P" export onnx --checkpoint "$D/ckpt" --out "$W/synth.onnx" >>"$LOG" 2>&1
timeout 120 "$P" export onnx --checkpoint "$D/ckpt" --out "$W/synth-fp16.onnx" --precision fp16 \
  --calib "$D/data" >>"$LOG" 2>&1

step "the same recording through every engine"
# ort-cuda computes fp32 in fp32 unless --cuda-tf32 (ONNX Runtime's own default) is given.
for run in tract:synth: ort-cpu:synth: ort-cuda:synth: ort-cuda:synth:--cuda-tf32 ort-cuda:synth-fp16:; do
  IFS=: read -r backend model flag <<<"$run"
  name="$backend-$model${flag:+-tf32}"
  timeout 120 "$P" infer --model "$W/$model.onnx" --backend "$backend" $flag --input "$D/scene_td.raw" \
    --out "$OUT/det-$name.jsonl" >>"$LOG" 2>&1
  echo "$name rc=$?" >>"$LOG"
done
for name in ort-cpu-synth ort-cuda-synth ort-cuda-synth-tf32 ort-cuda-synth-fp16; do
  echo "tract against $name:" >>"$LOG"
  $PY "$REPO/benchmarks/gpu/compare_detections.py" "$OUT/det-tract-synth.jsonl" "$OUT/det-$name.jsonl" >>"$LOG" 2>&1
done

fi

if want synth; then
step "prism bench: the demo checkpoint, mAP through each engine"
timeout 240 "$P" bench --checkpoint "$D/ckpt" --data "$D/data" --backends tract,ort-cpu,ort-cuda,ort-tensorrt \
  --precision fp32,fp16,int8 --warmup-s 1 --duration-s 3 --out "$W/bench-synth" >>"$LOG" 2>&1
cp "$W/bench-synth/bench.md" "$OUT/bench-synth.md" 2>/dev/null
cp "$W/bench-synth/bench.json" "$OUT/bench-synth.json" 2>/dev/null

fi

if want gen1; then
step "prism bench: rvt-tiny-gen1"
timeout 240 "$P" bench --model rvt-tiny-gen1 --backends ort-cpu,ort-cuda --precision fp32,fp16,int8 \
  --threads 16 --warmup-s 1 --duration-s 4 --out "$W/bench-tiny" >>"$LOG" 2>&1
cp "$W/bench-tiny/bench.md" "$OUT/bench-rvt-tiny-gen1.md" 2>/dev/null

timeout 150 "$P" bench --model rvt-base-gen1 --backends ort-cpu,ort-cuda --precision fp32,fp16 \
  --threads 16 --warmup-s 1 --duration-s 4 --out "$W/bench-base" >>"$LOG" 2>&1
cp "$W/bench-base/bench.md" "$OUT/bench-rvt-base-gen1.md" 2>/dev/null
fi

if want 1mpx; then
step "prism bench: rvt-base-1mpx"
timeout 200 "$P" bench --model rvt-base-1mpx --backends ort-cpu,ort-cuda --precision fp32,fp16,int8 \
  --threads 16 --warmup-s 1 --duration-s 4 --out "$W/bench-1mpx" >>"$LOG" 2>&1
cp "$W/bench-1mpx/bench.md" "$OUT/bench-rvt-base-1mpx.md" 2>/dev/null
fi

if want train; then
step "bench-train: Burn tch-cuda against PyTorch CUDA"
(cd "$REPO" && LD_PRELOAD="$TCH_PRELOAD" timeout 180 "$STAGE/bench-train" --devices tch-cuda --torch-device cuda --python "$(command -v $PY)" \
  --batch 8 --steps 10 --profile-reps 0 --out "$OUT" >>"$LOG" 2>&1)
echo "bench-train rc=$?" >>"$LOG"

step "prism train on tch-cuda and on flex: the first steps' losses"
for device in tch-cuda flex; do
  LD_PRELOAD="$TCH_PRELOAD" timeout 120 "$PT" train --config "$REPO/models/rvt-tiny-synth.toml" --device "$device" --data "$D/data" \
    --run-dir "$W/train-$device" --stop-after 6 >>"$LOG" 2>&1
  echo "train $device rc=$?" >>"$LOG"
  cp "$W/train-$device/metrics.jsonl" "$OUT/train-$device.jsonl" 2>/dev/null
done
LD_PRELOAD="$TCH_PRELOAD" timeout 100 "$PT" train --config "$REPO/models/rvt-tiny-synth.toml" --device tch-cuda --data "$D/data" \
  --run-dir "$W/train-bf16" --stop-after 6 --set train.precision=bf16 >>"$LOG" 2>&1
echo "train tch-cuda bf16 rc=$?" >>"$LOG"
cp "$W/train-bf16/metrics.jsonl" "$OUT/train-tch-cuda-bf16.jsonl" 2>/dev/null
step "the full rvt-tiny-synth recipe on tch-cuda"
LD_PRELOAD="$TCH_PRELOAD" timeout 150 "$PT" train --config "$REPO/models/rvt-tiny-synth.toml" --device tch-cuda \
  --data "$D/data" --run-dir "$W/train-full" >>"$LOG" 2>&1
echo "train tch-cuda full recipe rc=$?" >>"$LOG"
cp "$W/train-full/metrics.jsonl" "$OUT/train-tch-cuda-full.jsonl" 2>/dev/null
cp "$W/train-full/curves.png" "$OUT/train-tch-cuda-full.png" 2>/dev/null

fi

if want mm; then
step "prism bench: mm-mit-b1-cssa-s3"
timeout 150 "$P" bench --model "$REPO/models/mm-mit-b1-cssa-s3.toml" --backends ort-cpu,ort-cuda --precision fp32,fp16 \
  --threads 16 --warmup-s 1 --duration-s 4 --out "$W/bench-mm" >>"$LOG" 2>&1
cp "$W/bench-mm/bench.md" "$OUT/bench-mm-mit-b1-cssa-s3.md" 2>/dev/null
fi
step done
