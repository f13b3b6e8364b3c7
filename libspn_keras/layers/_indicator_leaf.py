"""Indicator leaf for discrete variables."""

from __future__ import annotations

import re
from typing import Any

import keras
from keras import ops

from libspn_keras.layers._base_leaf import BaseLeaf
from libspn_keras.layers._validation import Shape, check_states
from libspn_keras.math import attach_indicator_index, indicator_index, indicator_log_table
from libspn_keras.math._backend import Tensor


def _state_dtype(dtype: Any) -> str | None:
    """The standardized name of ``dtype`` if it can hold states (integer, boolean or floating point), else ``None``."""
    if dtype is None:  # standardize_dtype would read it as floatx
        return None
    try:
        name = keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError, AttributeError):
        return None
    if name == "bool" or re.fullmatch(r"u?int\d+", name) or re.fullmatch(r"b?float\d+(_\w+)?", name):
        return name
    return None


@keras.saving.register_keras_serializable(package="libspn_keras")
class IndicatorLeaf(BaseLeaf):
    """Indicator leaf distribution taking integer inputs and producing a discrete indicator representation.

    This effectively comes down to computing a one-hot representation along the final axis, in log-space
    (``0`` for the observed state, ``-inf`` for the others). Missing variables (``NaN`` in float inputs or
    ``False`` in ``evidence_mask``) give ``0`` for every indicator.

    The output carries the row of each variable (``libspn_keras.math.indicator_index``), so a sum layer applied
    directly to it looks its log-weights up instead of contracting the indicators (same values, same backward
    pass; any op in between, even an identity, falls back to the contraction; so does a traced JAX function, whose
    tensors carry nothing).

    Args:
        num_components: Number of components, or indicators in this context (states of each variable).
        dtype: Dtype of the input (integer; float inputs are accepted too, where ``NaN`` marks missing values).
            The output has Keras' float type (``keras.config.floatx()``). In a model, declare the same dtype in
            ``keras.Input``: Keras casts the data to it before the leaf sees it, so an SPN model with an integer
            ``keras.Input`` rejects float data holding ``NaN``, fractions or out-of-range values.
        **kwargs: Kwargs to pass onto the ``keras.layers.Layer`` superclass.

    Input shape:
        ``[batch, *variables, 1]``, e.g. ``[batch, num_vars, num_decomps, 1]`` after ``FlatToRegions``.

    Output shape:
        ``[batch, *variables, num_components]``.

    Raises:
        TypeError: If ``dtype`` or the input is neither integer, boolean nor floating point.
        tf.errors.InvalidArgumentError: If a value is outside ``[0, num_components)`` (checked when the layer
            runs eagerly or in a ``tf.function``; ``ValueError`` on other backends, where values are known; under
            XLA or in a traced JAX function an out-of-range value yields ``-inf`` for every indicator).

    Example:
        >>> import numpy as np
        >>> out = IndicatorLeaf(num_components=3)(np.array([[[[2]]]], "int32"))
        >>> np.exp(np.asarray(out)).ravel().tolist()
        [0.0, 0.0, 1.0]
    """

    def __init__(self, num_components: int, dtype: Any = "int32", **kwargs: Any) -> None:
        kwargs.pop("input_dtype", None)
        super().__init__(num_components, **kwargs)
        input_dtype = _state_dtype(dtype)
        if input_dtype is None:
            raise TypeError(
                "IndicatorLeaf expects dtype to be an integer, boolean or floating-point input dtype. "
                f"Received: dtype={dtype!r}"
            )
        self.indicator_input_dtype = input_dtype

    def build(self, input_shape: Shape) -> None:
        """Check that each variable is one-dimensional."""
        self._check_input_shape(input_shape)
        self._variables_shape = tuple(input_shape)[1:-1]
        if input_shape[-1] != 1:
            raise ValueError(
                f"Layer '{self.name}' expects univariate discrete variables (last axis of size 1). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _check_input_dtype(self, dtype: Any) -> None:
        """Accept integer, boolean and floating-point (``NaN`` = missing) states."""
        if _state_dtype(dtype) is None:
            raise TypeError(
                f"Layer '{self.name}' expects integer states (or floats, where NaN marks a missing value). "
                f"Received: dtype={getattr(dtype, 'name', dtype)}"
            )

    def component_modes(self) -> Tensor:
        """Return the state of each indicator, ``[*variables, num_components, 1]``."""
        states = ops.expand_dims(ops.arange(self.num_components, dtype=self.compute_dtype), -1)
        return ops.broadcast_to(states, (*self._variables_shape, self.num_components, 1))

    def mode_log_prob(self) -> Tensor:
        """An indicator has probability one at its state: zeros ``[*variables, num_components, 1]``."""
        return ops.zeros_like(self.component_modes())

    def sample_components(self, num_samples: int | Tensor, seed: Any = None) -> Tensor:
        """An indicator component is a point mass: its sample is its state."""
        modes = self.component_modes()
        return ops.broadcast_to(modes, (num_samples, *modes.shape))

    def _states(self, x: Tensor) -> Tensor:
        """The states ``[batch, *variables]`` of ``x``, checked to be integers in ``[0, num_components)``."""
        message = (
            f"Layer '{self.name}' expects integer states in [0, {self.num_components}) (num_components="
            f"{self.num_components})"
        )
        values = check_states(
            x, self.num_components, message, f"Layer '{self.name}' expects integral values; received a fraction"
        )
        return values[..., 0]

    def _log_prob_per_dim(self, x: Tensor) -> Tensor:
        return ops.expand_dims(self._log_prob(x, None), -1)

    def _log_prob(self, x: Tensor, observed: Tensor | None) -> Tensor:
        """Look the log-indicators up and attach their ``indicator_index`` (sums over them become lookups too)."""
        index = indicator_index(self._states(x), None if observed is None else observed[..., 0], self.num_components)
        log_prob = ops.take(indicator_log_table(self.num_components, self.compute_dtype), index, axis=0)
        return attach_indicator_index(log_prob, index)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument (``dtype`` is the input dtype, as in the original API)."""
        config = super().get_config()
        config["dtype"] = self.indicator_input_dtype
        return config
