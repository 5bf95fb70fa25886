"""How long RefShapes takes to generate, and how big it is.

Generates the full ``default`` preset and the first ``--large-images`` images of the ``large``
preset (RefCOCO scale) with the default worker count, and extrapolates the large preset from its
measured per-image cost. Writes benchmarks/results/refshapes_generation.json.

    python benchmarks/refshapes_generation.py [--large-images 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from semires import io
from semires.data.synthetic import PRESETS, generate
from semires.hardware import cpu_name, load_average


def _machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, load average {load_average():.1f} at start, {platform.python_version()}"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _run(root: Path, preset: str, num_images: int | None) -> dict:
    out = root / preset
    start, cpu = time.perf_counter(), _cpu_seconds()
    generate(out, preset=preset, seed=0, num_images=num_images, progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu
    meta = io.read_json(out / "refshapes.json")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    totals = {k: sum(c[k] for c in meta["counts"].values()) for k in ("images", "refs", "expressions")}
    return {"preset": preset, "seconds": seconds, "cpu_seconds": cpu_seconds, "bytes": size, "counts": meta["counts"], **totals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large-images", type=int, default=500, help="images of the large preset to generate")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "refshapes_generation.json")
    args = ap.parse_args()
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="refshapes-bench-") as tmp:
        runs = [_run(Path(tmp), "default", None), _run(Path(tmp), "large", args.large_images)]
    rows = []
    for r in runs:
        spec = PRESETS[r["preset"]]
        scale = spec.num_images / r["images"]
        per_image = r["seconds"] / r["images"]
        cpu_per_image = r["cpu_seconds"] / r["images"]
        full = (f"{spec.num_images} img: ~{per_image * spec.num_images / 60:.1f} min "
                f"(~{cpu_per_image * spec.num_images / 60:.1f} CPU-min), "
                f"~{round(r['refs'] * scale, -2):.0f} refs, ~{round(r['expressions'] * scale, -3):.0f} expr, "
                f"~{r['bytes'] * scale / 2**30:.1f} GiB")
        rows.append([r["preset"], spec.image_size, r["images"], r["refs"], r["expressions"], round(r["seconds"], 1),
                     round(r["cpu_seconds"], 1), round(1000 * cpu_per_image, 1), round(r["bytes"] / 2**20, 1), full])
    workers = min(2, os.cpu_count() or 1)
    doc = {
        "title": "RefShapes generation cost",
        "columns": ["preset", "px", "images", "refs", "expressions", "wall s", "CPU s", "CPU ms / image", "MiB",
                    "full preset (extrapolated)"],
        "rows": rows,
        "notes": (f"seed 0, {workers} worker processes, wall time including process start, writing and "
                  "the checksum; CPU s is user+system time of the parent and the workers, which does not "
                  "depend on how busy the shared machine was (see the load average). The large preset was generated for its first images only and extrapolated "
                  "linearly (generation cost is per image). RefCOCO (unc) has 19,994 images, 50,000 refs, "
                  "142,209 expressions."),
        "machine": machine,
        "date": dt.date.today().isoformat(),
        "raw": runs,
    }
    io.write_json(args.out, doc)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
