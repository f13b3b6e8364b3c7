"""Where the examples find DEBD and Olivetti data: checked with the standard library only, before TensorFlow starts.

A script's ``--data-dir`` wins; without it, ``../shared/data/...`` next to the repository is used if it holds the
files, and otherwise ``None`` lets ``libspn_keras.datasets`` fetch the public files once into
``~/.keras/datasets``. A ``--data-dir`` without the files stops the script at once with the missing file's name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEBD_SPLITS = ("train", "valid", "test")


def add_data_dir_argument(parser: argparse.ArgumentParser, files: str, cache_subdir: str) -> None:
    """Add ``--data-dir`` (default ``None``: the shared folder if it holds the files, else the cache)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder of {files} (default: ../shared/data/{cache_subdir} if it holds them, else they are fetched "
        f"once into ~/.keras/datasets/{cache_subdir})",
    )


def missing_debd_files(data_dir: Path, names: list[str]) -> list[str]:
    """The DEBD files (``NAME.SPLIT.data.gz``, or uncompressed ``.data``) of ``names`` that ``data_dir`` lacks."""
    return [
        str(data_dir / f"{name}.{split}.data.gz")
        for name in names
        for split in DEBD_SPLITS
        if not any((data_dir / f"{name}.{split}.data{suffix}").is_file() for suffix in (".gz", ""))
    ]


def missing_olivetti_files(data_dir: Path) -> list[str]:
    """``[data_dir/olivettifaces.mat]`` if that file is absent, else ``[]``."""
    path = data_dir / "olivettifaces.mat"
    return [] if path.is_file() else [str(path)]


def resolve_data_dir(
    parser: argparse.ArgumentParser, data_dir: Path | None, shared: Path, missing: Callable[[Path], list[str]]
) -> Path | None:
    """The folder to read (``None``: the cache), or exit through ``parser.error`` naming a file ``data_dir`` lacks.

    Args:
        parser: The script's parser, whose ``error`` reports a bad ``--data-dir``.
        data_dir: The ``--data-dir`` argument, or ``None``.
        shared: The shared data folder, used when ``data_dir`` is ``None`` and it holds every file.
        missing: Lists the files a folder lacks.
    """
    if data_dir is None:
        return None if missing(shared) else shared
    if lacking := missing(data_dir):
        parser.error(
            f"--data-dir {data_dir} lacks {len(lacking)} data file(s), e.g. {lacking[0]}. Omit --data-dir to fetch "
            "the public files into ~/.keras/datasets."
        )
    return data_dir


def debd_data_dir(parser: argparse.ArgumentParser, data_dir: Path | None, names: list[str]) -> Path | None:
    """The folder holding the DEBD data sets ``names``, or ``None`` for the cache; exits on a bad ``--data-dir``."""
    return resolve_data_dir(parser, data_dir, SHARED_DATA / "debd", lambda folder: missing_debd_files(folder, names))


def olivetti_data_dir(parser: argparse.ArgumentParser, data_dir: Path | None) -> Path | None:
    """The folder holding ``olivettifaces.mat``, or ``None`` for the cache; exits on a bad ``--data-dir``."""
    return resolve_data_dir(parser, data_dir, SHARED_DATA / "olivetti", missing_olivetti_files)
