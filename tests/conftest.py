"""Test configuration: the Keras backend (TensorFlow unless ``KERAS_BACKEND`` says otherwise), quiet logs,
deterministic seeds, and the markers of backend-specific tests.

The suite runs on the TensorFlow and on the JAX backend (``KERAS_BACKEND=jax python -m pytest``). Tests of what only
one backend has (``tf.function`` graph assertions, ``tf.data``, ``tf.distribute``, ``GradientTape`` behaviour,
TensorFlow's memory) carry ``@pytest.mark.requires_tensorflow`` (or ``requires_jax``) and are skipped elsewhere.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if os.environ["KERAS_BACKEND"] == "jax":
    # JAX computes in 32 bits unless told otherwise; the float64 tests (``float64``, ``floatx``) need 64 bits.
    import jax

    jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: marker -> the backend its tests need
BACKEND_MARKERS = {"requires_tensorflow": "tensorflow", "requires_jax": "jax"}


def pytest_report_header(config):
    return f"Keras backend: {keras.backend.backend()} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})"


#: Tests known to fail on JAX (issue 19, open): node-id prefix -> what fails. Marked xfail (not strict) on JAX only,
#: so that they are reported, not hidden; remove an entry once it is fixed.
KNOWN_JAX_FAILURES: dict[str, str] = {}


def pytest_collection_modifyitems(config, items):
    current = keras.backend.backend()
    for item in items:
        if current == "jax":
            for prefix, reason in KNOWN_JAX_FAILURES.items():
                if item.nodeid.startswith(prefix):
                    item.add_marker(pytest.mark.xfail(reason=f"known JAX failure (issue 19): {reason}", strict=False))
        for marker, needed in BACKEND_MARKERS.items():
            if needed != current and item.get_closest_marker(marker) is not None:
                item.add_marker(
                    pytest.mark.skip(reason=f"{needed}-specific test (marked {marker}); the backend is {current}")
                )


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
