"""Building Segment Anything models from ``segment-anything``'s own modules, from local files only.

* :func:`load_sam` - the official ViT-H/L/B from a local checkpoint (never downloaded), or the
  seeded random-weight ``tiny`` SAM (256 px, embed dim 64, depth 2) used by tests and CPU benchmarks.
* :func:`build_sam_arch` - the real architecture with random weights (benchmarks: speed and
  agreement of two AMG implementations do not need trained weights).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from semires.errors import SemiresError

CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}

# (encoder embed dim, depth, heads, global attention block indexes), as in segment_anything.build_sam.
ARCHS = {
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
}


def build_sam_arch(model: str, img_size: int = 1024, seed: int = 0) -> Sam:
    """A SAM of architecture ``model`` ('vit_h', 'vit_l', 'vit_b' or 'tiny') with seeded random weights.

    ``img_size`` (a multiple of 16) shrinks the encoder input for CPU benchmarks; 1024 is SAM's own.
    The result is in eval mode on the CPU. Its masks are meaningless: use it to time code or compare
    two implementations on the same model, never as a segmenter.
    """
    if img_size % 16:
        raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "tiny":
            sam = _assemble(img_size=256 if img_size == 1024 else img_size, embed_dim=64, depth=2, heads=2,
                            global_attn=(1,), window=4, prompt_dim=64, mlp_dim=128, dec_heads=2)
        elif model in ARCHS:
            dim, depth, heads, glob = ARCHS[model]
            sam = _assemble(img_size=img_size, embed_dim=dim, depth=depth, heads=heads, global_attn=glob,
                            window=14, prompt_dim=256, mlp_dim=2048, dec_heads=8)
        else:
            raise SemiresError(f"unknown SAM model {model!r}", None, "use vit_h, vit_l, vit_b or tiny")
    return sam.eval()


def _assemble(img_size: int, embed_dim: int, depth: int, heads: int, global_attn: tuple[int, ...], window: int,
              prompt_dim: int, mlp_dim: int, dec_heads: int) -> Sam:
    patch = 16
    emb = img_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=img_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=patch, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=global_attn, window_size=window, out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(emb, emb),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=mlp_dim, num_heads=dec_heads),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=min(256, prompt_dim)),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _missing_checkpoint(model: str, checkpoint: str | None) -> SemiresError:
    url = CHECKPOINT_URLS[model]
    return SemiresError(
        f"candidates.sam.checkpoint: no SAM {model} checkpoint " + ("set" if checkpoint is None else "at this path"),
        checkpoint,
        f"download the official checkpoint ({url}; all links in the segment-anything README, "
        "https://github.com/facebookresearch/segment-anything#model-checkpoints) to a local path and set "
        "candidates.sam.checkpoint to it, or use candidates.generator: embedded (the weight-free stand-in)")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors, or a torch file read with ``weights_only=True``."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SemiresError(f"cannot read SAM checkpoint ({type(exc).__name__}: {exc})", path,
                           "download the official checkpoint again (it may be truncated)") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def load_sam(model: str, checkpoint: str | None, seed: int = 0) -> Sam:
    """SAM ``model`` in eval mode on the CPU: official weights from ``checkpoint``, or seeded ``tiny``.

    Raises :class:`SemiresError` (naming ``candidates.sam.checkpoint`` and the download links) when
    the checkpoint of a real model is not set or missing, or when its tensors do not fit the model.
    """
    if model == "tiny":
        return build_sam_arch("tiny", seed=seed)
    if model not in ARCHS:
        raise SemiresError(f"unknown SAM model {model!r}", None, "set candidates.sam.model to vit_h, vit_l or vit_b")
    if checkpoint is None or not Path(checkpoint).is_file():
        raise _missing_checkpoint(model, checkpoint)
    state = load_state_dict(checkpoint)  # before building: a bad file fails fast
    sam = build_sam_arch(model)
    try:
        sam.load_state_dict(state)
    except RuntimeError as exc:
        raise SemiresError(f"checkpoint does not fit SAM {model} ({str(exc).splitlines()[0]})", checkpoint,
                           "set candidates.sam.model to the checkpoint's backbone (vit_h, vit_l or vit_b)") from exc
    return sam.eval()


def pick_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SemiresError("candidates.sam.device is 'cuda' but no CUDA device is visible", None,
                           "set candidates.sam.device: auto (CPU fallback) or run on a GPU machine")
    return torch.device(device)
