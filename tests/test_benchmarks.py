"""Smoke test: the benchmark scripts run at tiny sizes, so they never rot."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.backend_utils import backend

REPO = Path(__file__).resolve().parents[1]
RATSPN_EM = REPO / "benchmarks" / "ratspn_em.py"


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratspn_em_benchmark_quick():
    result = subprocess.run(
        [sys.executable, str(RATSPN_EM), "--quick", "--profile-layers"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| libspn-keras (online soft EM, normalized_update) |" in result.stdout
    assert "| floor: sum-layer matmuls only |" in result.stdout
    assert "forward pass / floor:" in result.stdout
    assert "| floor + outer products: the matmuls and the products they read |" in result.stdout
    assert "floor + outer products / floor:" in result.stdout
    assert "| libspn-keras forward under XLA (jit_compile=True) |" in result.stdout
    assert "libspn-keras: one model.fit call for all epochs" in result.stdout
    assert "intra-op threads:" in result.stdout
    assert "| flat_to_regions | (111, 2, 1) |" in result.stdout  # --profile-layers: one row per step
    assert "dense_product + dense_sum_1 |" in result.stdout  # a product and the sum contracting it: one step
    if importlib.util.find_spec("spflow") is None:
        assert "| SPFlow | not installed (pip install spflow) |" in result.stdout
    else:
        assert "| SPFlow Einet (SPFlow EM step + online interpolation) |" in result.stdout
        assert "libspn-keras vs SPFlow:" in result.stdout


def fake_result(params: int) -> dict:
    return {
        "params": params,
        "epoch_s": [3.0, 2.0, 2.0],
        "fit_return_s": 0.1,
        "fit_rows": 300,
        "forward_s": 0.5,
        "forward_batch": 100,
        "floor_s": 0.1,
        "floor_ratio": 5.0,
        "products_floor_s": 0.2,
        "products_ratio": 2.0,
        "xla": {"forward_s": 0.25, "floor_s": 0.1, "products_floor_s": 0.125, "ratio": 2.5, "products_ratio": 1.25},
        "peak_mb": 100.0,
        "test_ll": -30.0,
        "source": "fake",
        "train_rows": 300,
        "test_rows": 60,
        "num_vars": 111,
        "device": "CPU",
        "library": "fake",
    }


def test_ratspn_em_reports_a_missing_peer(monkeypatch, capsys):
    script = load_script(RATSPN_EM)
    monkeypatch.setattr(script, "installed", lambda name: False)
    monkeypatch.setattr(script, "run_worker", lambda name, data_file: (fake_result(10), ""))
    monkeypatch.setattr(sys, "argv", ["ratspn_em.py", "--quick"])
    script.main()
    out = capsys.readouterr().out
    assert "| SPFlow | not installed (pip install spflow) | - | - | - | - |" in out
    assert "libspn-keras vs SPFlow" not in out


def test_ratspn_em_ratio_line(monkeypatch, capsys):
    script = load_script(RATSPN_EM)
    results = {"libspn-keras": fake_result(10), "spflow": {**fake_result(9), "epoch_s": [9.0, 8.0], "forward_s": 1.0}}
    monkeypatch.setattr(script, "installed", lambda name: True)
    monkeypatch.setattr(script, "run_worker", lambda name, data_file: (results[name], ""))
    monkeypatch.setattr(sys, "argv", ["ratspn_em.py", "--quick", "--spflow-em", "autograd"])
    script.main()
    out = capsys.readouterr().out
    assert "| SPFlow Einet (autograd E-step + online interpolation) | 9 | 8.00 | 100 | 100 | -30.000 |" in out
    assert "libspn-keras vs SPFlow: 4.0x faster per epoch, forward 2.0x" in out
    assert "| floor + outer products: the matmuls and the products they read | - | - | 500 | - | - |" in out
    assert "| floor + outer products: the matmuls and the products they read under XLA | - | - | 800 | - | - |" in out
    assert "forward pass / floor: 5.00x; both under XLA: 2.50x" in out
    assert "floor + outer products / floor: 2.00x; both under XLA: 1.25x" in out


@pytest.mark.parametrize("num_factors", [1, 2, 3])
def test_ratspn_em_outer_products_match_numpy(num_factors):
    """The "floor + outer products" row forms the products the model's sums read: row-wise, first factor slowest."""
    script = load_script(RATSPN_EM)
    rng = np.random.default_rng(num_factors)
    factors = [rng.uniform(size=(3, 5, 4)).astype("float32") for _ in range(num_factors)]
    expected = factors[0]
    for factor in factors[1:]:
        expected = np.einsum("gri,grj->grij", expected, factor).reshape(3, 5, -1)
    np.testing.assert_allclose(script.outer_products(factors), expected, rtol=1e-6)


def test_ratspn_em_products_floor_does_the_floors_multiply_adds():
    """The "floor + outer products" operands have the floor's shapes, the products formed from a product's factors."""
    script = load_script(RATSPN_EM)
    model = script.build(20, depth=2, reps=2, dists=3, sums=3)
    model(np.zeros((4, 20), "float32"))
    floor = script.floor_operands(model, 4)
    products = script.products_floor_operands(model, 4)
    # leaf sum over 2 indicators, a sum over the 3 x 3 products of a DenseProduct(2)
    assert [len(factors) for factors, _ in products] == [1, 2]
    assert [tuple(a.shape) for a, _ in floor] == [(40, 4, 2), (4, 4, 9)]
    for (a, b), (factors, weights) in zip(floor, products, strict=True):
        assert script.outer_products(factors).shape == a.shape
        assert weights.shape == b.shape
    assert np.isfinite(float(script.products_floor_function(model, 4)()))


def test_ratspn_em_spflow_autograd_estep_matches_spflow_em():
    """The autograd E-step gives SPFlow's own EM update, and the online interpolation moves 5% of the way."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("spflow")
    import copy

    from spflow.learn import expectation_maximization_batched

    script = load_script(RATSPN_EM)
    torch.manual_seed(0)
    native = script.build_spflow(20, depth=2, reps=3, dists=4, sums=5)
    autograd, online = copy.deepcopy(native), copy.deepcopy(native)
    script.spflow_autograd_estep(autograd)
    interpolation = script.OnlineInterpolation(online, 0.05)
    before = interpolation.snapshot()
    batch = (torch.rand(50, 20) < 0.3).float()
    for model in (native, autograd, online):
        expectation_maximization_batched(model, [batch], num_epochs=1)
    interpolation.interpolate(before)

    def as_probabilities(interp, values):
        return [v.exp() if kind == "log_weights" else v for (_, kind), v in zip(interp.entries, values, strict=True)]

    def probabilities(model):
        interp = script.OnlineInterpolation(model, 0.05)
        return as_probabilities(interp, interp.snapshot())

    old = as_probabilities(interpolation, before)
    assert len(old) == 4  # Bernoulli leaves, two EinsumLayers, repetition mixing
    for full, by_autograd, old_value, new_value in zip(
        probabilities(native), probabilities(autograd), old, probabilities(online), strict=True
    ):
        torch.testing.assert_close(by_autograd, full, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(new_value, 0.95 * old_value + 0.05 * full, atol=1e-5, rtol=1e-4)


GPU_BENCH = REPO / "benchmarks" / "gpu" / "bench.py"


@pytest.mark.requires_jax
def test_gpu_benchmark_quick(tmp_path):
    """``benchmarks/gpu/bench.py --quick`` (JAX on CPU, peers off) prints a full table and writes it."""
    data_dir = REPO.parent / "shared" / "data" / "debd"
    result = subprocess.run(
        [sys.executable, str(GPU_BENCH), "--quick", "--peers", "none", "--data-dir", str(data_dir)]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "gpu_bench.md").read_text()
    for label in ("| RAT-SPN | 50 | libspn-keras (JAX) |", "| RAT-SPN | 50 | JAX matmul floor", "| HCLT K=4 | 50 |"):
        assert label in table, table
    assert "DGC-SPN step (hard-em)" in table and "failed" not in table, table
    rows = {row.split("|")[3].strip(): row for row in table.splitlines() if "libspn-keras" in row}
    assert rows, table


def test_jax_xla_flags_benchmark_quick():
    script = REPO / "benchmarks" / "jax_xla_flags.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--flags=", "--flags=--xla_no_such_flag=1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    none_row = next(line for line in lines if line.startswith("| (none) |"))
    floor, forward = (float(cell.replace(",", "")) for cell in none_row.strip("|").split("|")[1:3])
    assert floor > 0 and forward > 0
    assert any(line.startswith("| `--xla_no_such_flag=1` | failed (") for line in lines), result.stdout


def test_cpu_threads_benchmark_quick():
    script = REPO / "benchmarks" / "cpu_threads.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--backends", backend(), "--cores", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {backend()} | 1 |"))
    floor, speed_up, forward = (cell.strip() for cell in row.strip("|").split("|")[2:5])
    assert float(floor.replace(",", "")) > 0 and speed_up == "1.00x" and float(forward.replace(",", "")) > 0


def test_cpu_settings_benchmark_quick():
    script = REPO / "benchmarks" / "cpu_settings.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--quick",
            "--backends",
            backend(),
            "--settings",
            "defaults",
            "malloc keeps memory",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for setting in ("defaults", "malloc keeps memory"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {setting} | {backend()} |"))
        train_step, forward, floor = (float(cell) for cell in row.strip("|").split("|")[2:5])
        assert train_step > 0 and forward > 0 and floor > 0, row


def test_cpu_settings_worker_env():
    cpu_settings = load_script(REPO / "benchmarks" / "cpu_settings.py")
    setting = cpu_settings.SETTINGS["malloc keeps memory, no YNNPACK"]
    jax_env, tf_env = cpu_settings.worker_env(setting, "jax"), cpu_settings.worker_env(setting, "tensorflow")
    assert jax_env["GLIBC_TUNABLES"] == tf_env["GLIBC_TUNABLES"] == cpu_settings.KEEP_MEMORY
    assert "--xla_cpu_experimental_ynn_fusion_type=" in jax_env["XLA_FLAGS"]
    # TensorFlow's own XLA would abort on a flag it does not know: it never gets the JAX-only flags.
    assert tf_env.get("XLA_FLAGS", "") == os.environ.get("XLA_FLAGS", "")
    assert jax_env["KERAS_BACKEND"] == "jax" and tf_env["KERAS_BACKEND"] == "tensorflow"


def test_selection_benchmark_quick():
    # In this process: the script checks that weighted_argmax gives the argmax of the logits in every mode.
    rows = load_script(REPO / "benchmarks" / "selection.py").main(["--quick", "--repeats", "1"])
    assert {row["shape"] for row in rows} == {"small", "chunked"}
    assert all(row["reference_ms"] > 0 and row["ours_ms"] > 0 for row in rows)
