#!/usr/bin/env bash
# SAM "everything" candidates on one CUDA GPU (H100 / H200): segment-anything's vanilla
# SamAutomaticMaskGenerator vs semires' FastAutomaticMaskGenerator (points batch 256 and 1024, and
# with a bf16 image encoder), on the real ViT-H architecture with random weights (nothing is
# downloaded or read), 32x32 points, 640x480 RefShapes images generated on the spot. Two mask
# regimes (see benchmarks/candidates_bench.py): 'disc' (real ViT-H compute, object-like masks,
# published thresholds) and 'random' (the network's own noise masks, thresholds lowered equally).
# Reports s/image, speed-up over vanilla, candidates/image and matched mIoU vs vanilla.
# Sized to finish well within 4 minutes (hard limit 225 s for the Python part); not yet run on a GPU.
#
# Usage, from the repository root on the GPU machine (device tool):
#   command:   bash benchmarks/gpu_candidates.sh
#   carry:     [".whl"]   (segment-anything, pycocotools, pydantic wheels for cp312 x86-64)
#   timeout_s: 300
# Writes $OUT/candidates_gpu.json (benchmarks/results/ without $OUT); if the time limit cuts the run,
# $OUT/candidates_gpu.partial.json keeps the regimes finished so far. CPU dry run of this script:
#   GPU_CANDIDATES_SMOKE=1 bash benchmarks/gpu_candidates.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh segment_anything pycocotools pydantic
if [ "${GPU_CANDIDATES_SMOKE:-0}" = "1" ]; then
  ARGS=(--device cpu --quick)
else
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
  ARGS=(--device cuda --budget 30)
fi
timeout 225 "$PY" benchmarks/candidates_bench.py "${ARGS[@]}" --sections sam \
  --workdir /tmp/candidates_bench --out "$OUT_DIR/candidates_gpu.json"
