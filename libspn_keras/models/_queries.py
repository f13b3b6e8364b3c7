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

Calling a model built with ``infer_no_evidence=True`` (and ``zero_evidence_inference``) runs the query that the
layers' own sum ops stand for (``own_mode``): gradient and soft EM ops the posterior, hard EM ops the max path,
``SumOpSampleBackprop`` a sample. Random draws (sampled paths, root children and leaf samples) are stateless, with
seeds from one ``keras.random.SeedGenerator`` per query (``libspn_keras.math.seed_generator``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras
from keras import ops

from libspn_keras.layers import BaseLeaf, BaseSum, FlatToRegions, NormalizeStandardScore
from libspn_keras.layers._base_leaf import LeafRepresentation
from libspn_keras.layers._validation import check_mask_dtype
from libspn_keras.math import WeightedSumParts, check_seed, seed_generator
from libspn_keras.math._backend import Tensor, vjp
from libspn_keras.math._random import Seed
from libspn_keras.sum_ops import BaseSelectionSumOp, SumOpBase, SumOpGradBackprop, SumOpSampleBackprop


class MaxProductSumOp(BaseSelectionSumOp):
    """Max-product semiring: ``max_i (x_i + log w_io)`` forward, the maximizing child backward (first on ties).

    Used only inside MPE queries; it is not a training op.
    """

    def __init__(self) -> None:
        super().__init__(sample_prob=None)

    def selection_log_weights(self, log_weights: Tensor) -> Tensor:
        """The log-weights themselves: the maximizing child of ``x_i + log w_io``."""
        return log_weights

    def forward_rows(self, x_rows: Tensor, weights_rows: Tensor, log_norm: Tensor | None) -> WeightedSumParts:
        """Weighted maximum over the children (rows layout)."""
        # ``initial``: an empty batch gives an empty result (Keras' ``max`` raises on empty tensors without it).
        logits = ops.expand_dims(x_rows, -1) + ops.expand_dims(ops.log(weights_rows), 1)  # [groups, rows, in, out]
        log_max = ops.max(logits, axis=-2, initial=float("-inf"))
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

#: Layers that may precede the leaf layer: completions are mapped back through them (``to_data_space``).
BEFORE_LEAF = (FlatToRegions, NormalizeStandardScore)


def mode_of(op: SumOpBase) -> str:
    """The query a sum op stands for: ``'sample'``, ``'mpe'`` (hard EM: the max path) or ``'posterior'``."""
    if isinstance(op, SumOpSampleBackprop):
        return "sample"
    return "mpe" if isinstance(op, BaseSelectionSumOp) else "posterior"


def own_mode(model: keras.Model) -> str:
    """The query that the sum ops of the model's own sum layers stand for (``mode_of``).

    Raises:
        ValueError: If the sum layers' ops stand for different queries.
    """
    _, _, after = split_at_leaf(model)
    modes = {layer.name: mode_of(layer.sum_op) for layer in after if isinstance(layer, BaseSum)}
    if len(set(modes.values())) > 1:
        ops = {layer.name: type(layer.sum_op).__name__ for layer in after if isinstance(layer, BaseSum)}
        raise ValueError(
            f"Model '{model.name}' infers missing values with its layers' sum ops, which must agree on the query "
            "(gradient / soft EM: posterior; hard EM: max path; SumOpSampleBackprop: sample). "
            f"Received: {ops}"
        )
    return next(iter(modes.values()), "posterior")


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
        ValueError: If there is no leaf layer, or a layer other than ``FlatToRegions`` and
            ``NormalizeStandardScore`` precedes it.
    """
    layers = list(model.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, BaseLeaf):
            before = layers[:index]
            unsupported = [type(b).__name__ for b in before if not isinstance(b, BEFORE_LEAF)]
            if unsupported:
                raise ValueError(
                    f"Model '{model.name}': inference queries need the data to reach the leaf layer unchanged "
                    "(only FlatToRegions and NormalizeStandardScore may precede it). Received layers before the "
                    f"leaf: {unsupported}. Apply the transformation to the data instead."
                )
            return before, layer, layers[index + 1 :]
    raise ValueError(f"Model '{model.name}' has no leaf layer (a BaseLeaf subclass).")


def is_float(x: Any) -> bool:
    """Whether the tensor (or array) ``x`` has a floating dtype."""
    return "float" in keras.backend.standardize_dtype(x.dtype)


def shapes_compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    """Whether two static shapes can describe the same tensor (same rank; unknown dimensions match any)."""
    return len(a) == len(b) and all(i is None or j is None or i == j for i, j in zip(a, b, strict=True))


def check_mask(x: Tensor, mask: Any, owner: str = "SequentialSumProductNetwork", name: str = "evidence_mask") -> Tensor:
    """Return ``mask`` as a boolean tensor after checking that it is boolean (or integer) and shaped like ``x``.

    Integer masks are accepted as the leaves accept them: nonzero means ``True``.

    Raises:
        TypeError: If ``mask`` is neither boolean nor integer.
        ValueError: If ``mask`` is not shaped like ``x``.
    """
    check_mask_dtype(owner, name, mask)
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.cast(mask, "bool")
    if not shapes_compatible(tuple(mask.shape), tuple(x.shape)):
        article = "an" if name[0] in "aeiou" else "a"
        raise ValueError(
            f"{owner} expects {article} {name} shaped like its input. Received: x.shape={tuple(x.shape)}, "
            f"{name}.shape={tuple(mask.shape)}"
        )
    return mask


def observed_mask(x: Tensor, evidence_mask: Any, owner: str = "SequentialSumProductNetwork") -> Tensor:
    """Boolean tensor shaped like ``x``: ``True`` where a value is observed (given by the mask and not NaN).

    Raises:
        TypeError: If ``evidence_mask`` is not boolean.
        ValueError: If ``evidence_mask`` is not shaped like ``x``.
    """
    observed = ops.ones_like(x, dtype="bool") if evidence_mask is None else check_mask(x, evidence_mask, owner)
    return ops.logical_and(observed, ops.logical_not(ops.isnan(x))) if is_float(x) else observed


def _root_target(root_out: Tensor, mode: str, seed: Seed) -> Tensor:
    """Reduce the root output ``[batch, num_children]`` to one value per sample, selecting per ``mode``."""
    if root_out.shape[-1] == 1:
        return root_out[:, 0]
    if mode == "posterior":
        return ops.logsumexp(root_out, axis=-1)
    if mode == "mpe":
        index = ops.expand_dims(ops.argmax(root_out, axis=-1), -1)
    else:
        index = keras.random.categorical(root_out, 1, dtype="int32", seed=seed)
    return ops.take_along_axis(root_out, index, axis=1)[:, 0]


class LeafPass(NamedTuple):
    """A forward pass with evidence, split at the leaf layer (``forward_with_evidence``)."""

    before_inputs: list[Tensor]
    """The input of each layer before the leaf (with missing values ``NaN`` for a ``NormalizeStandardScore``)."""
    leaf_input: Tensor
    leaf_output: Tensor
    root_output: Tensor


class ToLeaf(NamedTuple):
    """A forward pass with evidence up to the leaf layer's output (``forward_to_leaf``)."""

    before_inputs: list[Tensor]
    """The input of each layer before the leaf (with missing values ``NaN`` for a ``NormalizeStandardScore``)."""
    leaf_input: Tensor
    leaf_output: Tensor


def forward_to_leaf(model: keras.Model, x: Tensor, observed: Tensor, maximize_missing: bool = False) -> ToLeaf:
    """Run a sequential SPN up to its leaf layer, marginalizing the leaves of unobserved values.

    A ``NormalizeStandardScore`` before the leaf sees the unobserved values as ``NaN``, so that sample-wise
    statistics are those of the evidence.

    Args:
        model: The model.
        x: Data ``[batch, ...]`` (unobserved values must be finite, e.g. zero).
        observed: Boolean mask shaped like ``x``.
        maximize_missing: If ``True``, leaves of unobserved values give the log-density at each component's
            mode (maximization, for MPE) instead of 0 (marginalization).

    Returns:
        The pass up to the leaf layer's output (``ToLeaf``).
    """
    before, leaf, _ = split_at_leaf(model)
    h, mask, before_inputs = x, observed, []
    for layer in before:
        if isinstance(layer, NormalizeStandardScore):
            h = h if is_float(h) else ops.cast(h, layer.compute_dtype)
            h = ops.where(mask, h, ops.convert_to_tensor(float("nan"), dtype=h.dtype))
            before_inputs.append(h)
            normalized = layer(h)
            h = ops.where(mask, normalized, ops.zeros_like(normalized))
        else:
            before_inputs.append(h)
            h, mask = layer(h), layer.call(mask)
    leaf_out = leaf(h, evidence_mask=mask)
    if maximize_missing:
        missing = ops.expand_dims(ops.cast(ops.logical_not(mask), leaf_out.dtype), -2)
        leaf_out += ops.sum(missing * ops.cast(leaf.mode_log_prob(), leaf_out.dtype), axis=-1)
    return ToLeaf(before_inputs, h, leaf_out)


def forward_from_leaf(model: keras.Model, leaf_out: Tensor) -> Tensor:
    """Run the layers above the leaf layer of a sequential SPN on the leaf layer's output; return the root's."""
    _, _, after = split_at_leaf(model)
    out = leaf_out
    for layer in after:
        out = layer(out, training=False)
    return out


def forward_with_evidence(model: keras.Model, x: Tensor, observed: Tensor, maximize_missing: bool = False) -> LeafPass:
    """Run a sequential SPN, marginalizing the leaves of unobserved values (``forward_to_leaf``, then the rest).

    Args:
        model: The model.
        x: Data ``[batch, ...]`` (unobserved values must be finite, e.g. zero).
        observed: Boolean mask shaped like ``x``.
        maximize_missing: If ``True``, leaves of unobserved values give the log-density at each component's
            mode (maximization, for MPE) instead of 0 (marginalization).

    Returns:
        The pass (``LeafPass``).
    """
    to_leaf = forward_to_leaf(model, x, observed, maximize_missing)
    return LeafPass(*to_leaf, forward_from_leaf(model, to_leaf.leaf_output))


def root_log_prob(root_out: Tensor) -> Tensor:
    """``log p`` per sample from a root output (``[batch, 1]`` or weighted child logits ``[batch, n]``)."""
    return root_out[:, 0] if root_out.shape[-1] == 1 else ops.logsumexp(root_out, axis=-1)


def leaf_signals(
    model: keras.Model, x: Tensor, observed: Tensor, mode: str, seed: Seed = None
) -> tuple[ToLeaf, Tensor]:
    """Run the forward pass with evidence and the backward pass of ``mode`` down to the leaf layer.

    Args:
        model: The model.
        x: Data ``[batch, ...]`` with finite values.
        observed: Boolean mask shaped like ``x``.
        mode: A key of ``SIGNAL_OPS``.
        seed: Seed of the draws of ``'sample'`` (every sum layer and the root take their own seed from it).

    Returns:
        ``(to_leaf, leaf_signal)``: the forward pass up to the leaf layer and the signal per leaf component
        ``[batch, *variables, num_components]`` (the gradient of the selected root value with respect to the
        leaf layer's output).
    """
    _, _, after = split_at_leaf(model)
    op = SIGNAL_OPS[mode]()
    if isinstance(op, BaseSelectionSumOp):
        op.seed = seed
    with replaced_sum_ops(after, op):
        to_leaf = forward_to_leaf(model, x, observed, maximize_missing=mode == "mpe")
        _, (signal,) = vjp(
            lambda leaf_out: _root_target(forward_from_leaf(model, leaf_out), mode, seed), [to_leaf.leaf_output], 1.0
        )
    return to_leaf, signal


def component_weights(signal: Tensor, weighted: bool, decomposition_axis: int | None = None) -> Tensor:
    """The weight of each component's value in a completion, ``[batch, *variables, num_components]``.

    Args:
        signal: The leaf signal (``leaf_signals``); over the components of one variable and all its
            decompositions it sums to one.
        weighted: ``True``: the signal itself (posterior-weighted values); ``False``: each leaf's whole signal on
            its component with the largest signal (the argmax, as ``infer_weighted_sum=False``).
        decomposition_axis: With ``weighted=False``, the axis of ``signal`` along which a variable repeats once
            per decomposition (``FlatToRegions``), or ``None``: every leaf is a variable of its own.

    Returns:
        The weights.
    """
    if weighted:
        return signal
    mass = ops.sum(signal, axis=-1, keepdims=True)
    # A variable's mass sums to one over its decompositions only up to rounding (the gradient on JAX gives
    # 1 + 2**-52 for a single one): normalized, a variable of one decomposition takes exactly its component's value.
    total = mass if decomposition_axis is None else ops.sum(mass, axis=decomposition_axis, keepdims=True)
    positive = total > 0
    mass = ops.where(positive, mass / ops.where(positive, total, ops.ones_like(total)), ops.zeros_like(mass))
    return ops.one_hot(ops.argmax(signal, axis=-1), signal.shape[-1], dtype=signal.dtype) * mass


def to_data_space(model: keras.Model, values: Tensor, leaf_pass: ToLeaf | LeafPass) -> Tensor:
    """Map per-variable values ``[batch, *variables, var_dim]`` from the leaf input layout back to the data.

    The layers before the leaf are undone in reverse order. ``FlatToRegions`` repeats every variable once per
    decomposition; the weights of one variable sum to one over its decompositions, so the values are summed
    over that axis. ``NormalizeStandardScore`` is undone with the statistics of its input
    (``NormalizeStandardScore.denormalize``).
    """
    before, _, _ = split_at_leaf(model)
    for layer, layer_input in zip(reversed(before), reversed(leaf_pass.before_inputs), strict=True):
        if isinstance(layer, FlatToRegions):
            values = ops.sum(values, axis=2)
            if len(layer_input.shape) == 2:
                values = values[..., 0]
        else:
            values = layer.denormalize(values, layer_input)
    return values


def complete(
    model: keras.Model,
    x: Any,
    evidence_mask: Any,
    mode: str,
    seed: Any = None,
    leaf_representation: LeafRepresentation | None = None,
    weighted: bool = True,
) -> Tensor:
    """Fill in the values of ``x`` that are not observed.

    Args:
        model: A ``SequentialSumProductNetwork``.
        x: Data ``[batch, ...]`` (values at unobserved positions are ignored).
        evidence_mask: Boolean mask shaped like ``x``, ``True`` where observed; ``None``: only ``NaN`` missing.
        mode: ``'posterior'`` (posterior-weighted component modes, i.e. the posterior mean of the leaf modes),
            ``'mpe'`` (modes of the components on the max-product path) or ``'sample'`` (a sample from the
            conditional distribution of the missing values).
        seed: ``None`` (Keras' global generator), an int or a ``keras.random.SeedGenerator``: the seed of every
            draw of the query (``'sample'`` paths, root children and leaf samples).
        leaf_representation: What stands for a component: ``None`` (samples for ``'sample'``, else modes) or
            the leaf's ``LeafRepresentation``.
        weighted: Combine the components' values with their signals (``True``) or take each leaf's component
            with the largest signal (``component_weights``).

    Returns:
        ``x`` with its missing values completed, same shape and dtype.

    Raises:
        TypeError: If ``seed`` is not ``None``, an int or a ``keras.random.SeedGenerator``.
    """
    generator = seed_generator(check_seed(f"Model '{model.name}'", seed))
    x = ops.convert_to_tensor(x)
    x = x if is_float(x) else ops.cast(x, model.compute_dtype)
    observed = observed_mask(x, evidence_mask)
    filled = ops.where(observed, x, ops.zeros_like(x))
    before, leaf, _ = split_at_leaf(model)
    leaf_pass, signal = leaf_signals(model, filled, observed, mode, generator)
    if leaf_representation is None:
        leaf_representation = LeafRepresentation.SAMPLE if mode == "sample" else LeafRepresentation.MODE
    if leaf_representation is LeafRepresentation.SAMPLE:
        components = leaf.sample_components(ops.shape(x)[0], seed=generator)
    else:
        components = ops.expand_dims(leaf.component_modes(), 0)
    # FlatToRegions repeats every variable once per decomposition, along axis 2 of the leaf layer's output.
    decomposition_axis = 2 if any(isinstance(layer, FlatToRegions) for layer in before) else None
    weights = ops.cast(component_weights(signal, weighted, decomposition_axis), components.dtype)
    values = ops.sum(ops.expand_dims(weights, -1) * components, axis=-2)
    values = ops.cast(to_data_space(model, values, leaf_pass), x.dtype)
    return ops.where(observed, x, values)


def infer(model: keras.Model, x: Any, evidence_mask: Any, weighted: bool) -> Tensor:
    """What an ``infer_no_evidence=True`` model returns for ``(x, evidence_mask)``: the query of its own sum ops.

    Gradient and soft EM sum ops give the posterior-weighted leaf values, hard EM ops those on the max path and
    ``SumOpSampleBackprop`` a sample (``own_mode``); the leaf's ``leaf_representation`` says whether a
    component stands for its mode or a sample. Draws follow Keras' global generator
    (``keras.utils.set_random_seed``).
    """
    _, leaf, _ = split_at_leaf(model)
    return complete(model, x, evidence_mask, own_mode(model), None, leaf.leaf_representation, weighted)


def log_marginal(model: keras.Model, x: Any, evidence_mask: Any = None) -> Tensor:
    """Return ``log p(x_E)`` per sample, marginalizing unobserved (masked or NaN) values."""
    x = ops.convert_to_tensor(x)
    observed = observed_mask(x, evidence_mask)
    filled = ops.where(observed, x, ops.zeros_like(x))
    return root_log_prob(forward_with_evidence(model, filled, observed).root_output)
