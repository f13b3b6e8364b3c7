"""Standard-score normalization of inputs."""

from __future__ import annotations

import enum
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras._data import input_batches
from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking
from libspn_keras.layers._validation import Shape, check_float_dtype, is_number, pop_input_shape
from libspn_keras.math._backend import Tensor


class NormalizeAxes(enum.Enum):
    """Which values ``NormalizeStandardScore`` computes its statistics over (LibSPN Keras 0.6's choice of axes).

    Example:
        >>> NormalizeAxes("variable-wise")
        <NormalizeAxes.VARIABLE_WISE: 'variable-wise'>
    """

    SAMPLE_WISE = "sample-wise"
    """Normalize each sample by its own mean and standard deviation (no weights, nothing to adapt)."""

    VARIABLE_WISE = "variable-wise"
    """Normalize each variable (every non-batch position) by its mean and standard deviation over the samples."""

    GLOBAL = "global"
    """Normalize by one mean and standard deviation over all values of all samples."""


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
            ``adapt(data)`` where ``data`` is a NumPy array, a tensor or a dataset (a ``tf.data.Dataset``, a
            ``keras.utils.PyDataset`` or an iterator) of batches of inputs or of ``(inputs, ...)`` tuples. ``NaN``
            values (missing data) are ignored by the statistics and stay NaN.
        axes: LibSPN Keras 0.6's form of the choice, a ``NormalizeAxes`` (or its value, e.g. ``"variable-wise"``);
            it takes precedence over ``sample_wise``. ``NormalizeAxes.SAMPLE_WISE`` is ``sample_wise=True``,
            ``NormalizeAxes.GLOBAL`` is ``sample_wise=False`` and ``NormalizeAxes.VARIABLE_WISE`` keeps one mean and
            one standard deviation per variable (every non-batch position), computed over the samples by
            ``adapt``. ``None``: from ``sample_wise``.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        Any, ``[batch, ...]``.

    Output shape:
        Same as the input.

    Raises:
        ValueError: If ``normalization_epsilon`` is negative, ``axes`` is not a ``NormalizeAxes`` value, or
            ``axes=NormalizeAxes.SAMPLE_WISE`` contradicts ``sample_wise=False``.

    Example:
        >>> import numpy as np
        >>> out = NormalizeStandardScore()(np.array([[1.0, 3.0]], "float32"))
        >>> np.round(np.asarray(out), 4).tolist()
        [[-1.0, 1.0]]
        >>> layer = NormalizeStandardScore(axes=NormalizeAxes.VARIABLE_WISE)
        >>> layer.adapt(np.array([[0.0, 10.0], [2.0, 30.0]], "float32"))
        >>> np.round(np.asarray(layer(np.array([[2.0, 10.0]], "float32"))), 4).tolist()
        [[1.0, -1.0]]
    """

    def __init__(
        self,
        normalization_epsilon: float = 1e-8,
        sample_wise: bool = True,
        axes: NormalizeAxes | str | None = None,
        **kwargs: Any,
    ) -> None:
        input_shape = pop_input_shape("NormalizeStandardScore", kwargs)
        super().__init__(**kwargs)
        self._input_shape_arg = input_shape  # read by keras.Sequential to create its input
        if not is_number(normalization_epsilon) or not normalization_epsilon >= 0:
            raise ValueError(
                f"NormalizeStandardScore expects normalization_epsilon >= 0. Received: {normalization_epsilon!r}"
            )
        self.normalization_epsilon = float(normalization_epsilon)
        if axes is None:
            axes = NormalizeAxes.SAMPLE_WISE if sample_wise else NormalizeAxes.GLOBAL
        try:
            self.axes = NormalizeAxes(axes)
        except ValueError:
            raise ValueError(
                f"Layer '{self.name}' expects axes to be one of {[a.value for a in NormalizeAxes]} (a NormalizeAxes). "
                f"Received: axes={axes!r}"
            ) from None
        if self.axes == NormalizeAxes.SAMPLE_WISE and not sample_wise:
            raise ValueError(
                f"Layer '{self.name}': axes=NormalizeAxes.SAMPLE_WISE contradicts sample_wise=False. Pass one of them."
            )
        self.sample_wise = self.axes == NormalizeAxes.SAMPLE_WISE
        self.adapted = False

    def _statistics_shape(self, input_shape: Shape) -> tuple[int, ...]:
        if self.axes == NormalizeAxes.GLOBAL:
            return ()
        shape = tuple(input_shape)[1:]
        if None in shape:
            raise ValueError(
                f"Layer '{self.name}' normalizes variable-wise and needs a known input shape besides the batch. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        return shape

    def build(self, input_shape: Shape) -> None:
        """Create the cross-sample statistics (unless the layer is sample-wise)."""
        if not self.sample_wise:
            shape = self._statistics_shape(input_shape)
            self.mean = self.add_weight(name="mean", shape=shape, initializer="zeros", trainable=False)
            self.stddev = self.add_weight(name="stddev", shape=shape, initializer="ones", trainable=False)

    def adapt(self, data: Any) -> None:
        """Compute the cross-sample mean and standard deviation of ``data`` (over all values, or per variable).

        Args:
            data: NumPy array, tensor, or a dataset of batches (a batched ``tf.data.Dataset``, a
                ``keras.utils.PyDataset``, an iterator such as a generator) yielding inputs or tuples whose first
                item is the input.

        Raises:
            ValueError: If the layer is sample-wise, ``data`` does not match the layer's input shape, or a
                statistic has no finite value to be computed from.
        """
        if self.sample_wise:
            raise ValueError(f"Layer '{self.name}' is sample-wise (sample_wise=True) and has nothing to adapt.")
        reduce_axes: Any = None if self.axes == NormalizeAxes.GLOBAL else 0
        total: Any = 0.0
        total_sq: Any = 0.0
        count: Any = 0
        shape: tuple[int, ...] = ()
        for values in input_batches(data):
            shape = values.shape
            finite = np.isfinite(values)
            total = total + np.where(finite, values, 0.0).sum(axis=reduce_axes)
            total_sq = total_sq + np.where(finite, np.square(values), 0.0).sum(axis=reduce_axes)
            count = count + finite.sum(axis=reduce_axes)
        if np.min(count) == 0:
            raise ValueError(f"Layer '{self.name}' cannot adapt to data without finite values ({self.axes.value}).")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
        if not self.built:
            self.build(shape)
        if tuple(self.mean.shape) != np.shape(mean):
            raise ValueError(
                f"Layer '{self.name}' has statistics of shape {tuple(self.mean.shape)}; the data gives "
                f"{np.shape(mean)}. Received: data of shape {shape}"
            )
        self.mean.assign(mean)
        self.stddev.assign(std)
        self.adapted = True

    def call(self, x: Tensor) -> Tensor:
        """Normalize ``x``; integer and boolean inputs are cast to the layer's compute dtype.

        Raises:
            TypeError: If ``x`` is not numeric.
        """
        x = self._float_input(x)
        mean, scale = self.statistics(x)
        return (x - mean) / scale

    def _float_input(self, x: Tensor) -> Tensor:
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "int" in dtype or dtype == "bool":
            x = ops.cast(x, self.compute_dtype)
        check_float_dtype(self.name, x.dtype, "or integer inputs")
        return x

    def statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and the divisor (standard deviation plus ``normalization_epsilon``) that normalize ``x``.

        Args:
            x: Floating-point inputs; non-finite values (``NaN`` = missing) do not count.

        Returns:
            ``(mean, scale)``, each broadcastable to ``x``, so that the output is ``(x - mean) / scale``.
        """
        eps = ops.convert_to_tensor(self.normalization_epsilon, dtype=x.dtype)
        if self.sample_wise:
            axes = tuple(range(1, len(x.shape)))
            valid = ops.isfinite(x)
            zeros = ops.zeros_like(x)
            count = ops.maximum(ops.sum(ops.cast(valid, x.dtype), axis=axes, keepdims=True), 1)
            mean = ops.sum(ops.where(valid, x, zeros), axis=axes, keepdims=True) / count
            var = ops.sum(ops.where(valid, ops.square(x - mean), zeros), axis=axes, keepdims=True) / count
            return mean, ops.sqrt(var) + eps
        return ops.cast(self.mean, x.dtype), ops.cast(self.stddev, x.dtype) + eps

    def denormalize(self, normalized: Tensor, x: Tensor) -> Tensor:
        """Map values from the normalized space back to the data space of ``x`` (the inverse of ``call`` on ``x``).

        Inference queries use it to return completions in the units of the data: the statistics are those of
        ``x`` (for ``sample_wise``, of its finite values, e.g. the evidence of each sample).

        Args:
            normalized: Values shaped like ``x``, in the normalized space.
            x: The inputs whose statistics ``call`` used.

        Returns:
            ``normalized * scale + mean``, with ``x``'s dtype.

        Example:
            >>> import numpy as np
            >>> layer = NormalizeStandardScore()
            >>> x = np.array([[1.0, 3.0, np.nan]], "float32")
            >>> np.round(np.asarray(layer.denormalize(np.array([[-1.0, 1.0, 2.0]], "float32"), x)), 4).tolist()
            [[1.0, 3.0, 4.0]]
        """
        x = self._float_input(ops.convert_to_tensor(x))
        mean, scale = self.statistics(x)
        return ops.cast(normalized, x.dtype) * scale + mean

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
            "axes": self.axes.value,
            **super().get_config(),
        }
