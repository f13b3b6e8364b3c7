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
    yield
    keras.config.set_floatx(floatx)
