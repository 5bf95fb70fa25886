"""The generator interface: one image in, a stack of class-agnostic candidate masks out."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from semires.errors import SemiresError


@dataclass(frozen=True)
class Candidates:
    """Candidate masks of one image.

    Attributes:
        masks: (K, H, W) bool, K >= 0, same H, W as the image.
        scores: (K,) float32 quality scores in [0, 1] (SAM: predicted IoU; embedded: region
            contrast), higher is better; masks are ordered by descending score.
    """

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f"masks must be (K, H, W) bool, got {self.masks.shape} {self.masks.dtype}")
        if self.scores.shape != (len(self.masks),) or self.scores.dtype != np.float32:
            raise ValueError(f"scores must be ({len(self.masks)},) float32, got {self.scores.shape} {self.scores.dtype}")

    def __len__(self) -> int:
        return len(self.masks)


class CandidateGenerator(abc.ABC):
    """Class-agnostic "everything" segmentation of one image. Subclasses set :attr:`name`."""

    name: str = "generator"

    @abc.abstractmethod
    def generate(self, image: np.ndarray) -> Candidates:
        """Candidates of ``image``, an (H, W, 3) uint8 RGB array."""

    def describe(self) -> dict:
        """JSON-safe description for manifests and MLflow params."""
        return {"name": self.name}


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 image; returns it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise SemiresError(f"expected an (H, W, 3) uint8 RGB image, got {shape} {getattr(image, 'dtype', type(image))}")
    return np.ascontiguousarray(image)

