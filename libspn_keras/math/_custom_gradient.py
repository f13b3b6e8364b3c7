"""The one place the package declares custom gradients: ``custom_gradient``, the backend switch for issue 19.

Today it is ``tf.custom_gradient``. In graph mode (``tf.function``, Keras' symbolic build) every call of such a
function registers a new gradient function in TensorFlow's global gradient registry, and that function holds the
traced graph for the rest of the process: building, calling and dropping a RAT-SPN keeps about 2.5 MB per model
even after ``keras.backend.clear_session()`` (``tests/test_memory.py``, a known failure). TensorFlow has no public
API to release those entries, and this package uses public APIs only, so the leak stays until the backend-neutral
core (``keras.ops.custom_gradient``, issue 19) replaces this function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


def custom_gradient(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``f`` like ``tf.custom_gradient``: ``f`` returns ``(outputs, grad_fn)``.

    Args:
        f: A function returning ``(outputs, grad_fn)``, as for ``tf.custom_gradient``.

    Returns:
        The decorated function.

    Example:
        >>> @custom_gradient
        ... def clip_gradient(x):
        ...     return tf.identity(x), lambda dy: tf.clip_by_value(dy, -1.0, 1.0)
        >>> x = tf.constant(2.0)
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = 5.0 * clip_gradient(x)
        >>> float(tape.gradient(y, x))
        1.0
    """
    return tf.custom_gradient(f)
