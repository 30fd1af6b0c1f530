"""gpuback.datasets: the embedded digits, the split, every file format and its errors."""

from __future__ import annotations

import gzip
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from gpuback.datasets.loaders import DataError, load_digits, load_file, load_idx, split

# ---------------------------------------------------------------------------- digits


def _stored_digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits as the package data file holds them: images and labels."""
    source = resources.files("gpuback.datasets") / "data" / "digits.npz"
    with source.open("rb") as f, np.load(f, allow_pickle=False) as data:
        return data["images"], data["labels"]


def test_digits_shapes_range_and_classes() -> None:
    s = load_digits()
    assert s.X_train.shape == (1438, 64) and s.X_test.shape == (359, 64)
    assert s.y_train.shape == (1438,) and s.y_test.shape == (359,)
    assert s.X_train.dtype == np.float64 and s.y_train.dtype == np.int64
    X = np.concatenate([s.X_train, s.X_test])
    y = np.concatenate([s.y_train, s.y_test])
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(np.unique(X * 16), np.arange(17))  # the 0..16 counts, scaled
    assert (s.n_classes, s.n_features) == (10, 64)
    assert np.array_equal(np.unique(s.y_train), np.arange(10))
    assert np.array_equal(np.unique(s.y_test), np.arange(10))
    assert np.array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


def test_digits_stored_arrays() -> None:
    images, labels = _stored_digits()
    assert images.shape == (1797, 64) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert images.max() == 16 and labels.max() == 9
    # The first sample of scikit-learn's digits.csv.gz: a zero.
    assert labels[0] == 0
    assert images[0, :16].tolist() == [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]


def test_digits_split_is_reproducible_and_seeded() -> None:
    a, b = load_digits(seed=0), load_digits(seed=0)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = load_digits(seed=1)
    assert not np.array_equal(a.y_train, c.y_train)
    d = load_digits(test_fraction=0.5)
    assert len(d.y_test) == round(0.5 * 1797) and len(d.y_train) == 1797 - len(d.y_test)


def test_digits_train_and_test_are_disjoint_and_cover_every_sample() -> None:
    images, labels = _stored_digits()
    s = load_digits()
    X = np.concatenate([s.X_train, s.X_test])
    y = np.concatenate([s.y_train, s.y_test])
    assert np.array_equal(X * 16, np.rint(X * 16))  # exact multiples of 1/16

    def rows(X: np.ndarray, y: np.ndarray) -> list[bytes]:
        return sorted(x.astype(np.uint8).tobytes() + bytes([c]) for x, c in zip(X, y, strict=True))

    # As multisets: every stored sample appears exactly once across the two parts.
    assert rows(np.rint(X * 16), y) == rows(images, labels)


def test_split_by_index_is_disjoint_stratified_and_exact() -> None:
    n = 103
    X = np.arange(n, dtype=np.float64)[:, None]  # the feature is the sample's index
    y = np.arange(n) % 3
    s = split(X, y, test_fraction=0.3, seed=5)
    train, test = s.X_train[:, 0].astype(int), s.X_test[:, 0].astype(int)
    assert len(test) == round(0.3 * n)
    assert set(train).isdisjoint(test) and sorted([*train, *test]) == list(range(n))
    assert np.array_equal(s.y_train, y[train]) and np.array_equal(s.y_test, y[test])
    assert all(abs(np.sum(s.y_test == c) - 0.3 * np.sum(y == c)) <= 1 for c in range(3))
    assert s.n_classes == 3 and s.n_features == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001, 0.999])
def test_split_rejects_fractions_that_leave_a_part_empty(fraction: float) -> None:
    with pytest.raises(DataError, match="test_fraction"):
        split(np.zeros((10, 2)), np.arange(10) % 2, test_fraction=fraction)


# ---------------------------------------------------------------------------- round trips


def _data(n: int = 12, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)), rng.integers(0, 4, size=n)


def _check(got: tuple[np.ndarray, np.ndarray], X: np.ndarray, y: np.ndarray) -> None:
    X_got, y_got = got
    assert X_got.dtype == np.float64 and y_got.dtype == np.int64
    np.testing.assert_array_equal(X_got, X)
    np.testing.assert_array_equal(y_got, y)


def test_npz_round_trip(tmp_path: Path) -> None:
    X, y = _data()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    _check(load_file(tmp_path / "d.npz"), X, y)
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)  # flattened per sample
    np.savez_compressed(tmp_path / "img.npz", X=images, y=np.array([1.0, 0.0]))
    _check(load_file(str(tmp_path / "img.npz")), images.reshape(2, 12), np.array([1, 0]))


def test_npy_round_trip(tmp_path: Path) -> None:
    X, y = _data()
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    _check(load_file(tmp_path / "d.npy"), X, y)


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("gz", [False, True])
def test_csv_round_trip(tmp_path: Path, header: bool, gz: bool) -> None:
    X, y = _data()
    lines = ([",".join(f"f{i}" for i in range(X.shape[1])) + ",label"] if header else [])
    lines += [",".join([*map(repr, row.tolist()), str(c)]) for row, c in zip(X, y, strict=True)]
    text = "\r\n".join(lines) + "\r\n\r\n"  # CRLF and a trailing blank line
    path = tmp_path / ("d.csv.gz" if gz else "d.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    _check(load_file(path), X, y)


def test_csv_byte_order_mark_quotes_and_spaces(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("1, 2.5 ,\"0\"\n3,4,1\n".encode("utf-8-sig"))
    _check(load_file(tmp_path / "d.csv"), np.array([[1, 2.5], [3, 4]]), np.array([0, 1]))


def test_csv_header_can_be_forced(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,1,2\n1.5,2,1\n3,4,0\n")  # numeric header row
    _check(load_file(tmp_path / "d.csv", header=True), np.array([[1.5, 2], [3, 4]]),
           np.array([1, 0]))
    _check(load_file(tmp_path / "d.csv"), np.array([[0, 1], [1.5, 2], [3, 4]]),
           np.array([2, 1, 0]))


def _idx(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    head = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    head += struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(dtype).tobytes()


def _write_mnist(tmp_path: Path, images: np.ndarray, labels: np.ndarray, gz: bool,
                 prefix: str = "train") -> tuple[Path, Path]:
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else bytes
    img = tmp_path / f"{prefix}-images-idx3-ubyte{suffix}"
    lab = tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}"
    img.write_bytes(pack(_idx(images)))
    lab.write_bytes(pack(_idx(labels)))
    return img, lab


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 4, 3))
    labels = rng.permutation(7)  # classes 0..6, each present (datasets._check_classes)
    img, lab = _write_mnist(tmp_path, images, labels, gz)
    _check(load_idx(img, lab), images.reshape(7, 12), labels)
    _check(load_file(img), images.reshape(7, 12), labels)  # finds the labels file by name


def test_idx_other_element_types_and_mixed_compression(tmp_path: Path) -> None:
    images = np.array([[[-2, 300]], [[5, 7]]])
    (tmp_path / "a.idx3").write_bytes(gzip.compress(_idx(images, 0x0B)))
    (tmp_path / "b.idx1").write_bytes(_idx(np.array([1.0, 0.0]), 0x0D))
    _check(load_idx(tmp_path / "a.idx3", tmp_path / "b.idx1"), images.reshape(2, 2),
           np.array([1, 0]))


# ---------------------------------------------------------------------------- errors


def _raises(path: Path, *fragments: str, exc: type[Exception] = DataError, **kw) -> None:
    with pytest.raises(exc) as info:
        load_file(path, **kw)
    message = str(info.value)
    for fragment in (str(path), *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.csv", "no such file", exc=FileNotFoundError)
    (tmp_path / "a-idx3").write_bytes(_idx(np.zeros((1, 1, 1))))
    with pytest.raises(FileNotFoundError, match="nope-idx1"):
        load_idx(tmp_path / "a-idx3", tmp_path / "nope-idx1")


def test_unknown_extension_and_directory(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text("{}")
    _raises(tmp_path / "d.json", "unknown file type", ".npz", ".npy", ".csv", "idx3")
    (tmp_path / "dir.csv").mkdir()
    _raises(tmp_path / "dir.csv", "expected a file")


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "keys.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    _raises(tmp_path / "keys.npz", "'X'", "'y'", "['x_train', 'y_train']")
    np.savez(tmp_path / "count.npz", X=np.zeros((3, 2)), y=np.zeros(2))
    _raises(tmp_path / "count.npz", "3 samples", "2 labels")
    np.savez(tmp_path / "flat.npz", X=np.zeros(3), y=np.zeros(3))
    _raises(tmp_path / "flat.npz", "'X'", "shape (3,)")
    np.savez(tmp_path / "y3d.npz", X=np.zeros((3, 2)), y=np.zeros((3, 1, 1)))
    _raises(tmp_path / "y3d.npz", "'y'", "1-D", "(3, 1, 1)")
    np.savez(tmp_path / "y2d.npz", X=np.zeros((3, 2)), y=np.zeros((3, 2)))
    _raises(tmp_path / "y2d.npz", "labels of 1", "(3, 2)")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    _raises(tmp_path / "junk.npz", "not an .npz archive", "b'PK\\x03\\x04'")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 and then nothing a zip holds")
    _raises(tmp_path / "broken.npz", "not a readable .npz")
    np.savez(tmp_path / "text.npz", X=np.array([["a", "b"]]), y=np.array([1]))
    _raises(tmp_path / "text.npz", "numeric features", "<U1")


def test_npy_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.zeros(4))
    _raises(tmp_path / "one.npy", "2-D", "1-D", "(4,)")
    np.save(tmp_path / "three.npy", np.zeros((2, 2, 2)))
    _raises(tmp_path / "three.npy", "2-D", "3-D")
    np.save(tmp_path / "narrow.npy", np.zeros((4, 1)))
    _raises(tmp_path / "narrow.npy", "at least 2 columns")
    np.save(tmp_path / "obj.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    _raises(tmp_path / "obj.npy", "not a readable .npy")
    (tmp_path / "junk.npy").write_bytes(bytes(range(256)))
    _raises(tmp_path / "junk.npy", "not a .npy array", "NUMPY")


@pytest.mark.parametrize("name", ["junk.npz", "junk.npy"])
def test_a_garbage_file_is_not_called_pickled_data(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError) as info:
        load_file(tmp_path / name)
    assert "pickle" not in str(info.value)


def test_csv_ragged_rows(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a,b,label\n1,2,0\n\n3,4,1\n5,1\n")
    _raises(tmp_path / "r.csv", "line 5", "2 columns", "expected 3", "line 2")


def test_csv_non_numeric_cell(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text("1,2,0\n3,4,1\n5,x7,1\n")
    _raises(tmp_path / "n.csv", "line 3, column 2", "expected a number", "'x7'")
    (tmp_path / "e.csv").write_text("1,2,0\n3,,1\n")
    _raises(tmp_path / "e.csv", "line 2, column 2", "''")


def test_csv_empty_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    _raises(tmp_path / "empty.csv", "no data rows")
    (tmp_path / "head.csv").write_text("a,b,label\n")
    _raises(tmp_path / "head.csv", "no data rows after the header")
    (tmp_path / "one.csv").write_text("1\n2\n")
    _raises(tmp_path / "one.csv", "at least 2 columns", "found 1")


def test_csv_not_text(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81,1\n")
    _raises(tmp_path / "bin.csv", "UTF-8")


def test_labels_must_be_non_negative_integers(tmp_path: Path) -> None:
    (tmp_path / "frac.csv").write_text("1,2,0\n3,4,1.5\n")
    _raises(tmp_path / "frac.csv", "labels must be integers", "1.5", "sample 1")
    np.savez(tmp_path / "neg.npz", X=np.zeros((3, 2)), y=np.array([0, -1, 2]))
    _raises(tmp_path / "neg.npz", ">= 0", "-1", "sample 1")
    np.save(tmp_path / "nan.npy", np.array([[1.0, 0.0], [2.0, np.nan]]))
    _raises(tmp_path / "nan.npy", "labels must be integers", "nan")


def test_features_must_be_finite(tmp_path: Path) -> None:
    (tmp_path / "inf.csv").write_text("1,2,0\n3,inf,1\n")
    _raises(tmp_path / "inf.csv", "finite", "inf", "sample 1, feature 1")
    X = np.zeros((3, 2))
    X[2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.zeros(3, dtype=int))
    _raises(tmp_path / "nan.npz", "finite", "nan", "sample 2, feature 0")


def test_empty_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", X=np.zeros((0, 3)), y=np.zeros(0, dtype=int))
    _raises(tmp_path / "e.npz", "empty data", "(0, 3)")
    with pytest.raises(DataError, match="empty data"):
        split(np.zeros((4, 0)), np.zeros(4, dtype=int))


def test_idx_bad_magic(tmp_path: Path) -> None:
    img, _ = _write_mnist(tmp_path, np.zeros((2, 2, 2)), np.zeros(2), gz=False)
    img.write_bytes(b"\x01\x02" + img.read_bytes()[2:])
    _raises(img, "bad IDX magic number 0x01020803", "0x00000803")
    img.write_bytes(b"\x00\x00\x07\x03" + img.read_bytes()[4:])  # unknown element type
    _raises(img, "bad IDX magic number 0x00000703", "0x08 unsigned byte")
    img.write_bytes(b"\x00\x00")
    _raises(img, "only 2 bytes")


def test_idx_truncated_and_overlong(tmp_path: Path) -> None:
    img, _ = _write_mnist(tmp_path, np.zeros((3, 2, 2)), np.zeros(3), gz=False)
    data = img.read_bytes()
    img.write_bytes(data[:-1])
    _raises(img, "truncated", "(3, 2, 2)", "needs 12 bytes", "found 11")
    img.write_bytes(data + b"\x00")
    _raises(img, "longer than its header says", "found 13")
    img.write_bytes(data[:10])
    _raises(img, "truncated IDX header", "3 dimensions need 16 bytes", "found 10")
    (tmp_path / "c-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-6])
    _write_mnist(tmp_path, np.zeros((3, 2, 2)), np.zeros(3), gz=False, prefix="c")
    (tmp_path / "c-images-idx3-ubyte").unlink()
    _raises(tmp_path / "c-images-idx3-ubyte.gz", "gzip data is corrupt or truncated")


def test_idx_count_mismatch_and_swapped_files(tmp_path: Path) -> None:
    img, lab = _write_mnist(tmp_path, np.zeros((3, 2, 2)), np.zeros(4), gz=True)
    with pytest.raises(DataError) as info:
        load_idx(img, lab)
    assert all(s in str(info.value) for s in (str(img), str(lab), "3 images", "4 labels"))
    with pytest.raises(DataError, match="is this the labels file"):
        load_idx(lab, img)
    with pytest.raises(DataError, match="expected an IDX labels file"):
        load_idx(img, img)
    _raises(lab, "looks like an IDX labels file", "load_idx")


def test_idx_labels_file_not_found_by_name(tmp_path: Path) -> None:
    img, lab = _write_mnist(tmp_path, np.zeros((3, 2, 2)), np.zeros(3), gz=False)
    lab.unlink()
    _raises(img, "matching IDX labels file", "train-labels-idx1-ubyte", "load_idx(")


def test_idx_labels_must_be_integers(tmp_path: Path) -> None:
    (tmp_path / "a.idx3").write_bytes(_idx(np.zeros((2, 1, 1))))
    (tmp_path / "b.idx1").write_bytes(_idx(np.array([0.5, 1.0]), 0x0D))
    with pytest.raises(DataError, match="labels must be integers"):
        load_idx(tmp_path / "a.idx3", tmp_path / "b.idx1")


# ---------------------------------------------------------------------------- other targets


def test_a_label_column_is_a_vector_of_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "col.npz", X=np.ones((4, 2)), y=np.array([[0], [1], [1], [0]]))
    _, y = load_file(tmp_path / "col.npz")
    assert y.shape == (4,) and y.dtype == np.int64 and list(y) == [0, 1, 1, 0]


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_value_targets_from_a_table_are_its_last_columns(tmp_path: Path, suffix: str) -> None:
    table = np.array([[1.0, 2.0, 0.5, -3.25], [4.0, 5.0, 1.5, 7.0], [7.0, 8.0, 9.0, 0.0]])
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("\n".join(",".join(str(float(v)) for v in row) for row in table))
    else:
        np.save(path, table)
    X, y = load_file(path, targets="values")
    assert np.array_equal(X, table[:, :3]) and np.array_equal(y, table[:, 3:])
    X, y = load_file(path, targets="values", target_columns=2)
    assert np.array_equal(X, table[:, :2]) and np.array_equal(y, table[:, 2:])
    _raises(path, "at least 5 columns", "4 target columns", targets="values", target_columns=4)


def test_binary_targets_lie_in_0_1(tmp_path: Path) -> None:
    y = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]])
    np.savez(tmp_path / "multi.npz", X=np.ones((3, 2)), y=y)
    _, got = load_file(tmp_path / "multi.npz", targets="binary")
    assert got.dtype == np.float64 and np.array_equal(got, y)
    np.savez(tmp_path / "bad.npz", X=np.ones((3, 2)), y=y * 2)
    _raises(tmp_path / "bad.npz", "within [0, 1]", "found 2.0 at sample 0, column 1",
            targets="binary")
    np.savez(tmp_path / "counts.npz", X=np.ones((3, 2)), y=y * 2.5)
    _, got = load_file(tmp_path / "counts.npz", targets="counts")
    assert np.array_equal(got, y * 2.5)
    np.savez(tmp_path / "negative.npz", X=np.ones((3, 2)), y=y - 0.5)
    _raises(tmp_path / "negative.npz", ">= 0 (Poisson counts or rates)",
            "found -0.5 at sample 0, column 0", targets="counts")
    np.savez(tmp_path / "nan.npz", X=np.ones((2, 2)), y=np.array([1.0, np.nan]))
    _raises(tmp_path / "nan.npz", "must be finite", "sample 1", targets="values")


def test_value_targets_are_not_labels(tmp_path: Path) -> None:
    # 0.5 is no class index, but a fine regression target; IDX files hold labels only
    np.savez(tmp_path / "r.npz", X=np.ones((2, 2)), y=np.array([0.5, 2.0]))
    _raises(tmp_path / "r.npz", "labels must be integers")
    assert load_file(tmp_path / "r.npz", targets="values")[1].shape == (2, 1)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx(np.zeros((2, 1, 1))))
    _raises(tmp_path / "a-idx3-ubyte", "IDX files hold class labels", targets="values")
    with pytest.raises(ValueError, match="targets: expected one of"):
        load_file(tmp_path / "r.npz", targets="regression")
    with pytest.raises(ValueError, match="class labels are one column"):
        load_file(tmp_path / "r.npz", target_columns=2)


def test_a_split_of_value_targets_is_random_and_whole() -> None:
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10.0)[:, None] * 0.5
    s = split(X, y, test_fraction=0.3, seed=1, targets="values")
    assert (s.n_classes, s.n_outputs, s.n_features, s.targets) == (None, 1, 2, "values")
    assert len(s.y_test) == 3 and len(s.y_train) == 7
    together = np.concatenate([s.y_train, s.y_test])[:, 0]
    assert sorted(together) == list(y[:, 0])
    assert np.array_equal(s.X_train[:, 0] / 4, s.y_train[:, 0])  # rows stay together
    again = split(X, y, test_fraction=0.3, seed=1, targets="values")
    assert np.array_equal(again.y_test, s.y_test)
    assert split(X, y, test_fraction=0.3, seed=2, targets="values").y_test.tolist() != \
        s.y_test.tolist()
