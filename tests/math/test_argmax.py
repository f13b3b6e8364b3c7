"""``weighted_argmax`` against ``np.argmax`` of the full logits: values, ties, -inf, chunks, Gumbel draws."""

from __future__ import annotations

import numpy as np
import pytest

from libspn_keras.math import _argmax as argmax_module
from libspn_keras.math import stateless_seed
from libspn_keras.math._argmax import weighted_argmax
from tests.backend_utils import run, tensor, to_numpy

MODES = ["eager", "function", "jit"]


def brute_force(x: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """``argmax_i x[g, r, i] + log_weights[g, i, o]`` of the materialized logits (first index on ties)."""
    return np.argmax(x[..., None] + log_weights[:, None], axis=-2)


# Children 3 and 64 compare in one level, 65 and 200 in chunks (65: 2 chunks of 33, one child padded), 4097 in 65
# chunks, more than CHUNK: an argmax over the chunks' maxima.
@pytest.mark.parametrize("num_in", [1, 3, 64, 65, 200, 4097])
@pytest.mark.parametrize("mode", MODES)
def test_equals_the_argmax_of_the_logits(mode, num_in):
    rng = np.random.default_rng(num_in)
    groups, rows, out = 2, 3, 4
    # Few distinct values, so that many logits tie and the first index must win; some children impossible.
    x = rng.integers(-3, 1, size=(groups, rows, num_in)).astype("float32")
    x[rng.uniform(size=x.shape) < 0.2] = -np.inf
    log_weights = rng.integers(-2, 1, size=(groups, num_in, out)).astype("float32")
    index = to_numpy(run(weighted_argmax, mode, tensor(x), tensor(log_weights)))
    assert index.dtype == np.int32
    np.testing.assert_array_equal(index, brute_force(x, log_weights))


@pytest.mark.parametrize("mode", MODES)
def test_shared_weights_and_impossible_rows(mode):
    # Log-weights [1, in, 1] broadcast over groups and sums; a row of -inf children selects child 0.
    with np.errstate(divide="ignore"):
        x = np.log(np.array([[[0.1, 0.6, 0.3], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]]], "float32"))
    log_weights = np.zeros((1, 3, 1), "float32")
    index = to_numpy(run(weighted_argmax, mode, tensor(x), tensor(log_weights)))
    np.testing.assert_array_equal(index, [[[1], [0], [0]]])


@pytest.mark.parametrize("chunk", [64, 2])
def test_gumbel_draws_follow_the_softmax_and_repeat_with_the_seed(monkeypatch, chunk):
    # 3 children (chunks of 2: 2 chunks, one padded); every one of 4000 rows x 2 sums draws its own child.
    monkeypatch.setattr(argmax_module, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    x = np.repeat(np.log(rng.dirichlet(np.ones(3), size=(1, 1))), 4000, axis=1).astype("float32")
    log_weights = np.log(rng.dirichlet(np.ones(3), size=(1, 2)).transpose(0, 2, 1)).astype("float32")
    seed = stateless_seed(7)
    draws = to_numpy(weighted_argmax(tensor(x), tensor(log_weights), gumbel_seed=seed))
    logits = x[0, 0][:, None] + log_weights[0]
    softmax = np.exp(logits) / np.exp(logits).sum(axis=0)
    frequencies = np.stack([np.bincount(draws[0, :, o], minlength=3) / 4000 for o in range(2)], axis=1)
    np.testing.assert_allclose(frequencies, softmax, atol=0.03)
    assert (draws[0, :, 0] != draws[0, :, 1]).any()  # the sums draw independently
    np.testing.assert_array_equal(to_numpy(weighted_argmax(tensor(x), tensor(log_weights), gumbel_seed=seed)), draws)
    shared = to_numpy(weighted_argmax(tensor(x), tensor(log_weights[..., :1] * 0), gumbel_seed=seed, num_out=2))
    assert shared.shape == (1, 4000, 2)


def test_needs_a_static_number_of_children():
    class Unknown:
        shape = (1, 2, None)

    with pytest.raises(ValueError, match="weighted_argmax expects a static number of children"):
        weighted_argmax(Unknown(), np.zeros((1, 2, 1), "float32"))
