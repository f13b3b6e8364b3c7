"""Smoke tests of the example scripts: they run end to end with tiny models (``--quick``)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.example_loader import load_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
SHARED_DATA = Path(os.environ.get("LIBSPN_KERAS_SHARED_DATA", REPO / ".." / "shared" / "data"))
DEBD_DIR = SHARED_DATA / "debd"


_load = load_example


def test_demo_quick(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = _load("demo").main(["--quick", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test accuracy" in out and "log-likelihood per image" in out
    picture = tmp_path / "digits_demo.png"
    assert result["picture"] == picture
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(picture.resolve()) in out
    assert math.isfinite(result["density"]["train_ll"]) and math.isfinite(result["density"]["test_ll"])
    assert 0.0 <= result["classifier"]["accuracy"] <= 1.0


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
        ("debd.py", ["--datasets", "nltcs"], "nltcs.train.data.gz"),
        ("completion.py", ["--dataset", "olivetti"], "olivettifaces.mat"),
        ("dgcspn_completion.py", [], "olivettifaces.mat"),
    ],
)
def test_bad_data_dir_fails_before_tensorflow_starts(tmp_path, script, args, named):
    command = [sys.executable, "-c", RUN_AS_MAIN, str(EXAMPLES / script), *args, "--data-dir", str(tmp_path / "no")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.split() == ["exit", "2", "False"], result.stderr[-2000:]
    assert named in result.stderr and "--data-dir" in result.stderr


@pytest.mark.slow
def test_demo_full_run_reaches_reported_quality(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    result = _load("demo").main(["--output-dir", str(tmp_path)])
    assert result["classifier"]["accuracy"] > 0.85
    density = result["density"]
    assert density["test_ll"] > density["baseline_ll"] + 20.0  # far better than independent Gaussians


@pytest.mark.slow
def test_debd_nltcs_close_to_published():
    if not (DEBD_DIR / "nltcs.train.data.gz").is_file():
        pytest.skip(f"DEBD data not found at {DEBD_DIR.resolve()} (shared data directory absent)")
    results = _load("debd").main(["--datasets", "nltcs", "--epochs", "10", "--data-dir", str(DEBD_DIR)])
    assert results["nltcs"]["test"] > -6.3  # published RAT-SPN: -6.01
