"""Backend-neutral helpers for the tests: compiled calls, gradients and NumPy conversion.

The tests run on the TensorFlow and on the JAX Keras backend (``KERAS_BACKEND``). What ``keras.ops`` does not
cover is written here once per backend:

- ``function(fn, jit_compile)`` / ``jit(fn)``: a traced call, ``tf.function`` (optionally XLA-compiled) on
  TensorFlow, ``jax.jit`` on JAX (JAX traces only through XLA, so both modes compile there).
- ``run(fn, mode, *args)``: ``fn(*args)`` eagerly (``"eager"``), traced (``"function"``) or XLA-compiled (``"jit"``).
- ``run_layer(layer, mode, x, **kwargs)``: a layer's call as ``run`` makes it, keeping the layer's state updates
  (``stateless_call`` on JAX, whose ``jit`` cannot update variables in place).
- ``grad(fn, *inputs, variables=..., cotangent=...)``: gradients of ``sum(cotangent * fn(*inputs))`` with respect
  to the inputs, then the Keras variables (``GradientTape`` on TensorFlow; ``jax.vjp`` with the variables'
  values mapped in a ``keras.StatelessScope`` on JAX).
- ``to_numpy(x)``: a tensor (or a list / tuple of tensors) as NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

MODES = ["eager", "function", "jit"]


def backend() -> str:
    """The name of the Keras backend the tests run on."""
    return str(keras.backend.backend())


def function(
    fn: Callable[..., Any], jit_compile: bool = False, variables: Sequence[keras.Variable] | None = None
) -> Callable[..., Any]:
    """``fn`` traced: ``tf.function(fn, jit_compile=jit_compile)`` on TensorFlow, ``jax.jit(fn)`` on JAX.

    ``jax.jit`` bakes the values of the Keras variables ``fn`` reads into the compiled function; where a test
    assigns variables between calls, name them in ``variables``: on JAX their current values are then passed in
    at every call (through a ``keras.StatelessScope``), as a ``tf.function`` reads them at every call.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit_compile)
    if name == "jax":
        import jax

        if variables is None:
            return jax.jit(fn)
        variables = list(variables)

        def pure(values: list[Any], *args: Any) -> Any:
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return fn(*args)

        jitted = jax.jit(pure)
        return lambda *args: jitted([v.value for v in variables], *args)
    raise NotImplementedError(f"no traced functions for the '{name}' backend in the tests")


def jit(fn: Callable[..., Any], variables: Sequence[keras.Variable] | None = None) -> Callable[..., Any]:
    """``fn`` XLA-compiled: ``tf.function(fn, jit_compile=True)`` on TensorFlow, ``jax.jit(fn)`` on JAX."""
    return function(fn, jit_compile=True, variables=variables)


def run(fn: Callable[..., Any], mode: str, *args: Any) -> Any:
    """Call ``fn(*args)`` eagerly (``"eager"``), traced (``"function"``) or XLA-compiled (``"jit"``)."""
    if mode == "eager":
        return fn(*args)
    if mode not in ("function", "jit"):
        raise ValueError(f"unknown mode {mode!r}")
    return function(fn, jit_compile=mode == "jit")(*args)


def run_layer(layer: keras.layers.Layer, mode: str, x: Any, **kwargs: Any) -> Any:
    """``layer(x, **kwargs)`` as ``run`` calls it, keeping the updates of the layer's state (seed generators).

    A ``tf.function`` updates variables in place; ``jax.jit`` cannot (a state update inside it would leak a
    tracer). On JAX the compiled call is ``layer.stateless_call`` and the new non-trainable values are assigned
    after it, as Keras' trainer does, so that the layer draws anew at the next call in every mode.
    """
    if mode == "eager" or backend() != "jax":
        return run(lambda v: layer(v, **kwargs), mode, x)
    import jax

    x = keras.ops.convert_to_tensor(x)
    if not layer.built:  # stateless_call needs the variables
        layer.build(tuple(x.shape))

    def pure(trainable: list[Any], non_trainable: list[Any], v: Any) -> Any:
        return layer.stateless_call(trainable, non_trainable, v, **kwargs)

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    out, updated = jax.jit(pure)(trainable, non_trainable, x)
    for variable, value in zip(layer.non_trainable_variables, updated, strict=True):
        variable.assign(value)
    return out


def tensor(x: Any, dtype: Any = None) -> Any:
    """``x`` as a tensor of the backend (``keras.ops.convert_to_tensor``)."""
    return keras.ops.convert_to_tensor(x, dtype=dtype)


def to_numpy(x: Any) -> Any:
    """A tensor as a NumPy array; lists and tuples element by element (``None`` stays ``None``)."""
    if isinstance(x, list | tuple):
        return type(x)(to_numpy(v) for v in x)
    if x is None:
        return None
    return np.asarray(keras.ops.convert_to_numpy(x))


def _is_float(x: Any) -> bool:
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype))


def value_and_grad(
    fn: Callable[..., Any],
    *inputs: Any,
    variables: Sequence[keras.Variable] = (),
    cotangent: Any = None,
) -> tuple[Any, list[Any]]:
    """``fn(*inputs)`` and the gradients of ``sum(cotangent * fn(*inputs))`` (``sum(fn(*inputs))`` by default).

    The gradients are with respect to each input, then each variable. Integer inputs get ``None``. On TensorFlow a
    variable or input the output does not depend on gets ``None`` (``GradientTape``); on JAX it gets zeros.
    """
    inputs = tuple(keras.ops.convert_to_tensor(x) for x in inputs)
    variables = list(variables)

    def loss_of(out: Any) -> Any:
        return keras.ops.sum(out if cotangent is None else cotangent * out)

    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            for x in inputs:
                if _is_float(x):
                    tape.watch(x)
            out = fn(*inputs)
            loss = loss_of(out)
        grads = list(tape.gradient(loss, [*inputs, *variables]))
        for i, x in enumerate(inputs):
            if not _is_float(x):
                grads[i] = None
        return out, grads
    if name == "jax":
        import jax

        float_positions = [i for i, x in enumerate(inputs) if _is_float(x)]

        def loss_fn(float_inputs: list[Any], values: list[Any]) -> Any:
            args = list(inputs)
            for i, x in zip(float_positions, float_inputs, strict=True):
                args[i] = x
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                out = fn(*args)
                return loss_of(out), out

        (_, out), (d_inputs, d_values) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            [inputs[i] for i in float_positions], [v.value for v in variables]
        )
        if not isinstance(out, jax.core.Tracer):  # inside a traced function the draws are traced once anyway
            _advance_global_seed_generator()
        grads: list[Any] = [None] * len(inputs)
        for i, g in zip(float_positions, d_inputs, strict=True):
            grads[i] = g
        return out, grads + list(d_values)
    raise NotImplementedError(f"no gradients for the '{name}' backend in the tests")


def _advance_global_seed_generator() -> None:
    """Advance Keras' global seed generator by one draw, as the unseeded draws of a JAX ``value_and_grad`` would.

    A ``GradientTape`` lets unseeded draws advance the global generator; inside the ``StatelessScope`` that maps
    the variables on JAX the update is dropped, so that every call would draw the same. One unseeded draw outside
    the scope (public API, eager) moves the generator on, so the next call draws anew.
    """
    keras.random.uniform(())


def grad(
    fn: Callable[..., Any],
    *inputs: Any,
    variables: Sequence[keras.Variable] = (),
    cotangent: Any = None,
) -> list[Any]:
    """Gradients of ``sum(cotangent * fn(*inputs))`` with respect to each input, then each variable."""
    return value_and_grad(fn, *inputs, variables=variables, cotangent=cotangent)[1]


def dtype_name(x: Any) -> str:
    """The standardized dtype name of a tensor (``"float32"``, ``"int32"``...)."""
    return str(keras.backend.standardize_dtype(x.dtype))


def eager_check_errors() -> tuple[type[Exception], ...]:
    """What a failed eager value check raises: ``ValueError`` (``libspn_keras.math.check``).

    On TensorFlow the checks not yet ported to ``math.check`` (issue 19) raise ``tf.errors.InvalidArgumentError``
    eagerly; once every check is ported this is ``(ValueError,)`` on every backend.
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return (ValueError, tf.errors.InvalidArgumentError)
    return (ValueError,)


def graph_check_error() -> type[Exception]:
    """What a failed value check raises in a TensorFlow graph (``tf.function``): ``InvalidArgumentError``."""
    import tensorflow as tf

    return tf.errors.InvalidArgumentError
