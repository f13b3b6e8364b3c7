"""Smoke tests of the example scripts: they run end to end with tiny models (``--quick``)."""

import math
from pathlib import Path

import pytest

from tests.example_loader import load_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEBD_DIR = REPO / ".." / "shared" / "data" / "debd"


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


def test_debd_missing_data_dir_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nltcs\.train\.data\.gz"):
        _load("debd").main(["--quick", "--datasets", "nltcs", "--data-dir", str(tmp_path)])


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
