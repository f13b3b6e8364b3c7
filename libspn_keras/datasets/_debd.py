"""The DEBD binary density-estimation benchmarks (``NAME.{train,valid,test}.data.gz``)."""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Literal, overload

import numpy as np

DEBD_SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""The splits of every DEBD data set, in the order ``load_debd`` returns them."""

DEBD_DATASETS: tuple[str, ...] = (
    "nltcs",
    "msnbc",
    "kdd",
    "plants",
    "baudio",
    "jester",
    "bnetflix",
    "accidents",
    "tretail",
    "pumsb_star",
    "dna",
    "kosarek",
    "msweb",
    "book",
    "tmovie",
    "cwebkb",
    "cr52",
    "c20ng",
    "bbc",
    "ad",
)
"""Names of the 20 DEBD data sets (any other name is accepted too, as long as its files exist)."""

Split = Literal["train", "valid", "test"]


def _debd_file(name: str, path: str | os.PathLike[str], split: str) -> Path:
    return Path(path) / f"{name}.{split}.data.gz"


def _read_split(file: Path) -> np.ndarray:
    if not file.is_file():
        raise FileNotFoundError(
            f"DEBD file not found: expected '{file}' (layout: PATH/NAME.{{train,valid,test}}.data.gz, gzipped CSV "
            "of 0/1)."
        )
    try:
        with gzip.open(file, "rt") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file is reported below, not warned about
            data = np.loadtxt(handle, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise ValueError(f"Could not parse DEBD file '{file}' as a gzipped CSV of 0/1 integers: {error}") from error
    if data.size == 0:
        raise ValueError(f"DEBD file '{file}' holds no data.")
    if not np.isin(data, (0, 1)).all():
        bad = np.unique(data[~np.isin(data, (0, 1))])[:5].tolist()
        raise ValueError(f"DEBD file '{file}' must hold only 0/1 values. Received other values: {bad}")
    return data


@overload
def load_debd(name: str, path: str | os.PathLike[str], split: None = None) -> dict[str, np.ndarray]: ...


@overload
def load_debd(name: str, path: str | os.PathLike[str], split: Split) -> np.ndarray: ...


def load_debd(name: str, path: str | os.PathLike[str], split: str | None = None) -> dict[str, np.ndarray] | np.ndarray:
    r"""Load a DEBD binary density-estimation data set from a local directory.

    Reads ``PATH/NAME.SPLIT.data.gz`` (gzipped CSV of 0/1, one sample per row), the layout of the
    `DEBD repository <https://github.com/UCLA-StarAI/Density-Estimation-Datasets>`_. Nothing is downloaded.

    Args:
        name: Data set name, e.g. ``"nltcs"`` or ``"plants"`` (see ``DEBD_DATASETS``).
        path: Directory holding the ``.data.gz`` files.
        split: ``"train"``, ``"valid"`` or ``"test"`` to load one split; ``None`` loads all three.

    Returns:
        If ``split`` is ``None``, a dict ``{"train": ..., "valid": ..., "test": ...}`` (in that order) of
        ``int32`` arrays of shape ``[num_samples, num_vars]``; otherwise the one array of that split.

    Raises:
        ValueError: If ``name`` is empty or holds a path separator, ``split`` is not one of ``DEBD_SPLITS``,
            a file is not a gzipped CSV of 0/1, or the splits have different numbers of variables.
        FileNotFoundError: If ``path`` is not a directory or an expected file is missing; the message names the
            expected file.

    Example:
        >>> import gzip, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for split in ("train", "valid", "test"):
        ...     with gzip.open(folder / f"toy.{split}.data.gz", "wt") as f:
        ...         _ = f.write("0,1,1\n1,0,1\n")
        >>> data = load_debd("toy", folder)
        >>> sorted(data), data["train"].shape, data["train"].dtype
        (['test', 'train', 'valid'], (2, 3), dtype('int32'))
        >>> load_debd("toy", folder, split="test").tolist()
        [[0, 1, 1], [1, 0, 1]]
        >>> load_debd("other", folder, split="test")
        Traceback (most recent call last):
        ...
        FileNotFoundError: DEBD file not found: expected '.../other.test.data.gz' ...
    """
    if not name or any(sep in name for sep in ("/", "\\")):
        raise ValueError(f"load_debd expects a data set name such as 'nltcs', not a path. Received: name={name!r}")
    if split is not None and split not in DEBD_SPLITS:
        raise ValueError(f"load_debd expects split to be one of {DEBD_SPLITS} or None. Received: split={split!r}")
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"DEBD directory not found: '{directory}' (expected it to hold {name}.{{train,valid,test}}.data.gz)."
        )
    if split is not None:
        return _read_split(_debd_file(name, directory, split))
    data = {s: _read_split(_debd_file(name, directory, s)) for s in DEBD_SPLITS}
    num_vars = {s: a.shape[1] for s, a in data.items()}
    if len(set(num_vars.values())) != 1:
        raise ValueError(f"DEBD data set '{name}' has splits with different numbers of variables: {num_vars}")
    return data
