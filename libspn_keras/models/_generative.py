"""Training logic shared by the SPN models: fitting without labels."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.math._backend import is_backend_tensor
from libspn_keras.models._input_checks import (
    cause_first,
    check_declared_dtype,
    check_indicator_states,
    check_labels_given,
)
from libspn_keras.optimizers._em_statistics import check_optimizer_for_em_statistics


def _num_samples(x: Any) -> int | None:
    """Number of samples of an array-like input or of the first item of a tuple/list input (``None`` if unknown)."""
    if isinstance(x, tuple | list) and x:
        x = x[0]
    shape = getattr(x, "shape", None)
    return None if shape is None or len(shape) == 0 or shape[0] is None else int(shape[0])


#: Keras' warning when a dataset has no batch (its words, so that the message is the same on every backend).
RAN_OUT_OF_DATA = (
    "Your input ran out of data; interrupting training. Make sure that your dataset or generator can generate at "
    "least `steps_per_epoch * epochs` batches. You may need to use the `.repeat()` function when building your "
    "dataset."
)


def revive(from_config: Any, config: dict[str, Any], custom_objects: Any, class_name: str) -> Any:
    """Call a Keras ``from_config``, naming the model and the cause if one of its layers cannot be revived.

    Keras reports an inner failure (e.g. an unknown layer class in a ``.keras`` file) as "<outer class> could not
    be deserialized properly", which names the model class instead of what is wrong.

    Raises:
        ValueError: If reviving a layer fails with a ``TypeError``.
    """
    try:
        return from_config(config, custom_objects=custom_objects)
    except TypeError as error:
        cause = str(error).split(" Full object config:")[0]
        raise ValueError(
            f"Model '{config.get('name')}' ({class_name}) could not revive one of its layers: {cause}"
        ) from error


def _dummy_targets(y: Any, y_pred: Any) -> Any:
    return keras.tree.map_structure(lambda t: ops.zeros_like(ops.stop_gradient(t)), y_pred) if y is None else y


class GenerativeTrainingMixin:
    """Lets ``fit``/``evaluate`` run without labels when ``unsupervised`` is ``True``.

    Losses and metrics of an unsupervised model (``NegativeLogLikelihood``, ``LogLikelihood``) ignore their
    targets; when no targets are given they receive zeros shaped like the predictions.
    """

    unsupervised: bool
    name: str

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Like ``keras.Model.fit``; array data is checked first and errors in the graph name their cause first.

        Data with no samples trains nothing: a ``UserWarning`` (Keras' "Your input ran out of data") and an empty
        ``History``, on every backend.
        """
        self._check_data(x, y, labels=True)
        if _num_samples(x) == 0:  # as Keras on TensorFlow; its JAX trainer raises StopIteration when building
            warnings.warn(RAN_OUT_OF_DATA, UserWarning, stacklevel=2)
            history = keras.callbacks.History()
            history.set_model(self)
            return history
        with cause_first(f"fit of model '{self.name}'"):
            return super().fit(x, y, *args, **kwargs)  # type: ignore[misc]

    def evaluate(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Like ``keras.Model.evaluate``, with the checks of ``fit``; data with no samples warns and gives ``[]``."""
        self._check_data(x, y, labels=True)
        if _num_samples(x) == 0:
            warnings.warn(RAN_OUT_OF_DATA, UserWarning, stacklevel=2)
            return {} if kwargs.get("return_dict") else []
        with cause_first(f"evaluate of model '{self.name}'"):
            return super().evaluate(x, y, *args, **kwargs)  # type: ignore[misc]

    def make_train_function(self, force: bool = False) -> Any:
        """Like ``keras.Model.make_train_function``; first checks that a gradient optimizer gets no EM counts.

        ``fit`` makes its train function once the model is built and before the first step. Checking there
        matters on JAX, where Keras hands the variables' values to the first step and does not give them back if
        that step raises: the model's variables would be left without values.

        Raises:
            ValueError: As ``train_step``.
        """
        check_optimizer_for_em_statistics(self.optimizer, self.trainable_variables)  # type: ignore[attr-defined]
        return super().make_train_function(force)  # type: ignore[misc]

    def train_step(self, *args: Any) -> Any:
        """Like ``keras.Model.train_step``; first checks that a gradient optimizer gets no EM counts.

        The arguments are those of the backend's ``train_step``: ``(data)`` on TensorFlow and PyTorch,
        ``(state, data)`` on JAX (where the step is stateless).

        Raises:
            ValueError: If the optimizer is a gradient optimizer and some trainable variables receive EM counts
                (see ``libspn_keras.optimizers.allow_gradient_optimizers_with_em_statistics``).
        """
        check_optimizer_for_em_statistics(self.optimizer, self.trainable_variables)  # type: ignore[attr-defined]
        return super().train_step(*args)  # type: ignore[misc]

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Like ``keras.Model.predict``; an empty batch (0 samples) gives an empty result of the right shape.

        (Keras' own ``predict`` fails on an empty array with an internal ``UnboundLocalError``.) Array data is
        checked first, as in ``fit``.
        """
        self._check_data(x, None, labels=False)
        if _num_samples(x) == 0:
            return keras.tree.map_structure(np.asarray, self(x, training=False))  # type: ignore[operator]
        with cause_first(f"predict of model '{self.name}'"):
            return super().predict(x, *args, **kwargs)  # type: ignore[misc]

    def _check_data(self, x: Any, y: Any, labels: bool) -> None:
        """Checks that need no graph: labels present where required, data the casts and the leaf accept."""
        array_data = isinstance(x, np.ndarray) or is_backend_tensor(x)
        if labels and array_data:
            check_labels_given(self, y)  # type: ignore[arg-type]
        if array_data:
            check_declared_dtype(self, x, f"Model '{self.name}'")
            check_indicator_states(self, x)  # type: ignore[arg-type]

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """Compute the compiled loss; ``y`` may be ``None`` for unsupervised models.

        A model compiled without a loss (only metrics, as LibSPN Keras' completion models are) evaluates to a loss
        of 0, as ``tf.keras`` 2 did; Keras 3 raises there. Training without a loss still raises.
        """
        if not training and getattr(self, "loss", None) is None and not self.losses:  # type: ignore[attr-defined]
            return ops.zeros((), y_pred.dtype if hasattr(y_pred, "dtype") else keras.config.floatx())
        check_labels_given(self, y)  # type: ignore[arg-type]
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
