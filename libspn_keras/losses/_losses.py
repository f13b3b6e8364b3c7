"""Losses for generative training of SPNs."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _reduction(reduction: str) -> str:
    # The original API (TF 2 Keras) used "auto"; Keras 3 calls the same reduction "sum_over_batch_size".
    return "sum_over_batch_size" if reduction == "auto" else reduction


def joint_log_prob(y_true: Any, y_pred: Any) -> Any:
    """Pick ``log p(x, y)`` of the true class from weighted child logits ``y_pred`` (``[batch, num_classes]``)."""
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
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
    integer class labels. This can be used for supervised generative learning with gradient-based optimizers or
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
        return -joint_log_prob(y_true, y_pred)
