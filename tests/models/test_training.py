"""Generative training of a small RAT-SPN with Adam improves the log-likelihood."""

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from libspn_keras import layers, losses, metrics, models


def two_cluster_data(rng, num_samples, num_vars=6):
    """Two well separated Gaussian clusters."""
    centers = rng.normal(scale=3.0, size=(2, num_vars))
    labels = rng.integers(0, 2, size=num_samples)
    return (centers[labels] + rng.normal(scale=0.5, size=(num_samples, num_vars))).astype("float32")


def rat_spn(num_vars, return_weighted_child_logits):
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(num_components=4, scale_trainable=True),
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=4),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=4),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=return_weighted_child_logits),
        ]
    )


def log_likelihoods(model, x):
    return logsumexp(model.predict(x, batch_size=256, verbose=0), axis=-1)


@pytest.mark.parametrize(
    ("return_weighted_child_logits", "missing_rate"), [(True, 0.0), (False, 0.2)], ids=["children", "marginal-nan"]
)
def test_adam_improves_log_likelihood(return_weighted_child_logits, missing_rate):
    rng = np.random.default_rng(0)
    data = two_cluster_data(rng, num_samples=768)
    train, test = data[:512].copy(), data[512:]
    train[rng.uniform(size=train.shape) < missing_rate] = np.nan  # NaN values are marginalized in training
    model = rat_spn(train.shape[1], return_weighted_child_logits)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.05),
        loss=losses.NegativeLogLikelihood(),
        metrics=[metrics.LogLikelihood()],
    )
    before = log_likelihoods(model, test).mean()

    history = model.fit(train, epochs=4, batch_size=32, verbose=0)
    after = log_likelihoods(model, test)

    loss = history.history["loss"]
    assert np.all(np.isfinite(loss))
    assert loss[-1] < loss[0]
    assert after.mean() > before + 5.0, (before, after.mean())
    # The compiled metric and loss report the mean log-likelihood of the predictions.
    evaluated = model.evaluate(test, batch_size=256, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["llh"], after.mean(), rtol=1e-4)
    np.testing.assert_allclose(evaluated["loss"], -after.mean(), rtol=1e-4)
