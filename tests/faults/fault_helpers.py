"""Helpers of the fault suite: running entry points (in this process or as a subprocess), checking the one-line
error, snapshots of folders, the reference stage chain and its command lines."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Case:
    """The fault case a test exercises (kept in the test's user_properties for the case table)."""

    def __init__(self, node):
        self.node = node

    def __call__(self, cls: str, what: str, entry: str = "subprocess") -> Case:
        self.node.user_properties.append(("fault_case", {"class": cls, "case": what, "entry": entry}))
        return self

    def saw(self, code: int | None = None, message: str | None = None) -> None:
        seen = {k: v for k, v in {"exit_code": code, "message": message}.items() if v is not None}
        self.node.user_properties.append(("fault_observed", seen))


def env(**extra: str) -> dict:
    """The environment of a child process: offline, one thread, no tracking server, no kill switch."""
    out = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "SEMIRES_KILL", "SEMIRES_PARENT", "SEMIRES_DEBUG"))}
    out.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), out.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    out.update(extra)
    return out


def run(*args, timeout: float = 300, **env_extra: str) -> subprocess.CompletedProcess:
    """``python <args>`` from the repository root (``-m semires ...`` or ``-m components.x ...``)."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env(**env_extra), capture_output=True,
                          text=True, timeout=timeout, check=False)


def start(*args, **env_extra: str) -> subprocess.Popen:
    """``python <args>`` started in its own session (so a signal can go to the whole group). Its output goes
    to temp files, never pipes (a full pipe would stall a child that nobody reads); :func:`finish` reads it."""
    import tempfile

    err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by finish()
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env(**env_extra), text=True,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                            preexec_fn=_default_sigint)  # noqa: PLW1509 - only resets a signal disposition
    proc.err_file = err
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Wait for a process from :func:`start`; (exit code, stderr)."""
    code = proc.wait(timeout=timeout)
    proc.err_file.seek(0)
    text = proc.err_file.read()
    proc.err_file.close()
    return code, text


def _default_sigint() -> None:
    """A shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt:
    give the child the default disposition, as a terminal's foreground job has."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            _, err = finish(proc)
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def component(name: str, *argv: str) -> int:
    """Run pipeline component ``components.<name>`` in this process, through its real error path."""
    from components import _stage

    mod = importlib.import_module(f"components.{name}")
    return _stage.cli(mod.APP, [str(a) for a in argv])


def error_line(stderr: str) -> str:
    """The one ``error: ...`` line of a failed command; asserts there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{stderr[-3000:]}"
    return lines[0]


def expect_error(case: Case, code: int, stderr: str, want_code: int, *names: str) -> str:
    """Record and check a user error: exit ``want_code``, one line, naming each of ``names``."""
    line = error_line(stderr) if code != 0 else ""
    case.saw(code, line)
    assert code == want_code, f"exit {code}, expected {want_code}:\n{stderr[-3000:]}"
    for n in names:
        assert str(n) in line, f"{n!r} not named in: {line}"
    return line


def tree_digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``path`` (or of ``path`` itself)."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def temps(*folders: Path) -> list[Path]:
    """Temp files and folders (``.tmp-*``, ``.old-*``) anywhere under ``folders``."""
    out = []
    for f in folders:
        if Path(f).is_dir():
            out += [p for p in Path(f).rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    return out


@dataclass
class Chain:
    """The stage chain's folders under ``root`` and each stage's component command line."""

    root: Path
    params: Path

    def __post_init__(self):
        r = self.root
        self.refer, self.index, self.splits = r / "refshapes", r / "index.json", r / "splits"
        self.cand, self.burn, self.pseudo, self.refined = r / "cand", r / "burn_in", r / "pseudo", r / "refined"

    def at(self, root: Path) -> Chain:
        """The same chain writing under another root (inputs are passed explicitly where they differ)."""
        return Chain(root, self.params)

    def argv(self, stage: str, **src: Path) -> tuple[str, ...]:
        """(component name, *arguments) of ``stage``; ``src`` overrides input folders (index, splits, cand,
        burn, pseudo) read from another chain."""
        r, p = self.root, ("--params", self.params)
        ix, sp = src.get("index", self.index), src.get("splits", self.splits)
        cand, burn, pseudo = src.get("cand", self.cand), src.get("burn", self.burn), src.get("pseudo", self.pseudo)
        rep, met = r / "reports", r / "metrics"
        if stage == "data":
            return ("data", "--refer-dir", self.refer, "--image-dir", self.refer / "images", "--index", self.index,
                    "--report", rep / "data.txt", "--metrics", met / "data.json", *p)
        if stage == "split":
            return ("split", "--index", ix, "--out", self.splits, "--report", rep / "split.txt",
                    "--metrics", met / "split.json", *p)
        if stage.startswith("candidates") and stage[-1].isdigit():
            k = stage[-1]
            return ("candidates", "--index", ix, "--shard", k, "--out", self.cand, "--report", rep / f"cand{k}.txt",
                    "--metrics", met / f"cand{k}.json", *p)
        if stage == "candidates_merge":
            return ("candidates_merge", "--out", self.cand, "--metrics", met / "cand.json", *p)
        if stage == "burn_in":
            return ("burn_in", "--index", ix, "--splits", sp, "--out", self.burn, "--metrics", met / "burn_in.json",
                    *p)
        if stage == "pseudo_label":
            return ("pseudo_label", "--index", ix, "--splits", sp, "--teacher", burn, "--out", self.pseudo,
                    "--report", rep / "pseudo.txt", "--metrics", met / "pseudo.json", *p)
        if stage == "refine":
            return ("refine", "--index", ix, "--pseudo", pseudo, "--candidates", cand, "--out", self.refined,
                    "--report", rep / "refine.txt", "--metrics", met / "refine.json", *p)
        raise KeyError(stage)
