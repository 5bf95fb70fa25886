import math

import numpy as np
import pytest

from semires.eval.metrics import RESMeter, intersection_union, res_metrics


def _m(rows):
    return np.array(rows, dtype=bool)


def test_hand_computed_case():
    gt = np.zeros((3, 4, 4), bool)
    pr = np.zeros((3, 4, 4), bool)
    gt[0, :2, :2] = True          # 4 px
    pr[0, :2, :] = True           # 8 px: I=4, U=8 -> 0.5
    gt[1, :, :] = True            # 16 px
    pr[1, :, :] = True            # I=U=16 -> 1.0
    gt[2, 0, 0] = True            # 1 px
    pr[2, 3, 3] = True            # I=0, U=2 -> 0.0
    i, u = intersection_union(pr, gt)
    assert i.tolist() == [4, 16, 0] and u.tolist() == [8, 16, 2]
    m = res_metrics(pr, gt)
    assert m["n"] == 3
    assert m["mIoU"] == pytest.approx(100 * (0.5 + 1.0 + 0.0) / 3)
    assert m["oIoU"] == pytest.approx(100 * 20 / 26)
    assert m["prec@0.5"] == pytest.approx(200 / 3)   # IoU >= 0.5 counts
    assert m["prec@0.6"] == pytest.approx(100 / 3)
    assert m["prec@0.9"] == pytest.approx(100 / 3)


def test_empty_prediction_scores_zero():
    gt = _m([[1, 1], [0, 0]])
    m = res_metrics(np.zeros_like(gt)[None], gt[None])
    assert m["mIoU"] == 0.0 and m["oIoU"] == 0.0 and m["prec@0.5"] == 0.0


def test_empty_ground_truth():
    empty = np.zeros((1, 2, 2), bool)
    pred = _m([[1, 0], [0, 0]])[None]
    assert res_metrics(pred, empty)["mIoU"] == 0.0     # a false positive on nothing
    both = res_metrics(empty, empty)
    assert both["mIoU"] == 100.0 and both["oIoU"] == 100.0  # nothing predicted for nothing is right


def test_meter_accumulates_like_one_call():
    rng = np.random.default_rng(0)
    pr, gt = rng.random((10, 8, 8)) > 0.5, rng.random((10, 8, 8)) > 0.4
    meter = RESMeter()
    meter.update(pr[:4], gt[:4])
    meter.update(pr[4:], gt[4:])
    assert meter.count == 10
    assert meter.compute() == pytest.approx(res_metrics(pr, gt))


def test_no_samples_gives_nan():
    assert math.isnan(RESMeter().compute()["mIoU"])


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        intersection_union(np.zeros((2, 2)), np.zeros((3, 3)))
