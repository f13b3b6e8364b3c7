"""Indicator leaf for discrete variables."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from libspn_keras.layers._base_leaf import BaseLeaf
from libspn_keras.layers._validation import Shape, check_states
from libspn_keras.math import attach_indicator_index, indicator_index, indicator_log_table


@keras.saving.register_keras_serializable(package="libspn_keras")
class IndicatorLeaf(BaseLeaf):
    """Indicator leaf distribution taking integer inputs and producing a discrete indicator representation.

    This effectively comes down to computing a one-hot representation along the final axis, in log-space
    (``0`` for the observed state, ``-inf`` for the others). Missing variables (``NaN`` in float inputs or
    ``False`` in ``evidence_mask``) give ``0`` for every indicator.

    The output carries the row of each variable (``libspn_keras.math.indicator_index``), so a sum layer applied
    directly to it looks its log-weights up instead of contracting the indicators (same values, same backward
    pass; any op in between, even ``tf.identity``, falls back to the contraction).

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
            runs eagerly or in a ``tf.function``; under XLA an out-of-range value yields ``-inf`` for every
            indicator).

    Example:
        >>> import numpy as np
        >>> out = IndicatorLeaf(num_components=3)(np.array([[[[2]]]], "int32"))
        >>> np.exp(np.asarray(out)).ravel().tolist()
        [0.0, 0.0, 1.0]
    """

    def __init__(self, num_components: int, dtype: Any = "int32", **kwargs: Any) -> None:
        kwargs.pop("input_dtype", None)
        super().__init__(num_components, **kwargs)
        try:
            input_dtype = tf.as_dtype(dtype)
        except TypeError:
            input_dtype = None
        if input_dtype is None or not (input_dtype.is_integer or input_dtype.is_floating or input_dtype.is_bool):
            raise TypeError(
                "IndicatorLeaf expects dtype to be an integer, boolean or floating-point input dtype. "
                f"Received: dtype={dtype!r}"
            )
        self.indicator_input_dtype = input_dtype.name

    def build(self, input_shape: Shape) -> None:
        """Check that each variable is one-dimensional."""
        self._check_input_shape(input_shape)
        self._variables_shape = tuple(input_shape)[1:-1]
        if input_shape[-1] != 1:
            raise ValueError(
                f"Layer '{self.name}' expects univariate discrete variables (last axis of size 1). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _check_input_dtype(self, dtype: tf.DType) -> None:
        """Accept integer, boolean and floating-point (``NaN`` = missing) states."""
        if not (dtype.is_integer or dtype.is_floating or dtype.is_bool):
            raise TypeError(
                f"Layer '{self.name}' expects integer states (or floats, where NaN marks a missing value). "
                f"Received: dtype={dtype.name}"
            )

    def component_modes(self) -> tf.Tensor:
        """Return the state of each indicator, ``[*variables, num_components, 1]``."""
        states = tf.range(self.num_components, dtype=self.compute_dtype)[:, tf.newaxis]
        return tf.broadcast_to(states, (*self._variables_shape, self.num_components, 1))

    def mode_log_prob(self) -> tf.Tensor:
        """An indicator has probability one at its state: zeros ``[*variables, num_components, 1]``."""
        return tf.zeros_like(self.component_modes())

    def sample_components(self, num_samples: int | tf.Tensor, seed: Any = None) -> tf.Tensor:
        """An indicator component is a point mass: its sample is its state."""
        modes = self.component_modes()
        return tf.broadcast_to(modes, tf.concat([[num_samples], tf.shape(modes)], axis=0))

    def _states(self, x: tf.Tensor) -> tf.Tensor:
        """The states ``[batch, *variables]`` of ``x``, checked to be integers in ``[0, num_components)``."""
        message = (
            f"Layer '{self.name}' expects integer states in [0, {self.num_components}) (num_components="
            f"{self.num_components})"
        )
        values = check_states(
            x, self.num_components, message, f"Layer '{self.name}' expects integral values; received a fraction"
        )
        return values[..., 0]

    def _log_prob_per_dim(self, x: tf.Tensor) -> tf.Tensor:
        return self._log_prob(x, None)[..., tf.newaxis]

    def _log_prob(self, x: tf.Tensor, observed: tf.Tensor | None) -> tf.Tensor:
        """Look the log-indicators up and attach their ``indicator_index`` (sums over them become lookups too)."""
        index = indicator_index(self._states(x), None if observed is None else observed[..., 0], self.num_components)
        log_prob = tf.gather(indicator_log_table(self.num_components, self.compute_dtype), index)
        return attach_indicator_index(log_prob, index)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument (``dtype`` is the input dtype, as in the original API)."""
        config = super().get_config()
        config["dtype"] = self.indicator_input_dtype
        return config
