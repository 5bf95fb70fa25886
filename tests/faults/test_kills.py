"""Kills, interrupts, two runs at once, stale temps, failed stages.

- SIGKILL (an OOM kill, a lost node) at a point of each kind of stage (data, candidates, training,
  pseudo-label, refine) through the component's own kill switch (``SEMIRES_KILL_AT``); the rerun must
  give outputs identical to the uninterrupted reference run and leave no temp behind.
- SIGINT (Ctrl-C) and SIGTERM (a scheduler stopping a task): exit 130 / 143, one line, nothing left.
- Two runs of one shard at once; a live writer's temp is never removed by another run's cleanup.
- A failed stage (a failed gate) leaves no output a later stage or DVC could take for a result.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fault_helpers import component, error_line, expect_error, finish, run, start, temps, tree_digest, wait_for

from semires.cli import main


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tag(pid: int) -> str:
    from semires.io import owner_tag

    return owner_tag().replace(f"p{os.getpid()}@", f"p{pid}@")


def _npz_arrays(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out[f.name] = {k: z[k].tobytes() for k in z.files}
    return out


# -- SIGINT / SIGTERM / SIGKILL during `semires data synth` ---------------------------------------------
SYNTH = ("-m", "semires", "data", "synth", "--preset", "default", "--num-images", "600", "--seed", "0")


def _synth_started(folder: Path, n: int = 8):
    def ok() -> bool:
        tmp = [p for p in folder.glob(".tmp-refshapes.*") if (p / "images").is_dir()]
        return bool(tmp) and len(list((tmp[0] / "images").iterdir())) >= n
    return ok


@pytest.mark.parametrize("sig,to_group,want", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
                         ids=["SIGINT-ctrl-c", "SIGTERM"])
def test_interrupted_synth_exits_with_the_signal_code_and_leaves_nothing(sig, to_group, want, tmp_path, case):
    case("interrupt", f"{sig.name} during `semires data synth` (images half drawn)")
    out = tmp_path / "refshapes"
    proc = start(*SYNTH, "--out", out)
    wait_for(_synth_started(tmp_path), proc, what="synth to draw images")
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    code, err = finish(proc, 120)
    expect_error(case, code, err, want, "interrupted")
    assert not out.exists() and not temps(tmp_path)


def test_killed_synth_leaves_a_temp_that_the_rerun_removes(chain, tmp_path, capsys, case):
    case("SIGKILL + rerun", "SIGKILL during `semires data synth`, then the same command again")
    out = tmp_path / "refshapes"
    args = ("data", "synth", "--preset", "tiny", "--seed", "0", "--workers", "1", "--out", str(out))
    proc = start("-m", "semires", *args)
    wait_for(_synth_started(tmp_path, 2), proc, what="synth to draw images")
    proc.kill()
    assert finish(proc)[0] == -signal.SIGKILL and temps(tmp_path)  # a kill cannot clean up
    code = main(list(args))
    case.saw(code, "")
    assert code == 0 and not temps(tmp_path)
    assert tree_digest(out) == tree_digest(chain.refer)  # identical to the uninterrupted run


# -- SIGKILL inside each kind of stage, rerun, identical outputs -------------------------------------
def _outputs(c, stage: str) -> dict:
    if stage == "data":
        return {**tree_digest(c.refer), "index": tree_digest(c.index)}
    if stage == "candidates1":
        return {**tree_digest(c.cand / "shards" / "shard-00001-of-00002.jsonl"),
                **tree_digest(c.cand / "entries" / "shard-00001-of-00002.json")}
    if stage == "burn_in":  # the weights and their metadata (the header's key order may differ)
        from safetensors import safe_open

        with safe_open(str(c.burn / "best.safetensors"), "pt") as f:
            return {"meta": f.metadata(), **{k: f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())}}
    if stage == "pseudo_label":
        manifest = json.loads((c.pseudo / "manifest.json").read_text())
        volatile = ("wall_s", "shards_reused", "teacher", "index")
        return {"arrays": _npz_arrays(c.pseudo), "manifest": {k: v for k, v in manifest.items() if k not in volatile}}
    if stage == "refine":
        report = {k: v for k, v in json.loads((c.refined / "report.json").read_text()).items() if k != "wall_s"}
        return {**{k: v for k, v in tree_digest(c.refined).items() if k.startswith("refined-")}, "report": report}
    raise KeyError(stage)


KILLS = [
    # (stage, the file whose appearance triggers the kill (relative to the run's root), inputs from the reference)
    ("data", ".tmp-refshapes.*/images/*.png", {}),
    ("candidates1", "cand/shards/.tmp-*", {"index": "index"}),
    ("burn_in", "burn_in/last.pt", {"index": "index", "splits": "splits"}),
    ("pseudo_label", "pseudo/shard-00001.npz", {"index": "index", "splits": "splits", "burn": "burn"}),
    ("refine", "refined/refined-00001.json", {"index": "index", "pseudo": "pseudo", "cand": "cand"}),
]


@pytest.mark.parametrize("stage,trigger,inputs", KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_then_rerun_gives_identical_outputs_and_no_temp(stage, trigger, inputs, chain, tmp_path, capsys,
                                                                case):
    case("SIGKILL + rerun", f"components.{stage.rstrip('01')}: SIGKILL when {trigger} appears, then rerun")
    run_ = chain.at(tmp_path / "run")
    (tmp_path / "run").mkdir()
    src = {k: getattr(chain, v) for k, v in inputs.items()}
    before = {k: tree_digest(v) for k, v in src.items()}
    name, *argv = run_.argv(stage, **src)
    marker = tmp_path / "killed.txt"
    res = run("-m", f"components.{name}", *argv, SEMIRES_KILL_AT=f"{stage.rstrip('01')}={tmp_path / 'run'}/{trigger}",
              SEMIRES_KILL_MARKER=str(marker))
    assert res.returncode == -signal.SIGKILL and marker.is_file(), res.stderr[-3000:]
    if stage == "burn_in":  # a training run killed while saving leaves an empty checkpoint temp
        (run_.burn / f".tmp-last.pt.{_tag(_dead_pid())}.x1y2z3.pt").write_bytes(b"")
    code = component(name, *argv)
    case.saw(code, "")
    assert code == 0, capsys.readouterr().err[-3000:]
    assert _outputs(run_, stage) == _outputs(chain, stage)
    assert not temps(tmp_path / "run")
    assert {k: tree_digest(v) for k, v in src.items()} == before  # earlier outputs intact


# -- two runs at once ---------------------------------------------------------------------------------
def test_a_live_writers_temp_survives_another_runs_cleanup(chain, tmp_path, case):
    case("concurrent runs", "a shard rerun while another live process writes the same shard's temp", "in-process")
    run_ = chain.at(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = run_.cand / "shards" / f".tmp-shard-00000-of-00002.jsonl.{_tag(sleeper.pid)}.abcd1234"
        dead = run_.cand / "shards" / f".tmp-shard-00000-of-00002.jsonl.{_tag(_dead_pid())}.efgh5678"
        live.parent.mkdir(parents=True)
        live.write_text("partial\n")
        dead.write_text("partial\n")
        assert component(*run_.argv("candidates0", index=chain.index)) == 0
        case.saw(0, "")
        assert live.read_text() == "partial\n" and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    got = tree_digest(run_.cand / "shards" / "shard-00000-of-00002.jsonl")
    assert got == tree_digest(chain.cand / "shards" / "shard-00000-of-00002.jsonl")


def test_two_runs_of_one_shard_at_once_both_succeed(chain, tmp_path, case):
    case("concurrent runs", "two `components.candidates --shard 0` started together on one store")
    run_ = chain.at(tmp_path)
    name, *argv = run_.argv("candidates0", index=chain.index)
    procs = [start("-m", f"components.{name}", *argv) for _ in range(2)]
    results = [finish(p, 600) for p in procs]
    case.saw(max(code for code, _ in results), "")
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    assert tree_digest(run_.cand / "shards") == tree_digest(chain.cand / "shards" / "shard-00000-of-00002.jsonl")
    assert (tree_digest(run_.cand / "entries" / "shard-00000-of-00002.json")
            == tree_digest(chain.cand / "entries" / "shard-00000-of-00002.json"))
    assert not temps(tmp_path)


def test_stale_temps_go_live_ones_stay(tmp_path, case):
    from semires import io

    case("stale temps", "temps of dead, live, foreign-host and untagged writers; next atomic write", "library")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    host = socket.gethostname()
    try:
        names = {"dead": f".tmp-a.json.{_tag(_dead_pid())}.r1", "live": f".tmp-b.json.{_tag(sleeper.pid)}.r2",
                 "dead_dir": f".tmp-c.{_tag(_dead_pid())}.r3", "old_foreign": ".tmp-d.json.p1@otherhost.r4",
                 "new_foreign": ".tmp-e.json.p1@otherhost.r5", "old_untagged": ".tmp-f.json.r6",
                 "new_untagged": ".tmp-g.json.r7", "half_swapped": f".old-h.{_tag(_dead_pid())}.r8"}
        for key, n in names.items():
            p = tmp_path / n
            (p.mkdir() if key in ("dead_dir", "half_swapped") else p.write_text("x"))
            if key.startswith("old_"):
                os.utime(p, (time.time() - 2 * io.STALE_AFTER_S,) * 2)
        io.write_json(tmp_path / "result.json", {"ok": True})
        left = {k for k, n in names.items() if (tmp_path / n).exists()}
        case.saw(0, f"kept: {sorted(left)} (host {host})")
        assert left == {"live", "new_foreign", "new_untagged"}
    finally:
        sleeper.kill()
        sleeper.wait()


# -- a failed stage leaves no output ----------------------------------------------------------------
def _params(base: Path, tmp_path: Path, **sections) -> Path:
    p = yaml.safe_load(base.read_text())
    for name, values in sections.items():
        for key, value in values.items():
            node = p.setdefault(name, {})
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(p))
    return out


def test_failed_data_gate_leaves_no_index(fault_params, mini_refer, tmp_path, capsys, case):
    case("failed stage", "components.data on a REFER folder with an empty sentence (the data gate fails)",
         "in-process")
    refs = pickle.loads((mini_refer / "refs(unc).p").read_bytes())  # the test's own file
    refs[0]["sentences"][0]["sent"] = ""
    (mini_refer / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    before = tree_digest(mini_refer)
    params = _params(fault_params, tmp_path, data={"dataset": "refcoco"})
    index, report, metrics = tmp_path / "index.json", tmp_path / "reports" / "data.txt", tmp_path / "m.json"
    code = component("data", "--refer-dir", mini_refer, "--image-dir", mini_refer / "images", "--index", index,
                     "--report", report, "--metrics", metrics, "--params", params)
    err = capsys.readouterr().err
    line = error_line(err.split("\ndata check")[0])
    case.saw(code, line)
    assert code == 2 and "sentences" in err and str(index) in line
    assert not index.exists() and not metrics.exists() and report.is_file() and not temps(tmp_path)
    assert tree_digest(mini_refer) == before


def test_failed_split_gate_leaves_no_split_folders(chain, fault_params, tmp_path, capsys, case):
    case("failed stage", "components.split with checks.data.min_labeled_images above the train set (gate fails)",
         "in-process")
    params = _params(fault_params, tmp_path, checks={"data.min_labeled_images": 100000})
    out, metrics = tmp_path / "splits", tmp_path / "m.json"
    before = tree_digest(chain.index)
    code = component("split", "--index", chain.index, "--out", out, "--report", tmp_path / "r.txt",
                     "--metrics", metrics, "--params", params)
    line = error_line(capsys.readouterr().err.split("\ndata check")[0])
    case.saw(code, line)
    assert code == 2 and "FAILED" in line
    assert not out.exists() and not metrics.exists() and not temps(tmp_path)
    assert tree_digest(chain.index) == before


def test_sigterm_during_training_exits_143_and_writes_no_result(chain, tmp_path, case):
    case("interrupt", "SIGTERM to components.burn_in once its first checkpoint exists")
    run_ = chain.at(tmp_path)
    name, *argv = run_.argv("burn_in", index=chain.index, splits=chain.splits)
    proc = start("-m", f"components.{name}", *argv)
    wait_for(lambda: (run_.burn / "last.pt").is_file(), proc, timeout=900, what="the first checkpoint")
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, 120)
    if code == 0:
        pytest.skip("training finished before the signal arrived")
    expect_error(case, code, err, 143, "SIGTERM")
    assert not (run_.burn / "_SUCCESS").exists() and not (run_.root / "metrics" / "burn_in.json").exists()
    assert not temps(tmp_path)
