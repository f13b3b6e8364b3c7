"""Metrics reporting log-likelihoods."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from libspn_keras.losses._losses import joint_log_prob


@keras.saving.register_keras_serializable(package="libspn_keras")
class LogLikelihood(keras.metrics.Mean):
    r"""Compute log marginal :math:`1/N \sum \log(p(X))`.

    Assumes that the last layer of the SPN is a ``RootSum``; its output is marginalized over the last axis (so
    weighted child logits give ``log p(X)`` too). It ignores the ``y_true`` argument, since a target for ``Y`` is
    absent in unsupervised learning.

    Args:
        name: Name of the metric.
        **kwargs: Passed on to ``keras.metrics.Mean``.

    Example:
        >>> import numpy as np
        >>> m = LogLikelihood()
        >>> m.update_state(None, np.log(np.array([[0.5], [0.25]], "float32")))
        >>> round(float(m.result()), 4)
        -1.0397
    """

    def __init__(self, name: str = "llh", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate ``logsumexp(y_pred, axis=-1)``."""
        super().update_state(ops.logsumexp(y_pred, axis=-1), sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="libspn_keras")
class LogJoint(keras.metrics.Mean):
    r"""Compute the log joint :math:`1/N \sum \log(p(X, Y))` of samples and their labels.

    ``y_pred`` are weighted child logits ``log p(X, Y=c)`` (``RootSum(return_weighted_child_logits=True)``),
    ``y_true`` integer labels.

    Args:
        name: Name of the metric.
        **kwargs: Passed on to ``keras.metrics.Mean``.

    Example:
        >>> import numpy as np
        >>> m = LogJoint()
        >>> m.update_state(np.array([0]), np.log(np.array([[0.5, 0.1]], "float32")))
        >>> round(float(m.result()), 4)
        -0.6931
    """

    def __init__(self, name: str = "log_joint", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate ``y_pred[label]``."""
        owner = f"Metric '{self.name}' (LogJoint)"
        super().update_state(joint_log_prob(y_true, y_pred, owner), sample_weight=sample_weight)
