#!/bin/bash
# SSM int8 accuracy against fp32 on labeled synthetic scenes (issue 19).
set -euo pipefail
P=${PRISM:-prism}
# Run from an empty work folder: bash ssm-int8-run.sh; PRISM names the binary.
cd "${1:-.}"
date
$P train --config rvt-tiny-synth --set model.memory=ssm --set train.steps=${STEPS:-180} --set train.val_every=60 --run-dir runs/ssm --data data/synth
date
$P export onnx --checkpoint runs/ssm/checkpoints/last --out ssm.onnx --verify
$P export onnx --checkpoint runs/ssm/checkpoints/last --out ssm.fp16.onnx --precision fp16
$P quantize --model ssm.onnx --calib data/synth --out ssm.int8.onnx --report > quantize.txt 2>&1
for m in ssm.onnx ssm.fp16.onnx ssm.int8.onnx; do
  for b in tract ort-cpu; do
    echo "== $m $b"; $P eval --model $m --backend $b --data data/synth --out eval-$m-$b.json 2>&1 | tail -4
  done
done
$P eval --checkpoint runs/ssm/checkpoints/last --data data/synth --out eval-burn.json 2>&1 | tail -4
date
