"""Offline SemiRES stages: the teacher's pseudo-labels (``pseudo_label``) and their SAM-guided
refinement with a quality report (``refine``); see :mod:`semires.pseudo.label` and
:mod:`semires.pseudo.refine_stage`."""
