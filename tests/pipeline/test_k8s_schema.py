"""The Kubernetes manifests of infra/k8s against the Kubernetes API schema, without a cluster.

The ``kubernetes`` client's models are generated from the API's OpenAPI schema: every object
deserialises into its typed model (required fields checked), and serialising it back must give the
manifest again, so a misspelt or misplaced field (which the model drops) is caught too.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kubernetes.client import ApiClient

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
MANIFESTS = sorted([*K8S.glob("pod-templates/*.yaml"), K8S / "pvc.yaml"])


def _normal(x):
    """Numbers as the API serialises quantities and ports (strings stay strings)."""
    if isinstance(x, dict):
        return {k: _normal(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_normal(v) for v in x]
    return str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def round_trip(doc: dict) -> dict:
    """``doc`` through the typed model of its apiVersion/kind and back."""
    api = ApiClient()
    group_version = doc["apiVersion"].split("/")[-1].capitalize()
    model = api.deserialize(SimpleNamespace(data=json.dumps(doc)), f"{group_version}{doc['kind']}")
    return api.sanitize_for_serialization(model)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert _normal(round_trip(doc)) == _normal(doc), f"{path}: a field the Kubernetes schema does not know"


def test_a_misspelt_field_is_caught():
    doc = yaml.safe_load((K8S / "pod-templates" / "gpu.yaml").read_text())
    doc["spec"]["tolerationz"] = doc["spec"].pop("tolerations")
    assert _normal(round_trip(doc)) != _normal(doc)


def test_a_missing_required_field_is_refused():
    doc = yaml.safe_load((K8S / "pod-templates" / "gpu.yaml").read_text())
    del doc["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        round_trip(doc)


def test_gpu_tasks_request_one_gpu_and_cpu_tasks_none():
    gpu = yaml.safe_load((K8S / "pod-templates" / "gpu.yaml").read_text())["spec"]["containers"][0]["resources"]
    cpu = yaml.safe_load((K8S / "pod-templates" / "default.yaml").read_text())["spec"]["containers"][0]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in json.dumps(cpu.get("resources", {}))
