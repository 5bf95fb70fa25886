#!/usr/bin/env bash
# benchmarks/gpu_sweep.py on one CUDA GPU: the named model variants at the CPU run's 6-epoch
# schedule, run at once (results accumulate over calls). Carry as for benchmarks/gpu_supervised.sh
# (wheels in .whl/, MiniLM in .gpu_carry/minilm16).
#
#   command: bash benchmarks/gpu_sweep.sh [extra gpu_sweep.py args]
#   carry:   [".whl", ".gpu_carry"]
# Writes $OUT/gpu_model_sweep.json and each variant's JSON and log (benchmarks/results/ without $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh pydantic pycocotools
gpu_text_encoder
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv || true
# start from the committed table, so the one that comes back from $OUT holds every variant so far
if [ "$OUT_DIR" != benchmarks/results ] && [ -f benchmarks/results/gpu_model_sweep.json ]; then
  cp benchmarks/results/gpu_model_sweep.json "$OUT_DIR/"
fi
"$PY" benchmarks/gpu_sweep.py "${TEXT[@]}" --out "$OUT_DIR/gpu_model_sweep.json" "$@"
