"""Exact and approximate inference queries on sequential SPNs, computed with one forward and one backward pass.

The backward pass from the root to the leaf layer, with each sum layer's sum op temporarily replaced, yields a
signal per leaf component:

* ``SumOpGradBackprop`` (autodiff of ``log p(x_E)``): the marginal posterior probability that each component
  is part of the induced tree, given the evidence;
* max-product (``mpe``): the forward pass replaces every weighted sum by a weighted maximum and the leaves of
  missing values by the density at their mode; the backward pass follows the maximizing child of every sum.
  This is the exact MPE state of the SPN augmented with its latent sum variables (the Viterbi-style
  approximation of the MPE of the SPN itself, Poon and Domingos, 2011);
* ``SumOpSampleBackprop``: a one-hot path drawn top-down from the posterior of every sum (an exact sample of
  the missing variables given the evidence).

Completions combine these signals with the modes (or samples) of the leaf components.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from libspn_keras.layers import BaseLeaf, BaseSum, FlatToRegions
from libspn_keras.math import WeightedSumParts
from libspn_keras.sum_ops import BaseSelectionSumOp, SumOpBase, SumOpGradBackprop, SumOpSampleBackprop
from libspn_keras.sum_ops._em import weighted_logits


class MaxProductSumOp(BaseSelectionSumOp):
    """Max-product semiring: ``max_i (x_i + log w_io)`` forward, the maximizing child backward (first on ties).

    Used only inside MPE queries; it is not a training op.
    """

    def __init__(self) -> None:
        super().__init__(sample_prob=None)

    def selection_logits(self, x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
        """Weighted child log-probabilities ``[groups, rows, in, out]``."""
        return weighted_logits(x, log_weights)

    def forward_rows(self, x_rows: tf.Tensor, weights_rows: tf.Tensor, log_norm: tf.Tensor | None) -> WeightedSumParts:
        """Weighted maximum over the children (rows layout)."""
        log_max = tf.reduce_max(weighted_logits(x_rows, tf.math.log(weights_rows)), axis=-2)
        if log_norm is not None:
            log_max -= log_norm
        return WeightedSumParts(log_max, weights_rows, log_children=x_rows)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (none)."""
        return {}


#: Query modes and the sum op that implements them.
SIGNAL_OPS: dict[str, type[SumOpBase]] = {
    "posterior": SumOpGradBackprop,
    "mpe": MaxProductSumOp,
    "sample": SumOpSampleBackprop,
}


@contextlib.contextmanager
def replaced_sum_ops(layers: list[keras.layers.Layer], op: SumOpBase) -> Iterator[None]:
    """Temporarily give every sum layer in ``layers`` the sum op ``op``."""
    originals = [(layer, layer.sum_op) for layer in layers if isinstance(layer, BaseSum)]
    try:
        for layer, _ in originals:
            layer.sum_op = op
        yield
    finally:
        for layer, original in originals:
            layer.sum_op = original


def split_at_leaf(model: keras.Model) -> tuple[list[keras.layers.Layer], BaseLeaf, list[keras.layers.Layer]]:
    """Split a sequential SPN's layers into (layers before the leaf, the leaf, layers after the leaf).

    Raises:
        ValueError: If there is no leaf layer or a layer other than ``FlatToRegions`` precedes it.
    """
    layers = list(model.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, BaseLeaf):
            before = layers[:index]
            unsupported = [type(b).__name__ for b in before if not isinstance(b, FlatToRegions)]
            if unsupported:
                raise ValueError(
                    f"Model '{model.name}': inference queries need the data to reach the leaf layer unchanged "
                    f"(only FlatToRegions may precede it). Received layers before the leaf: {unsupported}. "
                    "Apply the transformation to the data instead."
                )
            return before, layer, layers[index + 1 :]
    raise ValueError(f"Model '{model.name}' has no leaf layer (a BaseLeaf subclass).")


def check_mask(
    x: tf.Tensor, mask: Any, owner: str = "SequentialSumProductNetwork", name: str = "evidence_mask"
) -> tf.Tensor:
    """Return ``mask`` as a boolean tensor after checking that it is boolean (or integer) and shaped like ``x``.

    Integer masks are accepted as the leaves accept them: nonzero means ``True``.

    Raises:
        TypeError: If ``mask`` is neither boolean nor integer.
        ValueError: If ``mask`` is not shaped like ``x``.
    """
    mask = tf.convert_to_tensor(mask)
    if mask.dtype.is_integer:
        mask = tf.cast(mask, tf.bool)
    if mask.dtype != tf.bool:
        raise TypeError(f"{owner} expects a boolean {name} (True = observed). Received: dtype={mask.dtype.name}")
    if not mask.shape.is_compatible_with(x.shape):
        article = "an" if name[0] in "aeiou" else "a"
        raise ValueError(
            f"{owner} expects {article} {name} shaped like its input. Received: x.shape={tuple(x.shape)}, "
            f"{name}.shape={tuple(mask.shape)}"
        )
    return mask


def observed_mask(x: tf.Tensor, evidence_mask: Any, owner: str = "SequentialSumProductNetwork") -> tf.Tensor:
    """Boolean tensor shaped like ``x``: ``True`` where a value is observed (given by the mask and not NaN).

    Raises:
        TypeError: If ``evidence_mask`` is not boolean.
        ValueError: If ``evidence_mask`` is not shaped like ``x``.
    """
    observed = tf.ones_like(x, dtype=tf.bool) if evidence_mask is None else check_mask(x, evidence_mask, owner)
    return tf.logical_and(observed, tf.logical_not(tf.math.is_nan(x))) if x.dtype.is_floating else observed


def _root_target(root_out: tf.Tensor, mode: str) -> tf.Tensor:
    """Reduce the root output ``[batch, num_children]`` to one value per sample, selecting per ``mode``."""
    if root_out.shape[-1] == 1:
        return root_out[:, 0]
    if mode == "posterior":
        return tf.reduce_logsumexp(root_out, axis=-1)
    if mode == "mpe":
        index = tf.argmax(root_out, axis=-1, output_type=tf.int32)
    else:
        index = tf.random.categorical(root_out, 1, dtype=tf.int32)[:, 0]
    return tf.gather(root_out, index, axis=1, batch_dims=1)


def forward_with_evidence(
    model: keras.Model,
    x: tf.Tensor,
    observed: tf.Tensor,
    tape: tf.GradientTape | None = None,
    maximize_missing: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Run a sequential SPN, marginalizing the leaves of unobserved values.

    Args:
        model: The model.
        x: Data ``[batch, ...]`` (unobserved values must be finite, e.g. zero).
        observed: Boolean mask shaped like ``x``.
        tape: If given, it watches the leaf layer's output.
        maximize_missing: If ``True``, leaves of unobserved values give the log-density at each component's
            mode (maximization, for MPE) instead of 0 (marginalization).

    Returns:
        ``(leaf_input, leaf_output, root_output)``.
    """
    before, leaf, after = split_at_leaf(model)
    h, mask = x, observed
    for layer in before:
        h, mask = layer(h), layer.call(mask)
    leaf_out = leaf(h, evidence_mask=mask)
    if maximize_missing:
        missing = tf.cast(tf.logical_not(mask), leaf_out.dtype)[..., tf.newaxis, :]
        leaf_out += tf.reduce_sum(missing * tf.cast(leaf.mode_log_prob(), leaf_out.dtype), axis=-1)
    if tape is not None:
        tape.watch(leaf_out)
    out = leaf_out
    for layer in after:
        out = layer(out, training=False)
    return h, leaf_out, out


def root_log_prob(root_out: tf.Tensor) -> tf.Tensor:
    """``log p`` per sample from a root output (``[batch, 1]`` or weighted child logits ``[batch, n]``)."""
    return root_out[:, 0] if root_out.shape[-1] == 1 else tf.reduce_logsumexp(root_out, axis=-1)


def leaf_signals(model: keras.Model, x: tf.Tensor, observed: tf.Tensor, mode: str) -> tuple[tf.Tensor, ...]:
    """Run the forward pass with evidence and the backward pass of ``mode`` down to the leaf layer.

    Returns:
        ``(leaf_input, leaf_signal, log_prob)``: the leaf layer's input ``[batch, *variables, var_dim]``, the
        signal per leaf component ``[batch, *variables, num_components]`` and ``log p(x_E)`` per sample.
    """
    _, _, after = split_at_leaf(model)
    with replaced_sum_ops(after, SIGNAL_OPS[mode]()), tf.GradientTape() as tape:
        h, leaf_out, out = forward_with_evidence(model, x, observed, tape, maximize_missing=mode == "mpe")
        target = _root_target(out, mode)
    return h, tape.gradient(target, leaf_out), root_log_prob(out)


def to_data_space(model: keras.Model, values: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Map per-variable values ``[batch, *variables, var_dim]`` from the leaf input layout back to ``x``'s layout.

    ``FlatToRegions`` repeats every variable once per decomposition; the signals of one variable sum to one over
    its decompositions, so the values are summed over that axis.
    """
    before, _, _ = split_at_leaf(model)
    if before:
        values = tf.reduce_sum(values, axis=2)
        if x.shape.rank == 2:
            values = values[..., 0]
    return values


def complete(model: keras.Model, x: Any, evidence_mask: Any, mode: str, seed: Any = None) -> tf.Tensor:
    """Fill in the values of ``x`` that are not observed.

    Args:
        model: A ``SequentialSumProductNetwork``.
        x: Data ``[batch, ...]`` (values at unobserved positions are ignored).
        evidence_mask: Boolean mask shaped like ``x``, ``True`` where observed; ``None``: only ``NaN`` missing.
        mode: ``'posterior'`` (posterior-weighted component modes, i.e. the posterior mean of the leaf modes),
            ``'mpe'`` (modes of the components on the max-product path) or ``'sample'`` (a sample from the
            conditional distribution of the missing values).
        seed: Seed for ``'sample'``.

    Returns:
        ``x`` with its missing values completed, same shape and dtype.
    """
    x = tf.convert_to_tensor(x)
    x = tf.cast(x, model.compute_dtype) if not x.dtype.is_floating else x
    observed = observed_mask(x, evidence_mask)
    filled = tf.where(observed, x, tf.zeros_like(x))
    _, leaf, _ = split_at_leaf(model)
    _, signal, _ = leaf_signals(model, filled, observed, mode)
    if mode == "sample":
        components = leaf.sample_components(tf.shape(x)[0], seed=seed)
    else:
        components = leaf.component_modes()[tf.newaxis]
    values = tf.reduce_sum(tf.cast(signal, components.dtype)[..., tf.newaxis] * components, axis=-2)
    values = tf.cast(to_data_space(model, values, x), x.dtype)
    return tf.where(observed, x, values)


def log_marginal(model: keras.Model, x: Any, evidence_mask: Any = None) -> tf.Tensor:
    """Return ``log p(x_E)`` per sample, marginalizing unobserved (masked or NaN) values."""
    x = tf.convert_to_tensor(x)
    observed = observed_mask(x, evidence_mask)
    filled = tf.where(observed, x, tf.zeros_like(x))
    return root_log_prob(forward_with_evidence(model, filled, observed)[2])
