#!/usr/bin/env bash
# The main job: the whole semires pipeline end to end on the embedded default (RefShapes, the
# weight-free candidate generator, MiniLM, lavt_tiny) with its MLOps stack running locally:
#   1. local services: moto S3 + MLflow server (SQLite store, artifacts in S3), idempotent;
#   2. `dvc repro` of every stage under one parent MLflow run, two stages at a time where the graph
#      allows (scripts/repro_parallel.py; SEMIRES_JOBS=1 runs them one by one, as plain `dvc repro`);
#   3. `dvc push` of the outputs to the S3 remote;
#   4. the run's summary, then the link to the experiment's training runs in the MLflow UI and the
#      cross-run scores table from MLflow (the last lines of the output).
# Run it through `make demo` (which installs the environment first). Re-running it reproduces
# nothing that has not changed; `semires pipeline services down` (or `make` of your own) stops the
# services. Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment (local
# dummies for moto when unset); they are never printed or written to a file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
# one torch thread per stage process: on 2 shared cores it beat two threads by far
# (benchmarks/results/train_speed_bench.json); export SEMIRES_THREADS=2 on an idle machine to compare
export SEMIRES_THREADS=${SEMIRES_THREADS:-1}
# independent stages side by side (candidate shards beside pretraining, the supervised baseline
# beside the student): with one thread each, two of them fill 2 cores
JOBS=${SEMIRES_JOBS:-2}
PARAMS=${SEMIRES_PARAMS:-params.yaml}
t0=$(date +%s)
stamp() { printf '[demo %4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

stamp "starting services (moto S3, MLflow server)"
eval "$(python -m semires pipeline services up --print-env)"
stamp "MLflow $MLFLOW_TRACKING_URI, S3 $MLFLOW_S3_ENDPOINT_URL"
# MLflow runs without its job runner (GenAI jobs; ~2.4 GB in 10 processes when on): export
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true before the services start to have it
python -c 'from semires.services import resident_memory
for name, (n, mib) in resident_memory().items(): print(f"  {name}: {mib:.0f} MiB resident in {n} process(es)")'

# the remote's endpoint is machine-local: .dvc/config.local, which git ignores
dvc remote modify --local s3 endpointurl "$MLFLOW_S3_ENDPOINT_URL"

SEMIRES_PARENT_RUN_ID=$(python -m semires pipeline start-run --params "$PARAMS" \
    --name "demo-$(date -u +%Y%m%dT%H%M%SZ)" | tail -n 1)
export SEMIRES_PARENT_RUN_ID
status=FAILED
finish() {
    if [ -n "${SEMIRES_PARENT_RUN_ID:-}" ]; then
        python -m semires pipeline end-run "$SEMIRES_PARENT_RUN_ID" --status "$status" --params "$PARAMS" >/dev/null || true
    fi
}
trap finish EXIT
stamp "pipeline run $SEMIRES_PARENT_RUN_ID"

stamp "dvc repro, $JOBS stages at a time"
python scripts/repro_parallel.py --jobs "$JOBS"
status=FINISHED
finish
trap - EXIT

stamp "dvc push (outputs to s3://${SEMIRES_S3_BUCKET}/dvc)"
dvc push -q || stamp "dvc push failed: outputs stay in the local cache; rerun 'dvc push' once S3 is back"

echo
cat reports/summary.md
echo
stamp "done in $(( $(date +%s) - t0 )) s"
echo "Services keep running; stop them with: .venv/bin/python -m semires pipeline services down"
echo
# the experiment opens on its training runs with the student's scores as columns (semires/mlflow_ui.py)
echo "MLflow training runs: $(python -m semires.mlflow_ui --params "$PARAMS")"
echo "Scores of the pipeline runs in MLflow (newest first; percent):"
python -m semires pipeline compare --params "$PARAMS" --max-runs 10
