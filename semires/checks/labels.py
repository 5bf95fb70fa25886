"""Gates on the teacher's pseudo-labels and on the refined labels.

Pseudo-labels (a finished ``pseudo_label`` folder, :mod:`semires.pseudo.shards`):
- one label per (ref, sentence), each for a ref of the index, and only on *unlabeled* images (a
  pseudo-label on a labeled image would mean the split leaked);
- the mean foreground fraction of the teacher's masks lies in [min_fg_frac, max_fg_frac] (a
  collapsed teacher predicts all background or all object).

Refined labels (a finished ``refine`` folder, :mod:`semires.pseudo.refine_stage`):
- one label per pseudo-label, every RLE of the prediction size;
- the match rate (IOM/CPI found a candidate) is at least ``min_match_rate`` (unless strategy none);
- for matched labels, the refined/pseudo mask area ratio lies in [min_area_ratio, max_area_ratio]
  for at least ``area_ratio_mostly`` of them (a refinement that swaps a small object for the
  whole background is a bug or a bad candidate set).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semires import io
from semires.checks.config import LabelChecks
from semires.checks.engine import CheckReport, Table, run_gate
from semires.data import masks as mask_codec


def _pseudo_rows(store) -> list[dict]:
    rows = []
    for i in range(len(store.shard_files)):
        sh = store.shard(i)
        fg = sh.masks().reshape(len(sh), -1).mean(axis=1)
        for j in range(len(sh)):
            rows.append({"expression": f"{int(sh.ref_id[j])}:{int(sh.sent_id[j])}", "ref_id": int(sh.ref_id[j]),
                         "image_id": int(sh.image_id[j]), "fg_frac": float(fg[j]),
                         "fg_pixels": round(float(fg[j]) * sh.size * sh.size)})
    return rows


def check_pseudo_labels(pseudo_dir: str | Path, index_path: str | Path | None = None,
                        unlabeled: Sequence[int] | None = None, report_path: str | Path | None = None,
                        cfg: LabelChecks | None = None, raise_on_failure: bool = True) -> CheckReport:
    """Gate on a finished pseudo-label folder.

    Args:
        pseudo_dir: output of the ``pseudo_label`` stage.
        index_path: the index; when given, every label must belong to a ref of it.
        unlabeled: the split's unlabeled image ids; when given, labels must lie on them only.
        report_path, cfg, raise_on_failure: see :func:`semires.checks.engine.run_gate`.
    """
    import great_expectations as gx
    import pandas as pd

    from semires.pseudo.shards import PseudoStore

    cfg = cfg or LabelChecks()
    E = gx.expectations
    store = PseudoStore(pseudo_dir)
    frame = pd.DataFrame(_pseudo_rows(store), columns=["expression", "ref_id", "image_id", "fg_frac", "fg_pixels"])
    refs = set()
    if index_path is not None:
        refs = {int(r["ref_id"]) for r in io.read_json(index_path)["refs"]}
    frame["ref_known"] = frame["ref_id"].isin(refs) if index_path is not None else True
    frame["on_unlabeled"] = frame["image_id"].isin({int(i) for i in unlabeled}) if unlabeled is not None else True
    exps = [
        E.ExpectTableRowCountToBeBetween(min_value=1, description="there are pseudo-labels"),
        E.ExpectTableRowCountToEqual(value=int(store.manifest.get("expressions", len(store))),
                                     description="as many labels as the manifest lists"),
        E.ExpectColumnValuesToBeUnique(column="expression", description="one pseudo-label per (ref, sentence)"),
        E.ExpectColumnValuesToBeInSet(column="ref_known", value_set=[True],
                                      description="every pseudo-label is for a ref of the index"),
        E.ExpectColumnValuesToBeInSet(column="on_unlabeled", value_set=[True],
                                      description="pseudo-labels lie on unlabeled images only (no split leak)"),
        E.ExpectColumnMeanToBeBetween(column="fg_frac", min_value=cfg.min_fg_frac, max_value=cfg.max_fg_frac,
                                      description=f"mean foreground fraction in [{cfg.min_fg_frac}, "
                                                  f"{cfg.max_fg_frac}] (the teacher did not collapse)"),
    ]
    return run_gate("pseudo_labels", [Table("pseudo_labels", frame, "expression", exps)],
                    {"pseudo_labels": pseudo_dir}, report_path, raise_on_failure)


def check_refined(refined_dir: str | Path, pseudo_dir: str | Path | None = None,
                  report_path: str | Path | None = None, cfg: LabelChecks | None = None,
                  raise_on_failure: bool = True) -> CheckReport:
    """Gate on a finished refine folder (``pseudo_dir`` defaults to the one its manifest names)."""
    import great_expectations as gx
    import pandas as pd

    from semires.pseudo.refine_stage import load_refined
    from semires.pseudo.shards import PseudoStore

    cfg = cfg or LabelChecks()
    E = gx.expectations
    refined_dir = Path(refined_dir)
    items, refine_cfg, manifest_pseudo = load_refined(refined_dir)
    manifest = io.read_json(refined_dir / "manifest.json")
    size = int(manifest["image_size"])
    store = PseudoStore(pseudo_dir or manifest_pseudo)
    pseudo_area = {}
    for i in range(len(store.shard_files)):
        sh = store.shard(i)
        areas = sh.masks().reshape(len(sh), -1).sum(axis=1)
        pseudo_area.update({(int(r), int(s)): int(a) for r, s, a in zip(sh.ref_id, sh.sent_id, areas)})
    rows = []
    for (ref, sent), it in items.items():
        area = mask_codec.area(it["rle"])
        p_area = pseudo_area.get((int(ref), int(sent)))
        rows.append({"expression": f"{ref}:{sent}", "matched": int(bool(it["matched"])),
                     "has_pseudo": p_area is not None, "rle_h": int(it["rle"]["size"][0]),
                     "rle_w": int(it["rle"]["size"][1]), "area": area,
                     "area_ratio": (area / p_area) if p_area else (np.inf if area else 1.0)})
    frame = pd.DataFrame(rows, columns=["expression", "matched", "has_pseudo", "rle_h", "rle_w", "area", "area_ratio"])
    exps = [
        E.ExpectTableRowCountToEqual(value=len(store), description="one refined label per pseudo-label"),
        E.ExpectColumnValuesToBeUnique(column="expression", description="one refined label per (ref, sentence)"),
        E.ExpectColumnValuesToBeInSet(column="has_pseudo", value_set=[True],
                                      description="every refined label has its pseudo-label"),
        E.ExpectColumnValuesToBeBetween(column="rle_h", min_value=size, max_value=size,
                                        description=f"labels are {size} px high (the prediction size)"),
        E.ExpectColumnValuesToBeBetween(column="rle_w", min_value=size, max_value=size,
                                        description=f"labels are {size} px wide (the prediction size)"),
    ]
    if refine_cfg.strategy != "none":
        exps.append(E.ExpectColumnMeanToBeBetween(
            column="matched", min_value=cfg.min_match_rate,
            description=f"match rate >= {cfg.min_match_rate:.0%} ({refine_cfg.strategy} found candidates)"))
    tables = [Table("refined", frame, "expression", exps)]
    matched = frame[frame["matched"] == 1].reset_index(drop=True)
    if len(matched):
        tables.append(Table("refined (matched)", matched, "expression", [E.ExpectColumnValuesToBeBetween(
            column="area_ratio", min_value=cfg.min_area_ratio, max_value=cfg.max_area_ratio,
            mostly=cfg.area_ratio_mostly,
            description=f"refined/pseudo area ratio in [{cfg.min_area_ratio}, {cfg.max_area_ratio}] for "
                        f">= {cfg.area_ratio_mostly:.0%} of matched labels")]))
    return run_gate("refined_labels", tables, {"refined": refined_dir, "pseudo_labels": store.root},
                    report_path, raise_on_failure)
