"""Leaf parameter initialization by the mean or standard deviation of quantiles (Poon and Domingos, 2011)."""

from __future__ import annotations

import abc
from typing import Any

import keras
import numpy as np

from libspn_keras._data import concatenated_samples


def standardize_samplewise(data: np.ndarray, epsilon: float) -> np.ndarray:
    """Z-score every sample over all its (finite) values."""
    flat = data.reshape(len(data), -1)
    mean = np.nanmean(flat, axis=1, keepdims=True)
    std = np.nanstd(flat, axis=1, keepdims=True)
    return ((flat - mean) / (std + epsilon)).reshape(data.shape)


def broadcast_per_variable(values: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Map per-variable values ``[num_vars, K, var_dim]`` onto a leaf parameter shape ``[*variables, K, var_dim]``.

    The leading ``variables`` axes must start with the data's variables (flattened), e.g. ``[num_vars,
    num_decomps]`` after ``FlatToRegions`` (repeated over decompositions) or ``[height, width]`` for images.

    Raises:
        ValueError: If the shapes do not match.
    """
    num_vars = values.shape[0]
    variables = shape[:-2]
    size = int(np.prod(variables))
    for split in range(len(variables) + 1):
        if int(np.prod(variables[:split])) == num_vars:
            rest = int(np.prod(variables[split:]))
            tiled = np.broadcast_to(values[:, np.newaxis], (num_vars, rest, *values.shape[1:]))
            return np.ascontiguousarray(tiled).reshape(shape)
    raise ValueError(
        f"{name}: the data has {num_vars} variables of dimension {values.shape[-1]}, which cannot be mapped onto "
        f"leaf parameters of shape {shape} ({size} variables, {shape[-1]} dimensions)."
    )


def as_samples(data: Any) -> np.ndarray:
    """Return ``data`` as one float64 array of samples.

    A NumPy array or tensor is taken as is; the batches of a dataset (a batched ``tf.data.Dataset``, a
    ``keras.utils.PyDataset`` or an iterator of batches), or their first items for ``(inputs, ...)`` tuples, are
    concatenated.
    """
    return concatenated_samples(data)


class BasePoonDomingosQuantileSplit(keras.initializers.Initializer, abc.ABC):
    """Initializes leaf parameters from per-variable quantiles of data (Poon and Domingos, 2011).

    For each variable (and dimension), the values over all samples in ``data`` are sorted and divided over ``K``
    quantiles (bins of equal size, up to one), where ``K`` is the number of components (axis ``-2`` of a leaf
    parameter, ``[*variables, num_components, var_dimensionality]``). Each bin is reduced to the initial value of
    the corresponding component by the subclass (``_reduce_bins``). ``NaN`` values are ignored.

    Args:
        data: Data to compute quantiles over: ``[num_samples, num_vars]``, ``[num_samples, num_vars, var_dim]``
            or images ``[num_samples, height, width, channels]`` (the leaf's input without the batch axis); a
            NumPy array, a tensor or a dataset of batches of inputs or of ``(inputs, ...)`` tuples: a batched
            ``tf.data.Dataset`` (as LibSPN Keras 0.6 took it), a ``keras.utils.PyDataset`` or an iterator.
        samplewise_normalization: Whether to 'Z-score normalize' the data sample-wise before computing the
            quantiles (use it when the model starts with ``NormalizeStandardScore``).
        normalization_epsilon: Non-zero constant to account for near-zero standard deviations in normalizations.

    Raises:
        ValueError: If ``data`` is missing or its variables do not match the leaf.
    """

    def __init__(
        self,
        data: Any = None,
        samplewise_normalization: bool = True,
        normalization_epsilon: float = 1e-2,
    ) -> None:
        self.data: np.ndarray | None = None
        self.samplewise_normalization = bool(samplewise_normalization)
        self.normalization_epsilon = float(normalization_epsilon)
        if data is not None:
            self.adapt(data)

    def adapt(self, data: Any) -> None:
        """Set the data to compute quantiles over (LibSPN Keras 0.6's method).

        Args:
            data: See the class arguments.
        """
        self.data = as_samples(data)

    @abc.abstractmethod
    def _reduce_bins(self, sorted_values: np.ndarray, in_bin: np.ndarray) -> np.ndarray:
        """Reduce the sorted values ``[samples, num_vars, var_dim]`` in a bin (mask of the same shape)."""

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Return the reduced quantiles shaped ``[*variables, num_components, var_dimensionality]``."""
        name = type(self).__name__
        if self.data is None:
            raise ValueError(f"{name} needs data to compute quantiles. Received: data=None")
        shape = tuple(int(s) for s in shape)
        num_components, var_dim = shape[-2], shape[-1]
        data = self.data
        if self.samplewise_normalization:
            data = standardize_samplewise(data, self.normalization_epsilon)
        per_var = data.reshape(len(data), -1, var_dim)  # [samples, num_vars, var_dim]
        sorted_values = np.sort(per_var, axis=0)  # NaN sorts last
        counts = np.sum(np.isfinite(per_var), axis=0)  # [num_vars, var_dim]
        reduced = np.zeros((per_var.shape[1], num_components, var_dim))
        index = np.arange(len(data))[:, None, None]
        for k in range(num_components):
            start = np.floor(counts * k / num_components).astype(int)
            stop = np.maximum(np.floor(counts * (k + 1) / num_components).astype(int), start + 1)
            reduced[:, k] = self._reduce_bins(sorted_values, (index >= start) & (index < np.minimum(stop, counts)))
        values = broadcast_per_variable(reduced, shape, name)
        return keras.ops.convert_to_tensor(values, dtype=dtype or keras.config.floatx())

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (the data is not serialized: its result lives in the weights)."""
        return {
            "data": None,
            "samplewise_normalization": self.samplewise_normalization,
            "normalization_epsilon": self.normalization_epsilon,
        }


def _bin_mean(sorted_values: np.ndarray, in_bin: np.ndarray) -> np.ndarray:
    return np.where(in_bin, np.nan_to_num(sorted_values), 0.0).sum(axis=0) / np.maximum(in_bin.sum(axis=0), 1)


@keras.saving.register_keras_serializable(package="libspn_keras")
class PoonDomingosMeanOfQuantileSplit(BasePoonDomingosQuantileSplit):
    """Initializes leaf locations according to the algorithm described in (Poon and Domingos, 2011).

    For each variable (and dimension), the values over all samples in ``data`` are divided over ``K`` quantiles,
    where ``K`` is the number of components (axis ``-2`` of a leaf's ``location``,
    ``[*variables, num_components, var_dimensionality]``). The mean per quantile is the initial location of
    the corresponding component. ``NaN`` values are ignored. See ``BasePoonDomingosQuantileSplit`` for the
    arguments.

    Example:
        >>> import numpy as np
        >>> data = np.arange(8, dtype="float32").reshape(8, 1)
        >>> init = PoonDomingosMeanOfQuantileSplit(data, samplewise_normalization=False)
        >>> np.asarray(init((1, 1, 2, 1))).ravel().tolist()
        [1.5, 5.5]
    """

    def _reduce_bins(self, sorted_values: np.ndarray, in_bin: np.ndarray) -> np.ndarray:
        return _bin_mean(sorted_values, in_bin)


@keras.saving.register_keras_serializable(package="libspn_keras")
class PoonDomingosStddevOfQuantileSplit(BasePoonDomingosQuantileSplit):
    """Initializes leaf scales by the standard deviation of each quantile (LibSPN Keras 0.6).

    The quantiles are those of ``PoonDomingosMeanOfQuantileSplit``; the (population) standard deviation of the
    values in quantile ``k`` is the initial scale of component ``k``, e.g. as ``scale_initializer`` beside
    ``PoonDomingosMeanOfQuantileSplit`` as ``location_initializer``. A quantile of equal values gives 0, which a
    leaf rejects as a scale. See ``BasePoonDomingosQuantileSplit`` for the arguments.

    Example:
        >>> import numpy as np
        >>> data = iter(np.array_split(np.arange(8.0).reshape(8, 1), 3))  # batches, as a dataset gives them
        >>> init = PoonDomingosStddevOfQuantileSplit(data, samplewise_normalization=False)
        >>> [round(float(value), 4) for value in np.asarray(init((1, 1, 2, 1))).ravel()]  # std of 0..3, 4..7
        [1.118, 1.118]
    """

    def _reduce_bins(self, sorted_values: np.ndarray, in_bin: np.ndarray) -> np.ndarray:
        deviation = np.nan_to_num(sorted_values) - _bin_mean(sorted_values, in_bin)
        return np.sqrt(_bin_mean(np.square(deviation), in_bin))
