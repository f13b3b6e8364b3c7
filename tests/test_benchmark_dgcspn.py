"""Smoke test: benchmarks/dgcspn.py runs at tiny sizes and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "dgcspn.py"


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_dgcspn_benchmark_quick():
    # In one process: tf.function and jit_compile rows, with the XLA check against tf.function.
    out = run("--quick")
    assert "| batch | sum op | mode | forward ms | train step ms |" in out
    assert "| 4 | hard-em | tf.function |" in out
    assert "| 4 | hard-em | jit_compile |" in out
    assert "FAILED" not in out
    assert "README DGC-SPN: 1,214,498" in out


def test_dgcspn_benchmark_worker_subprocess():
    # The default path: each configuration measured in a fresh process.
    out = run("--quick", "--subprocess", "--modes", "plain", "--ops", "grad")
    assert "| 4 | grad | tf.function |" in out
    assert "FAILED" not in out
