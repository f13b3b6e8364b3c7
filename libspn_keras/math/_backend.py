"""The one backend switch: what ``keras.ops`` does not cover, written once per backend.

Everything numerical in the package is written against ``keras.ops`` and ``keras.random``. The few things Keras
has no public op for live here, each with one implementation per backend (TensorFlow, JAX, PyTorch):

- ``custom_gradient``: a forward pass with its own backward rule. ``keras.ops.custom_gradient`` gives the
  gradient function a different signature per backend; here it is always ``grad_fn(upstream)`` returning one
  gradient per input, as a tuple.
- ``vjp``: the vector-Jacobian product of a function (queries take the backward pass of a model down to its
  leaves).
- ``value_check_error`` / ``initializer_errors`` / ``graph_execution_errors``: the exception classes value checks
  raise and callers catch, per backend.
- ``read_variable``, ``graph_checked_values``, ``add_n``, ``widest_int_dtype``, ``is_backend_tensor``: small
  pieces the layers need where ``keras.ops`` has no equivalent.
- ``as_tensor``, ``stateless_uniform``: what the sum ops' selection and sampling rules need (a variable read as a
  tensor; draws from a seed tensor).
- ``recurrence``, ``jit_compiled``: the dynamic SPN's time loop (``tf.while_loop`` with a fixed iteration
  bound on TensorFlow, which XLA needs for its gradient; ``keras.ops.scan`` elsewhere) and a compiled function.
- ``values_known`` / ``check``: value checks that raise a ``ValueError`` where values are concrete (eager
  calls, NumPy inputs). In a TensorFlow graph (``tf.function``) the check is a graph assertion
  (``InvalidArgumentError``, dropped by XLA); in a traced JAX function (``jit``, the default for ``fit`` on JAX)
  values are not known while tracing and the check is skipped: see ``docs/errors.md``.
- ``attach`` / ``attached``: metadata carried on a tensor from one layer to the next, the way Keras attaches
  masks (e.g. the row indices of an indicator leaf, which let the sums above look their values up): an attribute
  where the tensor takes one, else (JAX tracers) a table keyed by the tensor's identity, holding a weak reference
  to it. Where nothing is attached, the layers above compute the same values the general way.

Nothing here imports a backend's framework at module level: ``import libspn_keras`` with ``KERAS_BACKEND=jax``
does not import TensorFlow.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import keras
import numpy as np
from keras import ops

#: A tensor of the Keras backend (``tf.Tensor``, ``jax.Array``, ``torch.Tensor``) or a NumPy array.
Tensor: TypeAlias = Any


def backend() -> str:
    """The name of the Keras backend: ``"tensorflow"``, ``"jax"``, ``"torch"`` or ``"numpy"``."""
    return str(keras.backend.backend())


def custom_gradient(f: Callable[..., tuple[Any, Callable[[Any], Any]]]) -> Callable[..., Any]:
    """Decorate ``f(*inputs) -> (outputs, grad_fn)``, where ``grad_fn(upstream)`` returns one gradient per input.

    Every tensor the gradient flows to must be an explicit input of ``f``: values ``f`` closes over get no
    gradient (and on JAX must not depend on differentiated values). ``grad_fn`` may return a single tensor for a
    function of one input.

    On TensorFlow, eager calls use ``tf.custom_gradient``. In a graph (``tf.function``, which ``fit`` and
    ``predict`` trace) ``tf.custom_gradient`` would register a gradient function under a new name in TensorFlow's
    global gradient registry on every call, keeping the traced graph alive for good (megabytes per model built).
    Instead each call traces ``f`` into a ``tf.function`` of its own whose outputs pass through an ``IdentityN``
    op whose gradient is overridden (``gradient_override_map``) by one function registered once per process; it
    looks ``grad_fn`` up in a table held by that function's graph, which is freed with it. The nested function is
    what makes a ``tf.GradientTape`` recording the graph honour the override: the tape takes a function call's
    gradient from its graph, where a single op's would come from its type (``IdentityN``: the identity).

    Args:
        f: The forward pass, returning its outputs and the backward rule.

    Returns:
        A function returning ``f``'s outputs, whose gradient is given by ``grad_fn``.

    Example:
        >>> import keras
        >>> @custom_gradient
        ... def clip_gradient(x):
        ...     return keras.ops.multiply(x, 1.0), lambda dy: keras.ops.clip(dy, -1.0, 1.0)
        >>> _, (g,) = vjp(lambda x: 5.0 * clip_gradient(x), [keras.ops.convert_to_tensor(2.0)], 1.0)
        >>> float(g)
        1.0
    """
    name = backend()
    if name == "tensorflow":
        return _tf_custom_gradient(f)
    if name == "jax":
        import jax

        @jax.custom_gradient
        def jax_wrapped(*inputs: Any) -> Any:
            outputs, grad_fn = f(*inputs)
            return outputs, lambda upstream: _as_tuple(grad_fn(upstream), len(inputs))

        return jax_wrapped
    if name == "torch":
        import torch

        class Function(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, *inputs: Any) -> Any:
                outputs, grad_fn = f(*inputs)
                ctx.grad_fn = grad_fn
                ctx.num_inputs = len(inputs)
                return outputs

            @staticmethod
            def backward(ctx: Any, upstream: Any) -> Any:
                return _as_tuple(ctx.grad_fn(upstream), ctx.num_inputs)

        return Function.apply
    raise NotImplementedError(f"libspn_keras needs gradients, which the '{name}' Keras backend does not compute.")


#: The one gradient function ``custom_gradient`` registers with TensorFlow (``_tf_graph_gradient``).
_TF_GRADIENT = "LibspnKerasCustomGradient"
_TF_REGISTRATION = threading.Lock()
_tf_gradient_registered = False
#: Attribute of a TensorFlow graph holding its table ``op name -> gradient`` of the ``IdentityN`` ops marked
#: ``_TF_GRADIENT``. Graph -> table -> gradient -> graph tensors -> graph is a cycle the garbage collector frees.
_TF_GRADIENTS_OF_GRAPH = "_libspn_keras_gradients"


def _tf_custom_gradient(f: Callable[..., tuple[Any, Callable[[Any], Any]]]) -> Callable[..., Any]:
    """``custom_gradient`` on TensorFlow: ``tf.custom_gradient`` eagerly, else a function of its own (see there)."""
    import tensorflow as tf

    @tf.custom_gradient
    def eager(*inputs: Any) -> Any:
        outputs, grad_fn = f(*inputs)

        def grad(upstream: Any, variables: Any = None) -> Any:
            grads = _as_tuple(grad_fn(upstream), len(inputs))
            return grads if len(inputs) > 1 else grads[0]

        return outputs, grad

    def traced(*inputs: Any) -> Any:
        outputs, grad_fn = f(*inputs)
        flat = tf.nest.flatten(outputs)
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map({"IdentityN": _tf_graph_gradient()}):
            # The inputs pass through too, so that the gradient function returns their gradients.
            marked = tf.identity_n([*flat, *inputs])

        def grad(*upstream: Any) -> list[Any]:
            # ``IdentityN`` takes one gradient per output: none for ``f``'s outputs (its own ops get none).
            grads = _as_tuple(grad_fn(tf.nest.pack_sequence_as(outputs, upstream[: len(flat)])), len(inputs))
            return [None] * len(flat) + list(grads)

        if not hasattr(graph, _TF_GRADIENTS_OF_GRAPH):
            setattr(graph, _TF_GRADIENTS_OF_GRAPH, {})
        getattr(graph, _TF_GRADIENTS_OF_GRAPH)[marked[0].op.name] = grad
        return tf.nest.pack_sequence_as(outputs, marked[: len(flat)])

    def call(*inputs: Any) -> Any:
        # Variables are read first: ``tf.custom_gradient`` would ask ``grad`` for the gradients of variables read
        # inside ``f``, and a ``tf.function`` would capture them rather than take them as inputs.
        inputs = tuple(tf.convert_to_tensor(x) for x in inputs)
        if tf.executing_eagerly():
            return eager(*inputs)
        return tf.function(traced, autograph=False)(*inputs)

    return call


def _tf_graph_gradient() -> str:
    """Register the gradient function of the ``IdentityN`` ops ``custom_gradient`` marks (once); its name.

    Under a lock: ``tf.distribute`` traces the replicas of a step in threads of their own.
    """
    global _tf_gradient_registered
    import tensorflow as tf

    with _TF_REGISTRATION:
        if not _tf_gradient_registered:

            @tf.RegisterGradient(_TF_GRADIENT)
            def gradient(op: Any, *upstream: Any) -> Any:
                return getattr(op.graph, _TF_GRADIENTS_OF_GRAPH)[op.name](*upstream)

            _tf_gradient_registered = True
    return _TF_GRADIENT


def _as_tuple(grads: Any, num_inputs: int) -> tuple[Any, ...]:
    grads = tuple(grads) if isinstance(grads, list | tuple) else (grads,)
    if len(grads) != num_inputs:
        raise ValueError(f"A custom gradient returned {len(grads)} gradients for {num_inputs} inputs.")
    return grads


def vjp(fn: Callable[..., Any], primals: Sequence[Any], cotangent: Any) -> tuple[Any, list[Any]]:
    """``fn(*primals)`` and the gradient of ``sum(cotangent * fn(*primals))`` with respect to each primal.

    Args:
        fn: A function of tensors returning one tensor.
        primals: Its inputs (tensors).
        cotangent: The signal arriving at its output: a tensor shaped like the output, or a scalar (broadcast).

    Returns:
        ``(output, gradients)``; a gradient is zeros where the output does not depend on that input.

    Example:
        >>> import keras
        >>> out, (g,) = vjp(lambda x: x * x, [keras.ops.convert_to_tensor([1.0, 3.0])], 1.0)
        >>> keras.ops.convert_to_numpy(g).tolist()
        [2.0, 6.0]
    """
    primals = [keras.ops.convert_to_tensor(p) for p in primals]
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(primals)
            out = fn(*primals)
        cot = keras.ops.broadcast_to(keras.ops.cast(cotangent, out.dtype), keras.ops.shape(out))
        grads = tape.gradient(out, primals, output_gradients=cot, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return out, list(grads)
    if name == "jax":
        import jax

        out, pullback = jax.vjp(fn, *primals)
        cot = keras.ops.broadcast_to(keras.ops.cast(cotangent, out.dtype), keras.ops.shape(out))
        return out, list(pullback(cot))
    if name == "torch":
        import torch

        leaves = [p.detach().requires_grad_(True) if p.is_floating_point() else p for p in primals]
        with torch.enable_grad():
            out = fn(*leaves)
            cot = keras.ops.broadcast_to(keras.ops.cast(cotangent, out.dtype), keras.ops.shape(out))
            wanted = [p for p in leaves if p.requires_grad]
            found = torch.autograd.grad(out, wanted, grad_outputs=cot, allow_unused=True)
        found_iter = iter(found)
        grads = []
        for p in leaves:
            g = next(found_iter) if p.requires_grad else None
            grads.append(torch.zeros_like(p) if g is None else g)
        return out, grads
    raise NotImplementedError(f"libspn_keras needs gradients, which the '{name}' Keras backend does not compute.")


def values_known(*tensors: Any) -> bool:
    """Whether the values of all ``tensors`` are concrete (eager tensors, arrays), not symbolic or traced.

    Example:
        >>> values_known(np.ones(2), keras.ops.ones(2))
        True
        >>> values_known(keras.KerasTensor((None, 2)))
        False
    """
    for x in tensors:
        if isinstance(x, keras.KerasTensor):
            return False
        if isinstance(x, np.ndarray | np.generic | int | float | bool) or x is None:
            continue
        name = backend()
        if name == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly() or (isinstance(x, tf.Tensor) and not hasattr(x, "numpy")):
                return False
        elif name == "jax":
            import jax

            if isinstance(x, jax.core.Tracer):
                return False
    return True


def in_traced_function(*tensors: Any) -> bool:
    """Whether code runs while a function is traced for compilation, so that work nothing reads is pruned.

    On TensorFlow: a ``tf.function`` graph is being built. On JAX: one of ``tensors`` is a tracer (``jax.jit``,
    which is how Keras runs ``fit`` and ``predict``; also ``jax.grad`` outside ``jit``). Layers may offer
    alternative layouts of their output there for free (``libspn_keras.math.attach_rows``): the compiler drops
    whichever nobody reads, where eagerly both would be computed and kept.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if name == "jax":
        import jax

        return any(isinstance(t, jax.core.Tracer) for t in tensors)
    return False


def backward_rules_traced() -> bool:
    """Whether the backward rule of a ``custom_gradient`` is traced, so that it may not draw from Keras' generators.

    On JAX the backward rule is traced into a function (also when the gradient is taken eagerly), where Keras
    refuses unseeded random ops and a ``keras.random.SeedGenerator`` cannot advance: ops that draw in their
    backward pass draw their seeds in the forward pass instead. On TensorFlow and PyTorch the backward rule runs
    as ordinary code, in the eager call or the graph of the forward pass.

    Example:
        >>> backward_rules_traced() == (backend() == "jax")
        True
    """
    return backend() == "jax"


def global_seeds_refused() -> bool:
    """Whether Keras refuses its global seed generator (``seed=None``) here: while a JAX function is traced.

    That is ``jax.jit`` (Keras compiles ``fit`` and ``predict`` so on JAX) and the backward rules of custom
    gradients (an eager ``jax.grad`` / ``jax.vjp`` is not a trace in this sense). Never on the other backends.
    (Inside a ``keras.StatelessScope`` the global generator's update is dropped instead; the models handle that
    case in their own steps, ``libspn_keras.math._random.unseeded_draws_from``.)

    Example:
        >>> global_seeds_refused()
        False
    """
    if backend() != "jax":
        return False
    import jax

    probe = jax.numpy.ones(())
    # The test Keras makes (its JAX backend's ``is_in_jax_tracing_scope``): a tracer of a jaxpr trace.
    return any(c.__name__ == "DynamicJaxprTracer" and c.__module__.startswith("jax") for c in type(probe).__mro__)


def check(ok: Any, message: str, error: type[Exception] = ValueError, depends: Any = None) -> Any:
    """Check that the boolean tensor ``ok`` is all ``True``; return ``depends`` (ordered after the check).

    Where values are known the check raises ``error(message)`` at once. In a TensorFlow graph it is a graph
    assertion that raises ``tf.errors.InvalidArgumentError`` with ``message`` when the graph runs (XLA drops it),
    and ``depends`` is returned with a control dependency on it. In a traced JAX or PyTorch function (values
    unknown) the check is skipped.

    Args:
        ok: Boolean tensor (or anything ``keras.ops.all`` takes).
        message: The error message.
        error: The exception raised where values are known.
        depends: A tensor to return, ordered after the check in a TensorFlow graph.

    Returns:
        ``depends``.

    Example:
        >>> check(np.array([True, False]), "all must hold")
        Traceback (most recent call last):
        ...
        ValueError: all must hold
    """
    if values_known(ok):
        if not bool(np.all(keras.ops.convert_to_numpy(ok))):
            raise error(message)
        return depends
    if backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(ok, keras.KerasTensor):
            return depends
        assertion = tf.debugging.Assert(tf.reduce_all(ok), [message])
        if depends is None:
            return None
        with tf.control_dependencies([assertion]):
            return tf.identity(depends)
    return depends


_ATTACHED = "_libspn_keras_attached"
#: Attachments of tensors that take no attributes (JAX tracers): ``id(x) -> (weakref to x, {key: value})``. An
#: entry lives as long as its tensor, as an attribute would.
_SIDE_TABLE: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}


def attach(x: Any, key: str, value: Any) -> Any:
    """Attach ``value`` under ``key`` to the tensor ``x`` and return ``x``, the way Keras attaches masks.

    The value lives as long as ``x``: as an attribute where the tensor takes one (TensorFlow tensors, JAX arrays),
    else in a table keyed by the tensor's identity with a weak reference to it (JAX tracers). A new tensor made
    from ``x`` (any op, even a copy) carries nothing.

    Example:
        >>> x = keras.ops.ones(2)
        >>> attached(attach(x, "note", 3), "note")
        3
        >>> attached(keras.ops.copy(x), "note") is None
        True
    """
    table = _attachments(x)
    if table is None:
        table = {}
        try:
            setattr(x, _ATTACHED, table)
        except (AttributeError, TypeError):
            try:
                reference = weakref.ref(x, functools.partial(_forget, id(x)))
            except TypeError:  # neither attributes nor weak references: nothing is attached
                return x
            _SIDE_TABLE[id(x)] = (reference, table)
    table[key] = value
    return x


def attached(x: Any, key: str) -> Any:
    """The value ``attach`` attached to ``x`` under ``key``, or ``None``."""
    table = _attachments(x)
    return None if table is None else table.get(key)


def _forget(key: int, reference: weakref.ref[Any]) -> None:
    if key in _SIDE_TABLE and _SIDE_TABLE[key][0] is reference:
        del _SIDE_TABLE[key]


def _attachments(x: Any) -> dict[str, Any] | None:
    table = getattr(x, _ATTACHED, None)
    if table is not None:
        return table  # type: ignore[no-any-return]
    entry = _SIDE_TABLE.get(id(x))
    return entry[1] if entry is not None and entry[0]() is x else None


@functools.cache
def value_check_error() -> type[Exception]:
    """The exception a failed value check (``check``) raises where the values are known (eagerly).

    On TensorFlow a ``tf.errors.InvalidArgumentError`` that is also a ``ValueError``: the class a graph assertion
    raises in a ``tf.function``, so a bad value raises the same error eagerly and in a graph. Elsewhere
    ``ValueError``.

    Example:
        >>> issubclass(value_check_error(), ValueError)
        True
    """
    if backend() != "tensorflow":
        return ValueError
    import tensorflow as tf

    class InvalidValuesError(tf.errors.InvalidArgumentError, ValueError):  # type: ignore[misc]
        """``tf.errors.InvalidArgumentError`` raised eagerly by a failed value check."""

        def __init__(self, message: str, *op_error_args: Any) -> None:
            # (message) raised here; (node_def, op, message[, error_code]) when Keras re-raises it with context.
            super().__init__(*((None, None, message) if not op_error_args else (message, *op_error_args)))

    return InvalidValuesError


def initializer_errors() -> tuple[type[Exception], ...]:
    """The exceptions an initializer raises for values that do not fit the requested shape."""
    if backend() == "tensorflow":
        import tensorflow as tf

        return (ValueError, tf.errors.InvalidArgumentError)
    return (ValueError, TypeError)


def graph_execution_errors() -> tuple[type[BaseException], ...]:
    """The errors a compiled TensorFlow function raises when an op fails (``tf.errors.OpError``).

    Empty unless TensorFlow is already imported (so ``except graph_execution_errors():`` catches nothing on the
    other backends and never imports TensorFlow).

    Example:
        >>> all(issubclass(error, Exception) for error in graph_execution_errors())
        True
    """
    if "tensorflow" not in sys.modules:
        return ()
    import tensorflow as tf

    return (tf.errors.OpError,)


def read_variable(variable: Any) -> np.ndarray | None:
    """The current value of ``variable`` as a NumPy array, also while a function is traced; ``None`` if unknown.

    On TensorFlow the value is read outside any graph being built (``tf.init_scope``). On JAX a variable read while
    a function is traced is a tracer: ``None`` then.
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            return np.asarray(keras.ops.convert_to_numpy(variable))
    try:
        return np.asarray(keras.ops.convert_to_numpy(variable))
    except Exception:  # noqa: BLE001 - a tracer (jax.errors.TracerArrayConversionError and relatives)
        return None


def graph_checked_values(values: Tensor, valid: Tensor, message: str) -> Tensor:
    """``values``, with a check that fails with ``message`` when the TensorFlow graph computing them runs.

    For initial values made inside a traced TensorFlow function: the check is a data dependency
    (``check_numerics`` of zeros, NaN where ``valid`` is ``False``), since a variable's initial value may be lifted
    out of the traced function and control dependencies are not lifted with it. Elsewhere (a traced JAX function)
    the values are returned unchecked.
    """
    if backend() != "tensorflow":
        return values
    import tensorflow as tf

    zeros = tf.zeros_like(values)
    flags = tf.debugging.check_numerics(tf.where(valid, zeros, zeros + np.nan), message)
    return values + flags


def add_n(tensors: Sequence[Tensor]) -> Tensor:
    """The sum of ``tensors`` (same shape and dtype): one ``AddN`` on TensorFlow, chained additions elsewhere.

    Example:
        >>> keras.ops.convert_to_numpy(add_n([np.ones(2), np.ones(2), np.ones(2)])).tolist()
        [3.0, 3.0]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.add_n(list(tensors))
    return functools.reduce(keras.ops.add, tensors)


def widest_int_dtype() -> str:
    """The widest integer dtype the backend computes in: ``"int64"``, or ``"int32"`` on JAX without x64.

    Example:
        >>> widest_int_dtype() in ("int32", "int64")
        True
    """
    if backend() == "jax":
        import jax

        return "int64" if jax.config.read("jax_enable_x64") else "int32"
    return "int64"


def is_backend_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of the Keras backend (eager or traced; not a ``keras.KerasTensor``, not NumPy).

    Example:
        >>> is_backend_tensor(keras.ops.ones(2)), is_backend_tensor(np.ones(2))
        (True, False)
    """
    if isinstance(x, keras.KerasTensor):
        return False
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return isinstance(x, tf.Tensor)
    if name == "jax":
        import jax

        return isinstance(x, jax.Array)
    if name == "torch":
        import torch

        return isinstance(x, torch.Tensor)
    return bool(keras.ops.is_tensor(x))


def as_tensor(x: Any) -> Tensor:
    """``x`` (a tensor, array or variable) as a tensor of the backend; a variable is read.

    Example:
        >>> keras.ops.convert_to_numpy(as_tensor(keras.Variable([1.0, 2.0]))).tolist()
        [1.0, 2.0]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(x)
    return keras.ops.convert_to_tensor(x)


def stateless_uniform(
    shape: Sequence[Any], seed: Tensor, minval: float = 0.0, maxval: float = 1.0, dtype: str | None = None
) -> Tensor:
    """Uniform draws in ``[minval, maxval)``, the same for the same ``seed`` (an int32 tensor ``[2]``).

    On TensorFlow this is ``tf.random.stateless_uniform`` (the seed as it is); on JAX ``jax.random.uniform`` with
    the seed as a raw key (``uint32``).

    Example:
        >>> import numpy as np
        >>> seed = np.array([3, 4], "int32")
        >>> a, b = stateless_uniform([2, 3], seed), stateless_uniform([2, 3], seed)
        >>> bool(np.all(keras.ops.convert_to_numpy(a) == keras.ops.convert_to_numpy(b)))
        True
    """
    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype)
    if backend() == "jax":
        key = keras.ops.cast(keras.ops.convert_to_tensor(seed), "uint32")
        return keras.random.uniform(tuple(shape), minval, maxval, dtype=dtype, seed=key)
    raise NotImplementedError(f"Seeded draws inside loops are not written for the '{backend()}' Keras backend.")


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


def reduce_max(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Maximum of a floating-point ``x`` along ``axis``; ``-inf`` over an empty axis or tensor (an empty batch).

    ``keras.ops.max`` raises on an empty tensor and, eagerly on TensorFlow, checks the size first; this is
    ``tf.reduce_max`` / ``jnp.max(..., initial=-inf)``. ``NaN`` propagates.

    Example:
        >>> keras.ops.convert_to_numpy(reduce_max(np.zeros((0, 3), "float32"), axis=-1)).shape
        (0,)
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.reduce_max(x, axis=axis, keepdims=keepdims)
    return ops.max(x, axis=axis, keepdims=keepdims, initial=float("-inf"))
