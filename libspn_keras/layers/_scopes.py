"""Layers that bring flat inputs into the region layout and permute / pad their scopes."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._scope_tracking import REGION, Scopes, ScopeTracking, as_region, variable_scopes
from libspn_keras.layers._validation import Shape, check_positive_int, check_rank, is_integer, pop_input_shape
from libspn_keras.math import (
    attach_indicator_index,
    attach_row_sums,
    attached_indicator_index,
    attached_row_sums,
    attached_rows,
    custom_gradient,
    from_rows,
    gather_or_zero,
    inverse_gather_index,
)
from libspn_keras.math._backend import Tensor, read_variable, values_known

REGION_LAYOUT = "[batch, num_scopes, num_decomps, num_nodes]"


@keras.saving.register_keras_serializable(package="libspn_keras")
class FlatToRegions(ScopeTracking, keras.layers.Layer):
    """Flat representation to a dense (region) representation.

    Reshapes a flat input of shape ``[batch, num_vars[, var_dimensionality]]`` to
    ``[batch, num_vars, num_decomps, var_dimensionality]``: every variable is its own scope, repeated for each
    decomposition (so the following leaf layer has separate parameters per decomposition). Missing values
    (``NaN``) and integer inputs pass through unchanged.

    Args:
        num_decomps: Number of decompositions.
        **kwargs: Keyword arguments to pass on to ``keras.layers.Layer``; ``input_shape`` (without the batch axis),
            as in LibSPN Keras, makes the layer the input of a ``keras.Sequential`` model.

    Input shape:
        ``[batch, num_vars]`` or ``[batch, num_vars, var_dimensionality]``.

    Output shape:
        ``[batch, num_vars, num_decomps, var_dimensionality]`` (``var_dimensionality`` is 1 for rank-2 inputs).

    Example:
        >>> import numpy as np
        >>> tuple(FlatToRegions(num_decomps=3)(np.zeros((2, 5), "float32")).shape)
        (2, 5, 3, 1)
    """

    def __init__(self, num_decomps: int = 1, **kwargs: Any) -> None:
        input_shape = pop_input_shape("FlatToRegions", kwargs)
        super().__init__(**kwargs)
        self._input_shape_arg = input_shape  # read by keras.Sequential to create its input
        self.num_decomps = check_positive_int("FlatToRegions", "num_decomps", num_decomps)

    def build(self, input_shape: Shape) -> None:
        """Check the input rank."""
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"Layer '{self.name}' expects inputs of shape [batch, num_vars] or "
                f"[batch, num_vars, var_dimensionality]. Received: input_shape={tuple(input_shape)}"
            )

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Start tracking: scope ``s`` of every decomposition is variable ``s`` (observations, for a leaf)."""
        if input_shape[1] is None or scopes is not None and scopes.log_probabilities:
            return None  # unknown variables, or log-probabilities reshaped (their scopes are not variables)
        observed = variable_scopes((input_shape[1], 1), log_probabilities=False, layout=REGION)
        return observed.with_counts(np.repeat(observed.counts, self.num_decomps, axis=1))

    def call(self, x: Tensor) -> Tensor:
        """Add the decomposition (and variable dimensionality) axes."""
        if len(x.shape) == 2:
            x = x[..., np.newaxis]
        x = x[:, :, np.newaxis, :]
        return ops.tile(x, [1, 1, self.num_decomps, 1]) if self.num_decomps > 1 else x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_vars, num_decomps, var_dimensionality]``."""
        var_dim = input_shape[2] if len(input_shape) == 3 else 1
        return (input_shape[0], input_shape[1], self.num_decomps, var_dim)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"num_decomps": self.num_decomps, **super().get_config()}


def _permute_and_pad(x: Tensor, permutations: np.ndarray) -> Tensor:
    """Gather scopes per decomposition; index ``-1`` yields a padding scope with log-probability 0."""
    _, num_scopes, num_decomps, num_nodes = x.shape
    scope_index = np.where(permutations < 0, num_scopes, permutations).T  # [scopes_out, decomps]
    flat_index = (scope_index * num_decomps + np.arange(num_decomps)[np.newaxis]).reshape(-1).astype(np.int32)
    rows = attached_rows(x)
    if rows is not None:  # [scopes * decomps, batch, nodes]: gather whole [batch, nodes] blocks
        out = from_rows(_gather_rows(rows, flat_index), (scope_index.shape[0], num_decomps), shared=False)
        row_sums = attached_row_sums(x)
        if row_sums is not None:  # sums of permuted rows are sums of the input's rows (padding stays padding)
            padded_index = np.append(flat_index, rows.shape[0])

            def permuted_row_sums(sources: np.ndarray) -> Tensor:
                return row_sums(padded_index[np.minimum(sources, len(flat_index))])

            attach_row_sums(out, permuted_row_sums)
        return out
    padded = ops.concatenate([x, ops.zeros_like(x[:, :1])], axis=1)
    flat = ops.reshape(padded, [-1, (num_scopes + 1) * num_decomps, num_nodes])
    gathered = ops.take(flat, flat_index, axis=1)
    return ops.reshape(gathered, [-1, scope_index.shape[0], num_decomps, num_nodes])


def _permute_and_pad_by_weight(x: Tensor, permutations: Tensor) -> Tensor:
    """``_permute_and_pad`` with the permutations read from a weight when the layer runs (an int tensor).

    The same gathers as ``_permute_and_pad`` with a run-time index computed from ``permutations``
    (``[num_decomps, num_scopes_out]``; a few integer ops): position rows attached to ``x`` are gathered as rows,
    others as ``[batch, scopes * decomps, nodes]`` blocks.
    """
    _, num_scopes, num_decomps, num_nodes = x.shape
    num_scopes_out = permutations.shape[1]
    scope_index = ops.transpose(ops.where(permutations < 0, num_scopes, permutations))  # [scopes_out, decomps]
    flat_index = ops.reshape(scope_index * num_decomps + np.arange(num_decomps, dtype=np.int32)[np.newaxis], [-1])
    rows = attached_rows(x)
    if rows is not None:  # [scopes * decomps, batch, nodes]: index scopes * decomps is the padding row
        row_index = ops.minimum(flat_index, num_scopes * num_decomps)
        return from_rows(gather_or_zero(rows, row_index), (num_scopes_out, num_decomps), shared=False)
    padded = ops.concatenate([x, ops.zeros_like(x[:, :1])], axis=1)
    flat = ops.reshape(padded, [-1, (num_scopes + 1) * num_decomps, num_nodes])
    gathered = ops.take(flat, flat_index, axis=1)
    return ops.reshape(gathered, [-1, num_scopes_out, num_decomps, num_nodes])


def _gather_rows(rows: Tensor, index: np.ndarray) -> Tensor:
    """``rows[index]`` where no row is taken twice, and ``index >= len(rows)`` yields a row of zeros (padding).

    Its gradient is a gather too (of the output signal, by the inverse of ``index``), not the scatter-add of
    a gather's gradient: a decomposition uses every scope at most once, so no signals need adding.
    """
    num_rows = rows.shape[0]
    inverse = inverse_gather_index(index, num_rows)
    index = np.minimum(index, num_rows).astype(np.int32)

    @custom_gradient
    def gather(rows: Tensor) -> tuple[Tensor, Any]:
        def grad(dy: Tensor) -> Tensor:
            return gather_or_zero(dy, inverse)

        return gather_or_zero(rows, index), grad

    return gather(rows)


def _as_permutations(layer: str, permutations: Any) -> np.ndarray:
    """Return ``permutations`` as an int64 array, raising a ``ValueError`` for ragged or non-integral values."""
    try:
        array = np.asarray(permutations)
        integral = array.dtype.kind in "iu" or (array.dtype.kind == "f" and bool(np.all(array == np.round(array))))
    except ValueError:  # ragged nested sequences
        integral = False
    if not integral:
        raise ValueError(
            f"{layer} expects permutations to be a (rectangular) integer array of shape "
            f"[num_decomps, num_scopes_out]. Received: permutations={permutations!r}"
        )
    return array.astype(np.int64)


def _check_permutations(layer: str, permutations: np.ndarray, input_shape: Shape) -> keras.InputSpec:
    """Raise a ``ValueError`` unless ``permutations`` fit the input; return the spec of fitting inputs."""
    check_rank(layer, input_shape, 4, REGION_LAYOUT)
    _, num_scopes, num_decomps, _ = input_shape
    if permutations.ndim != 2 or permutations.shape[0] != num_decomps or permutations.shape[1] == 0:
        raise ValueError(
            f"Layer '{layer}' expects permutations of shape [num_decomps={num_decomps}, num_scopes_out] with "
            f"num_scopes_out >= 1. Received: permutations.shape={permutations.shape}"
        )
    if num_scopes is None or permutations.min() < -1 or permutations.max() >= num_scopes:
        raise ValueError(
            f"Layer '{layer}' expects permutation entries in [-1, {num_scopes}) (-1 pads). "
            f"Received: min={permutations.min()}, max={permutations.max()}"
        )
    for decomp, row in enumerate(permutations):
        used = row[row >= 0]
        if len(np.unique(used)) != len(used):
            raise ValueError(
                f"Layer '{layer}': decomposition {decomp} uses a scope more than once, which breaks "
                f"decomposability. Received: permutations[{decomp}]={row.tolist()}"
            )
    return keras.InputSpec(ndim=4, axes={1: num_scopes, 2: num_decomps})


def _check_random_permutations(layer: str, permutations: np.ndarray, input_shape: Shape) -> keras.InputSpec:
    """``_check_permutations``, and every decomposition uses every scope (a permutation of them, padded with -1)."""
    spec = _check_permutations(layer, permutations, input_shape)
    num_scopes = input_shape[1]
    for decomp, row in enumerate(permutations):
        if np.count_nonzero(row >= 0) != num_scopes:
            raise ValueError(
                f"Layer '{layer}' expects every decomposition to hold a permutation of the scopes "
                f"0..{num_scopes - 1}, each exactly once (-1 pads). Received: permutations[{decomp}]={row.tolist()}"
            )
    return spec


def _check_assignments(layer: PermuteAndPadScopesRandom, variable: keras.Variable) -> None:
    """Make ``variable.assign`` reject invalid permutations with known values (``set_weights``, ``load_weights``).

    ``keras.Model.set_weights`` assigns the variables of all layers directly, without the layers' ``set_weights``;
    checking the assignment catches every way in. Traced values (JAX's stateless scope) are not checked; the
    layer's ``call`` reads the variable without going through ``assign``.
    """
    assign = variable.assign
    owner = weakref.ref(layer)

    def checked_assign(value: Any) -> Any:
        this = owner()
        if this is not None and values_known(value):
            array = _as_permutations(f"Layer '{this.name}'", keras.ops.convert_to_numpy(value))
            _check_random_permutations(this.name, array, this._input_shape_built)
        return assign(value)

    variable.assign = checked_assign  # type: ignore[method-assign]


class BasePermuteAndPadScopes(ScopeTracking, keras.layers.Layer):
    """Base of the scope permutation layers: gathers scopes per decomposition, ``-1`` pads.

    Padding scopes have log-probability 0 (probability 1), so they do not change the distribution.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]``.

    Output shape:
        ``[batch, num_scopes_out, num_decomps, num_nodes]`` with ``num_scopes_out = permutations.shape[1]``.
    """

    permutations: np.ndarray | None

    def _num_scopes_out(self, input_shape: Shape) -> int:
        raise NotImplementedError

    def call(self, x: Tensor) -> Tensor:
        """Permute and pad the scopes of ``x``."""
        assert self.permutations is not None, "build() sets the permutations"
        return _permute_and_pad(x, self.permutations)

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Output scope ``s`` of decomposition ``d`` has the scope of input scope ``permutations[d, s]`` (or none)."""
        scopes = as_region(scopes)
        if scopes is None or self.permutations is None:
            return None
        counts = np.concatenate([scopes.counts, np.zeros_like(scopes.counts[:1])])  # the last scope pads
        scope_index = np.where(self.permutations < 0, len(scopes.counts), self.permutations).T
        return scopes.with_counts(counts[scope_index, np.arange(scope_index.shape[1])])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_scopes_out, num_decomps, num_nodes]``."""
        batch, _, num_decomps, num_nodes = input_shape
        return (batch, self._num_scopes_out(input_shape), num_decomps, num_nodes)


@keras.saving.register_keras_serializable(package="libspn_keras")
class PermuteAndPadScopes(BasePermuteAndPadScopes):
    """Permutes and pads scopes, usually applied after a ``FlatToRegions`` and a ``BaseLeaf`` layer.

    Padding can be used to ensure uniform dimension sizes across scopes, decomps and nodes in the layer stack.
    Padding is achieved by using ``-1`` for scope indices in ``permutations``.

    Args:
        permutations: Integer array of shape ``[num_decomps, num_scopes_out]``: output scope ``s`` of
            decomposition ``d`` is input scope ``permutations[d][s]`` (or padding if ``-1``). If ``None``, it must
            be set (``layer.permutations = ...``) before the layer is built.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]``.

    Output shape:
        ``[batch, num_scopes_out, num_decomps, num_nodes]``.

    Raises:
        ValueError: If ``permutations`` is not an integer array (when constructed) or does not fit the input (when
            built): a shape other than ``[num_decomps, num_scopes_out]``, an index outside ``[-1, num_scopes)`` or
            a scope used twice in one decomposition.

    Example:
        >>> import numpy as np
        >>> x = np.arange(6, dtype="float32").reshape(1, 3, 1, 2)
        >>> out = PermuteAndPadScopes([[2, -1, 0, 1]])(x)
        >>> np.asarray(out)[0, :, 0].tolist()
        [[4.0, 5.0], [0.0, 0.0], [0.0, 1.0], [2.0, 3.0]]
    """

    def __init__(self, permutations: Sequence[Sequence[int]] | np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.permutations = None if permutations is None else _as_permutations("PermuteAndPadScopes", permutations)

    def build(self, input_shape: Shape) -> None:
        """Validate the permutations against the input shape."""
        if self.permutations is None:
            raise ValueError(f"Layer '{self.name}' was built before its permutations were set.")
        self.permutations = _as_permutations(f"Layer '{self.name}'", self.permutations)
        self.input_spec = _check_permutations(self.name, self.permutations, tuple(input_shape))

    def _num_scopes_out(self, input_shape: Shape) -> int:
        if self.permutations is None:
            raise ValueError(f"Layer '{self.name}' has no permutations yet.")
        return int(self.permutations.shape[1])

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        perms = None if self.permutations is None else self.permutations.tolist()
        return {"permutations": perms, **super().get_config()}


@keras.saving.register_keras_serializable(package="libspn_keras")
class PermuteAndPadScopesRandom(BasePermuteAndPadScopes):
    """Randomly permutes scopes per decomposition and pads them to ``prod(factors)`` scopes.

    Each decomposition gets its own random permutation of the variables (as in RAT-SPNs); padding scopes are
    spread evenly among the real ones. The generated permutations are part of the layer's config, so a saved
    model reloads with the same structure, and, as in the original, the layer's one weight: a non-trainable int32
    ``permutations`` variable ``[num_decomps, prod(factors)]`` that the layer reads when it runs, so that
    ``set_weights`` / ``load_weights`` with another model's weights copy its structure too.

    Args:
        factors: Number of factors in the preceding product layers, from bottom to top. Needed to compute the
            effective number of scopes, including padded nodes. ``SequentialSumProductNetwork`` infers them from
            its ``DenseProduct`` / ``ReduceProduct`` layers when not given; they can also be set later through
            ``generate_factors``.
        seed: Seed of the permutations (``None``: random).
        permutations: Permutations generated at build time; set by deserialization, not by users.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]``.

    Output shape:
        ``[batch, prod(factors), num_decomps, num_nodes]``.

    Raises:
        ValueError: If a factor is not a positive integer, ``prod(factors)`` is smaller than ``num_scopes``, or
            restored ``permutations`` do not fit the input (see ``PermuteAndPadScopes``).

    Example:
        >>> import numpy as np
        >>> layer = PermuteAndPadScopesRandom(factors=[2, 2], seed=0)
        >>> tuple(layer(np.zeros((1, 3, 2, 4), "float32")).shape)
        (1, 4, 2, 4)
    """

    def __init__(
        self,
        factors: Sequence[int] | None = None,
        seed: int | None = None,
        permutations: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.factors: list[int] | None = None
        if factors is not None:
            self.generate_factors(factors)
        self.seed = seed
        self.permutations_variable: keras.Variable | None = None
        self._initial_permutations = (
            None if permutations is None else _as_permutations("PermuteAndPadScopesRandom", permutations)
        )

    @property  # type: ignore[override]
    def permutations(self) -> np.ndarray | None:
        """The permutations ``[num_decomps, num_scopes_out]``: the weight's value once built."""
        if self.permutations_variable is not None:
            value = read_variable(self.permutations_variable)  # the current value, also while a function is traced
            if value is None:
                raise ValueError(
                    f"Layer '{self.name}': its permutations cannot be read while a JAX function is traced."
                )
            return value.astype(np.int64)
        return self._initial_permutations

    @permutations.setter
    def permutations(self, permutations: Any) -> None:
        array = None if permutations is None else _as_permutations(f"Layer '{self.name}'", permutations)
        if self.permutations_variable is None:
            self._initial_permutations = array
            return
        if array is None:
            raise ValueError(f"Layer '{self.name}' is built; its permutations cannot be removed.")
        self.permutations_variable.assign(array.astype(np.int32))  # checked by _check_assignments

    def generate_factors(self, factors: Sequence[int]) -> None:
        """Set the factors of the product layers that follow (bottom to top).

        Args:
            factors: Positive integers.
        """
        if isinstance(factors, str) or not isinstance(factors, Sequence | np.ndarray):
            raise ValueError(
                "PermuteAndPadScopesRandom expects factors to be a sequence of positive integers (one per product "
                f"layer). Received: factors={factors!r}"
            )
        self.factors = [check_positive_int("PermuteAndPadScopesRandom", "factors", f) for f in factors]

    def set_factors(self, factors: Sequence[int]) -> None:
        """Set the factors of the product layers that follow (LibSPN Keras 0.6's name of ``generate_factors``).

        Args:
            factors: Positive integers, one per product layer, bottom to top.

        Example:
            >>> layer = PermuteAndPadScopesRandom(seed=0)
            >>> layer.set_factors([2, 3])
            >>> layer.factors
            [2, 3]
        """
        self.generate_factors(factors)

    def _num_scopes_out(self, input_shape: Shape) -> int:
        if self.permutations_variable is not None:
            return int(self.permutations_variable.shape[1])
        if self._initial_permutations is not None:
            return int(self._initial_permutations.shape[1])
        if self.factors is None:
            raise ValueError(
                f"Layer '{self.name}' needs factors: pass factors=[...] or use it in a SequentialSumProductNetwork "
                "that infers them from its product layers."
            )
        return int(np.prod(self.factors))

    def build(self, input_shape: Shape) -> None:
        """Generate (or validate restored) permutations and store them in the ``permutations`` weight."""
        input_shape = tuple(input_shape)
        check_rank(self.name, input_shape, 4, REGION_LAYOUT)
        _, num_scopes, num_decomps, _ = input_shape
        perms = self._initial_permutations
        if perms is None:
            num_out = self._num_scopes_out(input_shape)
            if num_scopes is None or num_decomps is None or num_out < num_scopes:
                raise ValueError(
                    f"Layer '{self.name}': prod(factors)={num_out} must be at least num_scopes. "
                    f"Received: factors={self.factors}, input_shape={input_shape}"
                )
            rng = np.random.default_rng(self.seed)
            positions = np.round(np.linspace(0, num_out - 1, num_scopes)).astype(np.int64)
            perms = np.full((num_decomps, num_out), -1, dtype=np.int64)
            for decomp in range(num_decomps):
                perms[decomp, positions] = rng.permutation(num_scopes)
        self.input_spec = _check_random_permutations(self.name, perms, input_shape)
        self._input_shape_built = input_shape
        self.permutations_variable = self.add_weight(
            name="permutations",
            shape=perms.shape,
            initializer=keras.initializers.Constant(perms.astype(np.int32)),
            dtype="int32",
            trainable=False,
        )
        _check_assignments(self, self.permutations_variable)

    def call(self, x: Tensor) -> Tensor:
        """Permute and pad the scopes of ``x`` by the permutations the weight holds now.

        Eagerly (and when weights are loaded from a file, ``load_own_variables``) the weight's value is checked as
        ``PermuteAndPadScopes`` checks its argument, so that permutations copied by ``set_weights`` cannot silently
        break decomposability.
        """
        assert self.permutations_variable is not None, "build() creates the permutations weight"
        if values_known(x):
            self._check_weight()
        return _permute_and_pad_by_weight(x, ops.convert_to_tensor(self.permutations_variable))

    def load_own_variables(self, store: Any) -> None:
        """Load the permutations weight (e.g. from a ``.weights.h5`` file) and check it."""
        super().load_own_variables(store)
        self._check_weight()

    def _check_weight(self) -> None:
        permutations = self.permutations
        assert permutations is not None, "build() creates the permutations weight"
        _check_random_permutations(self.name, permutations, self._input_shape_built)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument, including generated permutations."""
        perms = None if self.permutations is None else self.permutations.tolist()
        return {"factors": self.factors, "seed": self.seed, "permutations": perms, **super().get_config()}


def _check_indices(indices: Any) -> tuple[int, ...]:
    owner = "GatherScopes"
    if isinstance(indices, str | bytes) or not isinstance(indices, Sequence | np.ndarray):
        raise TypeError(f"{owner} expects indices to be a sequence of integers. Received: indices={indices!r}")
    values = list(indices)
    if not values or any(not is_integer(value) or int(value) < 0 for value in values):
        raise ValueError(
            f"{owner} expects indices to be a non-empty sequence of non-negative integers (scope indices). "
            f"Received: indices={values!r}"
        )
    return tuple(int(value) for value in values)


@keras.saving.register_keras_serializable(package="libspn_keras")
class GatherScopes(ScopeTracking, keras.layers.Layer):
    """Gathers scopes by index, repeats allowed: one copy of a leaf's scope per node that uses it.

    Unlike ``PermuteAndPadScopes``, a scope may be taken several times: e.g. an SPN whose leaf nodes reuse
    variables (several categoricals of each variable, one per cluster of a ``learn_spn`` structure) gathers the
    leaf's output ``[batch, num_vars, 1, num_states]`` into one region per leaf node, for a ``DenseSum`` to hold
    one categorical per node. The output's scopes overlap where indices repeat: the layer above must combine them
    validly (``SumProductTree`` checks it). All decompositions gather the same scopes; the gradient adds the
    signals of the copies of a scope.

    Args:
        indices: The input scope of each output scope, in ``[0, num_scopes)``.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]``.

    Output shape:
        ``[batch, len(indices), num_decomps, num_nodes]``.

    Raises:
        TypeError: If ``indices`` is not a sequence.
        ValueError: If ``indices`` is empty or holds a value that is not a non-negative integer (when constructed),
            or an index outside the input's scopes (when built).

    Example:
        >>> import numpy as np
        >>> x = np.arange(6, dtype="float32").reshape(1, 3, 1, 2)
        >>> np.asarray(GatherScopes([2, 0, 2])(x))[0, :, 0].tolist()
        [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]
    """

    def __init__(self, indices: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.indices = _check_indices(indices)

    def build(self, input_shape: Shape) -> None:
        """Check that every index names a scope of the input."""
        check_rank(self.name, input_shape, 4, REGION_LAYOUT)
        num_scopes = input_shape[1]
        if num_scopes is None or max(self.indices) >= num_scopes:
            raise ValueError(
                f"Layer '{self.name}' expects indices in [0, num_scopes={num_scopes}). "
                f"Received: max(indices)={max(self.indices)}"
            )
        self.input_spec = keras.InputSpec(ndim=4, axes={1: num_scopes})

    def call(self, x: Tensor) -> Tensor:
        """Gather the scopes of ``x`` (and of the indicator index an ``IndicatorLeaf`` attached to it)."""
        indices = np.asarray(self.indices, dtype=np.int32)
        out = ops.take(x, indices, axis=1)
        index = attached_indicator_index(x)
        if index is None:
            return out
        # The sums above look their values up from the gathered states (``SumOpBase.weighted_sum``).
        return attach_indicator_index(out, ops.take(index, indices, axis=1))

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Output scope ``s`` has the scope of input scope ``indices[s]``."""
        scopes = as_region(scopes)
        if scopes is None or scopes.counts.ndim != 3 or max(self.indices) >= len(scopes.counts):
            return None
        return scopes.with_counts(scopes.counts[np.asarray(self.indices)])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, len(indices), num_decomps, num_nodes]``."""
        batch, _, num_decomps, num_nodes = input_shape
        return (batch, len(self.indices), num_decomps, num_nodes)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"indices": list(self.indices), **super().get_config()}
