"""Losses for generative training of SPNs."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from libspn_keras.math._backend import Tensor, check, value_check_error, widest_int_dtype


def _reduction(reduction: str) -> str:
    # The original API (TF 2 Keras) used "auto"; Keras 3 calls the same reduction "sum_over_batch_size".
    return "sum_over_batch_size" if reduction == "auto" else reduction


def class_labels(y_true: Any, num_classes: int | None, owner: str) -> Any:
    """Return integer class labels ``[batch]`` (int32) from ``y_true``, checked to be in ``[0, num_classes)``.

    Args:
        y_true: Labels ``[batch]`` or ``[batch, 1]``: integers, booleans or integral floats.
        num_classes: Number of classes (the last axis of the predictions), or ``None`` if unknown.
        owner: The loss or metric, for the messages.

    Returns:
        The labels as int32 ``[batch]``.

    Raises:
        ValueError: If ``y_true`` has more than one value per sample (e.g. one-hot labels).
        TypeError: If ``y_true`` is not numeric.
        InvalidArgumentError: If a label is negative, at least ``num_classes``, a fraction or ``NaN``: on TensorFlow a
            ``tf.errors.InvalidArgumentError`` (eagerly and in a ``tf.function``; XLA drops the check), elsewhere a
            ``ValueError`` where the values are known (skipped in a traced JAX function).

    Example:
        >>> import numpy as np
        >>> ops.convert_to_numpy(class_labels(np.array([[2], [0]]), 3, "NegativeLogJoint")).tolist()
        [2, 0]
    """
    labels = ops.convert_to_tensor(y_true)
    shape = tuple(labels.shape)
    if len(shape) > 2 or len(shape) == 2 and shape[-1] not in (1, None):
        one_hot = " One-hot labels? Pass their argmax (np.argmax(y, axis=-1))." if shape[-1] == num_classes else ""
        raise ValueError(
            f"{owner} expects integer class labels of shape [batch] or [batch, 1], one per sample.{one_hot} "
            f"Received: y_true.shape={shape}"
        )
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if not (dtype.startswith(("int", "uint", "float", "bfloat")) or dtype == "bool"):
        raise TypeError(f"{owner} expects integer class labels. Received: dtype={dtype}")
    labels = ops.reshape(labels, [-1])
    if num_classes is not None:
        labels = _checked_labels(labels, num_classes, f"{owner} expects integer class labels in [0, {num_classes})")
    return ops.cast(labels, "int32")


def _checked_labels(values: Tensor, num_classes: int, message: str) -> Tensor:
    """Return ``values`` once checked to be integers in ``[0, num_classes)``: floats unchanged, integers widened.

    The checks compare in the input's own dtype (integers and booleans as the widest integer dtype): a cast to int32
    first would wrap ``+-inf``, huge floats and large integers around into the range. Each check is ordered after
    the one before it, so the first failing one is reported (``NaN`` first: it fails every comparison).
    """
    floating = "float" in keras.backend.standardize_dtype(values.dtype)
    if not floating:
        values = ops.cast(values, widest_int_dtype())
    error = value_check_error()
    if floating:
        values = check(ops.logical_not(ops.isnan(values)), message + "; received NaN", error, depends=values)
    values = check(values >= 0, message + "; received a negative value", error, depends=values)
    values = check(values < num_classes, message + "; received a larger value", error, depends=values)
    if floating:
        values = check(values == ops.round(values), message + "; received a fraction", error, depends=values)
    return values


def joint_log_prob(y_true: Any, y_pred: Any, owner: str = "NegativeLogJoint") -> Any:
    """Pick ``log p(x, y)`` of the true class from weighted child logits ``y_pred`` (``[batch, num_classes]``).

    Args:
        y_true: Integer class labels ``[batch]`` or ``[batch, 1]`` (see ``class_labels``).
        y_pred: Weighted child logits ``log p(x, Y=c)``, ``[batch, num_classes]``.
        owner: The loss or metric, for error messages.

    Returns:
        ``y_pred[i, y_true[i]]`` per sample, ``[batch]``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    labels = class_labels(y_true, y_pred.shape[-1], owner)
    return ops.take_along_axis(y_pred, labels[:, None], axis=-1)[:, 0]


@keras.saving.register_keras_serializable(package="libspn_keras")
class NegativeLogLikelihood(keras.losses.Loss):
    """Marginalize logits over last dimension so that it computes ``-log(p(X))``.

    This can be used for unsupervised generative learning: ``y_true`` is ignored. Works with a ``RootSum`` with
    ``return_weighted_child_logits`` either ``False`` (output ``[batch, 1]``) or ``True``.

    Args:
        reduction: Keras reduction; ``'auto'`` (the original's default) means ``'sum_over_batch_size'``.
        name: Name of the loss.

    Example:
        >>> import numpy as np
        >>> loss = NegativeLogLikelihood()
        >>> round(float(loss(None, np.log(np.array([[0.25, 0.25]], "float32")))), 4)
        0.6931
    """

    def __init__(self, reduction: str = "auto", name: str | None = "negative_log_likelihood") -> None:
        super().__init__(reduction=_reduction(reduction), name=name)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Return ``-logsumexp(y_pred, axis=-1)`` per sample."""
        return -ops.logsumexp(y_pred, axis=-1)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Compute the loss; ``y_true`` may be ``None``."""
        return super().__call__(ops.zeros_like(y_pred) if y_true is None else y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="libspn_keras")
class NegativeLogJoint(keras.losses.Loss):
    """Compute ``-log(p(X, Y))``.

    Assumes that its input is ``log p(X, Y=c) = log p(X|Y=c) + log p(Y=c)`` where ``c`` is indexed on the second
    axis (a ``RootSum`` with ``return_weighted_child_logits=True`` over class sub-SPNs) and ``y_true`` holds
    integer class labels ``[batch]`` or ``[batch, 1]`` in ``[0, num_classes)`` (integral floats are accepted; a
    negative, larger or fractional label raises an ``InvalidArgumentError``, one-hot labels a ``ValueError``).
    This can be used for supervised generative learning with gradient-based optimizers or
    (hard) expectation maximization.

    Args:
        reduction: Keras reduction; ``'auto'`` means ``'sum_over_batch_size'``.
        name: Name of the loss.

    Example:
        >>> import numpy as np
        >>> loss = NegativeLogJoint()
        >>> round(float(loss(np.array([1]), np.log(np.array([[0.2, 0.5]], "float32")))), 4)
        0.6931
    """

    def __init__(self, reduction: str = "auto", name: str | None = "negative_log_joint") -> None:
        super().__init__(reduction=_reduction(reduction), name=name)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Return ``-y_pred[label]`` per sample."""
        return -joint_log_prob(y_true, y_pred, f"Loss '{self.name}' (NegativeLogJoint)")
