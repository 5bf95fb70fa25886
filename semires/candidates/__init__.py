"""SAM "everything" candidates: one class-agnostic mask set per image, shared by all its refs.

* :mod:`~semires.candidates.config` - ``CandidatesConfig`` (params section ``candidates``)
* :mod:`~semires.candidates.base` - ``Candidates`` and the ``CandidateGenerator`` interface
* :mod:`~semires.candidates.registry` - generators by name (``build_generator``, ``available_generators``)
* :mod:`~semires.candidates.sam` / :mod:`~semires.candidates.fast_amg` - SAM via segment-anything
* :mod:`~semires.candidates.embedded` - the weight-free stand-in for SAM (default without a checkpoint)
* :mod:`~semires.candidates.store` - sharded COCO-RLE storage, manifest, ``CandidateStore`` loader
* :mod:`~semires.candidates.source` - ``open_candidates``: the store a stage reads (CLI and components alike)
* :mod:`~semires.candidates.stats`, :mod:`~semires.candidates.recall` - run statistics, pictures, recall
"""

from semires.candidates.base import CandidateGenerator, Candidates
from semires.candidates.config import CandidatesConfig, EmbeddedConfig, SamConfig
from semires.candidates.recall import store_recall
from semires.candidates.registry import available_generators, build_generator, register_generator
from semires.candidates.stats import render_candidates
from semires.candidates.store import CandidateStore, generate_shard, merge, shard_of

__all__ = [
           "CandidateGenerator",
           "CandidateStore",
           "Candidates",
           "CandidatesConfig",
           "EmbeddedConfig",
           "SamConfig",
           "available_generators",
           "build_generator",
           "generate_shard",
           "merge",
           "register_generator",
           "render_candidates",
           "shard_of",
           "store_recall",
]
