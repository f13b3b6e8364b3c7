"""Spatial sums of DGC-SPNs: weights per cell (``Local2DSum``) or shared across cells (``Conv2DSum``)."""

from __future__ import annotations

import keras
from keras import ops

from libspn_keras.layers._base_sum import BaseWeightedSums
from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking
from libspn_keras.layers._validation import Shape, check_float_dtype, check_rank
from libspn_keras.math._backend import Tensor

SPATIAL_LAYOUT = "[batch, height, width, channels]"


class BaseSpatialSum(ScopeTracking, BaseWeightedSums):
    """Sums over the channels of each cell; cells keep their scopes.

    Args:
        num_sums: Number of sums per spatial cell. Corresponds to the number of channels in the output.
        logspace_accumulators: See ``BaseSum``; ``None`` selects the sum op's default.
        accumulator_initializer: Initializer for accumulators.
        sum_op: ``SumOpBase`` instance which determines how to compute the forward and backward pass.
        accumulator_regularizer: Regularizer for accumulators.
        logspace_accumulator_constraint: Constraint for log-space accumulators.
        linear_accumulator_constraint: Constraint for linear accumulators.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.
    """

    def _accumulator_shape(self, height: int, width: int, channels: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _accepted_inputs(self, height: int, width: int, channels: int) -> keras.InputSpec | None:
        """The inputs later calls accept; ``None``: those with the accumulators' leading axes (``BaseSum``)."""
        return None

    def build(self, input_shape: Shape) -> None:
        """Create the accumulators; the output cells have the input cells' scopes."""
        check_rank(self.name, input_shape, 4, SPATIAL_LAYOUT)
        _, height, width, channels = input_shape
        if None in (height, width, channels):
            raise ValueError(f"Layer '{self.name}' needs known height, width and channels. Received: {input_shape}")
        shape = self._accumulator_shape(height, width, channels)
        self._add_accumulators(shape, input_spec=self._accepted_inputs(height, width, channels))

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """The sums of a cell mix its channels, which share the cell's scope: complete by construction."""
        return scopes


@keras.saving.register_keras_serializable(package="libspn_keras")
class Local2DSum(BaseSpatialSum):
    """Computes a spatial local sum, i.e. all cells will have unique weights.

    In other words, there is no weight sharing across the spatial axes. Accumulators have shape
    ``[height, width, channels, num_sums]``. See ``BaseSpatialSum`` for the arguments.

    Input shape:
        ``[batch, height, width, channels]`` log-probabilities.

    Output shape:
        ``[batch, height, width, num_sums]``.

    Example:
        >>> import numpy as np
        >>> tuple(Local2DSum(num_sums=5)(np.zeros((2, 3, 3, 4), "float32")).shape)
        (2, 3, 3, 5)
    """

    def _accumulator_shape(self, height: int, width: int, channels: int) -> tuple[int, ...]:
        return (height, width, channels, self.num_sums)


@keras.saving.register_keras_serializable(package="libspn_keras")
class Conv2DSum(BaseSpatialSum):
    """Computes a convolutional sum, i.e. weights are shared across the spatial axes.

    Accumulators have the original's shape ``[1, 1, channels, num_sums]`` (a 1x1 kernel). See ``BaseSpatialSum``
    for the arguments.

    Input shape:
        ``[batch, height, width, channels]`` log-probabilities.

    Output shape:
        ``[batch, height, width, num_sums]``.

    Example:
        >>> import numpy as np
        >>> tuple(Conv2DSum(num_sums=5)(np.zeros((2, 3, 3, 4), "float32")).shape)
        (2, 3, 3, 5)
    """

    def _accumulator_shape(self, height: int, width: int, channels: int) -> tuple[int, ...]:
        return (1, 1, channels, self.num_sums)

    def _accepted_inputs(self, height: int, width: int, channels: int) -> keras.InputSpec | None:
        return keras.InputSpec(axes={-1: channels})  # any height and width: the weights are shared

    def call(self, x: Tensor) -> Tensor:
        """Compute the weighted sums of every cell with the shared ``[channels, num_sums]`` weights."""
        check_float_dtype(self.name, x.dtype)
        assert self.accumulators is not None, "build() creates the accumulators"
        accumulators = ops.reshape(self.accumulators, self.accumulators.shape[2:])
        return self.sum_op.weighted_sum(x, accumulators, self.logspace_accumulators)
