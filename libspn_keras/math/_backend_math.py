"""Backend-specific helpers of the math, losses and metrics port (issue 19), to be folded into ``_backend``.

Like ``_backend``, nothing here imports a backend's framework at module level.
"""

from __future__ import annotations

import functools

from libspn_keras.math._backend import backend


def invalid_argument_error() -> type[Exception]:
    """The exception a failed value check (``check``) raises where the values are known.

    On TensorFlow a ``tf.errors.InvalidArgumentError`` (that is also a ``ValueError``): the class a graph assertion
    raises in a ``tf.function``, so a bad value raises the same error eagerly and in a graph. Elsewhere
    ``ValueError``.

    Example:
        >>> issubclass(invalid_argument_error(), ValueError)
        True
    """
    if backend() == "tensorflow":
        return _tf_invalid_argument_error()
    return ValueError


@functools.cache
def _tf_invalid_argument_error() -> type[Exception]:
    import tensorflow as tf

    class InvalidArgumentError(tf.errors.InvalidArgumentError, ValueError):  # type: ignore[misc]
        """``tf.errors.InvalidArgumentError`` made from its message alone (as ``check`` makes its errors)."""

        def __init__(self, message: str) -> None:
            super().__init__(None, None, message)

    return InvalidArgumentError


def widest_int_dtype() -> str:
    """The widest integer dtype of the backend: ``"int64"``, or ``"int32"`` on JAX without ``jax_enable_x64``.

    Example:
        >>> widest_int_dtype() in ("int32", "int64")
        True
    """
    if backend() == "jax":
        import jax

        return "int64" if jax.config.read("jax_enable_x64") else "int32"
    return "int64"
