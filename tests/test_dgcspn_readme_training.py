"""The README's DGC-SPN architecture trains on 28x28 images with every sum op."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import initializers, layers, losses, models, optimizers, sum_ops


def readme_stack(op: sum_ops.SumOpBase, em: bool) -> models.SequentialSumProductNetwork:
    sums = {"sum_op": op, "accumulator_initializer": keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5)}
    if em:
        sums["accumulator_initializer"] = initializers.EpsilonInverseFanIn(epsilon=1e-2)
    stack: list[keras.layers.Layer] = [
        keras.Input(shape=(28, 28, 1)),
        layers.NormalLeaf(num_components=4, location_initializer=initializers.Equidistant(-1.5, 1.5)),
    ]
    for stride, dilation, padding, num_sums in [
        (2, 1, "valid", 8),
        (2, 1, "valid", 8),
        (1, 1, "full", 8),
        (1, 2, "full", 8),
        (1, 4, "full", 8),
    ]:
        stack += [
            layers.Conv2DProduct(strides=stride, dilations=dilation, kernel_size=2, padding=padding, depthwise=True),
            layers.Local2DSum(num_sums=num_sums, **sums),
        ]
    stack += [
        layers.Conv2DProduct(strides=1, dilations=8, kernel_size=2, padding="final", depthwise=True),
        layers.SpatialToRegions(),
        layers.DenseSum(num_sums=4, **sums),
        layers.RootSum(return_weighted_child_logits=False, sum_op=op),
    ]
    return models.SequentialSumProductNetwork(stack)


@pytest.mark.parametrize(
    "op",
    [
        sum_ops.SumOpGradBackprop(),
        sum_ops.SumOpEMBackprop(),
        sum_ops.SumOpHardEMBackprop(),
        sum_ops.SumOpUnweightedHardEMBackprop(),
    ],
    ids=lambda op: type(op).__name__,
)
def test_readme_architecture_trains_on_28x28_images(op):
    keras.utils.set_random_seed(0)
    em = not isinstance(op, sum_ops.SumOpGradBackprop)
    model = readme_stack(op, em)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, 28, 28, 1))
    x = (centers[rng.integers(0, 2, 64)] + 0.3 * rng.normal(size=(64, 28, 28, 1))).astype("float32")
    optimizer = optimizers.OnlineExpectationMaximization(0.2) if em else keras.optimizers.Adam(0.05)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    before = model.evaluate(x, verbose=0)
    model.fit(x, batch_size=32, epochs=3, verbose=0)
    after = model.evaluate(x, verbose=0)
    assert np.isfinite(after) and after < before, (before, after)
