"""Smoke tests of the DGC-SPN examples (``--quick``) and of their notebook twins."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from tests.example_loader import load_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
OLIVETTI_DIR = Path(os.environ.get("LIBSPN_KERAS_SHARED_DATA", REPO / ".." / "shared" / "data")) / "olivetti"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SCRIPTS = ("dgcspn_classification", "dgcspn_completion")


_load = load_example


def _require_olivetti():
    if not (OLIVETTI_DIR / "olivettifaces.mat").is_file():
        pytest.skip(f"Olivetti faces not found at {OLIVETTI_DIR.resolve()} (shared data directory absent)")


def test_classification_quick(tmp_path, capsys):
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not found in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    result = _load("dgcspn_classification").main(
        ["--quick", "--dataset", "fashion-mnist", "--output-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert result["dataset"] == "fashion-mnist"
    assert "Test accuracy" in out and "90.74%" in out
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["report"].is_file()


def test_classification_quick_on_digits(tmp_path, capsys):
    # The fallback data set, 8x8 images: one strided product instead of two.
    pytest.importorskip("sklearn")
    result = _load("dgcspn_classification").main(["--quick", "--dataset", "digits", "--output-dir", str(tmp_path)])
    assert result["dataset"] == "digits"
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert "Test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("name", SCRIPTS)
def test_rejects_bad_epochs(name):
    with pytest.raises(SystemExit):
        _load(name).main(["--quick", "--epochs", "0"])


def test_completion_quick(tmp_path, capsys):
    _require_olivetti()
    pytest.importorskip("matplotlib")
    result = _load("dgcspn_completion").main(
        ["--quick", "--data-dir", str(OLIVETTI_DIR), "--output-dir", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "Paper, Table 1" in out and "735" in out and "oracle" in out
    assert result["picture"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for model in result["results"].values():
        for method in ("posterior", "mpe"):
            for statistics in ("estimated", "observed half", "oracle"):
                for half in ("bottom", "left"):
                    assert math.isfinite(model["mse"][method][statistics][half])
                    assert 0.0 < model["mse"][method][statistics][half] < 255.0**2


def test_completion_statistics_ignore_the_hidden_half():
    # The fair normalization statistics of a test image must not depend on its hidden pixels.
    completion = _load("dgcspn_completion")
    rng = np.random.default_rng(0)
    train, test = rng.uniform(0, 255, (40, 8, 8)), rng.uniform(0, 255, (5, 8, 8))
    for half in ("bottom", "left"):
        mask_train, mask_test = completion.half_mask(train.shape, half), completion.half_mask(test.shape, half)
        altered = np.where(mask_test, test, rng.uniform(0, 255, test.shape))
        for a, b in zip(
            completion.estimate_full_stats(train, test, mask_train, mask_test),
            completion.estimate_full_stats(train, altered, mask_train, mask_test),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(
            completion.masked_stats(test, mask_test)[0], completion.masked_stats(altered, mask_test)[0]
        )


@pytest.mark.parametrize("name", SCRIPTS)
def test_notebook_twin_has_the_script_code(name):
    # Regenerate with: python examples/make_notebooks.py examples/<name>.py
    make_notebooks = _load("make_notebooks")
    expected = make_notebooks.script_cells((EXAMPLES / f"{name}.py").read_text())
    cells = json.loads((EXAMPLES / f"{name}.ipynb").read_text())["cells"]
    assert [(cell["cell_type"], "".join(cell["source"])) for cell in cells] == expected
