"""Fixtures of the pipeline tests: real local services and a throw-away copy of the project.

The services (moto S3, MLflow server) start once per session with credentials set to a
recognisable random secret, which the secret test then searches for everywhere. Nothing here
changes ``os.environ``: commands get their environment explicitly, so other tests stay offline.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import ROOT, merged_test_params

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.pipeline


@dataclass
class Shell:
    """Runs commands in a project folder with a fixed environment and keeps every output (for the secret scan)."""

    cwd: Path
    env: dict
    log: Path
    outputs: list = field(default_factory=list)

    def __call__(self, *cmd, check: bool = True, timeout: float = 900, env: dict | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run([str(c) for c in cmd], cwd=cwd or self.cwd, env={**self.env, **(env or {})},
                             capture_output=True, text=True, timeout=timeout, check=False)
        with open(self.log, "a") as fh:
            fh.write(f"$ {' '.join(map(str, cmd))}\n{res.stdout}\n{res.stderr}\n")
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, cmd))} exited {res.returncode}\n--- stdout\n{res.stdout[-4000:]}"
                                 f"\n--- stderr\n{res.stderr[-4000:]}")
        return res

    def py(self, *args, **kw) -> subprocess.CompletedProcess:
        return self(sys.executable, *args, **kw)


@pytest.fixture(scope="session")
def secret() -> str:
    return "SEMIRESLEAK" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def services(tmp_path_factory, secret):
    """moto S3 + MLflow server, started with the secret as AWS_SECRET_ACCESS_KEY; stopped at the end."""
    from semires import services as svc_mod

    state = tmp_path_factory.mktemp("services")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "SEMIRES_"))}
    environ = {**base, "AWS_ACCESS_KEY_ID": "semires-test-key", "AWS_SECRET_ACCESS_KEY": secret,
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
               "PYTHONUNBUFFERED": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    # a busy 2-core machine can take minutes to import MLflow and migrate a fresh database
    svc_mod.STARTUP_TIMEOUT_S = max(svc_mod.STARTUP_TIMEOUT_S, 600.0)
    try:
        svc = svc_mod.up(state, environ=environ)
    except BaseException:
        svc_mod.down(state)  # a server that did start must not outlive a failed setup
        raise
    env = {**environ, **svc.env(), "PATH": f"{Path(sys.executable).parent}:{environ.get('PATH', '')}"}
    yield {"svc": svc, "env": env, "state": state, "environ": environ}
    svc_mod.down(state)


PROJECT_FILES = ["dvc.yaml", ".dvcignore", "components", "semires", "dags"]



@pytest.fixture(scope="session")
def project(tmp_path_factory, services):
    """A copy of the pipeline project (git + DVC, S3 remote on moto) with the tests' tiny params."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(merged_test_params(), sort_keys=False))
    (root / ".gitignore").write_text("/.services/\n__pycache__/\n")
    sh = Shell(root, services["env"], tmp_path_factory.mktemp("logs") / "commands.log")
    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-q", "-m", "pipeline test project")
    sh("dvc", "init", "-q")
    sh("dvc", "config", "core.analytics", "false")
    sh("dvc", "remote", "add", "-d", "s3", f"s3://{services['svc'].bucket}/dvc")
    sh("dvc", "remote", "modify", "--local", "s3", "endpointurl", services["svc"].s3_url)
    return sh
