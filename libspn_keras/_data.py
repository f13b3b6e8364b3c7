"""Data given to ``adapt`` methods and data-driven initializers: one array, or a dataset of batches.

Nothing here imports a framework: a ``tf.data.Dataset`` (or a PyTorch ``DataLoader``) is recognized only where
its framework is already imported, as it must be for such an object to exist. So ``adapt`` takes NumPy arrays,
tensors of any backend and datasets alike, on every Keras backend.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np


def is_batched_dataset(data: Any) -> bool:
    """Whether ``data`` is a dataset of batches rather than one array of samples.

    Datasets are a ``tf.data.Dataset``, a ``keras.utils.PyDataset``, a PyTorch ``DataLoader`` and any iterator
    (e.g. a generator of batches). Arrays, tensors, lists and tuples are one array of samples.

    Example:
        >>> import numpy as np
        >>> is_batched_dataset(np.zeros((4, 2))), is_batched_dataset(iter([np.zeros((4, 2))]))
        (False, True)
    """
    if isinstance(data, keras.utils.PyDataset | Iterator):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return True
    torch_data = sys.modules.get("torch.utils.data")
    return torch_data is not None and isinstance(data, torch_data.DataLoader)


def _batches(data: Any) -> Iterable[Any]:
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return data.as_numpy_iterator()
    return data  # type: ignore[no-any-return]


def input_batches(data: Any) -> Iterator[np.ndarray]:
    """Yield the input batches of ``data`` as float64 NumPy arrays.

    Args:
        data: One array of samples (a NumPy array, a tensor, nested lists), or a dataset of batches
            (``is_batched_dataset``). A batch (or ``data`` itself) that is a tuple or a list stands for
            ``(inputs, ...)`` as ``fit`` takes it: its first item is the input.

    Yields:
        Each batch of inputs (``data`` itself once if it is one array).

    Example:
        >>> import numpy as np
        >>> [b.shape for b in input_batches(np.zeros((4, 2)))]
        [(4, 2)]
        >>> [b.shape for b in input_batches((x, None) for x in np.split(np.zeros((4, 2)), 2))]
        [(2, 2), (2, 2)]
    """
    batches = _batches(data) if is_batched_dataset(data) else [data]
    for batch in batches:
        if isinstance(batch, tuple | list):
            batch = batch[0]
        yield _as_float64(batch)


def concatenated_samples(data: Any) -> np.ndarray:
    """``data`` as one float64 array of samples: an array as it is, the input batches of a dataset concatenated.

    Unlike ``input_batches``, a list or tuple given as ``data`` is itself the array of samples.

    Example:
        >>> import numpy as np
        >>> concatenated_samples(iter([np.zeros((3, 2)), np.ones((1, 2))])).shape
        (4, 2)
    """
    if is_batched_dataset(data):
        return np.concatenate(list(input_batches(data)), axis=0)
    return _as_float64(data)


def _as_float64(values: Any) -> np.ndarray:
    if keras.ops.is_tensor(values):
        values = keras.ops.convert_to_numpy(values)
    return np.asarray(values, dtype=np.float64)
