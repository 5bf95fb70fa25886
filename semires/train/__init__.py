"""The RES trainers: supervised (burn-in) training and the semi-supervised SemiRES student, with
their configs, losses, views, mean teacher and evaluation hook. They stand on :mod:`semires.engine`
(data, checkpoints, the step loop) and use :mod:`semires.eval` and :mod:`semires.pseudo`. Import the
submodules you need; this package imports nothing heavy itself."""
