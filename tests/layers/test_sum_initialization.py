"""Sum layers draw their own initial weights: reproducible under a global seed, distinct between layers."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np

from libspn_keras import layers
from tests.backend_utils import to_numpy

SCRIPT = """
import keras, numpy as np
from libspn_keras import layers
keras.utils.set_random_seed(7)
layer = layers.DenseSum(num_sums=3)
layer.build((None, 2, 1, 4))
print(np.asarray(layer.accumulators).ravel()[:5].tolist())
"""


def test_layers_sharing_the_default_initializer_get_different_weights():
    keras.utils.set_random_seed(0)
    first, second = layers.DenseSum(num_sums=3), layers.DenseSum(num_sums=3)
    shared = keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5)
    third, fourth = (
        layers.DenseSum(3, accumulator_initializer=shared),
        layers.DenseSum(3, accumulator_initializer=shared),
    )
    for layer in (first, second, third, fourth):
        layer.build((None, 2, 1, 4))
    assert not np.allclose(to_numpy(first.accumulators), to_numpy(second.accumulators))
    assert not np.allclose(to_numpy(third.accumulators), to_numpy(fourth.accumulators))


def test_global_seed_makes_initial_weights_reproducible_across_processes():
    runs = [
        subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    ]
    assert runs[0].splitlines()[-1] == runs[1].splitlines()[-1]
