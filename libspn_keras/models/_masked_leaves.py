"""Training on completions: ``fit(x, evidence_mask)`` of an ``infer_no_evidence`` model (the original's masked leaves).

LibSPN Keras 0.6.0 trained a ``SequentialSumProductNetwork(..., infer_no_evidence=True)`` given ``fit(x,
evidence_mask)`` with its ``_train_step_masked_leaves``: the model completes ``x`` from the evidence
(``out = model([x, evidence_mask])``), the compiled loss compares ``x`` and ``out`` on the missing entries only
(``boolean_mask(x, ~evidence_mask)`` against ``boolean_mask(out, ~evidence_mask)``), and the optimizer applies the
gradient of that loss; the compiled metrics see the same values.

Here the batch is restructured instead, so that Keras' own ``train_step`` / ``test_step`` (one per backend; the JAX
one is stateless) run it: ``(x, evidence_mask[, sample_weight])`` becomes ``((x, evidence_mask), x,
sample_weight)``, and while the step is traced the model's ``compute_loss`` / ``compute_metrics`` see every entry
as a sample of its own (``[num_entries, 1]``) weighted by whether it is missing. Boolean masking would give a
shape that depends on the data, which a JAX trace does not allow.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from libspn_keras.math._backend import Tensor
from libspn_keras.optimizers._em_statistics import is_em_statistic, variable_names


class _MissingEntries(keras.layers.Layer):
    """``[num_entries, 1]`` values masked to the missing entries, through Keras' public masking API.

    Called on ``(values, missing)``, it returns ``values`` as a column whose Keras mask (``compute_mask``, which
    Keras attaches to a layer's output and its losses and metrics read) is ``missing``.
    """

    def call(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        return ops.reshape(inputs[0], [-1, 1])

    def compute_mask(self, inputs: tuple[Tensor, Tensor], previous_mask: Any = None) -> Tensor:
        return inputs[1]

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, int]:
        return (None, 1)


#: Stateless, so one instance serves every model (as an attribute of a model it would be tracked as a layer).
_MISSING_ENTRIES = _MissingEntries(name="missing_entries")


def is_masked_leaf_data(model: keras.Model, data: Any) -> bool:
    """Whether ``data`` is a batch ``(x, evidence_mask[, sample_weight])`` of an ``infer_no_evidence`` model."""
    if not getattr(model, "infer_no_evidence", False):
        return False
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    return y is not None and not isinstance(x, tuple | list | dict)


def restructure(data: Any) -> Any:
    """``(x, evidence_mask[, sample_weight])`` as ``((x, evidence_mask), x[, sample_weight])``."""
    x, evidence_mask, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    return keras.utils.pack_x_y_sample_weight((x, evidence_mask), x, sample_weight)


def check_masked_leaf_training(model: keras.Model) -> None:
    """Raise if the optimizer or the variables of ``model`` are EM ones, which masked-leaf training cannot use.

    Masked-leaf training applies the optimizer to the gradient of the loss on the completed entries. An
    ``OnlineExpectationMaximization`` optimizer would take that gradient for EM counts, and variables that
    receive EM counts (EM sum ops, leaves with ``use_accumulators=True``) get no meaningful gradient of it.

    Raises:
        ValueError: If the optimizer is ``OnlineExpectationMaximization`` or a trainable variable holds EM
            statistics.
    """
    from libspn_keras.optimizers._online_em import OnlineExpectationMaximization

    fix = (
        "Masked-leaf training (fit(x, evidence_mask) of a model with infer_no_evidence=True) applies the "
        "optimizer to the gradient of the loss on the missing entries: build the sum layers with "
        "sum_op=SumOpGradBackprop() (and leaves with use_accumulators=False) and compile with a gradient "
        "optimizer, or train by EM without the mask (e.g. a copy of the model with infer_no_evidence=False, "
        "then set_weights)."
    )
    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, OnlineExpectationMaximization):
        raise ValueError(f"Model '{model.name}': {fix} Received: optimizer={type(optimizer).__name__}")
    counted = [variable for variable in model.trainable_variables if is_em_statistic(variable)]
    if counted:
        raise ValueError(
            f"Model '{model.name}': {fix} Received variables that receive EM counts: {variable_names(counted)}"
        )


def entries(x: Any, y: Any, y_pred: Any, sample_weight: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    """The targets and completions of every entry as samples of their own, ``[num_entries, 1]``, and their weights.

    ``x`` is the pair ``(x, evidence_mask)``. The completions carry a Keras mask that is ``True`` for the missing
    entries: Keras' losses and metrics (weighted or not, e.g. ``MeanMetricWrapper``) then count the missing entries
    only. With the default reduction (``sum_over_batch_size``) a loss is the mean over the missing entries, which is
    what the original's loss of the boolean-masked values was for losses that average over the last axis (MSE, MAE,
    binary cross-entropy, ...); without missing entries it is ``0`` (the original's mean over nothing: ``NaN``).
    ``sample_weight`` (per sample) is repeated for every entry of its sample.
    """
    _, evidence_mask = x
    y_pred = ops.convert_to_tensor(y_pred)
    y = ops.cast(ops.convert_to_tensor(y), y_pred.dtype)
    missing = ops.reshape(ops.logical_not(ops.cast(evidence_mask, "bool")), [-1])
    if sample_weight is not None:
        sample_weight = ops.convert_to_tensor(sample_weight)
        sample_weight = ops.reshape(sample_weight, [-1] + [1] * (len(y_pred.shape) - 1))
        sample_weight = ops.reshape(ops.broadcast_to(sample_weight, ops.shape(y_pred)), [-1])
    y_pred = _MISSING_ENTRIES((y_pred, missing))
    return ops.reshape(y, [-1, 1]), y_pred, sample_weight
