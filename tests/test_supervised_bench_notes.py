"""benchmarks/supervised_bench.py: the table notes say each run's referring loss."""

from __future__ import annotations

from res_fixtures import load_benchmark


def _row(ratio: float, dice: float) -> dict:
    return {"ratio": ratio, "config": {"dice_weight": dice}}


def test_one_dice_weight_is_said_once():
    bench = load_benchmark("supervised_bench")
    assert bench._loss([_row(0.1, 1.0), _row(0.05, 1.0)]) == "CE [0.9, 1.1] + 1 x Dice"


def test_dice_weights_that_differ_are_said_per_run():
    bench = load_benchmark("supervised_bench")
    text = bench._loss([_row(1.0, 0.5), _row(0.1, 1.0), _row(0.01, 1.0)])
    assert text == "CE [0.9, 1.1] + Dice x 0.5 (100%) / 1 (10%, 1%)"

