"""examples/debd.py --structure hclt: a seconds-long run on nltcs (skipped without the shared DEBD data)."""

import math
from pathlib import Path

import pytest

from tests.example_loader import load_example

REPO = Path(__file__).resolve().parents[2]
DEBD_DIRS = [REPO.parent / "shared" / "data" / "debd", REPO.parent.parent / "shared" / "data" / "debd"]


def test_debd_quick_hclt(capsys):
    directory = next((path for path in DEBD_DIRS if (path / "nltcs.train.data.gz").is_file()), None)
    if directory is None:
        pytest.skip(f"DEBD nltcs not found in {[str(path) for path in DEBD_DIRS]}")
    argv = ["--quick", "--structure", "hclt", "--num-latents", "3", "--datasets", "nltcs", "--data-dir", str(directory)]
    results = load_example("debd").main(argv)
    out = capsys.readouterr().out
    assert "structure='hclt', num_latents=3" in out and "| nltcs | 16 |" in out
    nltcs = results["nltcs"]
    for split in ("train", "valid", "test", "chow_liu_test"):
        assert math.isfinite(nltcs[split]) and nltcs[split] < 0.0
    assert nltcs["num_params"] == 16 * 2 * 3 + 15 * 3 * 3 + 3  # leaf sums, tree edges, root
