"""The generator registry: config choices and registry agree; unknown names are one-line errors."""

from __future__ import annotations

import typing

import pytest

from semires.candidates import CandidatesConfig, available_generators, build_generator
from semires.candidates.base import CandidateGenerator, Candidates
from semires.candidates.registry import GENERATORS, register_generator
from semires.cli import main
from semires.errors import SemiresError


def test_config_choices_are_the_registered_generators():
    choices = typing.get_args(CandidatesConfig.model_fields["generator"].annotation)
    assert sorted(choices) == available_generators() == ["embedded", "sam"]
    for name in choices:  # every entry builds from a section of the config named after it
        assert name in CandidatesConfig.model_fields, name


def test_generator_modules_are_imported_only_when_built():
    """The registry names generators without importing them (segment-anything loads only for 'sam')."""
    import ast
    import inspect

    from semires.candidates import registry

    tree = ast.parse(inspect.getsource(registry))
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    lazy = {n.module for f in tree.body if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
            if isinstance(n, ast.ImportFrom)}
    assert {"semires.candidates.sam", "semires.candidates.embedded"} <= lazy
    assert not top & {"semires.candidates.sam", "semires.candidates.embedded", "segment_anything"}


def test_unknown_generator_is_a_one_line_error_naming_the_known_ones():
    cfg = CandidatesConfig.model_construct(**{**CandidatesConfig().model_dump(), "generator": "sam2"})
    with pytest.raises(SemiresError) as err:
        build_generator(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "unknown candidate generator 'sam2'" in msg and "embedded, sam" in msg


def test_unknown_generator_in_params_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("candidates:\n  generator: sam2\n")
    code = main(["candidates", "generate", "--index", str(tmp_path / "index.json"), "--params",
                 str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("error: ")
    assert "generator" in err and "'embedded'" in err and "'sam'" in err


def test_a_new_generator_is_one_entry():
    class Nothing(CandidateGenerator):
        name = "nothing-test"

        def generate(self, image):
            import numpy as np

            return Candidates(np.zeros((0, *image.shape[:2]), bool), np.zeros(0, np.float32))

    register_generator("nothing_test")(lambda cfg: Nothing())
    try:
        cfg = CandidatesConfig.model_construct(**{**CandidatesConfig().model_dump(), "generator": "nothing_test"})
        assert isinstance(build_generator(cfg), Nothing) and "nothing_test" in available_generators()
        with pytest.raises(ValueError, match="registered twice"):
            register_generator("nothing_test")(lambda cfg: Nothing())
    finally:
        GENERATORS.remove("nothing_test")
