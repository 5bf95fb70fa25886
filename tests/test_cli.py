"""The `semires` command: errors are one line with a non-zero exit; data subcommands work."""

import subprocess
import sys

from semires.cli import main


def test_bad_input_is_one_line_and_nonzero(mini_refer, tmp_path, capsys):
    (mini_refer / "refs(unc).p").unlink()
    out = tmp_path / "index.json"
    code = main(["data", "index", "--refer-dir", str(mini_refer), "--image-dir", str(mini_refer / "images"),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.count("\n") == 0 and err.startswith("error: ") and "refs(unc).p: file not found" in err


def test_index_and_split_commands(mini_refer, tmp_path, capsys):
    idx = tmp_path / "index.json"
    assert main(["data", "index", "--refer-dir", str(mini_refer), "--image-dir", str(mini_refer / "images"),
                 "--out", str(idx)]) == 0
    assert "8 images, 16 refs, 32 expressions" in capsys.readouterr().out
    assert main(["data", "split", "--index", str(idx), "--out", str(tmp_path / "splits"), "--ratios", "0.2,0.5",
                 "--seed", "1", "--params", str(tmp_path / "none.yaml")]) == 0
    assert (tmp_path / "splits" / "20pct" / "labeled.txt").is_file()
    assert (tmp_path / "splits" / "50pct" / "unlabeled.txt").is_file()


def test_console_script_runs_as_module():
    res = subprocess.run([sys.executable, "-m", "semires", "--help"], check=False, capture_output=True, text=True)
    assert res.returncode == 0 and "data" in res.stdout


def test_a_refused_checkpoint_leaves_nothing_in_the_evaluation_folder(tmp_path, capsys):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"format": 1, "x": Payload()}))
    out = tmp_path / "eval"
    code = main(["evaluate", "--index", str(tmp_path / "index.json"), "--checkpoint", str(bad), "--out", str(out),
                 "--params", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "evil.pt" in err[0] and "refused" in err[0]
    assert not out.exists()  # no mlflow.db, no folder
