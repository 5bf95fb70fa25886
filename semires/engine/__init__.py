"""The training plumbing that the trainers (``train/``, ``pretrain/``), evaluation (``eval/``) and
pseudo-labelling (``pseudo/``) stand on: the expression dataset and its transforms, the stream
sampler, optimizer and poly LR, execution settings (threads, AMP, determinism), DDP helpers,
checkpoints and model files, and the resumable step loop every trainer runs (:mod:`.loop`).
Import the submodules you need; this package imports nothing heavy itself."""
