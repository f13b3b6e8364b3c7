"""Backend-specific pieces of the dynamic SPN and the online EM optimizer (to be folded into ``_backend``).

- ``invalid_argument_error``: the exception value checks raise where values are known. On TensorFlow it is a
  ``tf.errors.InvalidArgumentError`` (what TensorFlow's own assertions raise eagerly, and what ``check`` raises
  in a graph), so that eager calls and ``tf.function`` calls fail alike; elsewhere a ``ValueError``.
- ``recurrence``: a loop over time steps carrying one tensor. ``keras.ops.scan`` and ``keras.ops.fori_loop``
  on TensorFlow build a ``tf.while_loop`` without ``maximum_iterations``, whose gradient XLA cannot compile
  ("XLA compilation requires a fixed tensor list size"), and ``scan`` stacks (zero) outputs nobody asked for;
  on TensorFlow this is the ``tf.while_loop`` over ``TensorArray`` s the dynamic SPN always used. Elsewhere it is
  ``keras.ops.scan`` (``jax.lax.scan``: static trip count, reverse-differentiable).
- ``jit_compiled``: a function compiled once with XLA (``tf.function(jit_compile=True)``, ``jax.jit``).

Nothing here imports a backend's framework at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from keras import ops

from libspn_keras.math._backend import Tensor, backend

_ERRORS: dict[str, type[Exception]] = {}


def invalid_argument_error() -> type[Exception]:
    """The class of failed value checks: ``tf.errors.InvalidArgumentError`` on TensorFlow, else ``ValueError``.

    The class takes the message as its only argument (as ``libspn_keras.math.check`` calls it).

    Example:
        >>> error = invalid_argument_error()
        >>> issubclass(error, Exception), str(error("bad lengths")).endswith("bad lengths")
        (True, True)
    """
    name = backend()
    if name != "tensorflow":
        return ValueError
    if name not in _ERRORS:
        import tensorflow as tf

        class InvalidArgumentError(tf.errors.InvalidArgumentError):  # type: ignore[misc]
            """``tf.errors.InvalidArgumentError`` that can also be constructed from a message alone."""

            def __init__(self, *args: Any) -> None:
                # Keras re-raises errors of layers' calls as ``error.__class__(node_def, op, message, code)``.
                super().__init__(*((None, None, *args) if len(args) == 1 else args))

        _ERRORS[name] = InvalidArgumentError
    return _ERRORS[name]


def recurrence(
    step: Callable[..., Tensor], init: Tensor, xs: Sequence[Tensor], collect: bool = False
) -> tuple[Tensor, Tensor]:
    """Run ``carry = step(carry, *[x[t] for x in xs])`` for ``t = 1, ..., T - 1`` from ``carry = init``.

    ``T`` is the length of the leading (time) axis of every ``x`` in ``xs``; step 0 is ``init`` itself (the caller
    computes it from ``x[0]``). ``step`` must return a tensor of ``init``'s shape and dtype.

    Args:
        step: The recursion, ``step(carry, *x_t) -> carry``.
        init: The carry at step 0.
        xs: Time-major tensors ``[T, ...]`` read at each step.
        collect: Whether to also return the carries of all steps.

    Returns:
        ``(last carry, carries [T, *init.shape] or None)``.

    Example:
        >>> import numpy as np
        >>> x = np.arange(1.0, 5.0, dtype="float32")[:, None]  # [T=4, 1]
        >>> last, every = recurrence(lambda c, x_t: 2.0 * c + x_t, x[0], [x], collect=True)
        >>> ops.convert_to_numpy(last).tolist(), ops.convert_to_numpy(every)[:, 0].tolist()
        ([26.0], [1.0, 4.0, 11.0, 26.0])
    """
    xs = [ops.convert_to_tensor(x) for x in xs]
    init = ops.convert_to_tensor(init)
    if backend() == "tensorflow":
        import tensorflow as tf

        num_steps = xs[0].shape[0] if xs[0].shape[0] is not None else tf.shape(xs[0])[0]
        arrays = [tf.TensorArray(x.dtype, size=num_steps, element_shape=x.shape[1:]).unstack(x) for x in xs]
        carries = tf.TensorArray(init.dtype, size=num_steps, element_shape=init.shape)
        if collect:
            carries = carries.write(0, init)

        def body(t: Any, carry: Any, carries: Any) -> tuple[Any, ...]:
            carry = step(carry, *[array.read(t) for array in arrays])
            if collect:
                carries = carries.write(t, carry)
            return t + 1, carry, carries

        _, carry, carries = tf.while_loop(
            lambda t, *_: t < num_steps, body, (tf.constant(1), init, carries), maximum_iterations=num_steps
        )
        return carry, carries.stack() if collect else None

    def scan_step(carry: Tensor, x_t: Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
        carry = step(carry, *x_t)
        return carry, carry if collect else None

    carry, ys = ops.scan(scan_step, init, [x[1:] for x in xs])
    if not collect:
        return carry, None
    return carry, ops.concatenate([ops.expand_dims(init, 0), ys], axis=0)


def jit_compiled(fn: Callable[..., Any], static_argnums: Sequence[int] = ()) -> Callable[..., Any]:
    """``fn`` compiled with XLA: ``tf.function(fn, jit_compile=True)`` or ``jax.jit``; ``fn`` itself elsewhere.

    Args:
        fn: A function of tensors.
        static_argnums: The positions of Python (non-tensor) arguments, which select a computation (JAX traces
            one per value; TensorFlow treats Python arguments as constants anyway).

    Returns:
        The compiled function, with ``fn``'s signature.

    Example:
        >>> double = jit_compiled(lambda x, k: k * x, static_argnums=(1,))
        >>> ops.convert_to_numpy(double(ops.ones(2), 2)).tolist()
        [2.0, 2.0]
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)  # type: ignore[no-any-return]
    if name == "jax":
        import jax

        return jax.jit(fn, static_argnums=tuple(static_argnums))
    return fn
