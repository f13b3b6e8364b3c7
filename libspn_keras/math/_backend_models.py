"""Backend-specific helpers of the SPN models (``libspn_keras.models``), one branch per backend.

To be folded into ``libspn_keras.math._backend``. Nothing here imports a backend's framework at module level.
"""

from __future__ import annotations

import sys
from typing import Any

import keras

from libspn_keras.math._backend import backend


def is_backend_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor of the Keras backend (eager or traced; not a ``keras.KerasTensor``, not NumPy).

    Example:
        >>> import numpy as np
        >>> is_backend_tensor(keras.ops.ones(2)), is_backend_tensor(np.ones(2))
        (True, False)
    """
    if isinstance(x, keras.KerasTensor):
        return False
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return isinstance(x, tf.Tensor)
    if name == "jax":
        import jax

        return isinstance(x, jax.Array)
    if name == "torch":
        import torch

        return isinstance(x, torch.Tensor)
    return bool(keras.ops.is_tensor(x))


def graph_execution_errors() -> tuple[type[BaseException], ...]:
    """The errors a compiled TensorFlow function raises when an op fails (``tf.errors.OpError``).

    Empty unless TensorFlow is already imported (so ``except graph_execution_errors():`` catches nothing on the
    other backends and never imports TensorFlow).

    Example:
        >>> all(issubclass(error, Exception) for error in graph_execution_errors())
        True
    """
    if "tensorflow" not in sys.modules:
        return ()
    import tensorflow as tf

    return (tf.errors.OpError,)
