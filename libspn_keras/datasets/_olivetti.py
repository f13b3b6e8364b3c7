"""The Olivetti faces (AT&T Laboratories Cambridge), read from a local copy or fetched into a cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from libspn_keras.datasets._cache import cached_file

OLIVETTI_ORIGIN = "https://ndownloader.figshare.com/files/5976027"
"""Where ``load_olivetti_faces`` fetches ``olivettifaces.mat`` from (the file scikit-learn's
``fetch_olivetti_faces`` downloads)."""

OLIVETTI_SHA256 = "b612fb967f2dc77c9c62d3e1266e0c73d5fca46a4b8906c18e454d41af987794"
"""SHA-256 of the file at ``OLIVETTI_ORIGIN`` (the checksum scikit-learn pins)."""

OLIVETTI_FILE = "olivettifaces.mat"


class OlivettiFaces(NamedTuple):
    """The 400 Olivetti faces; unpacks as ``images, labels``."""

    images: np.ndarray
    labels: np.ndarray


def load_olivetti_faces(
    path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    origin: str = OLIVETTI_ORIGIN,
    sha256: str | None = OLIVETTI_SHA256,
) -> OlivettiFaces:
    """Load the Olivetti faces: 400 grey-scale images of 64x64 pixels, ten of each of 40 people.

    With ``path``, reads ``PATH/olivettifaces.mat``; nothing is downloaded. Without it, the file is read from the
    cache folder ``CACHE_DIR/datasets/olivetti``, fetched first from ``origin`` if it is not there (as
    scikit-learn's ``fetch_olivetti_faces`` and ``keras.datasets`` do). The images are upright, in the order of
    the file (person by person); the DGC-SPN paper's completion set-up tests on the last 50.

    Args:
        path: Directory holding ``olivettifaces.mat``, or ``None`` to use (and fill) the cache.
        cache_dir: Root of the cache when ``path`` is ``None``; ``None`` is Keras' (``$KERAS_HOME``, else
            ``~/.keras``).
        origin: URL of ``olivettifaces.mat`` (default ``OLIVETTI_ORIGIN``); ``file://`` serves a local mirror.
        sha256: Expected SHA-256 of the fetched file (default: that of ``OLIVETTI_ORIGIN``), or ``None`` not to
            check it (e.g. for another mirror).

    Returns:
        An ``OlivettiFaces`` ``(images, labels)``: ``uint8`` images of shape ``[400, 64, 64]`` (0..255) and
        ``int32`` labels of shape ``[400]`` (the person, 0..39).

    Raises:
        FileNotFoundError: If ``path`` is given and holds no ``olivettifaces.mat``.
        ValueError: If the file is not a MATLAB file with a ``faces`` array of 4096 x 400 pixels.
        OSError: If ``path`` is ``None`` and the file is neither cached nor fetchable from ``origin``.

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np, scipy.io
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> faces = np.arange(4096 * 400, dtype=np.int64).reshape(4096, 400) % 256
        >>> scipy.io.savemat(folder / "olivettifaces.mat", {"faces": faces.astype(np.uint8)})
        >>> images, labels = load_olivetti_faces(folder)
        >>> images.shape, images.dtype, labels[:12].tolist()
        ((400, 64, 64), dtype('uint8'), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
        >>> cache = pathlib.Path(tempfile.mkdtemp())
        >>> origin = (folder / "olivettifaces.mat").as_uri()
        >>> cached, _ = load_olivetti_faces(cache_dir=cache, origin=origin, sha256=None)
        Downloading data from file://.../olivettifaces.mat ...
        >>> bool((cached == images).all()), (cache / "datasets" / "olivetti" / "olivettifaces.mat").is_file()
        (True, True)
    """
    if path is None:
        file = cached_file(OLIVETTI_FILE, origin, "datasets/olivetti", cache_dir, sha256=sha256)
    else:
        file = Path(path) / OLIVETTI_FILE
        if not file.is_file():
            raise FileNotFoundError(
                f"Olivetti faces not found: expected '{file}'. Pass path=None to fetch them into the cache."
            )
    import scipy.io

    try:
        faces = np.asarray(scipy.io.loadmat(file)["faces"])
    except (OSError, ValueError, KeyError, scipy.io.matlab.MatReadError) as error:
        raise ValueError(f"Could not read '{file}' as a MATLAB file holding a 'faces' array: {error!r}") from error
    if faces.shape != (4096, 400):
        raise ValueError(f"'{file}' must hold faces of shape (4096, 400). Received: shape={faces.shape}")
    # Columns are images stored column-major: transpose each 64x64 image to make it upright.
    images = faces.T.reshape(400, 64, 64).transpose(0, 2, 1).astype(np.uint8)
    return OlivettiFaces(np.ascontiguousarray(images), np.repeat(np.arange(40, dtype=np.int32), 10))
