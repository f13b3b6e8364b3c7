"""Scope bookkeeping of spatial (DGC-SPN) layers, so that invalid structures fail when the model is built.

A spatial layer's scopes are counts ``[height, width, num_input_cells]`` (``_scope_tracking.Scopes``): entry
``(i, j, p)`` is how many times cell ``(i, j)`` covers input cell (pixel) ``p``. Every channel of a cell shares
that scope. Layers learn the scopes of a symbolic input from the tensor itself (in ``Sequential`` and functional
models); the output of a leaf layer called on a model input is a grid with one variable per cell. Other scopes are
unknown (an eager call, or a model input holding log-probabilities): products then assume a leaf grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from libspn_keras.layers._scope_tracking import ScopeTracking, as_spatial, tracked_scopes


def singleton_scopes(height: int, width: int) -> np.ndarray:
    """Scopes of a leaf grid: cell ``(i, j)`` covers pixel ``i * width + j`` only."""
    return np.eye(height * width, dtype=np.int64).reshape(height, width, height * width)


class SpatialScopeMixin(ScopeTracking):
    """Records the scopes of the input of a spatial layer for ``build`` (which also sets ``output_scopes``)."""

    _input_scopes: np.ndarray | None = None

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Capture the scopes a symbolic input carries (a spatial grid), then call."""
        scopes = as_spatial(self.name, tracked_scopes(inputs))
        self._input_scopes = None if scopes is None else scopes.counts
        return super().__call__(inputs, *args, **kwargs)

    def input_scopes(self, height: int, width: int) -> np.ndarray:
        """Scopes of the input cells: carried by the input, or a leaf grid."""
        scopes = self._input_scopes
        if scopes is None or scopes.shape[:2] != (height, width):
            return singleton_scopes(height, width)
        return scopes
