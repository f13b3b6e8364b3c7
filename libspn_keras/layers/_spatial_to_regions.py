"""Bridge from spatial (DGC-SPN) layers to region layers."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._scope_tracking import REGION, Scopes, ScopeTracking, as_spatial, scope_difference
from libspn_keras.layers._validation import Shape, check_rank
from libspn_keras.math._backend import Tensor


@keras.saving.register_keras_serializable(package="libspn_keras")
class SpatialToRegions(ScopeTracking, keras.layers.Layer):
    """Reshapes spatial SPN layer to a dense layer.

    All nodes of all cells become the nodes of a single region (scope and decomposition), so the dense output
    has leading dimensions for scopes and decomps of ``[1, 1]``. Since sums above it mix all of them, every cell
    must cover the same scope: this is checked when built in a model (use ``'final'`` padding for the top
    ``Conv2DProduct``).

    Args:
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, height, width, channels]``.

    Output shape:
        ``[batch, 1, 1, height * width * channels]``.

    Example:
        >>> import numpy as np
        >>> tuple(SpatialToRegions()(np.zeros((2, 1, 1, 6), "float32")).shape)
        (2, 1, 1, 6)
    """

    def build(self, input_shape: Shape) -> None:
        """Check the input shape."""
        check_rank(self.name, input_shape, 4, "[batch, height, width, channels]")
        _, height, width, channels = input_shape
        if None in (height, width, channels):
            raise ValueError(f"Layer '{self.name}' needs known height, width and channels. Received: {input_shape}")
        self.input_spec = keras.InputSpec(shape=(None, height, width, channels))  # the scopes are checked for it

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Sums above mix all cells, so every cell must have the same scope (completeness): that of the region."""
        scopes = as_spatial(self.name, scopes)
        if scopes is None:
            return None
        counts = scopes.counts
        for cell in np.ndindex(*counts.shape[:2]):
            difference = scope_difference(counts, (0, 0), cell)
            if difference is not None:
                raise ValueError(
                    f"Layer '{self.name}': cell {cell} covers a different scope ({int(counts[cell].sum())} input "
                    f"cells) than cell (0, 0) ({int(counts[0, 0].sum())} input cells), {difference}; all cells must "
                    "cover the same scope before they are merged into one region (use padding='final' in the top "
                    "Conv2DProduct)."
                )
        return dataclasses.replace(scopes, counts=counts[:1, :1], layout=REGION)

    def call(self, x: Tensor) -> Tensor:
        """Flatten cells and channels into the node axis."""
        _, height, width, channels = x.shape
        return ops.reshape(x, [-1, 1, 1, height * width * channels])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, 1, 1, height * width * channels]``."""
        batch, height, width, channels = input_shape
        return (batch, 1, 1, height * width * channels)

    def get_config(self) -> dict[str, Any]:
        """Return the config (no arguments of its own)."""
        return super().get_config()
