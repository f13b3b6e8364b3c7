"""Dirichlet initializer for sum accumulators."""

from __future__ import annotations

import random
from typing import Any

import keras
from keras import ops

from libspn_keras.initializers._checks import check_axis, check_axis_of_shape, is_number


@keras.saving.register_keras_serializable(package="libspn_keras")
class Dirichlet(keras.initializers.Initializer):
    r"""Initializes all values in a tensor with :math:`Dir(\alpha)` along ``axis``.

    Args:
        axis: The axis over which to sample from a :math:`Dir(\alpha)` (the input-node axis of sums, ``-2``).
        alpha: The :math:`\alpha` parameter of the Dirichlet distribution, broadcast along ``axis``.
        seed: Optional integer seed.

    Raises:
        ValueError: If ``alpha`` is not positive, ``axis`` is not an integer, or (when called) ``axis`` is not an
            axis of ``shape``.

    Example:
        >>> import numpy as np
        >>> w = np.asarray(Dirichlet(axis=-2, alpha=0.5, seed=1)((3, 4, 2)))
        >>> np.allclose(w.sum(axis=-2), 1.0, atol=1e-5)
        True
    """

    def __init__(self, axis: int = -2, alpha: float = 0.1, seed: int | None = None) -> None:
        if not is_number(alpha) or not alpha > 0:
            raise ValueError(f"Dirichlet expects alpha > 0. Received: alpha={alpha!r}")
        self.axis = check_axis("Dirichlet", axis)
        self.alpha = float(alpha)
        self.seed = seed

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Draw a tensor of ``shape`` whose slices along ``axis`` are Dirichlet samples."""
        dtype = dtype or keras.config.floatx()
        check_axis_of_shape("Dirichlet", self.axis, shape)
        # Unseeded: a fresh integer seed per call from Python's generator (which keras.utils.set_random_seed seeds),
        # so that draws are stateless. (Keras' global seed generator is a variable, which a layer built lazily
        # inside an XLA-compiled function, e.g. the first step of fit(jit_compile=True), cannot create.)
        seed = random.randint(1, 2**31 - 1) if self.seed is None else self.seed
        gammas = keras.random.gamma(tuple(shape), alpha=self.alpha, dtype=dtype, seed=seed)
        # Tiny alphas can give all-zero gammas; keep the result a distribution.
        gammas = ops.maximum(gammas, ops.cast(1e-30, dtype))
        return gammas / ops.sum(gammas, axis=self.axis, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"axis": self.axis, "alpha": self.alpha, "seed": self.seed}
