"""Sequential SPN model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from libspn_keras.layers import BaseLeaf, DenseProduct, FlatToRegions, PermuteAndPadScopesRandom, ReduceProduct
from libspn_keras.models._generative import GenerativeTrainingMixin


def infer_factors(layers: Sequence[keras.layers.Layer]) -> None:
    """Give every ``PermuteAndPadScopesRandom`` without factors those of the product layers above it."""
    for index, layer in enumerate(layers):
        if isinstance(layer, PermuteAndPadScopesRandom) and layer.factors is None:
            factors = [
                above.num_factors for above in layers[index + 1 :] if isinstance(above, DenseProduct | ReduceProduct)
            ]
            if factors:
                layer.generate_factors(factors)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SequentialSumProductNetwork(GenerativeTrainingMixin, keras.Sequential):
    """An analogue of ``keras.Sequential`` that can be trained in an unsupervised way.

    It does not expect labels ``y`` when calling ``.fit()`` if ``unsupervised == True``. Inherits from
    ``keras.Sequential``, so layers are passed to it as a list. The factors of a ``PermuteAndPadScopesRandom``
    layer given without ``factors`` are inferred from the ``DenseProduct`` / ``ReduceProduct`` layers above it.

    **Evidence.** Calling the model on a pair ``(x, evidence_mask)`` marginalizes the variables whose mask is
    ``False``: the mask (shaped like ``x``) follows ``x`` through ``FlatToRegions`` and is handed to the leaf
    layer. ``NaN`` entries of ``x`` are marginalized as well, which also works inside ``fit``.

    Args:
        layers: The layers, bottom (input) to top (root).
        infer_no_evidence: If ``True``, the model expects an evidence mask defined as a boolean tensor which is
            used to mask out variables that are not part of the evidence.
        unsupervised: If ``True`` the model does not expect label inputs in ``.fit()`` or ``.evaluate()``. Also,
            losses and metrics should not expect a target output, just a ``y_hat``. Defaults to ``True``.
        **kwargs: Passed on to ``keras.Sequential`` (``name``, ``trainable``).

    Example:
        >>> import numpy as np
        >>> from libspn_keras import layers, losses
        >>> spn = SequentialSumProductNetwork([
        ...     layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
        ...     layers.NormalLeaf(num_components=3),
        ...     layers.PermuteAndPadScopesRandom(seed=0),
        ...     layers.DenseProduct(num_factors=2),
        ...     layers.DenseSum(num_sums=2),
        ...     layers.ReduceProduct(num_factors=4),
        ...     layers.Undecompose(),
        ...     layers.RootSum(return_weighted_child_logits=False),
        ... ])
        >>> spn.output_shape
        (None, 1)
        >>> spn.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
        >>> history = spn.fit(np.random.randn(16, 6).astype("float32"), epochs=1, verbose=0)
    """

    def __init__(
        self,
        layers: Sequence[keras.layers.Layer] | None = None,
        infer_no_evidence: bool = False,
        unsupervised: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if layers:
            infer_factors(list(layers))
        super().__init__(layers=layers, **kwargs)
        self.infer_no_evidence = bool(infer_no_evidence)
        self.unsupervised = True if unsupervised is None else bool(unsupervised)

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None, **kwargs: Any) -> Any:
        """Run the layers; ``inputs`` is ``x`` or a pair ``(x, evidence_mask)``."""
        if isinstance(inputs, tuple | list) and len(inputs) == 2:
            return self._call_with_evidence(inputs[0], inputs[1], training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _call_with_evidence(self, x: Any, evidence_mask: Any, training: bool | None) -> Any:
        evidence_mask = tf.convert_to_tensor(evidence_mask)
        if evidence_mask.dtype != tf.bool:
            raise TypeError(
                f"Model '{self.name}' expects a boolean evidence_mask (True = observed). "
                f"Received: dtype={evidence_mask.dtype.name}"
            )
        if evidence_mask.shape.rank != tf.convert_to_tensor(x).shape.rank:
            raise ValueError(
                f"Model '{self.name}' expects an evidence_mask shaped like its input. Received: "
                f"x.shape={tuple(x.shape)}, evidence_mask.shape={tuple(evidence_mask.shape)}"
            )
        for layer in self.layers:
            if isinstance(layer, FlatToRegions):
                x = layer(x)
                evidence_mask = layer.call(evidence_mask)
            elif isinstance(layer, BaseLeaf):
                x = layer(x, evidence_mask=evidence_mask)
            else:
                x = layer(x, training=training)
        return x

    def get_config(self) -> dict[str, Any]:
        """Return the model config with ``infer_no_evidence`` and ``unsupervised``."""
        return {
            **super().get_config(),
            "infer_no_evidence": self.infer_no_evidence,
            "unsupervised": self.unsupervised,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> SequentialSumProductNetwork:
        """Revive the model, including its SPN-specific arguments."""
        config = dict(config)
        infer_no_evidence = config.pop("infer_no_evidence", False)
        unsupervised = config.pop("unsupervised", True)
        model = super().from_config(config, custom_objects=custom_objects)
        model.infer_no_evidence = infer_no_evidence
        model.unsupervised = unsupervised
        return model
