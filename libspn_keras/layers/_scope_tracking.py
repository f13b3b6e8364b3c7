"""Scope tracking: an invalid SPN structure fails when the model is built, naming the layer and the scopes.

When a layer is called on a symbolic input (``keras.Sequential``, the functional API, a model built from
``keras.Input``), the description of the input's scopes travels with the symbolic tensor and each SPN layer
derives the scopes of its output in NumPy (``ScopeTracking._propagate_scopes``), checking the rules of a valid
SPN on the way:

* products are decomposable: their children have disjoint scopes;
* sums are complete: their children have equal scopes;
* the root covers every variable exactly once.

Scopes are counts ``[*cells, num_vars]``: how many times each variable occurs in the scope of the nodes of a
cell (a region ``(scope, decomposition)`` of a region layer, or a spatial cell ``(row, col)``). Padding cells
have an empty scope (all zeros). ``FlatToRegions`` starts the tracking in the region layout: one variable per
scope, repeated over the decompositions. A leaf called on an input that carries no scopes (a ``keras.Input``)
starts it with a grid whose layout the first layer that needs one decides: a spatial layer reads one variable per
cell, a region layer (products, permutations, ``Undecompose``, ``RootSum``) one variable per scope, shared by the
decompositions; a spatial layer then rejects the region layout. Other layers skip the checks silently when their
input carries no scopes (an eager call on concrete tensors, log-probabilities fed in as a model input).

**Nested models.** Keras computes the symbolic output of a nested model (a ``keras.Sequential``, functional
``keras.Model`` or SPN model used as a layer) without calling its layers, so that output carries no scopes. A layer
called on it derives them (``tracked_scopes``): each SPN layer records on its symbolic output the call that made it,
and the nested model's layers are replayed in NumPy from the scopes of the inputs of the nested call, at any depth of
nesting; an invalid structure raises the error of the inner layer that breaks it. An output of a nested model that no
SPN layer reads (the nested model holds the root) is checked when an SPN model is built on it
(``check_nested_outputs``), not in a plain Keras model. A subclassed model computes its symbolic output by tracing
its ``call`` on backend tensors: nothing comes out of it, and the layers above it skip their checks.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

# Attribute of a symbolic (Keras) tensor under which it carries its ``Scopes`` (Keras attaches masks the same way).
_SCOPES_ATTRIBUTE = "_libspn_keras_scopes"
# Attribute of a layer's symbolic output under which it records ``(layer, inputs)``, the call that made it, so that
# its scopes can be derived again when a nested model that holds the layer is called on other inputs.
_SOURCE_ATTRIBUTE = "_libspn_keras_scopes_source"
REGION_CELLS = ("scope", "decomposition")
REGION, SPATIAL = "region", "spatial"
_ORIGINS = itertools.count()


@dataclasses.dataclass(frozen=True, eq=False)
class Scopes:
    """The scopes of the cells of a tensor.

    Attributes:
        counts: Integer array ``[*cells, num_vars]``: how many times each variable occurs in the scope of a cell.
        log_probabilities: ``True`` for log-probabilities over the scopes (a leaf's output and everything above
            it), ``False`` for observations (``FlatToRegions`` output) that a leaf still has to evaluate.
        origin: Identifies where tracking started, i.e. which variables the last axis of ``counts`` indexes.
        layout: ``REGION``, ``SPATIAL`` or ``None`` for a leaf grid whose layout is not decided yet (its counts
            then have one variable per cell).
    """

    counts: np.ndarray
    log_probabilities: bool
    origin: int
    layout: str | None = None

    def with_counts(self, counts: np.ndarray) -> Scopes:
        """Return these scopes with other ``counts`` (same variables)."""
        return dataclasses.replace(self, counts=counts)


def variable_scopes(cells: Sequence[int], log_probabilities: bool, layout: str | None) -> Scopes:
    """Scopes of a grid whose every cell is its own variable (``counts`` ``[*cells, prod(cells)]``)."""
    num_vars = int(np.prod(cells))
    counts = np.eye(num_vars, dtype=np.int64).reshape(*cells, num_vars)
    return Scopes(counts, log_probabilities, next(_ORIGINS), layout)


def as_region(scopes: Scopes | None) -> Scopes | None:
    """``scopes`` read in the region layout: a leaf grid gets one variable per scope, shared by decompositions."""
    if scopes is None or scopes.layout is not None or scopes.counts.ndim != 3:
        return scopes
    num_scopes, num_decomps, _ = scopes.counts.shape
    counts = np.repeat(np.eye(num_scopes, dtype=np.int64)[:, np.newaxis], num_decomps, axis=1)
    return dataclasses.replace(scopes, counts=counts, layout=REGION)


def as_spatial(layer: str, scopes: Scopes | None) -> Scopes | None:
    """``scopes`` read as a spatial grid; raise a ``ValueError`` for the region layout."""
    if scopes is None or scopes.layout == SPATIAL:
        return scopes
    if scopes.layout == REGION:
        regions = [
            f"({describe_cell(cell, REGION_CELLS)}) covers {_scope(scopes.counts[cell])}"
            for cell in itertools.islice(np.ndindex(*scopes.counts.shape[:-1]), 2)
        ]
        raise ValueError(
            f"Layer '{layer}' expects a spatial grid [batch, height, width, channels] with one variable per cell, "
            "but its input has the region layout [batch, num_scopes, num_decomps, num_nodes] (from FlatToRegions, "
            f"or a leaf grid read by a region layer, whose variables are its scopes): {'; '.join(regions)}. Use "
            "spatial layers up to SpatialToRegions and region layers after it."
        )
    return dataclasses.replace(scopes, layout=SPATIAL)


def tracked_scopes(inputs: Any) -> Any:
    """The ``Scopes`` an input carries (a tuple of them for a list of inputs); ``None`` where it carries none.

    The output of a nested model carries none (Keras computes it without calling the model's layers): its scopes are
    then derived through the model's layers from those of the model's inputs in that call (``_nested_scopes``).
    """
    if isinstance(inputs, list | tuple):
        return tuple(tracked_scopes(x) for x in inputs)
    scopes = getattr(inputs, _SCOPES_ATTRIBUTE, None)
    if scopes is None and _is_symbolic(inputs):
        scopes = _nested_scopes(inputs, tracked_scopes)
        if scopes is not None:
            setattr(inputs, _SCOPES_ATTRIBUTE, scopes)  # derived once per tensor: its leaves keep one origin
    return scopes


def check_nested_outputs(model: keras.Model) -> None:
    """Check the nested models whose outputs are outputs of ``model`` (e.g. one that holds the root).

    A layer above a nested model checks the scopes of its output when it is called; an output of ``model`` made by
    a nested model has no such layer above it. Raise a ``ValueError`` if its structure is not a valid SPN.
    """
    try:
        outputs = model.outputs
    except AttributeError:  # a subclassed model, or a keras.Sequential that is not built yet
        return
    tracked_scopes(list(outputs or []))


def _nested_scopes(tensor: Any, outer_scopes: Any) -> Scopes | None:
    """The scopes of ``tensor`` if a nested model made it, derived through its layers; ``None`` otherwise.

    Args:
        tensor: A symbolic tensor.
        outer_scopes: Gives the scopes of a tensor of the graph that holds ``tensor`` (an input of the call).

    Returns:
        The scopes of ``tensor``, or ``None`` if a nested model did not make it or they are unknown (a subclassed
        model, or a layer that does not track scopes on the way).

    Raises:
        ValueError: If the structure of the nested model is not a valid SPN on those inputs.
    """
    # ``tensor._keras_history`` (operation, node_index, tensor_index) records the call that made a symbolic tensor,
    # and ``operation._inbound_nodes[node_index]`` that call's inputs: how Keras itself walks a functional graph
    # (the ``Node`` docstring in ``keras/src/ops/node.py``).
    history = getattr(tensor, "_keras_history", None)
    if history is None or not isinstance(history.operation, keras.Model):
        return None
    model = history.operation
    try:
        inner_inputs, inner_outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, TypeError):  # a subclassed model: its symbolic output is traced from ``call``
        return None
    try:
        call_inputs = model._inbound_nodes[history.node_index].input_tensors
    except (AttributeError, IndexError):  # a Keras without these attributes: unchecked, as before
        return None
    if len(call_inputs) != len(inner_inputs) or history.tensor_index >= len(inner_outputs):
        return None
    known = {id(inner): outer_scopes(outer) for inner, outer in zip(inner_inputs, call_inputs, strict=True)}
    return _derived_scopes(inner_outputs[history.tensor_index], known)


def _derived_scopes(tensor: Any, known: dict[int, Scopes | None]) -> Any:
    """The scopes of a tensor of a nested model, derived from ``known`` scopes (by ``id``) of the call's inputs.

    The scopes ``tensor`` carries are those of the model's own inputs (when it was built): they are derived again,
    layer by layer, through the calls that the layers recorded. ``known`` also caches the tensors already derived.
    """
    if isinstance(tensor, list | tuple):
        return tuple(_derived_scopes(x, known) for x in tensor)
    if id(tensor) not in known:
        source = getattr(tensor, _SOURCE_ATTRIBUTE, None)
        if source is not None:
            layer, inputs = source
            known[id(tensor)] = layer._propagate_scopes(_derived_scopes(inputs, known), _input_shape(inputs))
        else:  # a nested model in the nested model, or a layer that does not track scopes
            known[id(tensor)] = _nested_scopes(tensor, lambda x: _derived_scopes(x, known))
    return known[id(tensor)]


def _input_shape(inputs: Any) -> Any:
    if isinstance(inputs, list | tuple):
        return [_input_shape(x) for x in inputs]
    return tuple(getattr(inputs, "shape", ()))


def _is_symbolic(outputs: Any) -> bool:
    return type(outputs).__name__ == "KerasTensor"


class ScopeTracking(abc.ABC):
    """Mixin of SPN layers: derives and checks the scopes of symbolic outputs (see the module docstring).

    Subclasses implement ``_propagate_scopes``.

    Attributes:
        output_scopes: The counts of the scopes of the layer's latest symbolic output, ``None`` if unknown.

    Example:
        A root that misses pixels of a 3x3 image (a 2x2 patch, stride 2) is not a distribution over the image:

        >>> import keras
        >>> from libspn_keras import layers
        >>> keras.Sequential([
        ...     keras.Input((3, 3, 1)),
        ...     layers.IndicatorLeaf(num_components=2),
        ...     layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, padding="valid"),
        ...     layers.SpatialToRegions(),
        ...     layers.RootSum(name="root"),
        ... ])
        Traceback (most recent call last):
        ...
        ValueError: Layer 'root' is the root of the SPN, so its children must cover all 9 variables exactly once, but
        at scope 0, decomposition 0 variables [2, 5, 6, 7, 8] are not covered (its scope: variables [0, 1, 3, 4]).
    """

    name: str
    output_scopes: np.ndarray | None = None

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the layer; on symbolic inputs, attach the scopes of the output to it (or raise if invalid)."""
        outputs = super().__call__(inputs, *args, **kwargs)  # type: ignore[misc]
        if _is_symbolic(outputs):
            scopes = self._propagate_scopes(tracked_scopes(inputs), _input_shape(inputs))
            if scopes is not None:
                setattr(outputs, _SCOPES_ATTRIBUTE, scopes)
            setattr(outputs, _SOURCE_ATTRIBUTE, (self, inputs))
            self.output_scopes = None if scopes is None else scopes.counts
        return outputs

    @abc.abstractmethod
    def _propagate_scopes(self, scopes: Any, input_shape: Any) -> Scopes | None:
        """Return the scopes of the output, given those of the input (``None``: unknown); raise if invalid.

        Args:
            scopes: The input's ``Scopes`` or ``None`` (a tuple of them for a list of inputs).
            input_shape: The input's shape, batch included (a list of them for a list of inputs).

        Returns:
            The output's ``Scopes``, or ``None`` when they are unknown.

        Raises:
            ValueError: If the structure is not a valid SPN.
        """


def describe_cell(index: Sequence[int], cells: Sequence[str]) -> str:
    """Name a cell, e.g. ``scope 0, decomposition 1`` or ``row 2, col 0``."""
    return ", ".join(f"{name} {int(i)}" for name, i in zip(cells, index, strict=True))


def _variables(indices: np.ndarray) -> str:
    listed = [int(i) for i in indices[:10]]
    return f"{listed}" if len(indices) <= 10 else f"{listed[:-1] + ['...']} ({len(indices)} variables)"


def _scope(counts: np.ndarray) -> str:
    return f"variables {_variables(np.flatnonzero(counts))}"


def check_decomposable(layer: str, counts: np.ndarray, cells: Sequence[str]) -> None:
    """Raise a ``ValueError`` if a variable occurs more than once in the scope of a product (``counts`` merged)."""
    overlap = np.argwhere(counts.max(axis=-1) > 1)
    if len(overlap):
        cell = tuple(overlap[0])
        repeated = np.flatnonzero(counts[cell] > 1)
        raise ValueError(
            f"Layer '{layer}': the products at {describe_cell(cell, cells)} have children with overlapping scopes "
            f"(variables {_variables(repeated)} occur in more than one child), which breaks decomposability: "
            "the children of a product need disjoint scopes."
        )


def scope_difference(counts: np.ndarray, first: Sequence[int], other: Sequence[int]) -> str | None:
    """Describe the scopes of cells ``first`` and ``other`` of ``counts`` if they differ; ``None`` if equal."""
    a, b = counts[tuple(first)], counts[tuple(other)]
    if np.array_equal(a, b):
        return None
    return f"{_scope(a)} and {_scope(b)}"


def check_root(layer: str, scopes: Scopes, cells: Sequence[str]) -> None:
    """Raise a ``ValueError`` unless every cell of the root's input covers every variable exactly once."""
    counts = scopes.counts
    wrong = np.argwhere(np.any(counts != 1, axis=-1))
    if not len(wrong):
        return
    cell = tuple(wrong[0])
    missing, repeated = np.flatnonzero(counts[cell] == 0), np.flatnonzero(counts[cell] > 1)
    problems = [f"variables {_variables(missing)} are not covered"] if len(missing) else []
    problems += [f"variables {_variables(repeated)} occur more than once"] if len(repeated) else []
    raise ValueError(
        f"Layer '{layer}' is the root of the SPN, so its children must cover all {counts.shape[-1]} variables "
        f"exactly once, but at {describe_cell(cell, cells)} {' and '.join(problems)} "
        f"(its scope: {_scope(counts[cell])})."
    )
