# Python set-up shared by the benchmarks/gpu_*.sh scripts on the device machine; source it from
# the repository root with the modules the script needs:
#   source benchmarks/gpu_env.sh pydantic pycocotools
# The GPU image has torch / transformers / scikit-image but not semires' pure-Python dependencies.
# When one of the named modules does not import, the wheels carried in .whl/ (git-ignored; how to
# fetch them: benchmarks/gpu_train.sh) are installed into /tmp/site; with no wheels there it stops
# with exit status 2. Sets PY (python3, else python) and OUT_DIR (created), puts the repository and
# /tmp/site on PYTHONPATH, and keeps transformers offline.
PY=python3
command -v "$PY" >/dev/null || PY=python
_missing=""
for _mod in "$@"; do
  "$PY" -c "import $_mod" 2>/dev/null || _missing="$_missing $_mod"
done
if [ -n "$_missing" ]; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "not installed:$_missing, and .whl/ holds no wheels to install them from" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
# never reach for the Hugging Face hub: every model loads from a local folder
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# results go to $OUT on the device machine (they come back from there), else benchmarks/results
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"

# gpu_text_encoder: sets TEXT=(--text-encoder DIR) when a half-precision MiniLM was carried in
# .gpu_carry/minilm16 (the package's 88 MB of weights exceed what a call carries), widened back
# to float32 into /tmp/minilm; TEXT=() otherwise (the scripts then use the installed package).
gpu_text_encoder() {
  TEXT=()
  [ -f .gpu_carry/minilm16/model.safetensors ] || return 0
  rm -rf /tmp/minilm && cp -r .gpu_carry/minilm16 /tmp/minilm
  "$PY" - <<'PY'
import torch
from safetensors.torch import load_file, save_file

sd = load_file("/tmp/minilm/model.safetensors")
save_file({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, "/tmp/minilm/model.safetensors",
          metadata={"format": "pt"})
PY
  TEXT=(--text-encoder /tmp/minilm)
}
