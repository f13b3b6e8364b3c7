"""Training logic shared by the SPN models: fitting without labels."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def _dummy_targets(y: Any, y_pred: Any) -> Any:
    return tf.nest.map_structure(lambda t: tf.zeros_like(tf.stop_gradient(t)), y_pred) if y is None else y


class GenerativeTrainingMixin:
    """Lets ``fit``/``evaluate`` run without labels when ``unsupervised`` is ``True``.

    Losses and metrics of an unsupervised model (``NegativeLogLikelihood``, ``LogLikelihood``) ignore their
    targets; when no targets are given they receive zeros shaped like the predictions.
    """

    unsupervised: bool

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Compute the compiled loss; ``y`` may be ``None`` for unsupervised models."""
        if self.unsupervised:
            y = _dummy_targets(y, y_pred)
        return super().compute_loss(  # type: ignore[misc]
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Update the compiled metrics; ``y`` may be ``None`` for unsupervised models."""
        if self.unsupervised:
            y = _dummy_targets(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)  # type: ignore[misc]
