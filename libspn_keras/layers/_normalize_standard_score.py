"""Standard-score normalization of inputs."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking
from libspn_keras.layers._validation import Shape, check_float_dtype, is_number


@keras.saving.register_keras_serializable(package="libspn_keras")
class NormalizeStandardScore(ScopeTracking, keras.layers.Layer):
    """Normalizes samples to a standard score: ``(x - mean) / (std + normalization_epsilon)``.

    This can be used to achieve the same kind of normalization as used in (Poon and Domingos, 2011).

    Args:
        normalization_epsilon: Small positive constant to prevent division by zero, but could also be used a
            'smoothing' factor.
        sample_wise: If ``True``, statistics are computed per sample over all its non-batch values (no weights).
            Otherwise the layer uses cross-sample statistics (one mean and one standard deviation over all
            samples and values), stored as non-trainable weights, which must be computed first with
            ``adapt(data)`` where ``data`` is a NumPy array or a ``tf.data.Dataset`` (of inputs or of
            ``(inputs, ...)`` tuples). ``NaN`` values (missing data) are ignored by the statistics and stay NaN.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        Any, ``[batch, ...]``.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> out = NormalizeStandardScore()(np.array([[1.0, 3.0]], "float32"))
        >>> np.round(np.asarray(out), 4).tolist()
        [[-1.0, 1.0]]
    """

    def __init__(self, normalization_epsilon: float = 1e-8, sample_wise: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not is_number(normalization_epsilon) or not normalization_epsilon >= 0:
            raise ValueError(
                f"NormalizeStandardScore expects normalization_epsilon >= 0. Received: {normalization_epsilon!r}"
            )
        self.normalization_epsilon = float(normalization_epsilon)
        self.sample_wise = bool(sample_wise)
        self.adapted = False

    def build(self, input_shape: Shape) -> None:
        """Create the cross-sample statistics (only if ``sample_wise`` is ``False``)."""
        if not self.sample_wise:
            self.mean = self.add_weight(name="mean", shape=(), initializer="zeros", trainable=False)
            self.stddev = self.add_weight(name="stddev", shape=(), initializer="ones", trainable=False)

    def adapt(self, data: Any) -> None:
        """Compute the cross-sample mean and standard deviation of ``data``.

        Args:
            data: NumPy array, tensor, or ``tf.data.Dataset`` yielding inputs or tuples whose first item is the
                input.

        Raises:
            ValueError: If the layer is sample-wise or ``data`` has no finite value.
        """
        if self.sample_wise:
            raise ValueError(f"Layer '{self.name}' is sample-wise (sample_wise=True) and has nothing to adapt.")
        total, total_sq, count = 0.0, 0.0, 0
        batches = data if isinstance(data, tf.data.Dataset) else [data]
        shape: tuple[int, ...] = ()
        for batch in batches:
            if isinstance(batch, tuple | list):
                batch = batch[0]
            values = np.asarray(batch, dtype=np.float64)
            shape = values.shape
            finite = values[np.isfinite(values)]
            total += finite.sum()
            total_sq += np.square(finite).sum()
            count += finite.size
        if count == 0:
            raise ValueError(f"Layer '{self.name}' cannot adapt to data without finite values.")
        mean = total / count
        std = float(np.sqrt(max(total_sq / count - mean**2, 0.0)))
        if not self.built:
            self.build(shape)
        self.mean.assign(mean)
        self.stddev.assign(std)
        self.adapted = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """Normalize ``x``; integer and boolean inputs are cast to the layer's compute dtype.

        Raises:
            TypeError: If ``x`` is not numeric.
        """
        if x.dtype.is_integer or x.dtype.is_bool:
            x = tf.cast(x, self.compute_dtype)
        check_float_dtype(self.name, x.dtype, "or integer inputs")
        eps = tf.constant(self.normalization_epsilon, dtype=x.dtype)
        if self.sample_wise:
            axes = list(range(1, x.shape.rank))
            valid = tf.math.is_finite(x)
            zeros = tf.zeros_like(x)
            count = tf.maximum(tf.reduce_sum(tf.cast(valid, x.dtype), axis=axes, keepdims=True), 1)
            mean = tf.reduce_sum(tf.where(valid, x, zeros), axis=axes, keepdims=True) / count
            var = tf.reduce_sum(tf.where(valid, tf.square(x - mean), zeros), axis=axes, keepdims=True) / count
            return (x - mean) / (tf.sqrt(var) + eps)
        return (x - tf.cast(self.mean, x.dtype)) / (tf.cast(self.stddev, x.dtype) + eps)

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Normalizing keeps the scopes."""
        return scopes

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return the input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {
            "normalization_epsilon": self.normalization_epsilon,
            "sample_wise": self.sample_wise,
            **super().get_config(),
        }
