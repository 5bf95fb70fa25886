"""A SAM whose masks are analytic discs around each point prompt: for tests and benchmarks only.

Random-weight SAMs give noise-like masks that all cover the whole image, so box NMS keeps one and
the post-processing under test barely runs (or, for RLE, runs on pathologically long encodings).
:func:`disc_sam` keeps segment-anything's ``Sam`` and, optionally, the real prompt encoder and mask
decoder *compute* (so timings stay honest), but replaces the mask logits with three nested discs per
point whose radius, edge sharpness (stability) and "predicted IoU" vary with the position, so every
AMG filter keeps some masks and drops others. Never use it as a segmenter.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam

from semires.candidates.sam_models import build_sam_arch


class _PointPrompts(torch.nn.Module):
    """Prompt encoder that remembers the point coordinates for :class:`_DiscDecoder` (and runs the real
    prompt encoder when given, for its cost)."""

    def __init__(self, emb_hw: int, inner: torch.nn.Module | None):
        super().__init__()
        self.emb_hw, self.inner, self.coords = emb_hw, inner, None

    def forward(self, points, boxes, masks):
        self.coords = points[0][:, 0, :].float()  # (B, 2) x, y in the model's input frame
        if self.inner is not None:
            return self.inner(points=points, boxes=boxes, masks=masks)
        b = len(self.coords)
        return torch.zeros(b, 1, 1, device=self.coords.device), torch.zeros(b, 1, self.emb_hw, self.emb_hw,
                                                                         device=self.coords.device)

    def get_dense_pe(self):
        if self.inner is not None:
            return self.inner.get_dense_pe()
        return torch.zeros(1, 1, self.emb_hw, self.emb_hw)  # unused by the disc decoder


class _DiscDecoder(torch.nn.Module):
    def __init__(self, img_size: int, low: int, prompts: _PointPrompts, inner: torch.nn.Module | None):
        super().__init__()
        self.img_size, self.low, self.inner = img_size, low, inner
        self._prompts = [prompts]  # a list: not registered as a submodule twice

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output):
        if self.inner is not None:  # the real decoder's compute; its (random-weight) masks are discarded
            self.inner(image_embeddings=image_embeddings, image_pe=image_pe,
                       sparse_prompt_embeddings=sparse_prompt_embeddings,
                       dense_prompt_embeddings=dense_prompt_embeddings, multimask_output=multimask_output)
        pts = self._prompts[0].coords
        s = float(self.img_size)
        g = (torch.arange(self.low, dtype=torch.float32, device=pts.device) + 0.5) * (s / self.low)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        d = torch.sqrt((xx[None] - pts[:, 0, None, None]) ** 2 + (yy[None] - pts[:, 1, None, None]) ** 2)
        u, v = pts[:, 0] * 256 / s, pts[:, 1] * 256 / s  # position features independent of the frame size
        base = s * (0.05 + 0.1 * (torch.sin(u / 37.0) + 1))
        radii = torch.stack([base, 1.6 * base, 2.4 * base], 1)
        slope = torch.stack([torch.full_like(base, 0.02), 0.05 + 0.05 * torch.cos(v / 23.0) ** 2,
                             torch.full_like(base, 0.5)], 1) * 1024 / s
        logits = (radii[:, :, None, None] - d[:, None]) * slope[:, :, None, None]
        iou = torch.stack([0.7 + 0.3 * torch.sin(u / 11.0) ** 2, 0.95 - 0.1 * torch.cos(v / 7.0) ** 2,
                           0.6 + 0.4 * torch.sin((u + v) / 13.0) ** 2], 1)
        if not multimask_output:
            return logits[:, :1], iou[:, :1]
        return logits, iou


def with_disc_masks(sam: Sam, real_compute: bool = False) -> Sam:
    """A new ``Sam`` sharing ``sam``'s image encoder, with disc-shaped mask logits (see module doc).

    ``real_compute`` keeps ``sam``'s prompt encoder and mask decoder running (outputs discarded) so
    that timings include their cost; otherwise they are skipped (fast tests).
    """
    emb = sam.image_encoder.img_size // 16
    prompts = _PointPrompts(emb, sam.prompt_encoder if real_compute else None)
    decoder = _DiscDecoder(sam.image_encoder.img_size, 4 * emb, prompts, sam.mask_decoder if real_compute else None)
    out = Sam(image_encoder=sam.image_encoder, prompt_encoder=prompts, mask_decoder=decoder,
              pixel_mean=sam.pixel_mean.flatten().tolist(), pixel_std=sam.pixel_std.flatten().tolist())
    return out.to(sam.device).eval()


def disc_sam(model: str = "tiny", img_size: int = 1024, seed: int = 0, real_compute: bool = False) -> Sam:
    """segment-anything ``Sam`` (architecture ``model``, random weights) with disc-shaped mask logits."""
    return with_disc_masks(build_sam_arch(model, img_size=img_size, seed=seed), real_compute)
