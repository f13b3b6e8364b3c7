"""Smoke test: the benchmark scripts run at tiny sizes, so they never rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ratspn_em_benchmark_quick():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ratspn_em.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| libspn-keras (online soft EM) |" in result.stdout
    assert "forward pass / floor:" in result.stdout
