"""Tests of ``libspn_keras.datasets``: the DEBD and Olivetti loaders (local folder and cache) and the digits split.

The fetching is tested without network access: the origin is a ``file://`` mirror built from the local copies in
``../shared/data`` (the DEBD repository's uncompressed ``NAME/NAME.SPLIT.data`` layout, and ``olivettifaces.mat``).
"""

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from libspn_keras.datasets import (
    DEBD_ORIGIN,
    DEBD_SPLITS,
    OLIVETTI_ORIGIN,
    DigitsSplit,
    load_debd,
    load_digits_split,
    load_olivetti_faces,
)

# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
SHARED_DATA = Path(os.environ.get("LIBSPN_KERAS_SHARED_DATA", Path(__file__).parents[1] / ".." / "shared" / "data"))
DEBD_DIR = SHARED_DATA / "debd"
OLIVETTI_DIR = SHARED_DATA / "olivetti"

TOY = {
    "train": np.array([[0, 1, 1], [1, 0, 1], [0, 0, 0]]),
    "valid": np.array([[1, 1, 1]]),
    "test": np.array([[0, 1, 0], [1, 1, 0]]),
}


def _write(folder: Path, name: str, split: str, text: str) -> Path:
    path = folder / f"{name}.{split}.data.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


def _write_toy(folder: Path, name: str = "toy") -> None:
    for split, array in TOY.items():
        _write(folder, name, split, "\n".join(",".join(map(str, row)) for row in array) + "\n")


def test_load_debd_all_splits(tmp_path):
    _write_toy(tmp_path)
    data = load_debd("toy", tmp_path)
    assert list(data) == list(DEBD_SPLITS)
    for split, expected in TOY.items():
        assert data[split].dtype == np.int32
        np.testing.assert_array_equal(data[split], expected)


@pytest.mark.parametrize("split", DEBD_SPLITS)
def test_load_debd_one_split(tmp_path, split):
    _write_toy(tmp_path)
    array = load_debd("toy", str(tmp_path), split=split)
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.int32
    np.testing.assert_array_equal(array, TOY[split])


def test_load_debd_single_row_is_2d(tmp_path):
    _write_toy(tmp_path)
    assert load_debd("toy", tmp_path, split="valid").shape == (1, 3)


def test_load_debd_missing_file_names_expected_path(tmp_path):
    _write_toy(tmp_path)
    (tmp_path / "toy.valid.data.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"toy\.valid\.data\.gz"):
        load_debd("toy", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nltcs\.test\.data\.gz"):
        load_debd("nltcs", tmp_path, split="test")


def test_load_debd_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_debd("toy", tmp_path / "nowhere")


@pytest.mark.parametrize("split", ["training", "Test", ""])
def test_load_debd_rejects_bad_split(tmp_path, split):
    _write_toy(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_debd("toy", tmp_path, split=split)


@pytest.mark.parametrize("name", ["", "a/b", "..\\x"])
def test_load_debd_rejects_bad_name(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        load_debd(name, tmp_path)


def test_load_debd_rejects_non_binary_values(tmp_path):
    _write(tmp_path, "toy", "train", "0,2,1\n1,0,1\n")
    with pytest.raises(ValueError, match=r"0/1.*\[2\]"):
        load_debd("toy", tmp_path, split="train")


def test_load_debd_rejects_ragged_rows(tmp_path):
    _write(tmp_path, "toy", "train", "0,1,1\n1,0\n")
    with pytest.raises(ValueError, match=r"toy\.train\.data\.gz"):
        load_debd("toy", tmp_path, split="train")


def test_load_debd_rejects_plain_text_file(tmp_path):
    (tmp_path / "toy.train.data.gz").write_text("0,1\n")
    with pytest.raises(ValueError, match="gzipped"):
        load_debd("toy", tmp_path, split="train")


def test_load_debd_rejects_empty_file(tmp_path):
    _write(tmp_path, "toy", "train", "")
    with pytest.raises(ValueError, match="no data"):
        load_debd("toy", tmp_path, split="train")


def test_load_debd_rejects_mismatched_splits(tmp_path):
    _write_toy(tmp_path)
    _write(tmp_path, "toy", "test", "0,1\n")
    with pytest.raises(ValueError, match="different numbers of variables"):
        load_debd("toy", tmp_path)


@pytest.mark.parametrize(
    ("name", "num_vars", "num_train", "num_valid", "num_test"),
    [("nltcs", 16, 16181, 2157, 3236), ("plants", 69, 17412, 2321, 3482), ("accidents", 111, 12758, 1700, 2551)],
)
def test_load_debd_shared_data(name, num_vars, num_train, num_valid, num_test):
    if not (DEBD_DIR / f"{name}.train.data.gz").is_file():
        pytest.skip(f"DEBD data not found at {DEBD_DIR.resolve()} (shared data directory absent)")
    data = load_debd(name, DEBD_DIR)
    assert {split: array.shape for split, array in data.items()} == {
        "train": (num_train, num_vars),
        "valid": (num_valid, num_vars),
        "test": (num_test, num_vars),
    }
    for array in data.values():
        assert array.dtype == np.int32
        assert set(np.unique(array)) <= {0, 1}


def test_load_digits_split_shapes_and_range():
    split = load_digits_split(test_fraction=0.2, seed=3)
    assert isinstance(split, DigitsSplit)
    x_train, y_train, x_test, y_test = split
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == 360
    assert x_train.shape[1:] == (64,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))


def test_load_digits_split_is_deterministic_and_seeded():
    first, second, other = load_digits_split(seed=0), load_digits_split(seed=0), load_digits_split(seed=1)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.x_train, other.x_train)


def test_load_digits_split_disjoint_and_complete():
    x_train, _, x_test, _ = load_digits_split(normalize=False)
    rows = {tuple(row) for row in np.concatenate([x_train, x_test])}
    from sklearn.datasets import load_digits

    assert rows == {tuple(row) for row in load_digits().data.astype(np.float32)}
    assert x_train.max() == 16.0


def test_load_digits_split_unflattened():
    x_train, _, x_test, _ = load_digits_split(flatten=False)
    assert x_train.shape[1:] == (8, 8) and x_test.shape[1:] == (8, 8)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_load_digits_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=fraction)


def _needs(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path.resolve()} not found (shared data directory absent)")


def _debd_mirror(root: Path, name: str) -> Path:
    """A copy of the local DEBD files in the repository's layout, ``ROOT/NAME/NAME.SPLIT.data`` (uncompressed)."""
    (root / name).mkdir(parents=True)
    for split in DEBD_SPLITS:
        with gzip.open(DEBD_DIR / f"{name}.{split}.data.gz", "rb") as source:
            (root / name / f"{name}.{split}.data").write_bytes(source.read())
    return root


def test_debd_origin_is_the_public_repository():
    assert DEBD_ORIGIN.startswith("https://raw.githubusercontent.com/arranger1044/DEBD/")
    assert OLIVETTI_ORIGIN.startswith("https://")


def test_load_debd_reads_uncompressed_files(tmp_path):
    for split, array in TOY.items():
        (tmp_path / f"toy.{split}.data").write_text("\n".join(",".join(map(str, row)) for row in array) + "\n")
    for split, array in load_debd("toy", tmp_path).items():
        np.testing.assert_array_equal(array, TOY[split])


def test_load_debd_fetches_into_cache_then_reads_the_cache(tmp_path):
    _needs(DEBD_DIR / "nltcs.train.data.gz")
    mirror = _debd_mirror(tmp_path / "mirror", "nltcs")
    cache = tmp_path / "cache"
    fetched = load_debd("nltcs", cache_dir=cache, origin=mirror.as_uri())
    expected = {}
    for split in DEBD_SPLITS:
        with gzip.open(DEBD_DIR / f"nltcs.{split}.data.gz", "rt") as handle:
            expected[split] = np.loadtxt(handle, delimiter=",", dtype=np.int32)
    for split in DEBD_SPLITS:
        np.testing.assert_array_equal(fetched[split], expected[split])
    assert {p.name for p in (cache / "datasets" / "debd").iterdir()} == {f"nltcs.{s}.data" for s in DEBD_SPLITS}
    assert fetched["train"].shape == (16181, 16)

    shutil.rmtree(mirror)  # the origin is gone: the cached copy is read, nothing is fetched
    again = load_debd("nltcs", split="test", cache_dir=cache, origin=mirror.as_uri())
    np.testing.assert_array_equal(again, expected["test"])


def test_load_debd_fetches_only_the_split_asked_for(tmp_path):
    _needs(DEBD_DIR / "nltcs.test.data.gz")
    mirror = _debd_mirror(tmp_path / "mirror", "nltcs")
    load_debd("nltcs", split="valid", cache_dir=tmp_path / "cache", origin=mirror.as_uri())
    assert [p.name for p in (tmp_path / "cache" / "datasets" / "debd").iterdir()] == ["nltcs.valid.data"]


def test_load_debd_unreachable_origin_names_url_and_cache(tmp_path):
    origin = (tmp_path / "no-mirror").as_uri()
    with pytest.raises(OSError, match=r"nltcs\.train\.data.*no-mirror/nltcs/nltcs\.train\.data.*cache.*path"):
        load_debd("nltcs", cache_dir=tmp_path / "cache", origin=origin)


def _olivetti_reference() -> np.ndarray:
    # Independent of the loader: scikit-learn's reading of the same file (columns are column-major 64x64 images).
    faces = scipy.io.loadmat(OLIVETTI_DIR / "olivettifaces.mat")["faces"]
    return np.stack([faces[:, i].reshape(64, 64, order="F") for i in range(faces.shape[1])])


def test_load_olivetti_faces_from_folder():
    _needs(OLIVETTI_DIR / "olivettifaces.mat")
    images, labels = load_olivetti_faces(OLIVETTI_DIR)
    assert images.shape == (400, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, _olivetti_reference())
    np.testing.assert_array_equal(labels, np.arange(400) // 10)
    # Upright faces: the forehead (top rows) is brighter than the chin area's background on average.
    assert images[:, :8].mean() > images[:, -8:].mean() - 40


def test_load_olivetti_faces_fetches_into_cache_with_checksum(tmp_path):
    _needs(OLIVETTI_DIR / "olivettifaces.mat")
    source = OLIVETTI_DIR / "olivettifaces.mat"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    images, _ = load_olivetti_faces(cache_dir=cache, origin=source.resolve().as_uri(), sha256=digest)
    np.testing.assert_array_equal(images, _olivetti_reference())
    assert (cache / "datasets" / "olivetti" / "olivettifaces.mat").read_bytes() == source.read_bytes()
    cached, _ = load_olivetti_faces(cache_dir=cache, origin=(tmp_path / "gone.mat").as_uri(), sha256=digest)
    np.testing.assert_array_equal(cached, images)


def test_load_olivetti_faces_rejects_a_file_with_another_checksum(tmp_path):
    _needs(OLIVETTI_DIR / "olivettifaces.mat")
    origin = (OLIVETTI_DIR / "olivettifaces.mat").resolve().as_uri()
    with pytest.raises(OSError, match=r"olivettifaces\.mat.*corrupted"):
        load_olivetti_faces(cache_dir=tmp_path, origin=origin, sha256="0" * 64)


def test_load_olivetti_faces_missing_or_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"olivettifaces\.mat.*path=None"):
        load_olivetti_faces(tmp_path)
    scipy.io.savemat(tmp_path / "olivettifaces.mat", {"faces": np.zeros((10, 4), np.uint8)})
    with pytest.raises(ValueError, match=r"shape \(4096, 400\).*\(10, 4\)"):
        load_olivetti_faces(tmp_path)
    (tmp_path / "olivettifaces.mat").write_text("not a MATLAB file")
    with pytest.raises(ValueError, match="Could not read"):
        load_olivetti_faces(tmp_path)
