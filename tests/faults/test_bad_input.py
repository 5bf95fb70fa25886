"""Bad input through the entry points: one ``error:`` line naming the file or field, exit 2, nothing written,
the inputs untouched. The issue's own examples (and each class once) run as real subprocesses; the other
variants call the same entry function (``semires.cli.main`` / a component's ``_stage.cli``) in this process.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from fault_helpers import component, expect_error, run, temps, tree_digest

from semires.cli import main


def _inst(root: Path) -> dict:
    return json.loads((root / "instances.json").read_text())


def _set_inst(root: Path, doc) -> None:
    (root / "instances.json").write_text(json.dumps(doc))


def _edit_inst(fn):
    def apply(root: Path) -> None:
        doc = _inst(root)
        fn(doc)
        _set_inst(root, doc)
    return apply


def _refs(root: Path) -> list:
    return pickle.loads((root / "refs(unc).p").read_bytes())  # the test's own file


def _edit_refs(fn):
    def apply(root: Path) -> None:
        refs = _refs(root)
        fn(refs)
        (root / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return apply


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/semires_fault_pwned",))


def _first_sentence(refs, value):
    refs[0]["sentences"] = value


REFER_CASES = [
    # (case, mutate the REFER folder, what the error line must name, subprocess?)
    ("instances.json top level is a number", lambda r: (r / "instances.json").write_text("42"),
     ["instances.json", "top level"], True),
    ("instances.json is not JSON", lambda r: (r / "instances.json").write_text('{"images": ['),
     ["instances.json", "not valid JSON"], False),
    ("instances.json lacks 'annotations'", _edit_inst(lambda d: d.pop("annotations")),
     ["instances.json", "annotations"], False),
    ("instances.json 'images' is an object", _edit_inst(lambda d: d.update(images={})),
     ["instances.json", "'images'"], False),
    ("an image entry lacks file_name", _edit_inst(lambda d: d["images"][0].pop("file_name")),
     ["instances.json", "images[0]", "file_name"], False),
    ("an image height is text", _edit_inst(lambda d: d["images"][0].update(height="tall")),
     ["instances.json", "images[0].height"], False),
    ("file_name ../../x.png escapes the image folder", _edit_inst(lambda d: d["images"][0].update(
        file_name="../../x.png")), ["instances.json", "images[0].file_name", "../../x.png"], True),
    ("absolute file_name /etc/passwd", _edit_inst(lambda d: d["images"][0].update(file_name="/etc/passwd")),
     ["instances.json", "images[0].file_name", "/etc/passwd"], False),
    ("annotation bbox has 3 numbers", _edit_inst(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])),
     ["instances.json", "annotations[0].bbox"], False),
    ("annotation of an unknown image", _edit_inst(lambda d: d["annotations"][0].update(image_id=999999)),
     ["instances.json", "unknown image 999999"], False),
    ("polygon made of text", _edit_inst(lambda d: d["annotations"][0].update(segmentation=[["a", "b", "c"]])),
     ["instances.json", "annotation 1000", "segmentation"], False),
    ("refs file holds a dict, not a list", lambda r: (r / "refs(unc).p").write_bytes(pickle.dumps({"a": 1})),
     ["refs(unc).p", "list of refs"], False),
    ("a ref's sentences is a string", _edit_refs(lambda refs: _first_sentence(refs, "the red square")),
     ["refs(unc).p", "sentences"], True),
    ("a sentence lacks sent_id", _edit_refs(lambda refs: refs[0]["sentences"][0].pop("sent_id")),
     ["refs(unc).p", "sentences[0]", "sent_id"], False),
    ("a ref points to an unknown annotation", _edit_refs(lambda refs: refs[0].update(ann_id=424242)),
     ["refs(unc).p", "unknown annotation 424242"], False),
    ("refs pickle asks to run code", lambda r: (r / "refs(unc).p").write_bytes(pickle.dumps([_Evil()])),
     ["refs(unc).p", "refused"], False),
    ("refs file missing", lambda r: (r / "refs(unc).p").unlink(), ["refs(unc).p", "file not found"], False),
    ("an image file is missing", lambda r: (r / "images" / "img_100.png").unlink(),
     ["img_100.png", "not found"], False),
    ("an image file is truncated", lambda r: (r / "images" / "img_100.png").write_bytes(
        (r / "images" / "img_101.png").read_bytes()[:60]), ["img_100.png", "corrupt"], False),
    ("an image's size differs from instances.json", _edit_inst(lambda d: d["images"][0].update(height=33)),
     ["img_100.png", "33"], False),
]


@pytest.mark.parametrize("what,mutate,names,subprocess_", REFER_CASES, ids=[c[0] for c in REFER_CASES])
def test_bad_refer_folder_is_one_line_and_writes_nothing(what, mutate, names, subprocess_, mini_refer, tmp_path,
                                                         capsys, case):
    case("bad input: REFER files", f"semires data index: {what}", "subprocess" if subprocess_ else "in-process")
    mutate(mini_refer)
    before = tree_digest(mini_refer)
    out = tmp_path / "out" / "index.json"
    argv = ["data", "index", "--refer-dir", str(mini_refer), "--image-dir", str(mini_refer / "images"),
            "--out", str(out)]
    if subprocess_:
        res = run("-m", "semires", *argv)
        code, err = res.returncode, res.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    expect_error(case, code, err, 2, *names)
    assert not out.exists() and not temps(tmp_path / "out")
    assert tree_digest(mini_refer) == before
    assert not Path("/tmp/semires_fault_pwned").exists()


def test_unknown_split_by_names_the_option(mini_refer, tmp_path, capsys, case):
    case("bad input: options", "semires data index --split-by bogus", "in-process")
    out = tmp_path / "index.json"
    code = main(["data", "index", "--refer-dir", str(mini_refer), "--image-dir", str(mini_refer / "images"),
                 "--out", str(out), "--split-by", "bogus"])
    expect_error(case, code, capsys.readouterr().err, 2, "split_by", "unc")
    assert not out.exists()


@pytest.fixture
def index_file(mini_refer, tmp_path) -> Path:
    out = tmp_path / "index.json"
    assert main(["data", "index", "--refer-dir", str(mini_refer), "--image-dir", str(mini_refer / "images"),
                 "--out", str(out)]) == 0
    return out


SPLIT_CASES = [
    # (case, edit the index (or None), extra CLI args, what the line names, exit code, subprocess?)
    ("--ratios 1.5", None, ["--ratios", "1.5"], ["--ratios", "1.5", "(0, 1]"], 2, True),
    ("--ratios abc", None, ["--ratios", "0.1,abc"], ["--ratios", "abc"], 2, False),
    ("misspelt option --ratio", None, ["--ratio", "0.1"], ["--ratio"], 2, False),
    ("index missing", lambda p: p.unlink(), ["--ratios", "0.5"], ["index.json", "not found"], 2, False),
    ("index not JSON", lambda p: p.write_text("{oops"), ["--ratios", "0.5"], ["index.json", "not valid JSON"], 2,
     False),
    ("index of an unknown format", lambda p: p.write_text('{"format": "other/9"}'), ["--ratios", "0.5"],
     ["index.json", "unknown index format"], 2, False),
    ("index without train images", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "refs": [
        {**r, "split": "val"} for r in json.loads(p.read_text())["refs"]]})), ["--ratios", "0.5"],
     ["index.json", "train"], 2, False),
]


@pytest.mark.parametrize("what,edit,args,names,want,subprocess_", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_bad_split_command_is_one_line(what, edit, args, names, want, subprocess_, index_file, tmp_path, capsys,
                                       case):
    case("bad input: options" if edit is None else "bad input: index", f"semires data split: {what}",
         "subprocess" if subprocess_ else "in-process")
    if edit is not None:
        edit(index_file)
    before = tree_digest(index_file) if index_file.exists() else {}
    out = tmp_path / "splits"
    argv = ["data", "split", "--index", str(index_file), "--out", str(out), *args,
            "--params", str(tmp_path / "none.yaml")]
    if subprocess_:
        res = run("-m", "semires", *argv)
        code, err = res.returncode, res.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    expect_error(case, code, err, want, *names)
    assert not out.exists() or not any(out.iterdir())
    assert (tree_digest(index_file) if index_file.exists() else {}) == before


def test_index_file_name_outside_the_image_folder_is_refused_when_read(index_file, tmp_path, capsys, case):
    case("bad input: index", "an index whose file_name is ../secret.png, read by `candidates render`",
         "in-process")
    doc = json.loads(index_file.read_text())
    doc["images"][0]["file_name"] = "../secret.png"
    index_file.write_text(json.dumps(doc))
    from semires.data.index import RefIndex

    ix = RefIndex.load(index_file)
    with pytest.raises(Exception) as info:
        ix.load_image(int(doc["images"][0]["id"]))
    from semires.errors import user_error_message

    line = f"error: {user_error_message(info.value)}"
    case.saw(2, line)
    assert "index.json" in line and "../secret.png" in line and "\n" not in line


PARAMS_CASES = [
    # (case, edit the params dict, what the line names, subprocess?)
    ("misspelt section 'splt:'", lambda p: p.update(splt=p.pop("split")), ["params.yaml", "splt"], True),
    ("unknown key split.ratio", lambda p: p["split"].update(ratio=0.1), ["params.yaml", "split.ratio"], False),
    ("split.ratios [1.5]", lambda p: p["split"].update(ratios=[1.5]), ["params.yaml", "split.ratios"], False),
    ("burn_in.epochs -1 (a section split never reads)", lambda p: p["burn_in"].update(epochs=-1),
     ["params.yaml", "burn_in", "epochs"], False),
    ("unknown key in a later section (refine.strategyy)", lambda p: p["refine"].update(strategyy="cpi"),
     ["params.yaml", "refine", "strategyy"], False),
]


@pytest.mark.parametrize("what,edit,names,subprocess_", PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_component_validates_the_whole_params_file(what, edit, names, subprocess_, fault_params, index_file,
                                                   tmp_path, capsys, case):
    import yaml

    case("bad params", f"components.split: {what}", "subprocess" if subprocess_ else "in-process")
    p = yaml.safe_load(fault_params.read_text())
    edit(p)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    out, metrics = tmp_path / "splits", tmp_path / "m" / "split.json"
    argv = ["--index", index_file, "--out", out, "--report", tmp_path / "r.txt", "--metrics", metrics,
            "--params", params]
    if subprocess_:
        res = run("-m", "components.split", *argv)
        code, err = res.returncode, res.stderr
    else:
        code, err = component("split", *argv), capsys.readouterr().err
    expect_error(case, code, err, 2, *names)
    assert not out.exists() and not metrics.exists()


@pytest.mark.parametrize("what,content,names", [
    ("params file is not YAML", "split: [unclosed", ["params.yaml", "YAML"]),
    ("params file missing", None, ["params.yaml", "not found"]),
], ids=["not-yaml", "missing"])
def test_component_refuses_an_unreadable_params_file(what, content, names, index_file, tmp_path, capsys, case):
    case("bad params", f"components.split: {what}", "in-process")
    params = tmp_path / "params.yaml"
    if content is not None:
        params.write_text(content)
    out = tmp_path / "splits"
    code = component("split", "--index", index_file, "--out", out, "--report", tmp_path / "r.txt",
                     "--metrics", tmp_path / "m.json", "--params", params)
    expect_error(case, code, capsys.readouterr().err, 2, *names)
    assert not out.exists()
