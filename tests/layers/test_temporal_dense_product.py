"""TemporalDenseProduct: values against numpy, gradients, symbolic shapes and errors."""

import keras
import numpy as np
import pytest

from libspn_keras import layers
from tests.backend_utils import function, grad, jit, to_numpy


def reference(a, b):
    """Linear-space products of every pair of nodes, node ``i * n2 + j``, written with explicit loops."""
    batch, scopes, decomps, n1 = a.shape
    n2 = b.shape[-1]
    out = np.zeros((batch, scopes, decomps, n1 * n2))
    for i in range(n1):
        for j in range(n2):
            out[..., i * n2 + j] = np.exp(a[..., i]) * np.exp(b[..., j])
    return out


RUNNERS = {
    "eager": lambda layer: layer,
    "function": lambda layer: function(layer),
    "xla": lambda layer: jit(layer),
}


@pytest.mark.parametrize("mode", list(RUNNERS))
@pytest.mark.parametrize(("n1", "n2"), [(1, 3), (3, 2), (4, 4)])
def test_values_match_numpy(floatx, mode, n1, n2):
    rng = np.random.default_rng(n1 * 10 + n2)
    a = np.log(rng.uniform(0.01, 1.0, size=(5, 3, 2, n1))).astype(floatx)
    b = np.log(rng.uniform(0.01, 1.0, size=(5, 3, 2, n2))).astype(floatx)
    b[0, 0, 0, 0] = -np.inf  # a zero-probability node gives zero-probability products
    layer = layers.TemporalDenseProduct()
    out = RUNNERS[mode](layer)([a, b])
    assert out.dtype == floatx
    assert tuple(out.shape) == (5, 3, 2, n1 * n2)
    np.testing.assert_allclose(np.exp(np.asarray(out)), reference(a, b), rtol=1e-5)


def test_gradient_counts_every_pair():
    a = np.zeros((2, 1, 1, 3), "float32")
    b = np.zeros((2, 1, 1, 4), "float32")
    layer = layers.TemporalDenseProduct()
    d_a, d_b = grad(lambda a, b: layer([a, b]), a, b)
    np.testing.assert_array_equal(to_numpy(d_a), np.full((2, 1, 1, 3), 4.0))
    np.testing.assert_array_equal(to_numpy(d_b), np.full((2, 1, 1, 4), 3.0))


def test_symbolic_shapes_and_tuple_input():
    a, b = keras.Input(shape=(2, 3, 4)), keras.Input(shape=(2, 3, 5))
    layer = layers.TemporalDenseProduct()
    out = layer((a, b))
    assert tuple(out.shape) == (None, 2, 3, 20)
    assert layer.compute_output_shape([(7, 2, 3, 4), (7, 2, 3, 5)]) == (7, 2, 3, 20)
    model = keras.Model([a, b], out)
    x = [np.zeros((3, 2, 3, 4), "float32"), np.zeros((3, 2, 3, 5), "float32")]
    assert model.predict(x, verbose=0).shape == (3, 2, 3, 20)


def test_config_round_trip():
    layer = layers.TemporalDenseProduct(name="temporal")
    clone = layers.TemporalDenseProduct.from_config(layer.get_config())
    assert clone.name == "temporal"
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ([np.zeros((2, 3, 1, 2))], "list of two inputs"),
        (np.zeros((2, 3, 1, 2)), "list of two inputs"),
        ([np.zeros((2, 3, 1, 2)), np.zeros((2, 2, 1, 2))], "same num_scopes"),
        ([np.zeros((2, 3, 1, 2)), np.zeros((2, 3, 2, 2))], "same num_decomps"),
        ([np.zeros((2, 3, 2)), np.zeros((2, 3, 1, 2))], "rank 4"),
    ],
    ids=["one-input", "tensor", "scopes", "decomps", "rank"],
)
def test_bad_shapes_raise(inputs, match):
    inputs = [x.astype("float32") for x in inputs] if isinstance(inputs, list) else inputs.astype("float32")
    with pytest.raises(ValueError, match=match):
        layers.TemporalDenseProduct()(inputs)


def test_unknown_node_axis_raises():
    with pytest.raises(ValueError, match="known node axes"):
        layers.TemporalDenseProduct()([keras.Input(shape=(1, 1, None)), keras.Input(shape=(1, 1, 2))])


def test_integer_input_raises():
    with pytest.raises(TypeError, match="floating-point"):
        layers.TemporalDenseProduct()([np.zeros((1, 1, 1, 2), "int32"), np.zeros((1, 1, 1, 2), "int32")])
