"""``fit(x, evidence_mask)`` of an ``infer_no_evidence`` model trains on completions, as in LibSPN Keras 0.6.0.

The original's ``_train_step_masked_leaves`` completed ``x`` from the evidence (``out = model([x, evidence_mask])``),
took the compiled loss of ``boolean_mask(x, ~evidence_mask)`` against ``boolean_mask(out, ~evidence_mask)`` (the
missing entries only), applied the optimizer to its gradient and updated the compiled metrics with the same values.
The references here are NumPy values of the model's own completions, and gradients by central finite differences.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers, models, optimizers, sum_ops
from tests.backend_utils import to_numpy

RNG = np.random.default_rng(7)
X = RNG.normal(size=(6, 4))
MASK = np.array(
    [
        [True, False, True, False],
        [False, True, True, True],
        [True, True, False, False],
        [False, False, True, True],
        [True, False, False, True],
        [False, True, True, False],
    ]
)


def masked_leaf_spn(
    sum_op: sum_ops.SumOpBase | None = None, seed: int = 3, infer_no_evidence: bool = True
) -> models.SequentialSumProductNetwork:
    """A tiny two-level SPN over four variables that completes missing values (``infer_no_evidence=True``)."""
    keras.utils.set_random_seed(seed)
    sum_op = sum_op or sum_ops.SumOpGradBackprop()
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(4,)),
            layers.NormalLeaf(num_components=2, location_initializer=keras.initializers.RandomNormal(stddev=1.0)),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, sum_op=sum_op),
            layers.DenseProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, sum_op=sum_op),
        ],
        infer_no_evidence=infer_no_evidence,
    )


def masked_mse(model: keras.Model, x: np.ndarray, mask: np.ndarray) -> float:
    """The original's loss: mean squared error of the completion over the missing entries (NumPy)."""
    out = to_numpy(model((x.astype(model.compute_dtype), mask)))
    missing = ~mask
    return float(np.mean((x[missing] - out[missing]) ** 2))


def finite_difference_gradients(model: keras.Model, h: float = 1e-6) -> list[np.ndarray]:
    """Central differences of ``masked_mse`` with respect to every trainable variable entry."""
    gradients = []
    for variable in model.trainable_variables:
        value = to_numpy(variable.value).astype(np.float64)
        gradient = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = value.copy()
            shifted[index] += h
            variable.assign(shifted)
            up = masked_mse(model, X, MASK)
            shifted[index] -= 2 * h
            variable.assign(shifted)
            down = masked_mse(model, X, MASK)
            gradient[index] = (up - down) / (2 * h)
        variable.assign(value)
        gradients.append(gradient)
    return gradients


def constrained(variable: keras.Variable, value: np.ndarray) -> np.ndarray:
    """``value`` after the variable's constraint, which the optimizer applies after its step (e.g. log-normalizing)."""
    return value if variable.constraint is None else to_numpy(variable.constraint(keras.ops.convert_to_tensor(value)))


def test_loss_and_metrics_are_those_of_the_missing_entries():
    model = masked_leaf_spn()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], weighted_metrics=["mse"])
    out = to_numpy(model((X.astype("float32"), MASK)))
    missing = ~MASK
    expected_mse = np.mean((X[missing] - out[missing]) ** 2)
    expected_mae = np.mean(np.abs(X[missing] - out[missing]))
    logs = model.evaluate(X.astype("float32"), MASK, batch_size=len(X), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected_mse, rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], expected_mae, rtol=1e-5)  # unweighted metrics count missing entries
    np.testing.assert_allclose(logs["mse"], expected_mse, rtol=1e-5)
    history = model.fit(X.astype("float32"), MASK, batch_size=len(X), epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"][0], expected_mse, rtol=1e-5)  # the loss before the step
    np.testing.assert_allclose(history.history["mae"][0], expected_mae, rtol=1e-5)


def test_sample_weights_weigh_the_missing_entries_of_their_sample():
    model = masked_leaf_spn()
    model.compile(optimizer="adam", loss="mse")
    weights = np.array([1.0, 2.0, 0.5, 0.0, 3.0, 1.0])
    out = to_numpy(model((X.astype("float32"), MASK)))
    missing = ~MASK
    per_entry = (X - out) ** 2 * weights[:, None]
    expected = per_entry[missing].sum() / missing.sum()  # Keras' default reduction divides by the count
    loss = model.evaluate(X.astype("float32"), MASK, sample_weight=weights, batch_size=len(X), verbose=0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_evidence_only_gives_zero_loss():
    model = masked_leaf_spn()
    model.compile(optimizer="adam", loss="mse")
    all_evidence = np.ones_like(MASK)
    assert model.evaluate(X.astype("float32"), all_evidence, batch_size=len(X), verbose=0) == 0.0


def test_sgd_step_follows_the_finite_difference_gradient(float64):
    model = masked_leaf_spn()
    reference = finite_difference_gradients(model)
    before = [to_numpy(v.value) for v in model.trainable_variables]
    learning_rate = 0.1
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    model.fit(X, MASK, batch_size=len(X), epochs=1, verbose=0, shuffle=False)
    assert any(np.abs(g).max() > 1e-3 for g in reference)
    for variable, start, gradient in zip(model.trainable_variables, before, reference, strict=True):
        expected = constrained(variable, start - learning_rate * gradient)
        np.testing.assert_allclose(to_numpy(variable.value), expected, rtol=1e-6, atol=1e-9, err_msg=variable.path)


def test_adam_step_is_adams_update_of_the_finite_difference_gradient(float64):
    model = masked_leaf_spn()
    reference = finite_difference_gradients(model)
    before = [to_numpy(v.value) for v in model.trainable_variables]
    # A large epsilon makes the first Adam step depend on the gradient's size, not only on its sign.
    learning_rate, beta_1, beta_2, epsilon = 0.05, 0.9, 0.999, 0.1
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_1, beta_2, epsilon), loss="mse")
    model.fit(X, MASK, batch_size=len(X), epochs=1, verbose=0, shuffle=False)
    for variable, start, gradient in zip(model.trainable_variables, before, reference, strict=True):
        # Keras' Adam at step 1: m = (1 - beta_1) g, v = (1 - beta_2) g^2, lr * sqrt(1 - beta_2) / (1 - beta_1).
        first_moment, second_moment = (1 - beta_1) * gradient, (1 - beta_2) * gradient**2
        alpha = learning_rate * np.sqrt(1 - beta_2) / (1 - beta_1)
        expected = constrained(variable, start - alpha * first_moment / (np.sqrt(second_moment) + epsilon))
        np.testing.assert_allclose(to_numpy(variable.value), expected, rtol=1e-6, atol=1e-9, err_msg=variable.path)


def test_loss_falls_over_a_few_epochs():
    model = masked_leaf_spn()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(X.astype("float32"), MASK, batch_size=3, epochs=8, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
    np.testing.assert_allclose(
        masked_mse(model, X, MASK), model.evaluate(X.astype("float32"), MASK, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize("op", [sum_ops.SumOpEMBackprop, sum_ops.SumOpHardEMBackprop])
def test_em_ops_ask_for_gradient_ops(op):
    model = masked_leaf_spn(op())
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.1), loss="mse")
    with pytest.raises(ValueError, match=r"Masked-leaf training .*SumOpGradBackprop.*optimizer=OnlineExpectation"):
        model.fit(X.astype("float32"), MASK, epochs=1, verbose=0)
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r"Masked-leaf training .*receive EM counts: .*dense_sum"):
        model.fit(X.astype("float32"), MASK, epochs=1, verbose=0)


def test_em_ops_can_still_evaluate_completions():
    model = masked_leaf_spn(sum_ops.SumOpEMBackprop())
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.1), loss="mse")
    loss = model.evaluate(X.astype("float32"), MASK, batch_size=len(X), verbose=0)
    np.testing.assert_allclose(loss, masked_mse(model, X, MASK), rtol=1e-5)


def test_models_without_infer_no_evidence_train_as_before():
    model = masked_leaf_spn(infer_no_evidence=False)
    model.compile(optimizer="adam", loss="mse")
    out = to_numpy(model(X.astype("float32")))
    loss = model.evaluate(X.astype("float32"), MASK.astype("float32")[:, :1], batch_size=len(X), verbose=0)
    np.testing.assert_allclose(loss, np.mean((MASK[:, :1] - out) ** 2), rtol=1e-5)
