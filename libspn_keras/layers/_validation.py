"""Argument and shape checks shared by all layers, with messages that name the layer."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.math._backend import (
    Tensor,
    check,
    graph_checked_values,
    initializer_errors,
    value_check_error,
    values_known,
    widest_int_dtype,
)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (``bool`` excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (``bool`` excluded; NumPy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_mask_dtype(owner: str, name: str, mask: Any) -> None:
    """Raise a ``TypeError`` unless ``mask`` (array, tensor or nested lists) is boolean or integer.

    Checked before the mask becomes a tensor: a string array cannot become one on every backend (JAX), so the
    conversion would fail first with a message that names neither the owner nor the mask.

    Example:
        >>> import numpy as np
        >>> check_mask_dtype("Layer 'leaf'", "evidence_mask", np.ones((2, 3), bool))
        >>> check_mask_dtype("Layer 'leaf'", "evidence_mask", np.full((2,), "a"))
        Traceback (most recent call last):
        ...
        TypeError: Layer 'leaf' expects a boolean evidence_mask (True = observed). Received: dtype=string
    """
    dtype = getattr(mask, "dtype", None)
    if dtype is None:
        dtype = np.asarray(mask).dtype
    try:
        name_of_dtype = keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError):  # e.g. NumPy strings and objects, which Keras has no dtype for
        name_of_dtype = "string" if np.dtype(dtype).kind in "USO" else str(dtype)
    if name_of_dtype != "bool" and "int" not in name_of_dtype:
        raise TypeError(f"{owner} expects a boolean {name} (True = observed). Received: dtype={name_of_dtype}")


def check_positive_int(layer: str, name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a ``ValueError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer() or value < 1:
        raise ValueError(f"{layer} expects {name} to be a positive integer. Received: {name}={value!r}")
    return int(float(value))


def pop_input_shape(layer: str, kwargs: dict[str, Any]) -> tuple[int | None, ...] | None:
    """Take LibSPN Keras' ``input_shape`` (or ``input_dim``) argument out of a first layer's keyword arguments.

    The original, on ``tf.keras``, starts a ``Sequential`` model with e.g. ``FlatToRegions(..., input_shape=...)``.
    Keras 3 still honours the argument but warns on every such layer, so the layers take it themselves and hand it
    to ``keras.Sequential`` as Keras' own layers do (``layer._input_shape_arg``), without the warning.

    Args:
        layer: Name of the layer class, for the error message.
        kwargs: The layer's keyword arguments; ``input_shape`` and ``input_dim`` are removed from it.

    Returns:
        The input shape without the batch axis, or ``None`` if neither argument was given.

    Raises:
        ValueError: If the shape is not a sequence of positive integers (or ``None``), or both are given.
    """
    input_shape, input_dim = kwargs.pop("input_shape", None), kwargs.pop("input_dim", None)
    if input_dim is not None:
        if input_shape is not None:
            raise ValueError(f"{layer} takes input_shape or input_dim, not both. Received: {input_shape}, {input_dim}")
        input_shape = (input_dim,)
    if input_shape is None:
        return None
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else (input_shape,)
    if not all(d is None or (is_number(d) and float(d).is_integer() and d > 0) for d in shape):
        raise ValueError(f"{layer} expects input_shape to be a tuple of positive integers. Received: {input_shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def check_bool(layer: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a boolean (Python or NumPy), else raise a ``TypeError`` quoting it.

    Truthiness is not enough: ``"no"`` and ``"False"`` are truthy strings, ``0.0`` a number.

    Example:
        >>> check_bool("RootSum", "flag", "no")
        Traceback (most recent call last):
        ...
        TypeError: RootSum expects flag to be True or False. Received: flag='no'
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{layer} expects {name} to be True or False. Received: {name}={value!r}")
    return bool(value)


def check_rank(layer: str, input_shape: Sequence[Any], rank: int, layout: str) -> None:
    """Raise a ``ValueError`` unless ``input_shape`` (batch included) has ``rank`` axes."""
    if len(input_shape) != rank:
        raise ValueError(
            f"Layer '{layer}' expects inputs of rank {rank} with layout {layout}. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def check_float_dtype(layer: str, dtype: Any, what: str = "log-probabilities") -> None:
    """Raise a ``TypeError`` quoting ``what`` the layer expects unless ``dtype`` is a floating dtype."""
    name = getattr(dtype, "name", dtype)
    if "float" not in str(name):
        raise TypeError(f"Layer '{layer}' expects floating-point {what}. Received: dtype={name}")


def check_states(values: Tensor, num_states: int, message: str, fraction_message: str | None = None) -> Tensor:
    """Return ``values`` once checked to be integers in ``[0, num_states)``, without casting them.

    The checks compare in the input's own dtype (integers as int64): a cast to int32 first would wrap ``+-inf``,
    huge floats and large integers around into the range. Where values are known (eagerly) a failed check raises
    at once; in a TensorFlow graph (``tf.function``) it is a graph assertion. Both raise ``InvalidArgumentError``
    with ``message`` on TensorFlow, ``ValueError`` on other backends; XLA drops the assertions, and in a traced JAX
    function the values are not checked (``libspn_keras.math._backend.check``).

    Args:
        values: Integer, boolean or floating-point tensor (``NaN`` is rejected: replace missing values first).
        num_states: Number of states.
        message: Start of the error message, e.g. ``"Layer 'leaf' expects integer states in [0, 3)"``; what was
            received is appended (``"; received a negative value"``).
        fraction_message: Message for a non-integral float (default: ``message + "; received a fraction"``).

    Returns:
        The checked values: floats unchanged, integers and booleans as int64 (int32 on JAX without x64).

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> ops.convert_to_numpy(check_states(np.array([0.0, 2.0], "float32"), 3, "labels in [0, 3)")).tolist()
        [0.0, 2.0]
    """
    values = ops.convert_to_tensor(values)
    floating = "float" in keras.backend.standardize_dtype(values.dtype)
    values = values if floating else ops.cast(values, widest_int_dtype())
    error = value_check_error()
    # Eagerly each check raises as it is made: NaN first (it fails every comparison).
    checks = [] if not floating else [(ops.logical_not(ops.isnan(values)), message + "; received NaN")]
    checks += [
        (ops.greater_equal(values, ops.zeros([], values.dtype)), message + "; received a negative value"),
        (ops.less(values, ops.cast(num_states, values.dtype)), message + "; received a larger value"),
    ]
    if floating:
        checks.append((ops.equal(values, ops.round(values)), fraction_message or message + "; received a fraction"))
    checked = values
    for ok, text in checks:
        checked = check(ok, text, error, depends=checked)
    return checked


# Keras shapes: a tuple of ints with ``None`` for unknown sizes (usually the batch). Arithmetic on entries is only
# done after ``build`` checked that the entries involved are known, hence ``Any``.
Shape = tuple[Any, ...]


# Attribute of a layer holding the message of an invalid initial value found where raising would break Keras (a
# deferred initialization, see ``checked_initializer``); the layer's next call raises it.
_DEFERRED_ERROR = "_libspn_keras_initial_value_error"


def raise_deferred_initial_value_error(layer: keras.layers.Layer) -> None:
    """Raise the ``ValueError`` of an invalid initial value of ``layer`` that ``checked_initializer`` deferred."""
    message = getattr(layer, _DEFERRED_ERROR, None)
    if message is not None:
        raise ValueError(message)


def _min_max_invalid(what: str) -> Callable[[np.ndarray, np.ndarray], str]:
    def received(values: np.ndarray, valid: np.ndarray) -> str:
        invalid = int(np.size(valid) - np.count_nonzero(valid))
        return f"min({what})={values.min()}, max({what})={values.max()}, {invalid} invalid values"

    return received


def checked_initializer(
    initializer: Callable[..., Any],
    layer: keras.layers.Layer,
    argument: str,
    requirement: str,
    valid: Callable[[Any], Any],
    what: str = "value",
    received: Callable[[np.ndarray, np.ndarray], str] | None = None,
) -> Callable[..., Any]:
    """Wrap ``initializer`` so that the values it gives are checked with ``valid`` wherever they are made.

    Where the values are known (a layer built on data or symbolic inputs) a ``ValueError`` is raised at once. In a
    layer built lazily inside a traced TensorFlow function (e.g. the first step of ``fit`` on a model without
    ``keras.Input``) the values only exist when the graph runs, so a check with the same message runs with the
    variable's initialization (an ``InvalidArgumentError``). On JAX, Keras initializes the weights of a model built
    inside ``fit`` after building it, all from one queue; an error raised there would leave the queue half done
    and break every later model of the process, so the message is kept and the layer's next call raises it
    (``raise_deferred_initial_value_error``, in the first train step). In a traced JAX function the values are
    unknown and not checked.

    Args:
        initializer: The initializer to wrap.
        layer: The layer whose weight it initializes (named in the message).
        argument: Name of the initializer argument, for the message.
        requirement: What the values must be, e.g. ``"finite, positive scales"``.
        valid: Maps the initial values (a tensor) to a boolean tensor, ``True`` where a value is valid.
        what: Name of the values in the message (``"Received: min(scale)=..."``).
        received: Describes invalid values (NumPy values and ``valid``) after ``"Received: "``; by default their
            minimum, maximum and the number of invalid values.

    Returns:
        An initializer ``(shape, dtype=None) -> values`` for ``add_weight``.

    Raises:
        ValueError: When called where values are known, if ``valid`` is ``False`` anywhere.

    Example:
        >>> import keras
        >>> init = checked_initializer(
        ...     keras.initializers.Constant(-1.0), keras.layers.Layer(name="leaf"), "scale_initializer",
        ...     "positive scales", lambda v: v > 0, "scale",
        ... )
        >>> init((2,))
        Traceback (most recent call last):
        ...
        ValueError: Layer 'leaf' expects scale_initializer to give positive scales. Received: min(scale)=-1.0, \
max(scale)=-1.0, 2 invalid values
    """
    message = f"Layer '{layer.name}' expects {argument} to give {requirement}."
    describe = received or _min_max_invalid(what)

    def initialize(shape: Sequence[int], dtype: Any = None) -> Any:
        values = ops.convert_to_tensor(initializer(shape, dtype=dtype))
        if not values_known(values):
            # In a traced TensorFlow function: a check with the variable's initialization (see graph_checked_values).
            return graph_checked_values(values, valid(values), message)
        ok = np.asarray(ops.convert_to_numpy(valid(values)))
        if not bool(np.all(ok)):
            error = f"{message} Received: {describe(np.asarray(ops.convert_to_numpy(values)), ok)}"
            if not layer.built:  # called by add_weight in build: raising is safe
                raise ValueError(error)
            setattr(layer, _DEFERRED_ERROR, error)  # a deferred initialization, after build (see above)
        return values

    return initialize


def checked_linear_accumulators(
    initializer: Callable[..., Any], layer: keras.layers.Layer, constraint: Any = None
) -> Callable[..., Any]:
    """Wrap the initializer of linear accumulators ``[..., num_in, num_out]`` so that they must give valid weights.

    Every entry must be finite and non-negative and every sum (column) needs a positive total, since the weights
    are the accumulators divided by that total. ``constraint``, if given, is the linear accumulator constraint the
    initial values already passed through (named in the message). Checked wherever the values are made (see
    ``checked_initializer``).
    """
    after = "" if constraint is None else f" after linear_accumulator_constraint={type(constraint).__name__}"
    return checked_initializer(
        initializer,
        layer,
        "accumulator_initializer",
        "finite, non-negative linear accumulators with a positive total over the inputs of every sum"
        f"{after} (the weights are the accumulators divided by it)",
        lambda values: ops.logical_and(
            ops.logical_and(ops.isfinite(values), ops.greater_equal(values, 0)),
            ops.greater(ops.sum(values, axis=-2, keepdims=True), 0),
        ),
        received=lambda values, valid: f"min={values.min()}, smallest total={values.sum(axis=-2).min()}",
    )


def shape_checked_initializer(
    layer: str, name: str, initializer: Callable[..., Any], shape: Sequence[int] | None = None
) -> Callable[..., Any]:
    """Wrap ``initializer`` (the layer's argument ``name``) so that values of another shape raise a ``ValueError``.

    Keras 3's ``keras.initializers.Constant`` broadcasts its value to the requested shape instead of reshaping it
    (as ``tf.keras`` 2 did), so an array of the right size in another shape silently gives other values, or a
    broadcasting error from deep inside Keras. The error names the layer, the argument and both shapes.

    With ``shape`` (the weight's shape, known when the layer builds), a ``Constant`` (maybe wrapped, e.g. by
    ``logspace_wrapper_initializer``) whose value cannot give that shape is rejected at once, before the weight
    exists. That matters where Keras defers a weight's initialization (a model built inside ``fit`` on JAX): a
    weight whose deferred initialization fails stays queued in Keras and fails every later initialization in the
    process, so the check must not wait for it.

    Example:
        >>> import keras, numpy as np
        >>> constant = keras.initializers.Constant(np.ones(3))
        >>> init = shape_checked_initializer("root_sum", "accumulator_initializer", constant)
        >>> init((3, 1))
        Traceback (most recent call last):
        ...
        ValueError: Layer 'root_sum' expects accumulator_initializer to give values of shape (3, 1). ...
    """
    value = getattr(getattr(initializer, "initializer", initializer), "value", None)  # Constant, maybe wrapped

    def error(expected: tuple[int, ...], received: str) -> ValueError:
        return ValueError(
            f"Layer '{layer}' expects {name} to give values of shape {expected}. keras.initializers.Constant "
            "broadcasts its value instead of reshaping it (Keras 3), so pass an array of exactly this shape (e.g. "
            f"np.reshape(value, shape)). Received: {received}"
        )

    if shape is not None and value is not None:
        expected = tuple(int(size) for size in shape)
        try:
            broadcast = np.broadcast_shapes(np.shape(value), expected)
        except ValueError:
            broadcast = None
        if broadcast != expected:
            to = "" if broadcast is None else f", which Keras broadcasts to values of shape {broadcast}"
            raise error(expected, f"a value of shape {np.shape(value)}{to}")

    def initialize(shape: Any, dtype: Any = None) -> Any:
        expected = tuple(int(size) for size in shape)
        try:
            values = initializer(shape, dtype=dtype)
        except initializer_errors() as failure:
            received = "an initializer that fails" if value is None else f"a value of shape {np.shape(value)}"
            raise error(expected, received) from failure
        if tuple(values.shape) != expected:
            raise error(expected, f"values of shape {tuple(values.shape)}")
        return values

    return initialize
