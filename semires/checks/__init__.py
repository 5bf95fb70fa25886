"""Data-quality gates (great_expectations): every stage calls its gate on what it wrote or read.

A gate validates pandas tables built from a stage's files with GX expectations; on failure it
raises :class:`semires.errors.CheckFailed` whose ``report`` names each failed expectation, its
observed value and a few failing ids, and writes the same report to a file.

Gates:
- :func:`check_index_and_splits` (index + label splits),
- :func:`check_candidates` (SAM candidate shards),
- :func:`check_pseudo_labels`, :func:`check_refined` (teacher pseudo-labels, refined labels).
"""

from semires.checks.candidates import check_candidates, shard_records
from semires.checks.config import CandidateChecks, ChecksConfig, DataChecks, LabelChecks
from semires.checks.data import check_index_and_splits
from semires.checks.engine import CheckReport, Outcome, Table, run_gate
from semires.checks.labels import check_pseudo_labels, check_refined

__all__ = ["CandidateChecks", "CheckReport", "ChecksConfig", "DataChecks", "LabelChecks", "Outcome", "Table",
           "check_candidates", "check_index_and_splits", "check_pseudo_labels", "check_refined", "run_gate",
           "shard_records"]
