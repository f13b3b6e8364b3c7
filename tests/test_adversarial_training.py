"""Misuse that used to train silently (issue 18, item 6).

An EM sum op sends counts, not derivatives, to its accumulators: a gradient optimizer took them for gradients and
trained a wrong model without a word. ``OnlineExpectationMaximization`` over gradient sum ops fell back to a
gradient step without a word. Each case is first reproduced, then the error or warning checked.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from libspn_keras import layers, losses, models, optimizers, sum_ops
from tests.backend_utils import to_numpy

EM_OPS = [sum_ops.SumOpEMBackprop, sum_ops.SumOpHardEMBackprop, sum_ops.SumOpUnweightedHardEMBackprop]
X = np.array([[0, 1], [1, 1], [0, 0], [1, 0]], "float32")


def small_spn(op: sum_ops.SumOpBase, leaf_accumulators: bool = False) -> models.SequentialSumProductNetwork:
    leaf = (
        layers.NormalLeaf(num_components=2, use_accumulators=True, name="normal_leaf")
        if leaf_accumulators
        else layers.IndicatorLeaf(num_components=2)
    )
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(2,)),
            leaf,
            layers.DenseSum(num_sums=2, sum_op=op, name="em_sums"),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op, name="em_root"),
        ]
    )


@pytest.fixture
def allow_gradient_optimizers():
    optimizers.allow_gradient_optimizers_with_em_statistics(True)
    yield
    optimizers.allow_gradient_optimizers_with_em_statistics(False)


@pytest.mark.parametrize("make_optimizer", [keras.optimizers.Adam, keras.optimizers.SGD], ids=["adam", "sgd"])
@pytest.mark.parametrize("op", EM_OPS, ids=lambda op: op.__name__)
def test_em_op_with_a_gradient_optimizer_raises_at_the_first_train_step(op, make_optimizer, allow_gradient_optimizers):
    # The case: with the check off, the counts are taken for gradients and the weights move.
    model = small_spn(op())
    before = to_numpy(model.layers[2].accumulators).copy()
    model.compile(optimizer=make_optimizer(0.1), loss=losses.NegativeLogLikelihood())
    model.fit(X, epochs=1, verbose=0)
    assert not np.allclose(to_numpy(model.layers[2].accumulators), before)
    # The check: the first train step raises, names the layers and says what to do; nothing is updated.
    optimizers.allow_gradient_optimizers_with_em_statistics(False)
    model = small_spn(op())
    before = to_numpy(model.layers[2].accumulators).copy()
    model.compile(optimizer=make_optimizer(0.1), loss=losses.NegativeLogLikelihood())
    with pytest.raises(ValueError, match=r"gradient optimizer.*em_sums/sum_weights.*em_root/sum_weights") as error:
        model.fit(X, epochs=1, verbose=0)
    message = str(error.value)
    assert "OnlineExpectationMaximization()" in message and "SumOpGradBackprop()" in message
    assert "allow_gradient_optimizers_with_em_statistics()" in message
    np.testing.assert_array_equal(to_numpy(model.layers[2].accumulators), before)


def test_leaf_accumulators_with_a_gradient_optimizer_raise():
    model = small_spn(sum_ops.SumOpGradBackprop(), leaf_accumulators=True)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.NegativeLogLikelihood())
    with pytest.raises(ValueError, match=r"normal_leaf/"):
        model.fit(X, epochs=1, verbose=0)


def test_gradient_ops_with_a_gradient_optimizer_train_without_a_warning():
    model = small_spn(sum_ops.SumOpGradBackprop())
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.NegativeLogLikelihood())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(X, epochs=3, verbose=0).history["loss"]
    assert history[-1] < history[0]


def test_online_em_over_gradient_ops_warns_once_naming_the_layers():
    model = small_spn(sum_ops.SumOpGradBackprop())
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(), loss=losses.NegativeLogLikelihood())
    with pytest.warns(UserWarning, match=r"requires EM sum ops.*em_sums/sum_weights.*em_root/sum_weights") as record:
        model.fit(X, epochs=3, batch_size=2, verbose=0)
    assert sum("requires EM sum ops" in str(w.message) for w in record) == 1


@pytest.mark.parametrize("op", EM_OPS, ids=lambda op: op.__name__)
def test_online_em_over_em_ops_does_not_warn(op):
    model = small_spn(op())
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(), loss=losses.NegativeLogLikelihood())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(X, epochs=1, verbose=0)


def test_allow_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="Received: allow='yes'"):
        optimizers.allow_gradient_optimizers_with_em_statistics("yes")  # type: ignore[arg-type]


def em_layers(op: sum_ops.SumOpBase) -> list[keras.layers.Layer]:
    return small_spn(op).layers


@pytest.mark.parametrize("model_kind", ["sequential", "functional", "dynamic"])
def test_every_spn_model_class_checks_its_optimizer(model_kind):
    if model_kind == "sequential":
        model = small_spn(sum_ops.SumOpEMBackprop())
        x = X
    elif model_kind == "functional":
        inputs = keras.Input((2,))
        out = inputs
        for layer in em_layers(sum_ops.SumOpEMBackprop()):
            out = layer(out)
        model = models.SumProductNetwork(inputs, out)
        x = X
    else:
        template = keras.Sequential(
            [
                keras.Input(shape=(2,)),
                layers.FlatToRegions(num_decomps=1),
                layers.IndicatorLeaf(num_components=2),
                layers.DenseSum(num_sums=3, sum_op=sum_ops.SumOpEMBackprop(), name="em_sums"),
                layers.ReduceProduct(num_factors=2),
            ]
        )
        model = models.DynamicSumProductNetwork(
            template_network=template,
            interface_network_t0=layers.DenseSum(num_sums=3),
            interface_network_t_minus_1=keras.Sequential([keras.Input(shape=(1, 1, 9)), layers.DenseSum(num_sums=3)]),
            top_network=layers.RootSum(return_weighted_child_logits=False),
        )
        x = np.stack([X[:2], X[2:]]).astype("float32")  # 2 sequences of 2 steps
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.NegativeLogLikelihood())
    with pytest.raises(ValueError, match=r"Adam is a gradient optimizer.*em_sums/sum_weights"):
        model.fit(x, epochs=1, verbose=0)


def test_a_plain_keras_model_checks_its_optimizer_by_calling_the_check():
    # Keras offers no public hook that sees both the optimizer and the variables (docs/errors.md): a plain
    # keras.Sequential trains on the counts as gradients; the exported check says so before fit.
    model = keras.Sequential(em_layers(sum_ops.SumOpEMBackprop()))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.NegativeLogLikelihood())
    before = to_numpy(model.layers[2].accumulators).copy()
    model.fit(X, epochs=1, verbose=0)
    assert not np.allclose(to_numpy(model.layers[2].accumulators), before)
    with pytest.raises(ValueError, match=r"Adam is a gradient optimizer.*em_sums/sum_weights.*em_root/sum_weights"):
        optimizers.check_optimizer_for_em_statistics(model.optimizer, model.trainable_variables)
    optimizers.check_optimizer_for_em_statistics(optimizers.OnlineExpectationMaximization(), model.trainable_variables)
