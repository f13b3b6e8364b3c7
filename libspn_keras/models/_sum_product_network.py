"""Functional / subclassed SPN model."""

from __future__ import annotations

from typing import Any

import keras

from libspn_keras.layers._scope_tracking import check_nested_outputs
from libspn_keras.models._generative import GenerativeTrainingMixin, revive
from libspn_keras.models._input_checks import check_declared_dtype


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumProductNetwork(GenerativeTrainingMixin, keras.Model):
    """An SPN analogue of ``keras.Model`` that can be trained generatively.

    It does not expect labels ``y`` when calling ``.fit()`` if ``unsupervised == True``. Use it like
    ``keras.Model``: with the functional API (``SumProductNetwork(inputs, outputs)``) or by subclassing.

    Args:
        *args: Passed on to ``keras.Model`` (e.g. ``inputs`` and ``outputs``).
        unsupervised: If ``True`` (default) the model does not expect label inputs in ``.fit()`` or
            ``.evaluate()``. Also, losses and metrics should not expect a target output, just a ``y_hat``.
        **kwargs: Passed on to ``keras.Model``.

    Example:
        >>> import keras, numpy as np
        >>> from libspn_keras import layers, losses
        >>> x_in = keras.Input(shape=(4,))
        >>> h = layers.FlatToRegions(num_decomps=1)(x_in)
        >>> h = layers.NormalLeaf(num_components=2)(h)
        >>> h = layers.ReduceProduct(num_factors=4)(h)
        >>> out = layers.RootSum(return_weighted_child_logits=False)(h)
        >>> model = SumProductNetwork(x_in, out)
        >>> model.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
        >>> history = model.fit(np.zeros((8, 4), "float32"), epochs=1, verbose=0)
    """

    def __init__(self, *args: Any, unsupervised: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsupervised = bool(unsupervised)
        check_nested_outputs(self)  # a nested model that makes an output (e.g. holds the root) is a valid SPN

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None, **kwargs: Any) -> Any:
        """Run the model on ``inputs``, checked first against the dtype its ``keras.Input`` declares."""
        inputs = check_declared_dtype(self, inputs, f"Model '{self.name}'")  # before Keras casts them to it
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self) -> dict[str, Any]:
        """Return the model config with ``unsupervised``."""
        return {**super().get_config(), "unsupervised": self.unsupervised}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> SumProductNetwork:
        """Revive the model, including ``unsupervised``."""
        config = dict(config)
        unsupervised = config.pop("unsupervised", True)
        model = revive(super().from_config, config, custom_objects, "SumProductNetwork")
        model.unsupervised = unsupervised
        return model
