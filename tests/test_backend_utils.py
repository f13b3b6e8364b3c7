"""The tests' backend helpers (tests/backend_utils.py) keep the semantics the tests rely on, on every backend."""

import keras
import numpy as np

from tests import backend_utils


def test_unseeded_draws_inside_value_and_grad_differ_between_calls():
    # A GradientTape lets unseeded draws advance Keras' global generator; the JAX helper must too, or every call
    # of a sampling test would draw the same values.
    x = np.ones((3,), "float32")

    def noisy(x):
        return x * keras.random.uniform((3,))

    first, (first_grad,) = backend_utils.value_and_grad(noisy, x)
    second, (second_grad,) = backend_utils.value_and_grad(noisy, x)
    first, second = backend_utils.to_numpy([first, second])
    assert not np.allclose(first, second)
    np.testing.assert_allclose(backend_utils.to_numpy(first_grad), first)  # d(x * u) / dx = u
    np.testing.assert_allclose(backend_utils.to_numpy(second_grad), second)
