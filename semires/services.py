"""Local stand-ins for the pipeline's services: an S3 server (moto) and an MLflow tracking server.

``up(state_dir)`` starts both on loopback ports (free ones, or the ones used last time), creates
the bucket, and records pids, ports and logs in ``state_dir`` (default ``.services/``). It is
idempotent: services that are already running and healthy are reused. ``down`` stops only the
processes whose pid files it wrote.

The MLflow server keeps runs and the model registry in SQLite (``state_dir/mlflow.db``) and stores
artifacts in ``s3://<bucket>/mlflow`` through its artifact proxy, so clients only need
``MLFLOW_TRACKING_URI``. It starts without MLflow's job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``;
export it as ``true`` before ``up`` for GenAI jobs), so it is one web worker and a fraction of the
memory. DVC pushes to ``s3://<bucket>/dvc`` on the same S3 endpoint.

Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) with
dummy local defaults for moto; they are never written to state files or printed. moto keeps
objects in memory: stopping it forgets the bucket's content (the local DVC cache keeps the data).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from semires import io
from semires.errors import SemiresError

DEFAULT_STATE_DIR = ".services"
DEFAULT_BUCKET = "semires"
LOCAL_KEY_ID = "semires-local"  # dummy credentials for the local moto server only
LOCAL_SECRET = "semires-local-secret"
STARTUP_TIMEOUT_S = 120.0
# MLflow server setting: its job runner off unless the caller's environment turns it on
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


@dataclass(frozen=True)
class Services:
    """Addresses of running services (no credentials)."""

    s3_url: str
    mlflow_url: str
    bucket: str
    state_dir: Path

    @property
    def dvc_remote_url(self) -> str:
        return f"s3://{self.bucket}/dvc"

    @property
    def mlflow_artifacts(self) -> str:
        return f"s3://{self.bucket}/mlflow"

    def env(self) -> dict[str, str]:
        """Variables clients need: tracking URI, S3 endpoint, region, bucket (credentials excluded)."""
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
                "AWS_ENDPOINT_URL_S3": self.s3_url, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION",
                                                                                       "us-east-1"),
                "SEMIRES_S3_BUCKET": self.bucket, "SEMIRES_DVC_REMOTE_URL": self.dvc_remote_url}

    def shell_exports(self) -> str:
        """``export`` lines for ``eval``; credentials default to the local dummies only when unset."""
        lines = [f"export {k}={v}" for k, v in self.env().items()]
        lines += [f'export AWS_ACCESS_KEY_ID="${{AWS_ACCESS_KEY_ID:-{LOCAL_KEY_ID}}}"',
                  f'export AWS_SECRET_ACCESS_KEY="${{AWS_SECRET_ACCESS_KEY:-{LOCAL_SECRET}}}"']
        return "\n".join(lines) + "\n"


def credentials_env(environ: dict | None = None) -> dict[str, str]:
    """AWS credentials from ``environ`` (default ``os.environ``), local dummies where unset."""
    environ = os.environ if environ is None else environ
    return {"AWS_ACCESS_KEY_ID": environ.get("AWS_ACCESS_KEY_ID", LOCAL_KEY_ID),
            "AWS_SECRET_ACCESS_KEY": environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET)}


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it can be bound on 127.0.0.1, else a free port the OS picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # as the servers do: a port whose old connections linger in TIME_WAIT is still free to listen on
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise SemiresError("no free TCP port on 127.0.0.1")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); ask /proc where there is one
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


def _running(pid: int | None, url: str, patience_s: float = 20.0) -> bool:
    """True when ``pid`` lives and ``url`` answers; a live but busy server gets ``patience_s`` to answer
    (restarting a healthy server under load would move it to another port behind its clients' backs)."""
    if not (url and _alive(pid)):
        return False
    deadline = time.monotonic() + patience_s
    while True:
        if _http_ok(url, timeout=5.0):
            return True
        if not _alive(pid) or time.monotonic() > deadline:
            return False
        time.sleep(1.0)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _state(state_dir: Path) -> dict:
    p = state_dir / "services.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _start(name: str, cmd: list[str], state_dir: Path, env: dict, health_url: str) -> int:
    with open(state_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=state_dir, start_new_session=True)  # own group: `down` stops it and its workers
    io.write_text(state_dir / f"{name}.pid", f"{proc.pid}\n")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state_dir / f"{name}.log").read_text(errors="replace")[-2000:]
            raise SemiresError(f"{name} exited with code {proc.returncode} while starting; log tail:\n{tail}",
                               state_dir / f"{name}.log", "read the log; a port clash clears on retry")
        if _http_ok(health_url):
            return proc.pid
        time.sleep(0.5)
    raise SemiresError(f"{name} did not answer {health_url} within {STARTUP_TIMEOUT_S:.0f} s",
                       state_dir / f"{name}.log", "read the log, then `semires pipeline services down` and retry")


def _ensure_bucket(s3_url: str, bucket: str, creds: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in names:
        s3.create_bucket(Bucket=bucket)


def _bin(name: str) -> str:
    """An executable of this virtual environment (services run from the same venv as semires)."""
    p = Path(sys.executable).parent / name
    return str(p) if p.exists() else name


def up(state_dir: str | Path = DEFAULT_STATE_DIR, bucket: str = DEFAULT_BUCKET,
       environ: dict[str, str] | None = None) -> Services:
    """Start (or reuse) the S3 and MLflow servers; returns their addresses.

    ``environ`` (default ``os.environ``) is the environment the servers start with; its AWS
    credentials are the ones the MLflow server uses for its artifact store.
    Writes ``state_dir/services.json`` (ports, pids, URLs), ``*.pid`` and ``*.log`` files.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    old = _state(state_dir)
    base = dict(os.environ if environ is None else environ)
    creds = credentials_env(base)
    env = {**base, **creds}
    env.pop("MLFLOW_TRACKING_URI", None)

    s3_pid, s3_port = _read_pid(state_dir / "s3.pid"), old.get("s3_port")
    s3_url = f"http://127.0.0.1:{s3_port}" if s3_port else ""
    if not _running(s3_pid, s3_url):
        _stop_pidfile(state_dir / "s3.pid")  # a hung server still holds its port
        s3_port = free_port(s3_port)
        if s3_url and s3_url != f"http://127.0.0.1:{s3_port}":
            _stop_pidfile(state_dir / "mlflow.pid")  # its S3 endpoint moved: restarted below
        s3_url = f"http://127.0.0.1:{s3_port}"
        s3_pid = _start("s3", [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], state_dir, env, s3_url)
    _ensure_bucket(s3_url, bucket, creds)

    ml_pid, ml_port = _read_pid(state_dir / "mlflow.pid"), old.get("mlflow_port")
    ml_url = f"http://127.0.0.1:{ml_port}" if ml_port else ""
    if not _running(ml_pid, f"{ml_url}/health" if ml_url else ""):
        _stop_pidfile(state_dir / "mlflow.pid")
        ml_port = free_port(ml_port)
        ml_url = f"http://127.0.0.1:{ml_port}"
        cmd = [_bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{state_dir / 'mlflow.db'}",
               "--artifacts-destination", f"s3://{bucket}/mlflow", "--host", "127.0.0.1", "--port", str(ml_port),
               "--workers", "1"]
        ml_env = {**env, "MLFLOW_S3_ENDPOINT_URL": s3_url, "AWS_DEFAULT_REGION": "us-east-1"}
        # MLflow 3's job runner (huey consumers for GenAI jobs this project never submits) would add
        # ~8 processes and ~2 GB resident; a user who sets the variable gets their choice
        ml_env.setdefault(JOB_EXECUTION_ENV, "false")
        ml_pid = _start("mlflow", cmd, state_dir, ml_env, f"{ml_url}/health")

    svc = Services(s3_url=s3_url, mlflow_url=ml_url, bucket=bucket, state_dir=state_dir)
    io.write_json(state_dir / "services.json", {"s3_port": s3_port, "s3_pid": s3_pid, "s3_url": s3_url,
                                                "mlflow_port": ml_port, "mlflow_pid": ml_pid, "mlflow_url": ml_url,
                                                "bucket": bucket})
    io.write_text(state_dir / "env.sh", svc.shell_exports())
    return svc


def current(state_dir: str | Path = DEFAULT_STATE_DIR) -> Services | None:
    """The running services recorded in ``state_dir``, or None when they are not both healthy."""
    state_dir = Path(state_dir).resolve()
    st = _state(state_dir)
    if not st or not _http_ok(st["s3_url"]) or not _http_ok(f"{st['mlflow_url']}/health"):
        return None
    return Services(s3_url=st["s3_url"], mlflow_url=st["mlflow_url"], bucket=st["bucket"], state_dir=state_dir)


def _stop_pidfile(pid_file: Path, timeout: float = 15.0) -> bool:
    pid = _read_pid(pid_file)
    stopped = False
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)  # the group we created with start_new_session
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        stopped = True
    pid_file.unlink(missing_ok=True)
    return stopped


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux ``/proc``); [] when it is gone."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    if pid not in parents:
        return []
    tree, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, p in parents.items() if p == parent]
        tree += kids
        todo += kids
    return tree


def resident_memory(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, tuple[int, float]]:
    """Each running service's process count and resident memory (MiB, summed over its process tree;
    pages shared between the processes count once per process)."""
    out = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for name in ("s3", "mlflow"):
        pids = process_tree(_read_pid(Path(state_dir).resolve() / f"{name}.pid") or -1)
        rss = 0
        for pid in pids:
            try:
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except (OSError, IndexError):
                pass
        if pids:
            out[name] = (len(pids), rss / 2**20)
    return out


def stop(name: str, state_dir: str | Path = DEFAULT_STATE_DIR) -> bool:
    """Stop one service (``s3`` or ``mlflow``) started by :func:`up`; True when one was running."""
    return _stop_pidfile(Path(state_dir).resolve() / f"{name}.pid")


def down(state_dir: str | Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop the services :func:`up` started in ``state_dir``; returns the names stopped."""
    return [n for n in ("mlflow", "s3") if stop(n, state_dir)]
