"""DDP under torchrun: 2 CPU processes on gloo train one tiny model (with the category head) in lockstep."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

from semires import io

DRIVER = textwrap.dedent("""
    import sys
    import torch
    from safetensors.torch import save_file
    sys.path.insert(0, {tests!r})
    from res_fixtures import tiny_burn_in, tiny_model_cfg
    import semires.train.supervised as sup
    from semires.tracking import TrackingConfig
    from semires.engine import ddp

    built = {{}}
    real = sup.build_model
    def keep(cfg):
        built["m"] = real(cfg)
        return built["m"]
    sup.build_model = keep
    last = {{}}  # the weights after each optimizer step (the stage ends holding the best epoch's)
    def snapshot(step):
        last.update({{k: v.detach().contiguous().clone() for k, v in built["m"].named_parameters()}})
    res = sup.train_supervised({index!r}, None, {out!r}, tiny_model_cfg({text!r}, categories=2),
                               tiny_burn_in(epochs=2, batch_size=2, category_weight=1.0),
                               TrackingConfig(enabled=False), step_hook=snapshot, progress=False)
    rank = torch.distributed.get_rank()
    save_file(last, {out!r} + f"/rank{{rank}}.safetensors")
    ddp.cleanup()
""")


def test_torchrun_two_cpu_processes(tmp_path, tiny_text, mini_index):
    from pathlib import Path

    from safetensors.torch import load_file

    out = tmp_path / "run"
    script = tmp_path / "driver.py"
    tests_dir = str(Path(__file__).resolve().parents[1])
    script.write_text(DRIVER.format(tests=tests_dir, index=str(mini_index), out=str(out), text=str(tiny_text)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = io.read_json(out / "metrics.json")
    assert m["steps_per_epoch"] == 20 // (2 * 2) and m["steps"] == 2 * m["steps_per_epoch"]
    assert m["val_expressions"] == 4 and len(m["history"]) == 2
    assert io.is_complete(out) and (out / "best.safetensors").is_file()
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    # parameters after the last step are identical: gradients were averaged every step (BatchNorm
    # statistics stay per process)
    # (the auxiliary category head included: its loss is part of every step, so DDP sees every parameter used)
    assert any(k.startswith("decoder.") for k in r0) and any(k.startswith("category_head.") for k in r0)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
