"""The DEBD binary density-estimation benchmarks, read from a local folder or fetched into a cache."""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Literal, overload

import numpy as np

from libspn_keras.datasets._cache import cached_file

DEBD_ORIGIN = "https://raw.githubusercontent.com/arranger1044/DEBD/80a4906dcf3b3463370f904efa42c21e8295e85c/datasets"
"""Where ``load_debd`` fetches ``NAME/NAME.SPLIT.data`` from: the DEBD repository at the commit EiNets use."""

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
    """``NAME.SPLIT.data.gz`` if it exists, else the uncompressed ``NAME.SPLIT.data`` (the repository's form)."""
    gzipped = Path(path) / f"{name}.{split}.data.gz"
    plain = gzipped.with_suffix("")
    return plain if plain.is_file() and not gzipped.is_file() else gzipped


def _read_split(file: Path) -> np.ndarray:
    if not file.is_file():
        raise FileNotFoundError(
            f"DEBD file not found: expected '{file}' (layout: PATH/NAME.{{train,valid,test}}.data.gz, gzipped CSV "
            "of 0/1, or the same uncompressed as NAME.SPLIT.data)."
        )
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rt") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file is reported below, not warned about
            data = np.loadtxt(handle, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise ValueError(f"Could not parse DEBD file '{file}' as a CSV of 0/1 integers: {error}") from error
    if data.size == 0:
        raise ValueError(f"DEBD file '{file}' holds no data.")
    if not np.isin(data, (0, 1)).all():
        bad = np.unique(data[~np.isin(data, (0, 1))])[:5].tolist()
        raise ValueError(f"DEBD file '{file}' must hold only 0/1 values. Received other values: {bad}")
    return data


@overload
def load_debd(
    name: str,
    path: str | os.PathLike[str] | None = None,
    split: None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    origin: str = DEBD_ORIGIN,
) -> dict[str, np.ndarray]: ...


@overload
def load_debd(
    name: str,
    path: str | os.PathLike[str] | None,
    split: Split,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    origin: str = DEBD_ORIGIN,
) -> np.ndarray: ...


@overload
def load_debd(
    name: str,
    *,
    split: Split,
    cache_dir: str | os.PathLike[str] | None = None,
    origin: str = DEBD_ORIGIN,
) -> np.ndarray: ...


def load_debd(
    name: str,
    path: str | os.PathLike[str] | None = None,
    split: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    origin: str = DEBD_ORIGIN,
) -> dict[str, np.ndarray] | np.ndarray:
    r"""Load a DEBD binary density-estimation data set, from a local folder or fetched into a cache.

    With ``path``, reads ``PATH/NAME.SPLIT.data.gz`` (gzipped CSV of 0/1, one sample per row) or, if that is
    absent, the uncompressed ``PATH/NAME.SPLIT.data`` of the
    `DEBD repository <https://github.com/arranger1044/DEBD>`_; nothing is downloaded. Without ``path``, the
    files are read from the cache folder ``CACHE_DIR/datasets/debd`` and the missing ones are first fetched from
    ``ORIGIN/NAME/NAME.SPLIT.data`` (``keras.utils.get_file``), as ``keras.datasets`` does.

    Args:
        name: Data set name, e.g. ``"nltcs"`` or ``"plants"`` (see ``DEBD_DATASETS``).
        path: Directory holding the files, or ``None`` to use (and fill) the cache.
        split: ``"train"``, ``"valid"`` or ``"test"`` to load one split; ``None`` loads all three.
        cache_dir: Root of the cache when ``path`` is ``None``; ``None`` is Keras' (``$KERAS_HOME``, else
            ``~/.keras``).
        origin: Base URL of the data sets (default ``DEBD_ORIGIN``); a ``file://`` URL serves a local mirror.

    Returns:
        If ``split`` is ``None``, a dict ``{"train": ..., "valid": ..., "test": ...}`` (in that order) of
        ``int32`` arrays of shape ``[num_samples, num_vars]``; otherwise the one array of that split.

    Raises:
        ValueError: If ``name`` is empty or holds a path separator, ``split`` is not one of ``DEBD_SPLITS``,
            a file is not a CSV of 0/1, or the splits have different numbers of variables.
        FileNotFoundError: If ``path`` is not a directory or an expected file is missing; the message names the
            expected file.
        OSError: If ``path`` is ``None`` and a file is neither cached nor fetchable from ``origin``.

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

        Without ``path`` the files are fetched once into the cache; here the origin is a local mirror:

        >>> cache = pathlib.Path(tempfile.mkdtemp())
        >>> mirror = folder / "toy"
        >>> mirror.mkdir()
        >>> for split in ("train", "valid", "test"):
        ...     _ = (mirror / f"toy.{split}.data").write_text("1,1,0\n")
        >>> load_debd("toy", split="train", cache_dir=cache, origin=folder.as_uri()).tolist()
        Downloading data from file://.../toy/toy.train.data ... [[1, 1, 0]]
        >>> sorted(p.name for p in (cache / "datasets" / "debd").iterdir())
        ['toy.train.data']
    """
    if not name or any(sep in name for sep in ("/", "\\")):
        raise ValueError(f"load_debd expects a data set name such as 'nltcs', not a path. Received: name={name!r}")
    if split is not None and split not in DEBD_SPLITS:
        raise ValueError(f"load_debd expects split to be one of {DEBD_SPLITS} or None. Received: split={split!r}")
    if path is None:
        fnames = [f"{name}.{s}.data" for s in (DEBD_SPLITS if split is None else (split,))]
        cached = [cached_file(f, f"{origin.rstrip('/')}/{name}/{f}", "datasets/debd", cache_dir) for f in fnames]
        path = cached[0].parent
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
