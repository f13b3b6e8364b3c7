"""Dropout in log-space."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking
from libspn_keras.layers._validation import Shape, check_float_dtype, is_integer
from libspn_keras.math._backend import Tensor


@keras.saving.register_keras_serializable(package="libspn_keras")
class LogDropout(ScopeTracking, keras.layers.Layer):
    """Log dropout layer.

    Applies dropout in log-space during training: a dropped value becomes ``-inf`` (probability 0); kept values
    are not rescaled. At inference the layer is the identity. It should not precede product layers in an SPN,
    since their scope probability then potentially becomes ``-inf``; use it before sums (sum child / product
    dropout). For input dropout in the sense of the DGC-SPN paper (a dropped variable is marginalized, probability
    1), set the dropped inputs to ``NaN`` instead. ``axis_at_least_one`` keeps, per slice along that axis, at least
    one value, so a sum never loses all of its children.

    Args:
        rate: Rate at which to randomly drop out inputs, in ``[0, 1)``.
        noise_shape: Shape of dropout noise tensor (``None`` entries take the input's size), as in
            ``keras.layers.Dropout``.
        seed: Random seed.
        axis_at_least_one: If given, the axis along which at least one value survives.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        Any; usually ``[batch, num_scopes, num_decomps, num_nodes]``.

    Output shape:
        Same as the input.

    Raises:
        ValueError: If ``rate`` is not a number in ``[0, 1)``, or ``noise_shape`` / ``axis_at_least_one`` do not
            fit the input (checked when built).

    Example:
        >>> import numpy as np
        >>> layer = LogDropout(rate=0.5, seed=0, axis_at_least_one=-1)
        >>> out = np.asarray(layer(np.zeros((4, 1, 1, 3), "float32"), training=True))
        >>> bool(np.all(np.isfinite(out).any(axis=-1)))
        True
    """

    def __init__(
        self,
        rate: float,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
        axis_at_least_one: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, float | int | numbers.Real) or not 0.0 <= rate < 1.0:
            raise ValueError(f"LogDropout expects a number 0 <= rate < 1. Received: rate={rate!r}")
        self.rate = float(rate)
        if noise_shape is not None and (
            isinstance(noise_shape, str)
            or not isinstance(noise_shape, Sequence)
            or not all(size is None or is_integer(size) and size >= 1 for size in noise_shape)
        ):
            raise ValueError(
                "LogDropout expects noise_shape to be None or a sequence of positive integers or None. "
                f"Received: noise_shape={noise_shape!r}"
            )
        if axis_at_least_one is not None and not is_integer(axis_at_least_one):
            raise ValueError(
                f"LogDropout expects axis_at_least_one to be None or an integer axis. "
                f"Received: axis_at_least_one={axis_at_least_one!r}"
            )
        self.noise_shape = None if noise_shape is None else tuple(None if n is None else int(n) for n in noise_shape)
        self.seed = seed
        self.axis_at_least_one = None if axis_at_least_one is None else int(axis_at_least_one)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Shape) -> None:
        """Check ``noise_shape`` and ``axis_at_least_one`` against the input."""
        input_shape = tuple(input_shape)
        if self.noise_shape is not None and (
            len(self.noise_shape) != len(input_shape)
            or any(
                noise not in (None, 1) and size is not None and noise != size
                for noise, size in zip(self.noise_shape, input_shape, strict=True)
            )
        ):
            raise ValueError(
                f"Layer '{self.name}' expects a noise_shape of the input's rank whose sizes are None, 1 or the "
                f"input's size. Received: noise_shape={self.noise_shape}, input_shape={input_shape}"
            )
        if self.axis_at_least_one is not None and not -len(input_shape) <= self.axis_at_least_one < len(input_shape):
            raise ValueError(
                f"Layer '{self.name}' expects axis_at_least_one to be an axis of its rank-{len(input_shape)} input. "
                f"Received: axis_at_least_one={self.axis_at_least_one}"
            )

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Dropout keeps the scopes."""
        return scopes

    def call(self, x: Tensor, training: bool | None = None) -> Tensor:
        """Drop values (set them to ``-inf``) with probability ``rate`` when training.

        Raises:
            TypeError: If ``x`` is not floating point (log-probabilities).
        """
        check_float_dtype(self.name, x.dtype)
        if not training or self.rate == 0.0:
            return x
        shape = ops.shape(x)
        if self.noise_shape is not None:
            shape = tuple(shape[i] if s is None else s for i, s in enumerate(self.noise_shape))
        uniform = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        keep = ops.greater_equal(uniform, self.rate)
        if self.axis_at_least_one is not None:
            is_max = ops.equal(uniform, ops.max(uniform, axis=self.axis_at_least_one, keepdims=True))
            keep = ops.logical_or(keep, is_max)
        keep = ops.broadcast_to(keep, ops.shape(x))
        return ops.where(keep, x, ops.convert_to_tensor(-float("inf"), dtype=x.dtype))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return the input shape."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {
            "rate": self.rate,
            "noise_shape": self.noise_shape,
            "seed": self.seed,
            "axis_at_least_one": self.axis_at_least_one,
            **super().get_config(),
        }
