"""examples/debd.py --structure hclt and learnspn: seconds-long runs on nltcs (skipped without the shared DEBD data)."""

import math
from pathlib import Path

import numpy as np
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


def test_debd_pseudocount_is_converted_to_the_counts_of_each_update():
    # --pseudocount is in samples per update; the optimizer's counts are averages over a batch (mini-batch phase)
    # or over the whole training split (full-batch phase, fit_full_batch).
    debd = load_example("debd")
    train = np.random.default_rng(0).integers(0, 2, (120, 4))
    config = debd.Config(structure="hclt", num_latents=2, batch_size=50, pseudocount=2.0)
    _, optimizer = debd.build_model(train, debd.chow_liu_tree(train), config, seed=0)
    assert optimizer.pseudocount == 2.0 / 50 and optimizer.normalized_update
    assert debd.online_em(0.5, len(train), 2.0, accumulate_batches=3).pseudocount == 2.0 / 120


def test_debd_restarts_keep_the_run_of_best_validation_log_likelihood(capsys, monkeypatch):
    debd = load_example("debd")
    valid = {3: -7.0, 4: -6.5, 5: -6.9}  # seed -> valid LL of a stubbed run: seed 4 must be kept

    def fake_fit(name, data_dir, config, seed, verbose=0):
        return {
            "train": -6.0,
            "valid": valid[seed],
            "test": valid[seed] - 0.1,
            "chow_liu_test": -7.0,
            "num_vars": 16,
            "num_params": 10,
            "epochs_run": 1,
            "best_epoch": 1,
            "seconds": 0.0,
        }

    monkeypatch.setattr(debd, "fit_dataset", fake_fit)
    monkeypatch.setattr(debd.data_paths, "debd_data_dir", lambda parser, data_dir, names: None)
    results = debd.main(["--structure", "hclt", "--datasets", "nltcs", "--seed", "3", "--restarts", "3"])
    assert results["nltcs"]["seed"] == 4 and results["nltcs"]["valid"] == -6.5
    out = capsys.readouterr().out
    assert "nltcs: kept seed 4 of 3 restarts (best valid -6.500): test -6.600" in out
    assert "mean -6.9000, min -7.100, max -6.600" in out


def test_debd_rejects_fewer_than_one_restart():
    debd = load_example("debd")
    with pytest.raises(SystemExit):
        debd.parse_args(["--restarts", "0"])


def test_debd_quick_learnspn(capsys):
    directory = next((path for path in DEBD_DIRS if (path / "nltcs.train.data.gz").is_file()), None)
    if directory is None:
        pytest.skip(f"DEBD nltcs not found in {[str(path) for path in DEBD_DIRS]}")
    argv = ["--quick", "--structure", "learnspn", "--datasets", "nltcs", "--data-dir", str(directory)]
    results = load_example("debd").main(argv)
    out = capsys.readouterr().out
    assert "structure='learnspn'" in out and "min_instances_slice=100" in out and "| nltcs | 16 |" in out
    assert "nltcs: the learned SPN has valid log-likelihood" in out
    nltcs = results["nltcs"]
    for split in ("train", "valid", "test", "chow_liu_test"):
        assert math.isfinite(nltcs[split]) and nltcs[split] < 0.0
    assert nltcs["epochs_run"] == 2 and 0 <= nltcs["best_epoch"] <= 2  # one mini-batch, one full-batch epoch
