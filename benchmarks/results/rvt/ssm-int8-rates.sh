#!/bin/bash
# After ssm-int8-run.sh, in the same folder. The trained SSM's fp32 and int8 exports on labeled scenes cut at 20, 50 and 100 ms windows.
set -euo pipefail
P=${PRISM:-prism}
CARD=$(cd "$(dirname "$0")/../../../models" && pwd)/rvt-tiny-synth.toml
cd "${1:-.}"
for ms in 20 50 100; do
  hz=$((1000 / ms))
  mkdir -p rates/raw$ms/val
  for s in 1 2 3 4; do
    $P data synth --out rates/raw$ms/val/scene$s --width 160 --height 128 --duration-s 6 --objects 4 --label-hz $hz --seed $((7000 + s)) > /dev/null
  done
  sed "s/^window_ms = 50/window_ms = $ms/" "$CARD" > card$ms.toml
  sed -i 's/^memory = "lstm"/memory = "ssm"/' card$ms.toml
  $P data prepare --input rates/raw$ms --out rates/data$ms --model card$ms.toml --label-clock every-frame > /dev/null
  for m in ssm.onnx ssm.int8.onnx; do
    for b in ort-cpu tract; do
      $P eval --model $m --backend $b --data rates/data$ms --filter none --out rates/eval-$ms-$m-$b.json > /dev/null 2>&1
      echo "$ms ms $m $b $(python3 -c "import json;print([round(x,4) for x in json.load(open('rates/eval-$ms-$m-$b.json'))['stats'][:2]])")"
    done
  done
done
