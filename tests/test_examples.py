"""Smoke tests of the example scripts: they run end to end with tiny models (``--quick``)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.example_loader import load_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
SHARED_DATA = Path(os.environ.get("LIBSPN_KERAS_SHARED_DATA", REPO / ".." / "shared" / "data"))
DEBD_DIR = SHARED_DATA / "debd"


_load = load_example


def test_demo_quick(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # The demo makes TensorFlow's ops deterministic for the whole process; keep this test process as it is.
        monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: None)
    result = _load("demo").main(["--quick", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test accuracy" in out and "log-likelihood per image" in out
    picture = tmp_path / "digits_demo.png"
    assert result["picture"] == picture
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(picture.resolve()) in out
    assert math.isfinite(result["density"]["train_ll"]) and math.isfinite(result["density"]["test_ll"])
    assert result["density"]["test_ll"] < 0.0  # a log-probability of discrete images
    assert 0.0 <= result["classifier"]["accuracy"] <= 1.0


def test_demo_histogram_baseline_matches_a_brute_force_count():
    demo = _load("demo")
    rng = np.random.default_rng(0)
    train = rng.integers(0, 17, size=(50, 64)) * (rng.random((50, 64)) < 0.5)
    test = rng.integers(0, 17, size=(7, 64))
    expected = 0.0
    for image in test:
        for pixel, level in enumerate(image):
            count = sum(1 for row in train if row[pixel] == level)
            expected += math.log((count + 1.0) / (len(train) + 17.0))
    assert demo.histogram_log_likelihood(train, test) == pytest.approx(expected / len(test), rel=1e-12)
    assert demo.bits_per_pixel(-64 * math.log(2.0)) == pytest.approx(1.0)
    np.testing.assert_array_equal(demo.pixel_levels(np.array([[0.0, 0.5, 1.0, 15 / 16]])), [[0, 8, 16, 15]])


def test_demo_rejects_bad_epochs():
    with pytest.raises(SystemExit):
        _load("demo").main(["--quick", "--epochs", "0"])


def test_debd_quick(capsys):
    if not (DEBD_DIR / "nltcs.train.data.gz").is_file():
        pytest.skip(f"DEBD data not found at {DEBD_DIR.resolve()} (shared data directory absent)")
    results = _load("debd").main(["--quick", "--datasets", "nltcs", "--data-dir", str(DEBD_DIR)])
    out = capsys.readouterr().out
    assert "| nltcs | 16 |" in out
    nltcs = results["nltcs"]
    for split in ("train", "valid", "test"):
        assert math.isfinite(nltcs[split]) and nltcs[split] < 0.0  # log-probabilities of binary vectors


def test_debd_missing_data_dir_names_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _load("debd").main(["--quick", "--datasets", "nltcs", "--data-dir", str(tmp_path)])
    assert f"{tmp_path}/nltcs.train.data.gz" in capsys.readouterr().err


def test_debd_without_data_dir_uses_shared_data_or_the_cache(tmp_path, monkeypatch):
    debd = _load("debd")
    monkeypatch.setattr(debd.data_paths, "SHARED_DATA", tmp_path)  # holds no DEBD files: the loader's cache is used
    (tmp_path / "debd").mkdir()
    assert debd.parse_args(["--datasets", "nltcs"]).data_dir is None
    for split in ("train", "valid", "test"):
        (tmp_path / "debd" / f"nltcs.{split}.data").write_text("0,1\n")  # uncompressed, as in the DEBD repository
    assert debd.parse_args(["--datasets", "nltcs"]).data_dir == tmp_path / "debd"
    assert debd.parse_args(["--datasets", "nltcs", "plants"]).data_dir is None  # plants is missing there


# Runs a script as __main__ and reports how it exited and whether TensorFlow had been imported by then.
RUN_AS_MAIN = """
import os, runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as python SCRIPT does
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print("exit", exit.code, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize(
    ("script", "args", "named"),
    [
        ("debd.py", ["--datasets", "nltcs", "--data-dir", "NO"], "nltcs.train.data.gz"),
        ("completion.py", ["--dataset", "olivetti", "--data-dir", "NO"], "olivettifaces.mat"),
        ("dgcspn_completion.py", ["--data-dir", "NO"], "olivettifaces.mat"),
        ("demo.py", ["--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_bad_arguments_fail_before_tensorflow_starts(tmp_path, script, args, named):
    args = [str(tmp_path / "no") if arg == "NO" else arg for arg in args]
    command = [sys.executable, "-c", RUN_AS_MAIN, str(EXAMPLES / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.split() == ["exit", "2", "False"], result.stderr[-2000:]
    assert named in result.stderr


@pytest.mark.slow
def test_demo_full_run_reaches_reported_quality(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = _load("demo").main(["--output-dir", str(tmp_path)])
    assert result["classifier"]["accuracy"] > 0.93  # README: 94.0-96.7% over seeds 0-4
    density = result["density"]
    assert density["test_ll"] > density["baseline_ll"] + 3.0  # README: 3.6-6.1 nats better than the histograms


@pytest.mark.slow
def test_demo_prints_the_same_numbers_twice(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    outputs = []
    for _ in range(2):
        command = [sys.executable, str(EXAMPLES / "demo.py"), "--quick", "--epochs", "2", "--output-dir", str(tmp_path)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=True)
        outputs.append([line for line in result.stdout.splitlines() if "nats" in line or "accuracy" in line])
    assert len(outputs[0]) == 5 and outputs[0] == outputs[1]


@pytest.mark.slow
def test_debd_nltcs_close_to_published():
    if not (DEBD_DIR / "nltcs.train.data.gz").is_file():
        pytest.skip(f"DEBD data not found at {DEBD_DIR.resolve()} (shared data directory absent)")
    results = _load("debd").main(["--datasets", "nltcs", "--epochs", "10", "--data-dir", str(DEBD_DIR)])
    assert results["nltcs"]["test"] > -6.3  # published RAT-SPN: -6.01
