"""Test configuration: TensorFlow backend, quiet logs, deterministic seeds."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


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
