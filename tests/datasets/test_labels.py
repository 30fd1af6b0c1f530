"""Labels are the class indices 0..K-1 with every class present: an outlier or a missing
class is refused by every loader in a short message naming it, a single class is an error,
and the test fraction must leave both parts of a split non-empty."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gpuback.datasets.loaders import DataError, load_file, load_idx, split

OUTLIER = np.array([0, 1, 2, 1000000, 0, 1, 2, 0])


OUTLIER_MESSAGE = ("labels must be the class indices 0..K-1 with every class present; got 4 "
                   "distinct values up to 1000000 (missing 3..999999)")


def _features(n: int) -> np.ndarray:
    return np.arange(2 * n, dtype=np.float64).reshape(n, 2)


def _write(tmp_path: Path, kind: str, y: np.ndarray) -> Path:
    X = _features(len(y))
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
        return tmp_path / "d.npz"
    if kind == "npy":
        np.save(tmp_path / "d.npy", np.column_stack([X, y]))
        return tmp_path / "d.npy"
    if kind == "csv":
        np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", fmt="%d")
        return tmp_path / "d.csv"
    images, labels = tmp_path / "d-images-idx3-ubyte", tmp_path / "d-labels-idx1-ubyte"
    images.write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0, len(y), 0, 0, 0, 1, 0, 0, 0, 2])
                       + bytes(2 * len(y)))
    labels.write_bytes(bytes([0, 0, 0x0C, 1]) + len(y).to_bytes(4, "big")
                       + y.astype(">i4").tobytes())
    return images


@pytest.mark.parametrize("kind", ["npz", "csv", "npy", "idx"])
def test_an_outlier_label_is_refused_by_every_loader(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, kind, OUTLIER)
    with pytest.raises(DataError) as info:
        load_file(path)
    assert OUTLIER_MESSAGE in str(info.value) and str(path) in str(info.value)
    if kind == "idx":
        with pytest.raises(DataError, match=re.escape(OUTLIER_MESSAGE)):
            load_idx(path, tmp_path / "d-labels-idx1-ubyte")
    with pytest.raises(DataError, match=re.escape(OUTLIER_MESSAGE)):
        split(_features(len(OUTLIER)), OUTLIER)


def test_the_message_stays_short_however_many_classes_are_missing() -> None:
    y = np.arange(0, 200_000, 2)  # every other class: 99,999 gaps
    with pytest.raises(DataError) as info:
        split(_features(len(y)), y)
    message = str(info.value)
    assert "got 100000 distinct values up to 199998 (missing 1, 3, 5 and 99996 more)" in message
    assert len(message) < 250


@pytest.mark.parametrize("y", [np.array([1, 2, 1, 2]), np.array([0, 2, 2, 0]),
                               np.array([0.0, 1.0, 3.0, 1.0])], ids=["no-0", "no-1", "float"])
def test_a_missing_class_is_named(tmp_path: Path, y: np.ndarray) -> None:
    missing = sorted(set(range(int(y.max()) + 1)) - set(y.astype(int).tolist()))
    with pytest.raises(DataError, match=rf"missing {missing[0]}\)"):
        load_file(_write(tmp_path, "npz", y))


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_a_single_class_is_an_error_not_accuracy_one(tmp_path: Path, kind: str) -> None:
    for label in (0, 3):
        with pytest.raises(DataError, match=f"labels must name at least 2 classes.*found only "
                                            f"{label}, in all 5 samples"):
            load_file(_write(tmp_path, kind, np.full(5, label)))
    with pytest.raises(DataError, match="at least 2 classes"):
        split(_features(5), np.zeros(5, dtype=int))


def test_complete_labels_still_load(tmp_path: Path) -> None:
    y = np.array([2, 0, 1, 1, 0, 2])
    X_got, y_got = load_file(_write(tmp_path, "csv", y))
    np.testing.assert_array_equal(y_got, y)
    assert split(X_got, y_got, test_fraction=0.5).n_classes == 3


@pytest.mark.parametrize(("fraction", "exc"), [
    ("0.2", TypeError), (None, TypeError), (True, TypeError), ([0.2], TypeError),
    (float("nan"), DataError), (0, DataError), (0.0, DataError), (-0.2, DataError),
    (1, DataError), (1.0, DataError), (1.5, DataError),
    (0.01, DataError), (0.99, DataError),  # of 10 samples: no test or no training sample
])
def test_split_names_test_fraction_when_it_is_not_a_usable_fraction(fraction, exc) -> None:
    with pytest.raises(exc, match="test_fraction") as info:
        split(_features(10), np.arange(10) % 2, test_fraction=fraction)
    assert not isinstance(info.value, DataError) or exc is DataError


def test_the_cli_refuses_an_outlier_label_in_one_line(tmp_path: Path, capsys) -> None:
    from gpuback.cli.app import main

    code = main(["train", "--data", str(_write(tmp_path, "csv", OUTLIER)), "--epochs", "1",
                 "--backend", "numpy", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "missing 3..999999" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()
