"""`dvc repro` with up to N stages at once: DVC runs a pipeline one stage at a time, so on a
machine with more cores than a stage uses the independent branches (the candidate shards beside
pretraining, the step-matched supervised run beside the student) can run side by side.

    python scripts/repro_parallel.py --jobs 2            # the whole dvc.yaml
    python scripts/repro_parallel.py --jobs 2 evaluate   # evaluate and what it needs

The stage graph is DVC's (`dvc dag --dot`): dvc.yaml stays its only description. A stage starts
as ``dvc --wait-for-lock repro --single-item <stage>`` once every stage it depends on has finished,
so DVC itself decides whether the stage is up to date, runs it and records it in dvc.lock: DVC
holds its repository lock only while it checks and commits, not while the command runs, and
``--wait-for-lock`` makes two processes take turns there instead of failing. The result is the
one ``dvc repro`` gives (same dvc.lock, same outputs), and a rerun runs nothing that is up to date.

Among the stages that are ready, the one with the longest chain of work after it starts first
(the critical path), with each stage weighted by its wall time the last time it ran here
(``.dvc/tmp/repro_parallel.json``; 1 for a stage never timed). Each stage's output lines are
printed with its name in front; a progress bar's redraws at most every ``--progress-s`` seconds.
When a stage fails no new stage starts, the running ones finish, and the exit status is 1 with
the failed stage named.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

EDGE = re.compile(r'^\s*"([^"]+)"\s*->\s*"([^"]+)"\s*;?\s*$')
NODE = re.compile(r'^\s*"([^"]+)"\s*;?\s*$')
TIMES = Path(".dvc/tmp/repro_parallel.json")


def stage_graph(target: str | None) -> tuple[list[str], dict[str, set[str]]]:
    """The stages ``dvc repro [target]`` would consider (the target and its ancestors, or all), in DVC's
    order, and each one's upstream stages."""
    res = subprocess.run(["dvc", "dag", "--dot", *([target] if target else [])], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"dvc dag failed: {res.stderr.strip()[-2000:]}")
    order: list[str] = []
    needs: dict[str, set[str]] = {}
    for line in res.stdout.splitlines():
        if m := EDGE.match(line):
            up, down = m.groups()
            needs.setdefault(up, set())
            needs.setdefault(down, set()).add(up)
        elif m := NODE.match(line):
            order.append(m.group(1))
            needs.setdefault(m.group(1), set())
    order += [s for s in needs if s not in order]
    return order, needs


def critical_path(order: list[str], needs: dict[str, set[str]], weight: dict[str, float]) -> dict[str, float]:
    """For each stage: its own weight plus the heaviest chain of stages that depend on it."""
    below: dict[str, set[str]] = {s: set() for s in order}
    for s, ups in needs.items():
        for u in ups:
            below[u].add(s)
    memo: dict[str, float] = {}

    def rank(s: str) -> float:
        if s not in memo:
            memo[s] = weight.get(s, 1.0) + max((rank(d) for d in below[s]), default=0.0)
        return memo[s]

    return {s: rank(s) for s in order}


class Printer:
    """Writes stage output lines to stdout, one whole line at a time, each behind its stage's name."""

    def __init__(self, progress_s: float):
        self.lock, self.progress_s = threading.Lock(), progress_s
        self.ran: set[str] = set()  # stages whose command DVC ran (not skipped as up to date)

    def say(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def pump(self, name: str, stream) -> None:
        """Copy ``stream`` (a stage's merged stdout and stderr) line by line; a progress bar redraws
        with carriage returns, so of those only one per ``progress_s`` seconds gets through."""
        last_bar, buf = 0.0, b""
        for chunk in iter(lambda: stream.read1(65536), b""):
            buf += chunk
            while True:
                cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:
                    break
                piece, sep, buf = buf[:cut], buf[cut:cut + 1], buf[cut + 1:]
                text = piece.decode(errors="replace").rstrip()
                if not text:
                    continue
                if sep == b"\r":
                    if time.monotonic() - last_bar < self.progress_s:
                        continue
                    last_bar = time.monotonic()
                if text.startswith("Running stage"):
                    self.ran.add(name)
                self.say(f"[{name}] {text}")
        if buf.strip():
            self.say(f"[{name}] {buf.decode(errors='replace').rstrip()}")


def run(target: str | None, jobs: int, progress_s: float) -> int:
    order, needs = stage_graph(target)
    times = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    rank = critical_path(order, needs, times)
    printer = Printer(progress_s)
    done: set[str] = set()
    running: dict[str, tuple[subprocess.Popen, threading.Thread, float]] = {}
    failed: list[str] = []
    t0 = time.monotonic()
    while len(done) < len(order) and not (failed and not running):
        ready = [s for s in order if s not in done and s not in running and needs[s] <= done]
        ready.sort(key=lambda s: -rank[s])  # stable: DVC's order among equals
        while ready and len(running) < jobs and not failed:
            s = ready.pop(0)
            printer.say(f"[repro {time.monotonic() - t0:5.0f}s] start {s} ({len(done) + len(running) + 1}/{len(order)}"
                        f", {len(running) + 1} running)")
            proc = subprocess.Popen(["dvc", "--wait-for-lock", "repro", "--single-item", s], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            pump = threading.Thread(target=printer.pump, args=(s, proc.stdout), daemon=True)
            pump.start()
            running[s] = (proc, pump, time.monotonic())
        if not running:
            break
        time.sleep(0.5)
        for s, (proc, pump, started) in list(running.items()):
            if proc.poll() is None:
                continue
            pump.join()
            del running[s]
            took = time.monotonic() - started
            if proc.returncode != 0:
                failed.append(s)
                printer.say(f"[repro {time.monotonic() - t0:5.0f}s] FAILED {s} (exit {proc.returncode}); "
                            "no new stage starts")
                continue
            done.add(s)
            if s in printer.ran:  # a skipped stage's seconds say nothing about its cost
                times[s] = round(took, 1)
            printer.say(f"[repro {time.monotonic() - t0:5.0f}s] done {s} in {took:.0f} s")
    if times:
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        tmp = TIMES.with_suffix(".tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
        tmp.replace(TIMES)
    if failed:
        printer.say(f"repro_parallel: stage {', '.join(failed)} failed (its output is above, behind "
                    f"[{failed[0]}]); fix it and rerun: finished stages are not redone")
        return 1
    printer.say(f"[repro {time.monotonic() - t0:5.0f}s] all {len(order)} stages up to date")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", help="a stage to reproduce with what it needs (default: all of dvc.yaml)")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="stages at once (default: cores)")
    ap.add_argument("--progress-s", type=float, default=30.0, help="seconds between two shown progress-bar redraws")
    args = ap.parse_args()
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    sys.exit(run(args.target, args.jobs, args.progress_s))


if __name__ == "__main__":
    main()
