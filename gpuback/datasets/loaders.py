"""Data for training: the embedded digits set, and loaders for the user's own files.

``load_digits()`` returns the UCI optical-recognition handwritten digits (1797 8x8 images,
10 classes; the copy scikit-learn ships, CC BY 4.0, see
``gpuback/datasets/data/DIGITS_CITATION.txt``) as a fixed train/test :class:`Split`.

``load_file(path)`` reads a labelled data set from one file, chosen by its extension:

* ``.npz``: arrays named ``X`` (samples x features; more dimensions are flattened per
  sample) and ``y`` (one integer label per sample).
* ``.npy``: one 2-D array, a row per sample, whose **last column** is the label.
* ``.csv`` (or ``.csv.gz``): numbers separated by commas, a row per sample, the **last
  column** the label; a first row that is not all numbers is taken as a header.
* MNIST IDX (``*-idx3-ubyte`` images, gzipped or not): the matching ``*-idx1-ubyte`` labels
  file is found next to it; or call ``load_idx(images_path, labels_path)`` directly.

Each returns ``(X, y)``: ``X`` float64 of shape (n_samples, n_features) with the values as
stored (no scaling: divide MNIST pixels by 255 yourself), ``y`` int64 of shape (n_samples,)
with the class indices ``0 .. K-1``, K >= 2, every class present: a network gets one output
per class, so a stray label (1000000 among 0, 1, 2) would otherwise ask for a million
outputs, and a single class would train a classifier that cannot be wrong.
``split(X, y)`` makes a seeded, stratified train/test :class:`Split`.

Targets other than class labels (``targets=`` of ``load_file`` and ``split``, one of
``TARGET_KINDS``): ``"values"``, real numbers for regression (sum of squares),
``"counts"``, numbers >= 0 such as counts or rates (Poisson), and ``"binary"``, values in
[0, 1] such as multi-label 0/1 targets (binary cross-entropy). Then
``y`` is float64 of shape (n_samples, n_targets): the ``.npz`` array ``y`` may be 1-D or 2-D,
and a table's (``.npy``, ``.csv``) last ``target_columns`` columns are the targets.

A file that cannot be read as promised raises :class:`DataError` (a ``ValueError``) whose
message names the file, what was expected and what was found; a missing file raises
``FileNotFoundError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.checks import is_integer, is_number

__all__ = ["TARGET_KINDS", "DataError", "Split", "load_digits", "load_file", "load_idx",
           "split"]

# what a data set's targets are: class indices, real values, or values in [0, 1]
TARGET_KINDS = ("labels", "values", "counts", "binary")
# what the targets of a kind must be beyond finite (``_check_values``' messages)
TARGET_RULES = {"counts": ">= 0 (Poisson counts or rates)",
                "binary": "within [0, 1] (binary cross-entropy)"}

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX element types (third byte of the magic number): numpy dtype, name. Data are big-endian.
_IDX_TYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}


class DataError(ValueError):
    """A data file or array that cannot be used: the message says which, and why."""


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split of a data set.

    ``X_*`` are float64 (samples x features); ``y_*`` int64 class labels (samples,), or,
    for ``"values"``, ``"counts"`` and ``"binary"`` targets, float64 (samples, n_targets).
    ``n_classes`` is one more than the largest label in either part (labels are
    ``0 .. n_classes - 1``; None for other targets); ``n_features`` is the number of
    columns of ``X``; ``n_outputs`` the outputs a network for it needs.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None
    n_features: int
    targets: str = "labels"

    @property
    def n_outputs(self) -> int:
        """One output per class for labels, one per target column otherwise."""
        return self.n_classes if self.n_classes is not None else int(self.y_train.shape[1])


# --------------------------------------------------------------------------- digits


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The embedded UCI handwritten digits, as a reproducible train/test split.

    1797 samples of 64 features (an 8x8 image, row-major) scaled from 0..16 to [0, 1]
    (divided by 16), labels 0..9. The split is :func:`split` with the given
    ``test_fraction`` and ``seed``: stratified by class, the same arrays for the same
    arguments on every machine (the defaults give 1438 training and 359 test samples).
    """
    images, labels = _digits_arrays()
    return split(images / 16.0, labels.astype(np.int64), test_fraction=test_fraction, seed=seed)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits as stored: (1797, 64) uint8 images (pixel values 0 to 16) and
    (1797,) uint8 labels 0 to 9, unscaled and unsplit (``load_digits`` scales and splits)."""
    source = resources.files("gpuback.datasets") / "data" / "digits.npz"
    with source.open("rb") as f, np.load(f, allow_pickle=False) as data:
        return data["images"], data["labels"]


# --------------------------------------------------------------------------- split


def split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0,
          targets: str = "labels") -> Split:
    """Split ``(X, y)`` into training and test parts, stratified by class for labels.

    ``targets``: what ``y`` holds, one of ``TARGET_KINDS`` (see the module docstring).
    Other targets than labels are split at random (no classes to stratify by). For labels,
    each class contributes its share of the ``round(test_fraction * n)`` test samples
    (largest remainders get the leftovers, so the total is exact); which samples go where,
    and the order within each part, come from ``numpy.random.default_rng(seed)``, so the
    same inputs and seed give identical arrays. Every sample lands in exactly one part.
    """
    if not is_number(test_fraction):
        raise TypeError(f"split(): test_fraction must be a number between 0 and 1 "
                        f"(exclusive), got {test_fraction!r} ({type(test_fraction).__name__})")
    if not 0.0 < test_fraction < 1.0:  # NaN included
        raise DataError(f"split(): test_fraction must be between 0 and 1 (exclusive), "
                        f"got {test_fraction!r}")
    X, y = _check_arrays(np.asarray(X), np.asarray(y), "the arrays given to split()", targets)
    n = len(y)
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
        raise DataError(f"split(): test_fraction={test_fraction} of {n} samples leaves "
                        f"{n_test} test and {n - n_test} training samples; both must be > 0")
    rng = np.random.default_rng(seed)
    if targets != "labels":
        order = rng.permutation(n)
        test, train = order[:n_test], order[n_test:]
        return Split(X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test],
                     n_classes=None, n_features=X.shape[1], targets=targets)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (n_test / n)
    take = np.floor(quota).astype(np.int64)
    leftover = n_test - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    test_parts, train_parts = [], []
    for c, k in zip(classes, take, strict=True):
        members = rng.permutation(np.flatnonzero(y == c))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    test = rng.permutation(np.concatenate(test_parts))
    train = rng.permutation(np.concatenate(train_parts))
    return Split(X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test],
                 n_classes=int(y.max()) + 1, n_features=X.shape[1])


# --------------------------------------------------------------------------- files


def load_file(path: PathLike, *, header: bool | None = None, targets: str = "labels",
              target_columns: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read a data set from ``path``; the format comes from the file name.

    See the module docstring for the formats. ``header`` (CSV only): ``None`` detects a
    header row (the first row, when any of its cells is not a number); ``True`` always
    skips the first row; ``False`` never does. ``targets``: what the file's targets are,
    one of ``TARGET_KINDS``; ``target_columns``: how many of a table's last columns hold
    them (1 for labels). Returns ``(X, y)``: float64 (n_samples, n_features) with the
    values as stored, and int64 (n_samples,) labels or float64 (n_samples, n_targets).
    """
    _check_target_kind(targets, target_columns)
    path = Path(path)
    _require_file(path)
    name = path.name.lower()
    if name.endswith(".npz"):
        X, y = _read_npz(path)
    elif name.endswith(".npy"):
        X, y = _table_columns(path, _read_npy(path), target_columns)
    elif name.endswith((".csv", ".csv.gz")):
        X, y = _table_columns(path, _read_csv(path, header), target_columns)
    elif _IDX_NAME.search(name):
        if targets != "labels":
            raise DataError(f"{path}: MNIST IDX files hold class labels; {targets} targets "
                            f"need an .npz, .npy or .csv file")
        return _load_idx_by_name(path)
    else:
        raise DataError(f"{path}: unknown file type; expected a name ending in .npz, .npy, "
                        f".csv or .csv.gz, or an MNIST IDX file (*-idx3-ubyte[.gz])")
    return _check_arrays(X, y, str(path), targets)


def _check_target_kind(targets: str, target_columns: int) -> None:
    if targets not in TARGET_KINDS:
        raise ValueError(f"targets: expected one of {list(TARGET_KINDS)}, got {targets!r}")
    if not is_integer(target_columns, 1):
        raise ValueError(f"target_columns: expected an integer >= 1, got {target_columns!r}")
    if targets == "labels" and target_columns != 1:
        raise ValueError(f"target_columns: class labels are one column, got {target_columns}")


def _table_columns(path: Path, table: np.ndarray, target_columns: int) \
        -> tuple[np.ndarray, np.ndarray]:
    """A table's features (every column but the last ``target_columns``) and targets."""
    if table.shape[1] <= target_columns:
        what = "the label" if target_columns == 1 else f"{target_columns} target columns"
        raise DataError(f"{path}: expected at least {target_columns + 1} columns (features, "
                        f"then {what}), found {table.shape[1]}")
    y = table[:, -target_columns:]
    return table[:, :-target_columns], y[:, 0] if target_columns == 1 else y


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: expected a file, found a directory or other non-file")


NPZ_MAGIC, NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"  # a zip archive; NumPy's .npy header


def _require_magic(path: Path, magic: bytes, what: str) -> None:
    """DataError unless ``path`` starts as a ``what`` file does (before NumPy, which would
    take any other file for pickled data)."""
    with open(path, "rb") as f:
        start = f.read(len(magic))
    if start != magic:
        raise DataError(f"{path}: not {what} (it does not start with the {magic!r} that "
                        f"every such file starts with)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _require_magic(path, NPZ_MAGIC, "an .npz archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive (a zip of arrays), "
                        f"found a single array")
    with archive:
        keys = sorted(archive.files)
        if "X" not in keys or "y" not in keys:
            raise DataError(f"{path}: expected arrays named 'X' (features) and 'y' (labels); "
                            f"found {keys}")
        try:
            X, y = archive["X"], archive["y"]
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: could not read arrays 'X' and 'y' ({e})") from None
    if X.ndim < 2:
        raise DataError(f"{path}: expected 'X' with a row per sample (2 or more dimensions), "
                        f"found shape {X.shape}")
    if y.ndim not in (1, 2):
        raise DataError(f"{path}: expected 'y' to be 1-D (one label or value per sample) "
                        f"or 2-D (a row of targets per sample), found shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: 'X' has {X.shape[0]} samples but 'y' has {y.shape[0]} labels")
    return _flatten_samples(X), y


def _flatten_samples(X: np.ndarray) -> np.ndarray:
    """(n, d1, d2, ...) -> (n, d1 * d2 * ...), also when n or a d is 0."""
    return X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))


def _read_npy(path: Path) -> np.ndarray:
    _require_magic(path, NPY_MAGIC, "a .npy array")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path}: expected a single .npy array, found an .npz archive")
    if array.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array (a row per sample, the last column the "
                        f"label), found {array.ndim}-D with shape {array.shape}")
    return array


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # -sig: drop a byte-order mark


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, header: bool | None) -> np.ndarray:
    # The first non-blank line decides about the header; np.loadtxt (C) parses the rest,
    # and only when it fails does a row-by-row scan find the line and column to report.
    try:
        with _open_text(path) as f:
            skip = 0
            first: list[str] = []
            for line in f:
                skip += 1
                if line.strip():
                    first = next(csv.reader([line]))
                    break
            if not first:
                raise DataError(f"{path}: expected rows of numbers, found no data rows")
            if header is None:
                header = not all(_is_number(c) for c in first)
            if not header:
                skip -= 1
            f.seek(0)
            try:
                with warnings.catch_warnings():  # "input contained no data": reported below
                    warnings.simplefilter("ignore", UserWarning)
                    table = np.loadtxt(f, delimiter=",", skiprows=skip, dtype=np.float64,
                                       ndmin=2, comments=None, quotechar='"', encoding=None)
            except ValueError as e:
                f.seek(0)
                _diagnose_csv(path, f, skip)
                raise DataError(f"{path}: not a numeric CSV table ({e})") from None
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"{path}: could not read as UTF-8 CSV text ({e})") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: expected rows of numbers, found no data rows"
                        + (" after the header" if header else ""))
    return table


def _diagnose_csv(path: Path, f: io.TextIOBase, skip: int) -> None:
    """Raise DataError at the first ragged row or non-numeric cell (1-based line/column)."""
    width = None
    width_line = 0
    for line_no, line in enumerate(f, start=1):
        if line_no <= skip or not line.strip():
            continue
        cells = next(csv.reader([line]))
        if width is None:
            width, width_line = len(cells), line_no
        elif len(cells) != width:
            raise DataError(f"{path}: line {line_no} has {len(cells)} columns, expected "
                            f"{width} (as on line {width_line}); rows must all be the same "
                            f"length")
        for col, cell in enumerate(cells, start=1):
            if not _is_number(cell):
                raise DataError(f"{path}: line {line_no}, column {col}: expected a number, "
                                f"found {cell!r}")


# --------------------------------------------------------------------------- IDX

_IDX_NAME = re.compile(r"idx\d")
_TABLE_SUFFIXES = (".npz", ".npy", ".csv", ".csv.gz")


def is_idx_images(path: PathLike) -> bool:
    """Whether ``load_file`` reads ``path`` as MNIST IDX images (pixels 0..255): no .npz,
    .npy or .csv suffix, and "idx" with 2 or more dimensions in the name (idx3-ubyte)."""
    name = Path(path).name.lower()
    return not name.endswith(_TABLE_SUFFIXES) and re.search(r"idx[2-9]", name) is not None


def load_idx(images_path: PathLike, labels_path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST-style IDX pair: images (``*-idx3-ubyte``) and labels (``*-idx1-ubyte``).

    Either file may be gzipped (detected from its content, not its name). The images file
    must hold an array of 2 or more dimensions (magic ``0x0000080?``: two zero bytes, the
    element type, the number of dimensions), the labels file a 1-D array with one label per
    image. Returns ``(X, y)``: float64 (n_images, pixels per image) with the values as
    stored (0..255 for MNIST; divide by 255 to scale to [0, 1]), and int64 labels.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim < 2:
        raise DataError(f"{images_path}: expected an IDX images file (2 or more dimensions, "
                        f"e.g. magic 0x00000803), found a {images.ndim}-D array of shape "
                        f"{images.shape}; is this the labels file?")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected an IDX labels file (1 dimension, magic "
                        f"0x00000801), found a {labels.ndim}-D array of shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} "
                        f"holds {labels.shape[0]} labels; expected the same count")
    return _check_arrays(_flatten_samples(images), labels,
                         f"{images_path} + {labels_path}")


def _read_idx(path: Path) -> np.ndarray:
    _require_file(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: gzip data is corrupt or truncated ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: expected an IDX file (a 4-byte magic number, then "
                        f"dimensions), found only {len(raw)} bytes")
    zero, type_code, ndim = raw[:2], raw[2], raw[3]
    magic = int.from_bytes(raw[:4], "big")
    if zero != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        known = ", ".join(f"0x{code:02X} {name}" for code, (_, name) in _IDX_TYPES.items())
        raise DataError(f"{path}: bad IDX magic number 0x{magic:08X}; expected two zero bytes, "
                        f"an element type ({known}) and a dimension count >= 1 (e.g. "
                        f"0x00000803 for images, 0x00000801 for labels)")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path}: truncated IDX header: {ndim} dimensions need "
                        f"{header_end} bytes, found {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype, type_name = _IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_end
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise DataError(f"{path}: IDX data {what}: shape {shape} of {type_name} needs "
                        f"{expected} bytes after the header, found {found}")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)


def _load_idx_by_name(path: Path) -> tuple[np.ndarray, np.ndarray]:
    name = path.name
    if not re.search(r"idx[2-9]", name, re.I):
        raise DataError(f"{path}: this looks like an IDX labels file; pass the images file "
                        f"(*-idx3-ubyte) to load_file, or call load_idx(images, labels)")
    stem = re.sub(r"\.gz$", "", name, flags=re.I)
    labels_stem = re.sub(r"idx\d", "idx1", stem, count=1, flags=re.I)
    labels_stem = re.sub(r"images", "labels", labels_stem, count=1, flags=re.I)
    candidates = [path.with_name(labels_stem + ext) for ext in ("", ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return load_idx(path, candidate)
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"{path}: expected a matching IDX labels file next to it, tried {tried}; "
                    f"call load_idx(images_path, labels_path) to name it")


# --------------------------------------------------------------------------- checks


def _check_arrays(X: np.ndarray, y: np.ndarray, where: str,
                  targets: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Features as finite float64 (n, d >= 1); labels as int64 (n,) class indices 0..K-1,
    K >= 2, with every class present (``_check_classes``); other targets as finite float64
    (n, k), >= 0 for ``"counts"``, within [0, 1] for ``"binary"`` (``_check_values``)."""
    _check_target_kind(targets, 1)
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        bad, arr = ("features", X) if X.dtype.kind not in "biuf" else ("targets", y)
        raise DataError(f"{where}: expected numeric {bad}, found dtype {arr.dtype}")
    if targets == "labels" and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a label column
    if targets != "labels" and y.ndim == 1:
        y = y[:, None]  # one target per sample
    want = 1 if targets == "labels" else 2
    if X.ndim != 2 or y.ndim != want:
        what = "labels of 1" if targets == "labels" else "targets of 2 (or 1)"
        raise DataError(f"{where}: expected features of 2 dimensions and {what}, found "
                        f"shapes {X.shape} and {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{where}: {X.shape[0]} samples of features but {y.shape[0]} labels")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{where}: empty data: expected at least one sample and one feature, "
                        f"found features of shape {X.shape}")
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{where}: features must be finite; found {X[row, col]} at sample "
                        f"{row}, feature {col} ({int(bad.sum())} non-finite values in all)")
    if targets != "labels":
        return X, _check_values(y, where, targets)
    if y.dtype.kind == "f":
        integral = np.isfinite(y) & (y == np.round(y))
        if not integral.all():
            i = int(np.flatnonzero(~integral)[0])
            raise DataError(f"{where}: labels must be integers (class indices); found {y[i]} "
                            f"at sample {i}")
    if y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{where}: labels must be class indices >= 0; found {y[i]} at "
                        f"sample {i}")
    _check_classes(y, where)
    return X, y.astype(np.int64)


def _check_values(y: np.ndarray, where: str, targets: str) -> np.ndarray:
    """Real-valued targets as finite float64, >= 0 for counts, within [0, 1] for binary
    ones (``TARGET_RULES``)."""
    y = y.astype(np.float64, copy=False)
    if y.shape[1] == 0:
        raise DataError(f"{where}: expected at least one target column, found shape {y.shape}")
    bad = ~np.isfinite(y)
    if targets in TARGET_RULES:
        bad |= y < 0
    if targets == "binary":
        bad |= y > 1
    if bad.any():
        row, col = np.argwhere(bad)[0]
        rule = TARGET_RULES.get(targets, "finite")
        raise DataError(f"{where}: targets must be {rule}; found {y[row, col]} at sample "
                        f"{row}, column {col} ({int(bad.sum())} such values in all)")
    return y


MISSING_SHOWN = 3  # ranges of missing classes a message names before "and N more"


def _check_classes(y: np.ndarray, where: str) -> None:
    """Integral labels >= 0 that are the class indices 0..K-1, K >= 2, each class present
    (a network gets K outputs): DataError saying which classes are missing, in a short
    message however many are (ranges, the first few, then a count)."""
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(f"{where}: labels must name at least 2 classes (the class indices "
                        f"0..K-1, K >= 2); found only {int(classes[0])}, in all {y.size} "
                        f"samples")
    top = int(classes[-1])
    if top == classes.size - 1:
        return
    # the gaps between consecutive classes present (and before the first one)
    exact = classes.astype(np.int64) if top < 2 ** 63 else classes  # beyond int64: float
    edges = np.concatenate([[-1], exact])
    gaps = np.flatnonzero(np.diff(edges) > 1)
    ranges = [(int(edges[i]) + 1, int(edges[i + 1]) - 1) for i in gaps[:MISSING_SHOWN]]
    shown = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in ranges)
    missing = top + 1 - classes.size
    listed = sum(b - a + 1 for a, b in ranges)
    more = f" and {missing - listed} more" if missing > listed else ""
    raise DataError(f"{where}: labels must be the class indices 0..K-1 with every class "
                    f"present; got {classes.size} distinct values up to {top} (missing "
                    f"{shown}{more})")
