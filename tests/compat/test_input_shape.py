"""LibSPN Keras starts ``Sequential`` models with ``input_shape=`` on the first layer; that works without warnings.

The original (on ``tf.keras``) documents e.g. ``NormalizeStandardScore(input_shape=(28, 28, 1))`` and
``NormalLeaf(input_shape=(28, 28, 1), ...)`` as the first layer. Keras 3 honours the argument but warns on every
layer that receives it; the library's first layers take it themselves, so no warning is raised, and the model gets
the same input as with ``keras.Input``.
"""

import warnings

import keras
import numpy as np
import pytest

from libspn_keras import layers


def _first_layers(shape_kwargs):
    return {
        "FlatToRegions": (layers.FlatToRegions(num_decomps=2, **shape_kwargs), (5,)),
        "NormalLeaf": (layers.NormalLeaf(num_components=3, **shape_kwargs), (4, 4, 1)),
        "IndicatorLeaf": (layers.IndicatorLeaf(num_components=2, **shape_kwargs), (4, 1, 1)),
        "NormalizeStandardScore": (layers.NormalizeStandardScore(**shape_kwargs), (4, 4, 1)),
    }


@pytest.mark.parametrize("name", ["FlatToRegions", "NormalLeaf", "IndicatorLeaf", "NormalizeStandardScore"])
def test_input_shape_builds_the_sequential_input_without_a_warning(name):
    shape = _first_layers({})[name][1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Keras' "Do not pass an `input_shape`" is a UserWarning
        layer = _first_layers({"input_shape": shape})[name][0]
        model = keras.Sequential([layer])
    assert model.input_shape == (None, *shape)
    assert model.layers[0] is layer

    reference = keras.Sequential([keras.Input(shape), _first_layers({})[name][0]])
    reference.set_weights(model.get_weights())
    x = np.random.default_rng(0).integers(0, 2, size=(3, *shape)).astype("float32")
    np.testing.assert_allclose(model(x), reference(x))


def test_a_keras_layer_given_input_shape_warns():
    # What the library's layers avoid: the check above would catch it.
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`"):
        keras.layers.Dense(2, input_shape=(3,))


def test_input_dim_is_a_one_dimensional_input_shape():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = keras.Sequential([layers.FlatToRegions(num_decomps=1, input_dim=7)])
    assert model.input_shape == (None, 7)


def test_without_input_shape_nothing_changes():
    layer = layers.FlatToRegions(num_decomps=1)
    assert layer.get_config()["num_decomps"] == 1
    assert "input_shape" not in layer.get_config()
    assert not keras.Sequential([layer]).built


@pytest.mark.parametrize("bad", [(0, 3), (-1,), ("a",), (2.5,)])
def test_bad_input_shape_names_the_layer_and_the_value(bad):
    with pytest.raises(
        ValueError, match=rf"FlatToRegions expects input_shape .*Received: {__import__('re').escape(repr(bad))}"
    ):
        layers.FlatToRegions(input_shape=bad)


def test_input_shape_and_input_dim_together_are_rejected():
    with pytest.raises(ValueError, match=r"NormalLeaf takes input_shape or input_dim, not both"):
        layers.NormalLeaf(num_components=2, input_shape=(3,), input_dim=3)
