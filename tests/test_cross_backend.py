"""``.keras`` files are interchangeable between the TensorFlow and the JAX backend.

A model saved under one backend loads under the other and gives the same log-likelihoods (to float32 tolerance):
the test saves models under the backend it runs on, loads them in a subprocess under the other backend, which
saves its own models in turn, and loads those back here. So every run checks both directions (TF -> JAX and
JAX -> TF). The models, their training and the checks are in ``tests/cross_backend_models.py``: a RAT-SPN over
normal leaves and one over indicator leaves, a DGC-SPN (``Conv2DProduct``, ``Local2DSum``, ``Conv2DSum``,
``SpatialToRegions``), an HCLT, a LearnSPN model (``GatherScopes``, ``SumProductTree``), and RAT-SPNs with the soft
and hard EM sum ops trained by ``OnlineExpectationMaximization``; each is trained a few steps before it is saved,
and the loaded model's ``predict``, eager call, compiled loss, optimizer step count and one more ``fit`` step are
checked.

The default suite checks the quickest model; the whole set (a few minutes of XLA compilation on JAX, on 2 CPU
cores) is ``slow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tests import cross_backend_models

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(cross_backend_models.__file__)
OTHER_BACKEND = {"tensorflow": "jax", "jax": "tensorflow"}
QUICK_CASES = ["rat_spn_indicator"]


def _round_trip(tmp_path: Path, cases: list[str], capsys) -> None:
    here = keras.backend.backend()
    if here not in OTHER_BACKEND:
        pytest.skip(f"cross-backend files are tested between TensorFlow and JAX, not on {here}")
    other = OTHER_BACKEND[here]
    cross_backend_models.save(tmp_path / "in", cases)

    env = {
        **os.environ,
        "KERAS_BACKEND": other,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # the worktree's libspn_keras, not an installed copy
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "both", str(tmp_path), *cases],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    report = "\n".join(line for line in result.stdout.splitlines() if line.startswith(("CASE", "SAVED")))
    assert result.returncode == 0, f"{here} -> {other} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert report.count(" OK ") == len(cases), report

    failures = cross_backend_models.load(tmp_path / "out", cases)
    out = capsys.readouterr().out
    assert failures == 0, f"{other} -> {here} failed:\n{out[-6000:]}"
    assert out.count(" OK ") == len(cases), out


def test_keras_file_loads_under_the_other_backend(tmp_path, capsys):
    _round_trip(tmp_path, QUICK_CASES, capsys)


@pytest.mark.slow
def test_every_model_kind_loads_under_the_other_backend(tmp_path, capsys):
    _round_trip(tmp_path, list(cross_backend_models.CASES), capsys)
