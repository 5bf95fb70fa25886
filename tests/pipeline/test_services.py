"""Local services: idempotent start, addresses without credentials, the bucket exists."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.pipeline


def test_up_is_idempotent_and_records_no_secret(services, secret):
    from semires import services as svc_mod

    state = services["state"]
    before = json.loads((state / "services.json").read_text())
    again = svc_mod.up(state, environ=services["environ"])
    after = json.loads((state / "services.json").read_text())
    assert again == services["svc"]
    assert (before["s3_pid"], before["mlflow_pid"]) == (after["s3_pid"], after["mlflow_pid"])
    for name in ("services.json", "env.sh"):
        assert secret not in (state / name).read_text()
    assert secret not in json.dumps(again.env())
    exports = (state / "env.sh").read_text()
    assert f"export MLFLOW_TRACKING_URI={again.mlflow_url}" in exports
    assert 'AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-' in exports  # the user's own key wins
    assert svc_mod.current(state) == again


def test_bucket_exists_and_mlflow_answers(services):
    import urllib.request

    import boto3

    svc = services["svc"]
    s3 = boto3.client("s3", endpoint_url=svc.s3_url, region_name="us-east-1",
                      aws_access_key_id=services["env"]["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=services["env"]["AWS_SECRET_ACCESS_KEY"])
    assert svc.bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    with urllib.request.urlopen(f"{svc.mlflow_url}/health", timeout=10) as resp:
        assert resp.status == 200


def test_free_port_prefers_the_given_one_when_free():
    from semires.services import free_port

    p = free_port()
    assert free_port(p) == p


def test_mlflow_server_runs_without_the_job_runner(services):
    """MLflow 3's job runner (huey consumers) stays off: one server process and its web worker."""
    from pathlib import Path

    from pipeline_helpers import ROOT

    from semires.services import process_tree, resident_memory

    pid = int((services["state"] / "mlflow.pid").read_text())
    cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode() for p in process_tree(pid)]
    # with the runner on, `mlflow.server.jobs` starts huey consumers and a job runner beside the web worker
    assert cmdlines and not [c for c in cmdlines if "huey" in c or "mlflow.server.jobs" in c], cmdlines
    n, mib = resident_memory(services["state"])["mlflow"]
    assert n == len(cmdlines) <= 3
    out = ROOT / "tests/artifacts/mlflow_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"processes": n, "resident_mib": round(mib, 1), "cmdlines": cmdlines}, indent=1))
