"""Fetch a public data file into the local cache once (``keras.utils.get_file``), then read it from there."""

from __future__ import annotations

import os
from pathlib import Path

import keras


def cached_file(
    fname: str,
    origin: str,
    cache_subdir: str,
    cache_dir: str | os.PathLike[str] | None,
    sha256: str | None = None,
) -> Path:
    """Return the path of ``fname`` in the cache, downloading it from ``origin`` first if it is not there.

    Args:
        fname: File name in the cache.
        origin: URL of the file (``https://...``, or ``file://...`` for a local mirror).
        cache_subdir: Folder under ``cache_dir`` that holds the file, e.g. ``"datasets/debd"``.
        cache_dir: Cache root; ``None`` is Keras' (``$KERAS_HOME``, else ``~/.keras``).
        sha256: Expected SHA-256 of the file, or ``None`` not to check it. A cached file that does not match is
            downloaded again.

    Returns:
        The path of the file in the cache.

    Raises:
        OSError: If the file is not cached and cannot be fetched from ``origin``, or the fetched file does not
            match ``sha256``; the message names the URL and the cache folder.
    """
    if cache_dir is not None:
        # get_file falls back to /tmp/.keras for a folder it cannot write to, including one that does not exist yet.
        Path(cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(
            fname=fname, origin=origin, file_hash=sha256, cache_subdir=cache_subdir, cache_dir=cache_dir
        )
    except Exception as error:  # get_file raises bare Exceptions for network errors, ValueError for a bad hash
        root = "$KERAS_HOME or ~/.keras" if cache_dir is None else str(cache_dir)
        raise OSError(
            f"Could not fetch '{fname}' from {origin} into the cache ({root}/{cache_subdir}): {error}. Without "
            "network access, download the file elsewhere and pass its folder as `path`."
        ) from error
    return Path(path)
