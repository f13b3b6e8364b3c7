"""Scope bookkeeping of spatial (DGC-SPN) layers, so that invalid structures fail when the model is built.

A spatial layer's output scopes are a boolean array ``[height, width, num_input_cells]``: entry ``(i, j, p)`` is
``True`` if cell ``(i, j)`` covers input cell (pixel) ``p``. Every channel of a cell shares that scope. Layers
learn the scopes of their input from the layer that produced it (through the Keras history of symbolic inputs,
i.e. in ``Sequential`` and functional models); the output of a leaf layer is a grid with one variable per cell.
Other scopes are unknown (an eager call, or a model input holding log-probabilities): products then assume a leaf
grid and ``SpatialToRegions`` cannot check its input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from libspn_keras.layers._base_leaf import BaseLeaf


def singleton_scopes(height: int, width: int) -> np.ndarray:
    """Scopes of a leaf grid: cell ``(i, j)`` covers pixel ``i * width + j`` only."""
    return np.eye(height * width, dtype=bool).reshape(height, width, height * width)


class SpatialScopeMixin:
    """Records the scopes of the input of a spatial layer and exposes ``output_scopes`` once built."""

    output_scopes: np.ndarray | None = None
    _input_scopes: np.ndarray | None = None

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Capture the scopes of a symbolic input (the producer's ``output_scopes`` or a leaf's grid), then call."""
        history = getattr(inputs, "_keras_history", None)
        if history is not None:
            producer = history[0]
            scopes = getattr(producer, "output_scopes", None)
            shape = tuple(getattr(inputs, "shape", ()))
            if scopes is None and isinstance(producer, BaseLeaf) and len(shape) == 4 and None not in shape[1:3]:
                scopes = singleton_scopes(shape[1], shape[2])
            self._input_scopes = scopes
        return super().__call__(inputs, *args, **kwargs)  # type: ignore[misc]

    def input_scopes(self, height: int, width: int) -> np.ndarray:
        """Scopes of the input cells: recorded from the producing layer, or a leaf grid."""
        scopes = self._input_scopes
        if scopes is None or scopes.shape[:2] != (height, width):
            return singleton_scopes(height, width)
        return scopes
