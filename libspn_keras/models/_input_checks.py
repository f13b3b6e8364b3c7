"""Checks of the data given to an SPN model, made before Keras converts it and before any graph runs.

Keras casts the data to the dtype its ``keras.Input`` declares (``Functional._standardize_inputs``) before any
layer sees it, and a check inside a compiled ``fit`` step surfaces as a "Graph execution error" with the message
below a long traceback. So the models check their data at the entry points (``__call__``, ``fit``, ``evaluate``,
``predict``) where the data allow, and put the cause first in the errors raised inside graphs.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers import BaseLeaf, FlatToRegions, IndicatorLeaf
from libspn_keras.math._backend import Tensor, check, graph_execution_errors, is_backend_tensor, values_known


def _dtype(x: Any) -> str | None:
    """The Keras name of ``x``'s dtype (``"float32"``), or ``None`` where Keras has none (strings, objects)."""
    try:
        return str(keras.backend.standardize_dtype(x.dtype))
    except (ValueError, TypeError, AttributeError):
        return None


def _is_integer(dtype: str) -> bool:
    return "int" in dtype


def declared_input_dtype(model: keras.Model) -> str | None:
    """The dtype (Keras name) of the model's single ``keras.Input``, or ``None`` if it has none (yet) or several."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a Sequential model without keras.Input that is not built yet
        return None
    if not inputs or len(inputs) != 1:
        return None
    return _dtype(inputs[0])


def _cast_problems(data: Tensor, declared: str) -> list[tuple[Tensor, str]]:
    """``(any_bad, what)`` pairs: the values of ``data`` that a cast to the integer ``declared`` dtype changes."""
    # NumPy data is checked in NumPy: a backend may narrow it when converting (JAX without x64: int64 to int32).
    xp: Any = np if isinstance(data, np.ndarray) else ops
    problems: list[tuple[Tensor, str]] = []
    values = data
    dtype = _dtype(data) or ""
    floating = "float" in dtype
    if floating:
        problems.append(
            (
                xp.any(xp.isnan(data)),
                "NaN values (missing values), which an integer cannot represent",
            )
        )
        values = xp.where(xp.isnan(data), xp.zeros_like(data), data)
        problems.append((xp.any(xp.not_equal(values, xp.round(values))), "fractions, which the cast would truncate"))
    elif not _is_integer(dtype):
        return problems
    low, high = (0, 1) if declared == "bool" else (int(np.iinfo(declared).min), int(np.iinfo(declared).max))
    if _is_integer(dtype) and np.iinfo(dtype).min >= low and np.iinfo(dtype).max <= high:
        return problems
    compare = "float64" if floating else "int64"
    if xp is np:
        values = values.astype(compare)
        outside = (values < np.asarray(low, compare)) | (values > np.asarray(high, compare))
    else:
        values = ops.cast(values, compare)
        outside = ops.logical_or(
            ops.less(values, ops.convert_to_tensor(low, dtype=compare)),
            ops.greater(values, ops.convert_to_tensor(high, dtype=compare)),
        )
    problems.append((xp.any(outside), f"values outside [{low}, {high}], which the cast would wrap around or clip"))
    return problems


def check_declared_dtype(model: keras.Model, data: Any, owner: str) -> Any:
    """Return ``data``, checked to keep its values when Keras casts it to the model's declared integer dtype.

    A model whose ``keras.Input`` declares an integer (or boolean) dtype gets its data cast before any layer can
    check it: ``0.5`` would become state 0, ``NaN`` an arbitrary integer, int64 ``2**32`` would wrap to 0.

    Args:
        model: The model.
        data: What the model is called on (only a single array or tensor is checked).
        owner: The model, for the messages.

    Returns:
        ``data``; in a traced function, a tensor that carries the checks.

    Raises:
        ValueError: Eagerly, if a value would change in the cast (an ``InvalidArgumentError`` with the same
            message in a graph).
    """
    declared = declared_input_dtype(model)
    if declared is None or not (_is_integer(declared) or declared == "bool") or not hasattr(data, "dtype"):
        return data
    if isinstance(data, keras.KerasTensor) or _dtype(data) == declared:
        return data
    array = np.asarray(data) if isinstance(data, np.ndarray | np.generic) else None
    tensor = ops.convert_to_tensor(data) if array is None else array
    prefix = (
        f"{owner} declares {declared} inputs (keras.Input(dtype='{declared}')), to which Keras casts "
        f"its {_dtype(tensor)} data before any layer can check it; the data holds "
    )
    advice = (
        ". Declare keras.Input(dtype='float32') (an IndicatorLeaf accepts float states; NaN marks a missing value) "
        "or pass data of the declared dtype."
    )
    checked = tensor
    for any_bad, what in _cast_problems(tensor, declared):
        checked = check(ops.logical_not(any_bad), prefix + what + advice, depends=checked)
    return data if array is not None or values_known(tensor) else checked


def _indicator_leaf_on_raw_data(model: keras.Model) -> IndicatorLeaf | None:
    """The model's ``IndicatorLeaf`` if the data reaches it unchanged (only ``FlatToRegions`` before it)."""
    for layer in model.layers:
        if isinstance(layer, IndicatorLeaf):
            return layer
        if isinstance(layer, BaseLeaf) or not isinstance(layer, FlatToRegions | keras.layers.InputLayer):
            return None
    return None


def check_indicator_states(model: keras.Model, x: Any) -> None:
    """Check the states in array data ``x`` against the ``IndicatorLeaf`` it reaches, before any graph runs.

    Only NumPy arrays and eager tensors are checked (datasets and generators are checked by the leaf itself when
    the graph runs); ``NaN`` marks a missing value.

    Raises:
        ValueError: If a state is not an integer in ``[0, num_components)``, naming the leaf and the first one.
    """
    if not (isinstance(x, np.ndarray) or is_backend_tensor(x)) or not values_known(x):
        return
    leaf = _indicator_leaf_on_raw_data(model)
    if leaf is None:
        return
    values = np.asarray(x)
    if values.dtype.kind not in "biuf":
        return
    observed = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    bad = observed & ((values < 0) | (values >= leaf.num_components))
    if values.dtype.kind == "f":
        bad |= observed & (np.where(observed, values, 0) != np.round(np.where(observed, values, 0)))
    if not bad.any():
        return
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"Layer '{leaf.name}' expects integer states in [0, {leaf.num_components}) (num_components="
        f"{leaf.num_components}; NaN marks a missing value). Received: x{list(index)}={values[index]!r} "
        f"({int(bad.sum())} invalid values in the data of model '{model.name}')"
    )


def check_labels_given(model: keras.Model, y: Any) -> None:
    """Raise a ``ValueError`` if a supervised model (``unsupervised=False``) is trained without labels ``y``."""
    if y is None and not getattr(model, "unsupervised", True):
        raise ValueError(
            f"Model '{model.name}' was created with unsupervised=False, so fit and evaluate need labels: pass y "
            "(or a dataset of (x, y) pairs), or create the model with unsupervised=True to train on x alone. "
            "Received: y=None"
        )


def _cause(message: str) -> str:
    """The error's own message out of TensorFlow's "Graph execution error" text (which starts with a traceback)."""
    blocks = [block.strip() for block in message.split("\n\n")]
    causes = [b for b in blocks if b and not b.startswith(("Graph execution error", "Detected at node", "File "))]
    cause = causes[-1].split("\n\t [[")[0].strip() if causes else message
    asserted = re.match(r"assertion failed: \[(.*?)\](?: \[|$)", cause, flags=re.DOTALL)
    cause = asserted.group(1) if asserted else cause
    return cause.replace("\\'", "'")  # TensorFlow escapes the quotes of assertion messages in graphs


@contextlib.contextmanager
def cause_first(owner: str) -> Iterator[None]:
    """Re-raise a graph execution error with its cause as the first line (the original text follows)."""
    try:
        yield
    except graph_execution_errors() as error:
        if not error.message.startswith("Graph execution error"):  # type: ignore[attr-defined]
            raise
        report = error.message  # type: ignore[attr-defined]
        message = f"{_cause(report)}\n\n(raised in a graph run by {owner}; TensorFlow's report follows)\n\n{report}"
        raise type(error)(error.node_def, error.op, message) from None  # type: ignore[attr-defined,call-arg]
