#!/usr/bin/env bash
# The GPU benchmark on the lent GPU machine (python3 with JAX + CUDA, PyTorch and Triton; no network).
# Carried there: the repository, wheels under .whl/ (keras, namex, optree, plotly, pyjuice, spflow and its
# pure-Python needs, see benchmarks/gpu/README.md) and the DEBD accidents files under .data/debd/.
# Writes the table to $OUT/gpu_bench.md. Usage: bash benchmarks/gpu/run.sh [bench.py options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PWD}"
else
    export PYTHONPATH="${PWD}"
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import jax; d = jax.devices(); print('JAX devices:', d); assert d[0].platform == 'gpu', 'JAX sees no GPU'"
data_dir=".data/debd"
[ -d "$data_dir" ] || data_dir="../shared/data/debd"
python3 benchmarks/gpu/bench.py --data-dir "$data_dir" --out "${OUT:-benchmarks/gpu/out}" "$@"
