import os
import pickle

import pytest

from semires.data.safe_pickle import safe_load, safe_load_bytes
from semires.errors import DataError, UnsafePickleError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_refs_roundtrip():
    refs = [{"ref_id": 1, "sentences": [{"sent": "the red star", "tokens": ["the", "red", "star"]}],
             "split": "train", "score": 0.5, "flag": True, "none": None, "pair": (1, 2)}]
    for proto in (0, 2, pickle.HIGHEST_PROTOCOL):
        assert safe_load_bytes(pickle.dumps(refs, protocol=proto)) == refs


@pytest.mark.parametrize("proto", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, proto):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _Evil(marker)], protocol=proto))
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    msg = str(info.value)
    assert str(path) in msg and "system" in msg and "\n" not in msg
    assert not marker.exists()


def test_truncated_pickle_is_a_data_error(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"a": 1}] * 10, protocol=2)[:-7])
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_load(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"refs\(umd\)\.p: file not found"):
        safe_load(tmp_path / "refs(umd).p")
