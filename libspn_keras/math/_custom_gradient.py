"""``tf.custom_gradient`` without its graph-mode leak: the registered gradient lives as long as its graph.

In graph mode (``tf.function``, Keras' symbolic build), every call of a ``tf.custom_gradient`` function registers
a new gradient function in TensorFlow's global gradient registry (``RegisterGradient('CustomGradient-<n>')``),
and that function holds the forward tensors, hence the whole ``FuncGraph`` they belong to, for the rest of the
process. A model whose layers use custom gradients therefore never frees the graphs of its traced functions:
building, calling ``predict`` on and dropping a RAT-SPN kept about 3.6 MB per model, even after
``keras.backend.clear_session()`` (``tests/test_memory.py``).

``custom_gradient`` moves each function it registers onto the graph that holds the op, and leaves in the
registry a stub that looks the function up from the op's graph; the stub is removed when the graph is freed.
TensorFlow-specific: the registry is private to TensorFlow, the one non-public TensorFlow name this package
reads, so it lives in this one module and is guarded. Where a TensorFlow release no longer has it, the decorator
falls back to plain ``tf.custom_gradient`` (same values and gradients; only the graph-mode leak returns), so the
package never fails to import because of it.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import tensorflow as tf

_GRADIENTS_ATTRIBUTE = "_libspn_keras_custom_gradients"


def _registry() -> dict[str, Any] | None:
    """TensorFlow's gradient registry (private), or ``None`` where this TensorFlow has no such dict."""
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return None
    return registry if isinstance(registry, dict) else None


def _graph_gradient(name: str, op: tf.Operation, *grads: Any) -> Any:
    """The gradient function registered as ``name``, looked up from the graph of ``op``."""
    return getattr(op.graph, _GRADIENTS_ATTRIBUTE)[name](op, *grads)


def _move_to_graph(names: set[str], graph: tf.Graph) -> None:
    """Keep the gradient functions registered as ``names`` on ``graph``; leave stubs, removed with the graph."""
    registry = _registry()
    if registry is None:
        return
    gradients = getattr(graph, _GRADIENTS_ATTRIBUTE, None)
    if gradients is None:
        gradients = {}
        setattr(graph, _GRADIENTS_ATTRIBUTE, gradients)
    for name in names:
        entry = registry[name]
        gradients[name] = entry["type"]
        entry["type"] = functools.partial(_graph_gradient, name)
        weakref.finalize(graph, registry.pop, name, None)


def custom_gradient(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``f`` like ``tf.custom_gradient``, without keeping graphs alive in graph mode.

    Args:
        f: A function returning ``(outputs, grad_fn)``, as for ``tf.custom_gradient``.

    Returns:
        The decorated function: the same values and gradients as ``tf.custom_gradient(f)``.

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
    decorated = tf.custom_gradient(f)

    @functools.wraps(f)
    def wrapper(*args: Any) -> Any:
        registry = _registry()
        if registry is None or tf.executing_eagerly():
            return decorated(*args)
        registered = set(registry)
        result = decorated(*args)
        _move_to_graph(set(registry) - registered, tf.compat.v1.get_default_graph())
        return result

    return wrapper
