"""The k-fold index (``accord.data.folds``): written, read back in order, and every malformed index refused in one
line naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.core.errors import DataError
from accord.data.folds import FOLDS_FILE, is_folds_dir, read_folds, read_folds_index, write_folds_index


def _fold_dirs(root: Path, k: int) -> list[str]:
    names = [f"fold_{i}" for i in range(k)]
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "manifest.json").write_text("{}", encoding="utf-8")
    return names


def test_written_index_reads_back_in_order(tmp_path: Path) -> None:
    names = _fold_dirs(tmp_path, 3)
    write_folds_index(tmp_path, list(reversed(names)), {"seed": 7})
    assert is_folds_dir(tmp_path)
    assert read_folds(tmp_path) == [tmp_path / "fold_2", tmp_path / "fold_1", tmp_path / "fold_0"]
    assert read_folds_index(tmp_path)["meta"] == {"seed": 7}
    assert read_folds_index(tmp_path)["k"] == 3


def test_write_refuses_one_fold_and_missing_datasets(tmp_path: Path) -> None:
    _fold_dirs(tmp_path, 2)
    with pytest.raises(DataError, match="at least 2 folds"):
        write_folds_index(tmp_path, ["fold_0"])
    with pytest.raises(DataError, match="fold_9 is not a dataset folder"):
        write_folds_index(tmp_path, ["fold_0", "fold_9"])
    with pytest.raises(DataError, match="must be a folder name inside"):
        write_folds_index(tmp_path, ["fold_0", "../x"])


@pytest.mark.parametrize(("patch", "message"), [
    ({"format": "other"}, "key 'format' is 'other'"),
    ({"version": 2}, "key 'version' is 2"),
    ({"folds": ["fold_0"], "k": 1}, "key 'folds' must list at least 2"),
    ({"folds": ["fold_0", "fold_0"]}, "names a fold twice"),
    ({"k": 5}, "key 'k' is 5 but 'folds' lists 2"),
    ({"folds": ["fold_0", "fold_7"]}, "fold 'fold_7'"),
])
def test_malformed_index_is_one_line(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    write_folds_index(tmp_path, _fold_dirs(tmp_path, 2))
    index = json.loads((tmp_path / FOLDS_FILE).read_text(encoding="utf-8"))
    index.update(patch)
    (tmp_path / FOLDS_FILE).write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        read_folds(tmp_path)
    assert "\n" not in str(err.value) and FOLDS_FILE in str(err.value)


def test_missing_or_broken_index(tmp_path: Path) -> None:
    assert not is_folds_dir(tmp_path)
    with pytest.raises(DataError, match="folds.json: missing"):
        read_folds(tmp_path)
    (tmp_path / FOLDS_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        read_folds(tmp_path)
