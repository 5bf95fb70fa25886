"""The strategy registry: names known to config, DAG and registry agree; unknown names are one-line errors."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import torch

from semires.cli import main
from semires.errors import SemiresError
from semires.refine import RefineConfig, available_strategies, get_strategy, needs_candidates, refine
from semires.refine.strategies import STRATEGIES, register_strategy

ROOT = Path(__file__).resolve().parents[2]


def test_config_choices_are_the_registered_strategies():
    choices = typing.get_args(RefineConfig.model_fields["strategy"].annotation)
    assert list(choices) == available_strategies() == ["none", "iom", "cpi", "soft_iom"]
    assert [s for s in available_strategies() if not needs_candidates(s)] == ["none"]


def test_dag_strategy_parameter_offers_the_registered_strategies():
    """The Airflow DAG may not import torch at parse time, so it spells the choices; they must be these."""
    tree = ast.parse((ROOT / "dags" / "semires_pipeline.py").read_text())
    enums = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
             for k, v in zip(node.keys, node.values)
             if isinstance(k, ast.Constant) and k.value == "strategy" and isinstance(v, ast.Call)
             for kw in v.keywords if kw.arg == "enum"]
    assert len(enums) == 1, "the DAG's 'strategy' Param(enum=[...]) was not found"
    assert ast.literal_eval(enums[0]) == available_strategies()


def test_unknown_strategy_is_a_one_line_error_naming_the_known_ones():
    with pytest.raises(SemiresError) as err:
        get_strategy("pwa_only")
    msg = str(err.value)
    assert "\n" not in msg and "unknown refinement strategy 'pwa_only'" in msg and "none, iom, cpi" in msg
    p = torch.zeros(1, 4, 4, dtype=torch.bool)
    with pytest.raises(SemiresError, match="none, iom, cpi"):  # a config built around validation still fails
        refine(p, p.float(), None, RefineConfig.model_construct(**{**RefineConfig().model_dump(), "strategy": "x"}))


def test_unknown_strategy_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    code = main(["semi", "refine", "--index", str(tmp_path / "i.json"), "--pseudo", str(tmp_path / "p"),
                 "--out", str(tmp_path / "o"), "--strategy", "cpx", "--params", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("error: ")
    assert "--strategy" in err and all(f"'{s}'" in err for s in available_strategies())
    (tmp_path / "params.yaml").write_text("refine:\n  strategy: cpx\n")
    code = main(["semi", "refine", "--index", str(tmp_path / "i.json"), "--pseudo", str(tmp_path / "p"),
                 "--out", str(tmp_path / "o"), "--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "strategy" in err and "'cpi'" in err


def test_a_new_strategy_is_one_entry():
    """Registering a matcher is all refine() needs; the config's choices then need the name too."""

    @register_strategy("everything_test", needs_candidates=False, description="the whole image")
    def _everything(pseudo, cands, cfg, prob):
        from semires.refine.core import Match

        b = pseudo.shape[0]
        return Match(torch.ones_like(pseudo), torch.ones(b, dtype=torch.bool), torch.ones(b, dtype=torch.float64),
                     torch.zeros(b, dtype=torch.int64))

    try:
        p = torch.zeros(2, 5, 5, dtype=torch.bool)
        res = refine(p, p.float(), None, RefineConfig.model_construct(**{**RefineConfig().model_dump(),
                                                                          "strategy": "everything_test"}))
        assert res.label.all() and res.matched.all() and (res.weight == 1).all()
        assert res.strategy == "everything_test"
        with pytest.raises(ValueError, match="registered twice"):
            register_strategy("everything_test")(_everything)
    finally:
        STRATEGIES.remove("everything_test")
    assert "everything_test" not in available_strategies()


def test_strategies_match_the_building_blocks():
    """The registered iom / cpi call the documented functions with the config's thresholds."""
    from semires.refine import CandidateBatch, cpi, iom

    p = torch.zeros(1, 6, 6, dtype=torch.bool)
    p[0, 1:4, 1:4] = True
    m = torch.zeros(2, 6, 6, dtype=torch.bool)
    m[0, 1:4, 1:5] = True
    m[1, 0:2, 0:2] = True
    cands = CandidateBatch.from_list([m])
    for name, want in (("iom", iom(p, cands, 0.3)), ("cpi", cpi(p, cands, 0.6, 0.6))):
        cfg = RefineConfig(strategy=name, iom_iou_thresh=0.3, cpi_cover_thresh=0.6, cpi_inside_thresh=0.6)
        got = get_strategy(name).match(p, cands, cfg, p.float())
        assert torch.equal(got.label, want.label) and torch.equal(got.matched, want.matched)
        assert torch.equal(got.score, want.score) and torch.equal(got.parts, want.parts)
    with pytest.raises(ValueError, match="needs candidates"):
        refine(p, p.float(), None, RefineConfig(strategy="cpi"))


def test_soft_iom_takes_the_object_an_unsure_teacher_points_at():

    from semires.refine import RefineConfig
    from semires.refine.atoms import AtomBatch, AtomCandidates
    from semires.refine.packing import CandidateBatch
    from semires.refine.strategies import refine

    h = w = 16
    obj = torch.zeros(h, w, dtype=torch.bool)
    obj[2:10, 2:10] = True                      # the object (64 px)
    other = torch.zeros(h, w, dtype=torch.bool)
    other[12:16, 12:16] = True                  # another object
    prob = torch.zeros(1, h, w)
    prob[0][obj] = 0.45                         # unsure about the object: below 0.5 everywhere ...
    prob[0, 2:5, 2:5] = 0.9                     # ... but for a corner of it
    pseudo = prob > 0.5                          # hard mask: 9 px, IoU 9 / 64 with the object
    stack = torch.stack([other, obj])
    for cands in (AtomBatch.from_list([AtomCandidates.from_masks(stack)]),
                  CandidateBatch.from_list([stack], size=(h, w))):
        hard = refine(pseudo, prob, cands, RefineConfig(strategy="iom", pwa=False))
        soft = refine(pseudo, prob, cands, RefineConfig(strategy="soft_iom", pwa=False))
        assert not bool(hard.matched[0]) and torch.equal(hard.label[0], pseudo[0])
        assert bool(soft.matched[0]) and torch.equal(soft.label[0], obj)
        expected = float(prob[0][obj].sum()) / float(prob[0].sum() + 64 - prob[0][obj].sum())
        assert float(soft.score[0]) == pytest.approx(expected)
        high = refine(pseudo, prob, cands, RefineConfig(strategy="soft_iom", pwa=False, soft_iou_thresh=0.99))
        assert not bool(high.matched[0])
