"""Test configuration: the Keras backend (TensorFlow unless ``KERAS_BACKEND`` says otherwise), quiet logs,
deterministic seeds, and the markers of backend-specific tests.

The suite runs on the TensorFlow and on the JAX backend (``KERAS_BACKEND=jax python -m pytest``). Tests of what only
one backend has (``tf.function`` graph assertions, ``tf.data``, ``tf.distribute``, ``GradientTape`` behaviour,
TensorFlow's memory) carry ``@pytest.mark.requires_tensorflow`` (or ``requires_jax``) and are skipped elsewhere.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: XLA flags for the JAX test run: the suite's small networks compile far more often than they run (eager JAX
#: compiles each operation once per shape), so cheaper CPU code generation makes the run about a quarter faster.
#: They only trade run time of the compiled code for compile time; ``XLA_FLAGS`` set by the caller come first.
JAX_TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

if os.environ["KERAS_BACKEND"] == "jax":
    if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {JAX_TEST_XLA_FLAGS}".strip()

    # JAX computes in 32 bits unless told otherwise; the float64 tests (``float64``, ``floatx``) need 64 bits.
    import jax

    jax.config.update("jax_enable_x64", True)
    # A compilation cache on disk, shared by the pytest-xdist workers (they inherit the directory from the
    # controller, which imports this file first) and by later runs: the workers compile many of the same small
    # programs, and the cache makes the run about a fifth faster even when it starts empty.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "libspn-keras-tests-jax"))
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.covering import pairwise_subset  # noqa: E402

#: marker -> the backend its tests need
BACKEND_MARKERS = {"requires_tensorflow": "tensorflow", "requires_jax": "jax"}


def pytest_report_header(config):
    return f"Keras backend: {keras.backend.backend()} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})"


#: Tests known to fail on JAX: node-id prefix -> what fails. Marked xfail (not strict) on JAX only,
#: so that they are reported, not hidden; remove an entry once it is fixed.
KNOWN_JAX_FAILURES: dict[str, str] = {}


def _same_test_in_mode(item: pytest.Item, mode: str) -> str | None:
    """The node id of ``item`` with its ``mode`` parameter set to ``mode``, or ``None`` if it has no such parameter."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("mode") != "function":
        return None
    name, _, ids = item.nodeid.partition("[")
    return f"{name}[{'-'.join(mode if part == 'function' else part for part in ids.rstrip(']').split('-'))}]"


def _read_slow_list(backend: str) -> frozenset[str]:
    """The node ids listed in ``tests/{backend}_slow.txt`` (none if there is no such file)."""
    path = Path(__file__).parent / f"{backend}_slow.txt"
    if not path.exists():
        return frozenset()
    return frozenset(
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


#: Tests marked ``slow`` on one backend only (``tests/jax_slow.txt``, ``tests/tensorflow_slow.txt`` say how they
#: were measured), so that the default run of each backend stays under the 15 minutes it may take on 2 cores.
SLOW_ON = {backend: _read_slow_list(backend) for backend in ("jax", "tensorflow")}


def _mark_beyond_pairwise_slow(items):
    """Mark ``slow`` the parametrizations of ``@pytest.mark.pairwise`` tests beyond a pairwise covering subset.

    Parametrizations skipped on this backend are left out of the grid, so the pairs are covered by tests that run.
    """
    grids: dict[str, list] = {}
    for item in items:
        runs = item.get_closest_marker("skip") is None
        if runs and item.get_closest_marker("pairwise") is not None and hasattr(item, "callspec"):
            grids.setdefault(item.nodeid.partition("[")[0], []).append(item)
    for grid in grids.values():
        combinations = [[(name, repr(value)) for name, value in sorted(item.callspec.params.items())] for item in grid]
        keep = set(pairwise_subset(combinations))
        for index, item in enumerate(grid):
            if index not in keep:
                item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    current = keras.backend.backend()
    node_ids = {item.nodeid for item in items}
    slow = SLOW_ON.get(current, frozenset())
    for item in items:
        if item.nodeid in slow or item.nodeid.partition("[")[0] in slow:
            item.add_marker(pytest.mark.slow)
        if current == "jax":
            # A "function" (traced) variant is jax.jit on JAX (tests/backend_utils.py), the very call its "jit"
            # sibling makes: run it once.
            sibling = _same_test_in_mode(item, "jit")
            if sibling in node_ids:
                item.add_marker(pytest.mark.skip(reason=f"on JAX a traced function is jax.jit: same as {sibling}"))
            for prefix, reason in KNOWN_JAX_FAILURES.items():
                if item.nodeid.startswith(prefix):
                    item.add_marker(pytest.mark.xfail(reason=f"known JAX failure (issue 19): {reason}", strict=False))
        for marker, needed in BACKEND_MARKERS.items():
            if needed != current and item.get_closest_marker(marker) is not None:
                item.add_marker(
                    pytest.mark.skip(reason=f"{needed}-specific test (marked {marker}); the backend is {current}")
                )
    _mark_beyond_pairwise_slow(items)


@pytest.fixture
def backend():
    """The name of the Keras backend the tests run on (``"tensorflow"``, ``"jax"``)."""
    return keras.backend.backend()


@pytest.fixture(autouse=True)
def _seed_and_floatx():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    floatx = keras.config.floatx()
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def _use_float_dtype(dtype: str) -> str:
    # Keras caches the global dtype policy on first use, so layers only follow floatx if the policy is set too.
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    return dtype


@pytest.fixture(params=["float32", "float64"])
def floatx(request):
    """Run a test in float32 and in float64 (layers created inside the test use that dtype)."""
    return _use_float_dtype(request.param)


@pytest.fixture
def float64():
    """Run a test in float64 (layers created inside the test use float64)."""
    return _use_float_dtype("float64")


@pytest.fixture(params=["normalized-weights", "normalizer-on-sums"])
def weight_normalization(request, monkeypatch):
    """Run a test with both ways a sum applies its weights' normalizer (``math.contraction_weights``).

    By default only sums with many children (>= 256) contract unnormalized weights and subtract the log of the
    normalizer from their output; ``normalizer-on-sums`` makes every sum do so, so the small networks of the
    brute-force tests exercise that path too.
    """
    from libspn_keras.math import _log_weighted_sum

    if request.param == "normalizer-on-sums":
        monkeypatch.setattr(_log_weighted_sum, "NORMALIZE_OUTPUT_MIN_CHILDREN", 1)
    return request.param
