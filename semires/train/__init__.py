"""Training building blocks: dataset, transforms, sampler, optimizer + poly LR, loss, checkpoints,
DDP helpers and the supervised (burn-in) trainer. Import the submodules you need; this package
imports nothing heavy itself."""
