"""Machinery shared by every sum layer: accumulators, defaults resolved once, serialization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from libspn_keras.config.accumulator_constraint import (
    get_default_linear_accumulator_constraint,
    get_default_logspace_accumulator_constraint,
)
from libspn_keras.config.accumulator_initializer import get_default_accumulator_initializer
from libspn_keras.config.sum_op import get_default_sum_op
from libspn_keras.initializers._clone import clone_initializer
from libspn_keras.layers._validation import (
    Shape,
    check_float_dtype,
    check_positive_int,
    checked_linear_accumulators,
    raise_deferred_initial_value_error,
    shape_checked_initializer,
)
from libspn_keras.logspace import logspace_wrapper_initializer
from libspn_keras.math._backend import Tensor
from libspn_keras.optimizers._em_statistics import mark_em_statistic, mark_gradient_sum_accumulators
from libspn_keras.sum_ops import SumOpBase

_SERIALIZED_KEYS = (
    "accumulator_initializer",
    "sum_op",
    "accumulator_regularizer",
    "logspace_accumulator_constraint",
    "linear_accumulator_constraint",
)


def _constrained(
    initializer: keras.initializers.Initializer, constraint: keras.constraints.Constraint | None
) -> Callable[..., Any]:
    """``initializer`` whose values pass through ``constraint``, as the original's initial accumulators did.

    (So e.g. ``keras.initializers.RandomUniform()``, which draws negative values, gives valid linear accumulators
    under the default ``GreaterEqualEpsilonNormalized`` constraint.)
    """
    if constraint is None:
        return initializer

    def initial_value(shape: Any, dtype: Any = None) -> Any:
        return constraint(keras.ops.convert_to_tensor(initializer(shape, dtype=dtype)))

    return initial_value


class BaseSum(keras.layers.Layer):
    """Base of sum layers: owns the accumulators and delegates the weighted sums to a ``SumOpBase``.

    Global defaults (sum op, accumulator initializer and constraints) are resolved once in ``__init__`` and stored
    in the layer and its config, so a saved model never depends on the defaults of the loading process.

    Args:
        logspace_accumulators: If ``True``, accumulators are log-space values (normalized by a log-softmax); if
            ``False``, linear (normalized by their sum). ``None`` selects the sum op's default (``True`` for
            ``SumOpGradBackprop``, ``False`` for the EM ops).
        accumulator_initializer: Initializer of the (linear-space) accumulators; wrapped with
            ``logspace_wrapper_initializer`` when accumulators are log-space. Defaults to
            ``get_default_accumulator_initializer()``. Its values pass through the accumulator constraint, as in
            the original LibSPN Keras (negative values of ``RandomUniform()`` are clipped to epsilon).
        sum_op: The sum op. Defaults to ``get_default_sum_op()``.
        accumulator_regularizer: Optional regularizer of the accumulators.
        logspace_accumulator_constraint: Constraint of log-space accumulators (default
            ``get_default_logspace_accumulator_constraint()``).
        linear_accumulator_constraint: Constraint of linear accumulators (default
            ``get_default_linear_accumulator_constraint()``: ``GreaterEqualEpsilonNormalized()``, which keeps them
            >= 1e-10 and normalized per sum).
        **kwargs: Passed on to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        logspace_accumulators: bool | None = None,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        sum_op: SumOpBase | None = None,
        accumulator_regularizer: keras.regularizers.Regularizer | None = None,
        logspace_accumulator_constraint: keras.constraints.Constraint | None = None,
        linear_accumulator_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        # Set by get_config: the constraints in the config are already resolved, so None means "no constraint".
        defaults_resolved = bool(kwargs.pop("defaults_resolved", False))
        super().__init__(**kwargs)
        sum_op = get_default_sum_op() if sum_op is None else sum_op
        if not isinstance(sum_op, SumOpBase):
            raise TypeError(f"Layer '{self.name}' expects sum_op to be a SumOpBase instance. Received: {sum_op!r}")
        self.sum_op = sum_op
        self.logspace_accumulators = sum_op.resolve_logspace_accumulators(logspace_accumulators, self.name)
        self.accumulator_initializer = clone_initializer(
            keras.initializers.get(accumulator_initializer or get_default_accumulator_initializer())
        )
        self.accumulator_regularizer = keras.regularizers.get(accumulator_regularizer)
        self.logspace_accumulator_constraint = (
            logspace_accumulator_constraint
            if logspace_accumulator_constraint is not None or defaults_resolved
            else get_default_logspace_accumulator_constraint()
        )
        self.linear_accumulator_constraint = (
            linear_accumulator_constraint
            if linear_accumulator_constraint is not None or defaults_resolved
            else get_default_linear_accumulator_constraint()
        )
        self.accumulators: keras.Variable | None = None

    def _add_accumulators(self, shape: tuple[Any, ...], input_spec: keras.InputSpec | None = None) -> None:
        """Create the accumulator variable of ``shape`` (``[..., num_in, num_out]``).

        Args:
            shape: Shape of the accumulators, ``[..., num_in, num_out]``.
            input_spec: The inputs later calls accept; by default those whose leading axes are ``shape[:-2]`` and
                whose last axis is ``num_in``.
        """
        if self.logspace_accumulators:
            initializer = logspace_wrapper_initializer(self.accumulator_initializer)
            constraint = self.logspace_accumulator_constraint
        else:
            initializer = self.accumulator_initializer
            constraint = self.linear_accumulator_constraint
        initial = _constrained(
            shape_checked_initializer(self.name, "accumulator_initializer", initializer, shape), constraint
        )
        self.accumulators = self.add_weight(
            name="sum_weights",  # the original's name, so weight files list the same variables
            shape=shape,
            # Log-space accumulators are valid whatever they are (a log-softmax normalizes them).
            initializer=initial
            if self.logspace_accumulators
            else checked_linear_accumulators(initial, self, constraint),
            regularizer=self.accumulator_regularizer,
            constraint=constraint,
            trainable=True,
        )
        # Later calls must match the accumulators: leading axes index regions or cells, the last one the children.
        axes = {axis + 1: size for axis, size in enumerate(shape[:-2])}
        self.input_spec = input_spec or keras.InputSpec(ndim=len(shape) if axes else None, axes={**axes, -1: shape[-2]})
        if self.sum_op.has_custom_backward:
            mark_em_statistic(self.accumulators, outcome_axis=-2, normalized_counts=self.sum_op.normalizes_counts)
        else:
            mark_gradient_sum_accumulators(self.accumulators)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the layer; raises for invalid initial accumulators found after build (see ``checked_initializer``)."""
        raise_deferred_initial_value_error(self)
        return super().__call__(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument, nested objects serialized."""
        config = super().get_config()
        config.update(
            logspace_accumulators=self.logspace_accumulators,
            accumulator_initializer=self.accumulator_initializer,
            sum_op=self.sum_op,
            accumulator_regularizer=self.accumulator_regularizer,
            logspace_accumulator_constraint=self.logspace_accumulator_constraint,
            linear_accumulator_constraint=self.linear_accumulator_constraint,
            defaults_resolved=True,
        )
        for key in _SERIALIZED_KEYS:
            config[key] = keras.saving.serialize_keras_object(config[key])
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BaseSum:
        """Create the layer from ``get_config()``'s output."""
        config = dict(config)
        for key in _SERIALIZED_KEYS:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


class BaseWeightedSums(BaseSum):
    """Base of layers with ``num_sums`` weighted sums over the last axis at every region or cell.

    Shared by ``DenseSum`` (per scope and decomposition) and the spatial sums (per cell); subclasses only create
    their accumulators in ``build``. All arguments but ``num_sums`` are those of ``BaseSum``.

    Args:
        num_sums: Number of sums per region (or cell): the size of the output's last axis.
        logspace_accumulators: See ``BaseSum``.
        accumulator_initializer: See ``BaseSum``.
        sum_op: See ``BaseSum``.
        accumulator_regularizer: See ``BaseSum``.
        logspace_accumulator_constraint: See ``BaseSum``.
        linear_accumulator_constraint: See ``BaseSum``.
        **kwargs: Passed on to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        num_sums: int,
        logspace_accumulators: bool | None = None,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        sum_op: SumOpBase | None = None,
        accumulator_regularizer: keras.regularizers.Regularizer | None = None,
        logspace_accumulator_constraint: keras.constraints.Constraint | None = None,
        linear_accumulator_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_sums = check_positive_int(type(self).__name__, "num_sums", num_sums)
        super().__init__(
            logspace_accumulators=logspace_accumulators,
            accumulator_initializer=accumulator_initializer,
            sum_op=sum_op,
            accumulator_regularizer=accumulator_regularizer,
            logspace_accumulator_constraint=logspace_accumulator_constraint,
            linear_accumulator_constraint=linear_accumulator_constraint,
            **kwargs,
        )

    def call(self, x: Tensor) -> Tensor:
        """Compute the weighted sums of ``x`` (log-space) with the layer's sum op."""
        check_float_dtype(self.name, x.dtype)
        return self.sum_op.weighted_sum(x, self.accumulators, self.logspace_accumulators)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return the input shape with ``num_sums`` as its last axis."""
        return (*tuple(input_shape)[:-1], self.num_sums)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"num_sums": self.num_sums, **super().get_config()}
