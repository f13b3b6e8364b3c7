"""What the sum ops need beyond ``keras.ops``, written once per backend (to be folded into ``_backend``).

- ``as_tensor``: the value of a tensor, array or variable as a tensor. ``keras.ops.convert_to_tensor`` returns a
  ``keras.Variable`` (and a ``tf.Variable``) as it is on TensorFlow, and a variable read inside a
  ``custom_gradient`` function makes TensorFlow ask its gradient function for variable gradients.
- ``argmax_int32``: ``keras.ops.argmax`` maps ``-0.0`` to ``-tiny`` first (an extra pass over the tensor, and
  ``0.0`` then beats an earlier ``-0.0``); the selection ops take the plain argmax of their (large) logits, the
  first index on ties, as ``tf.argmax`` and ``jnp.argmax`` do.
- ``stateless_uniform``: uniform draws from a seed *tensor* (``[2]`` int32), so that a seed drawn outside a loop
  can be passed into its body (``keras.random.uniform`` takes a tensor seed on JAX only).
- ``map_int32``: ``keras.ops.map`` of a function returning int32, without the extra call ``keras.ops.map`` makes
  on TensorFlow to find the output signature (a whole block of selection logits, eagerly).

Nothing here imports a backend's framework at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from libspn_keras.math._backend import Tensor, backend


def as_tensor(x: Any) -> Tensor:
    """``x`` (a tensor, array or variable) as a tensor of the backend; a variable is read.

    Example:
        >>> keras.ops.convert_to_numpy(as_tensor(keras.Variable([1.0, 2.0]))).tolist()
        [1.0, 2.0]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(x)
    return keras.ops.convert_to_tensor(x)


def argmax_int32(x: Tensor, axis: int) -> Tensor:
    """Index (int32) of the first maximum of ``x`` along ``axis``.

    Example:
        >>> import numpy as np
        >>> keras.ops.convert_to_numpy(argmax_int32(np.array([[1.0, 3.0, 3.0]]), axis=-1)).tolist()
        [1]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.argmax(x, axis=axis, output_type=tf.int32)
    if backend() == "jax":
        import jax.numpy as jnp

        return jnp.argmax(x, axis=axis).astype("int32")
    return keras.ops.cast(keras.ops.argmax(x, axis=axis), "int32")


def stateless_uniform(
    shape: Sequence[Any], seed: Tensor, minval: float = 0.0, maxval: float = 1.0, dtype: str | None = None
) -> Tensor:
    """Uniform draws in ``[minval, maxval)``, the same for the same ``seed`` (an int32 tensor ``[2]``).

    On TensorFlow this is ``tf.random.stateless_uniform`` (the seed as it is); on JAX ``jax.random.uniform`` with
    the seed as a raw key (``uint32``).

    Example:
        >>> import numpy as np
        >>> seed = np.array([3, 4], "int32")
        >>> a, b = stateless_uniform([2, 3], seed), stateless_uniform([2, 3], seed)
        >>> bool(np.all(keras.ops.convert_to_numpy(a) == keras.ops.convert_to_numpy(b)))
        True
    """
    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=dtype)
    if backend() == "jax":
        key = keras.ops.cast(keras.ops.convert_to_tensor(seed), "uint32")
        return keras.random.uniform(tuple(shape), minval, maxval, dtype=dtype, seed=key)
    raise NotImplementedError(f"Seeded draws inside loops are not written for the '{backend()}' Keras backend.")


def map_int32(fn: Callable[[Any], Tensor], elems: Any) -> Tensor:
    """``fn`` applied to each slice of ``elems`` (a tensor or tuple of tensors) along axis 0, one after the other.

    ``fn`` returns an int32 tensor; the results are stacked.

    Example:
        >>> import numpy as np
        >>> out = map_int32(lambda x: keras.ops.cast(keras.ops.sum(x), "int32"), np.ones((3, 2), "float32"))
        >>> keras.ops.convert_to_numpy(out).tolist()
        [2, 2, 2]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.map_fn(fn, elems, fn_output_signature=tf.int32)
    if backend() == "jax":
        import jax

        return jax.lax.map(fn, elems)
    return keras.ops.map(fn, elems)
