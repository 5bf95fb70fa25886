"""Evaluation: RES metrics and prediction overlays."""
