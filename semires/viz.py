"""Pictures people look at: masks over images, laid out in captioned grids (PNG).

Images are (H, W, 3) uint8 RGB; masks are (H, W) bool. Rendering uses matplotlib's Agg backend
so it works headless (CI, servers).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semires import io

# Distinct colours for masks: ground truth green, prediction red, extra masks cycle through the rest.
PALETTE = np.array([[40, 200, 60], [230, 40, 40], [40, 110, 240], [250, 200, 20], [200, 60, 220],
                    [20, 210, 210], [250, 130, 30], [130, 80, 40]], dtype=np.uint8)


def overlay(image: np.ndarray, masks: Sequence[np.ndarray] | np.ndarray, colors: np.ndarray | None = None,
            alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Blend bool masks over an image.

    Args:
        image: (H, W, 3) uint8.
        masks: sequence or (K, H, W) array of bool masks, same H, W as the image.
        colors: (K, 3) uint8; defaults to :data:`PALETTE` cycled.
        alpha: mask opacity in [0, 1].
        outline: draw each mask's boundary at full opacity, so thin errors stay visible.
    Returns:
        (H, W, 3) uint8 image.
    """
    out = image.astype(np.float32).copy()
    for k, m in enumerate(masks):
        m = np.asarray(m, bool)
        c = (PALETTE[k % len(PALETTE)] if colors is None else colors[k]).astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * c
        if outline:
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out[edge] = c
    return out.clip(0, 255).astype(np.uint8)


def save_grid(panels: Sequence[tuple[np.ndarray, str]], path: str | Path, ncols: int = 4,
              panel_inches: float = 2.6, title: str | None = None, caption_width: int = 34,
              caption_lines: int = 3) -> Path:
    """Save captioned image panels as one PNG grid (atomically).

    Args:
        panels: (image (H, W, 3) uint8, caption) pairs; captions are wrapped.
        path: output .png path.
        ncols: panels per row; panel_inches: panel width (rows follow the panels' aspect ratio).
        caption_width, caption_lines: captions wrap at this many characters and keep this many lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    aspect = max((img.shape[0] / img.shape[1] for img, _ in panels), default=1.0)
    caption_inches = 0.14 * caption_lines + 0.06  # 7 pt lines
    title_inches, margin = (0.3 if title else 0.0), 0.05
    panel_h = panel_inches * aspect
    fig_w, fig_h = ncols * panel_inches, nrows * (panel_h + caption_inches) + title_inches + 2 * margin
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False)
    # a fixed layout: each panel with a caption band above it and a band at the top for the title.
    # matplotlib's tight_layout and automatic title placement measured every caption, twice per
    # save: about 2 of 3 s for a 12 x 3 grid (the overlays every training run draws)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=margin / fig_h,
                        top=1 - (margin + title_inches + caption_inches) / fig_h, wspace=0.04,
                        hspace=caption_inches / panel_h)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, cap) in zip(axes.flat, panels):
        ax.imshow(img)
        ax.set_title("\n".join(textwrap.wrap(cap, caption_width)[:caption_lines]), fontsize=7, y=1.0, pad=2)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - margin / fig_h, va="top")
    with io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def save_curves(path: str | Path, left: dict[str, Sequence[Sequence[float]]],
                right: dict[str, Sequence[Sequence[float]]] | None = None, title: str | None = None,
                ylabel: str | None = None) -> Path:
    """Save training curves as one PNG (atomically): ``left`` series on the left axis (e.g. losses),
    ``right`` series on a second axis (e.g. a val metric). Each series is ``[[step, value], ...]``;
    ``ylabel`` names the left axis (default: the left series' names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (name, pts), color in zip(left.items(), ("tab:blue", "tab:purple", "tab:brown", "tab:gray", "tab:olive",
                                                 "tab:cyan")):
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or ", ".join(left))
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        for (name, pts), color in zip(right.items(), ("tab:red", "tab:green", "tab:orange")):
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name, color=color)
        ax2.set_ylabel(", ".join(right))
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with io.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
