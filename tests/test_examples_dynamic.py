"""Smoke test of the dynamic SPN sequence example (``--quick``)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dynamic_spn_sequences.py"


def _load():
    spec = importlib.util.spec_from_file_location("example_dynamic_spn_sequences", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_dynamic_spn_sequences_quick(capsys):
    results = _load().main(["--quick", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "| true HMM (forward algorithm)" in out and "online EM" in out
    # The dynamic SPN with the HMM's weights is the HMM: same likelihood as the forward algorithm.
    assert results["oracle_max_abs_error"] < 1e-3
    truth = results["true HMM (forward algorithm)"]
    assert math.isclose(results["dynamic SPN with the true HMM weights"], truth, rel_tol=1e-5)
    assert all(math.isfinite(v) and v < 0.0 for k, v in results.items() if k != "oracle_max_abs_error")


def test_dynamic_spn_sequences_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        _load().main(["--quick", "--num-states", "0"])
