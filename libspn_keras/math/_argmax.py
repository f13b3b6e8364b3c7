"""The child each sum selects: the first maximum of ``x_i + log w_io`` over the children, without forming all logits.

Hard EM, sampling and MPE need, for every sum ``o`` of every row ``r``, the child ``i`` that maximizes
``x[g, r, i] + log_weights[g, i, o]``. Forming those logits (``[groups, rows, in, out]``) and reducing them with an
``argmax`` is slow on XLA's CPU backend: an argmax is a reduction of (value, index) pairs, which XLA does not
vectorize, and over 32 or more children it took 25 to 40 times as long as the comparisons below (measured on the
README DGC-SPN's sums at batch 256; see ``benchmarks/README.md``). ``weighted_argmax`` instead compares the
children one after another (a running maximum and its index, ``num_in - 1`` elementwise steps that XLA fuses into
one loop), so that only ``[groups, rows, out]`` values are live at a time. More than ``CHUNK`` children are
compared in two levels: ``CHUNK`` steps over chunks of children side by side, then one step per chunk. Logits that
every sum of a row shares (``log_weights`` ``[groups, in, 1]``, unweighted hard EM) are reduced by one ``argmax``
over the row's contiguous children, which is fast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from keras import ops

from libspn_keras.math._backend import Tensor, backend, in_traced_function, jit_compiled, stateless_uniform
from libspn_keras.math._random import derived_seeds

#: The most children compared one after another in one level (the steps XLA unrolls).
CHUNK = 64


def weighted_argmax(
    x: Tensor, log_weights: Tensor, gumbel_seed: Tensor | None = None, num_out: int | None = None
) -> Tensor:
    """Index of the first maximum over ``i`` of ``x[g, r, i] + log_weights[g, i, o]`` (int32 ``[groups, rows, out]``).

    With ``gumbel_seed``, every logit first gets its own standard Gumbel noise, so that each index is a draw from
    ``softmax_i(x[g, r, i] + log_weights[g, i, o])`` (the Gumbel-max trick). The noise of the children compared in
    one step is drawn from a seed derived from ``gumbel_seed``: the same seed gives the same draws.

    A row whose logits are all ``-inf`` selects child 0, as ``argmax`` does. On JAX, and inside a TensorFlow graph,
    the comparisons run XLA-compiled (``jax.jit``, ``tf.function(jit_compile=True)``); eagerly on TensorFlow they run
    op by op.

    Args:
        x: Log-space children ``[groups, rows, in]`` (``in`` known statically).
        log_weights: Log-weights ``[groups or 1, in, out]``, or ``[groups or 1, in, 1]`` for logits that every sum
            of a row shares.
        gumbel_seed: ``None`` (the maximum itself), or a seed (int32 ``[2]``, ``libspn_keras.math.stateless_seed``)
            of the Gumbel noise.
        num_out: Number of sums drawing independently with ``gumbel_seed`` (the output size); defaults to
            ``log_weights``' last axis.

    Returns:
        The selected child of every sum, ``[groups, rows, out]`` (``num_out`` with a seed).

    Example:
        >>> import numpy as np
        >>> x = np.log(np.array([[[0.2, 0.5, 0.3]]], "float32"))  # [1 group, 1 row, 3 children]
        >>> log_w = np.log(np.array([[[0.9, 0.1], [0.1, 0.1], [0.0, 0.8]]], "float32"))  # [1, 3 children, 2 sums]
        >>> ops.convert_to_numpy(weighted_argmax(x, log_w)).tolist()  # 0.18 > 0.05; 0.24 > 0.05 > 0.02
        [[[0, 2]]]
    """
    if x.shape[-1] is None:
        raise ValueError(f"weighted_argmax expects a static number of children. Received: x of shape {x.shape}")
    if backend() == "tensorflow" and not in_traced_function():
        return _weighted_argmax(x, log_weights, gumbel_seed, num_out, CHUNK)
    return _compiled()(x, log_weights, gumbel_seed, num_out, CHUNK)


@functools.cache
def _compiled() -> Callable[..., Tensor]:
    return jit_compiled(_weighted_argmax, static_argnums=(3, 4))


def _weighted_argmax(
    x: Tensor, log_weights: Tensor, gumbel_seed: Tensor | None, num_out: int | None, chunk: int
) -> Tensor:
    num_in = x.shape[-1]
    if gumbel_seed is None and log_weights.shape[-1] == 1:
        # One selection per row, over its contiguous children: XLA's argmax is fast on that layout (the running
        # maximum below would read a child per step with stride ``in``, 3x slower on the README DGC-SPN).
        logits = x + ops.swapaxes(log_weights, 1, 2)  # [groups, rows, in]
        return ops.expand_dims(ops.cast(ops.argmax(logits, axis=-1), "int32"), -1)
    out_shape = [ops.shape(x)[0], ops.shape(x)[1], num_out or log_weights.shape[-1]]
    if num_in <= chunk:
        noise = _gumbel(gumbel_seed, num_in, out_shape, x.dtype)
        _, index = _running_argmax(lambda i: _logits(x[:, :, i], log_weights[:, i], noise, i), num_in)
        return index
    # Chunks of ``size`` children side by side: child ``b * size + c`` is step ``c`` of chunk ``b``.
    num_chunks = math.ceil(num_in / chunk)
    size = math.ceil(num_in / num_chunks)
    pad = num_chunks * size - num_in  # padded children never win: -inf (a row of -inf selects child 0 anyway)
    x = ops.pad(x, [[0, 0], [0, 0], [0, pad]], constant_values=float("-inf"))
    log_weights = ops.pad(log_weights, [[0, 0], [0, pad], [0, 0]])
    x = ops.reshape(x, [ops.shape(x)[0], ops.shape(x)[1], num_chunks, size])
    log_weights = ops.reshape(log_weights, [log_weights.shape[0], num_chunks, size, log_weights.shape[-1]])
    noise = _gumbel(gumbel_seed, size, [out_shape[0], out_shape[1], num_chunks, out_shape[2]], x.dtype)
    best, index = _running_argmax(lambda c: _logits(x[:, :, :, c], log_weights[:, :, c], noise, c), size)
    if num_chunks <= chunk:
        _, winner = _running_argmax(lambda b: best[:, :, b], num_chunks)
    else:  # over CHUNK**2 children
        winner = ops.cast(ops.argmax(best, axis=2), "int32")
    within = ops.take_along_axis(index, ops.expand_dims(winner, 2), axis=2)[:, :, 0]
    return winner * size + within


def _logits(x_step: Tensor, log_weights_step: Tensor, noise: Callable[[int], Tensor] | None, step: int) -> Tensor:
    """The logits of one step: ``x_step [groups, rows, *k]`` plus ``log_weights_step [groups or 1, *k, out]``."""
    logits = ops.expand_dims(x_step, -1) + ops.expand_dims(log_weights_step, 1)
    return logits if noise is None else logits + noise(step)


def _gumbel(seed: Tensor | None, steps: int, shape: list[Any], dtype: Any) -> Callable[[int], Tensor] | None:
    """Standard Gumbel noise of ``shape`` for each of ``steps`` steps, from seeds derived from ``seed``."""
    if seed is None:
        return None
    seeds = derived_seeds(seed, steps)
    return lambda step: -ops.log(-ops.log(stateless_uniform(shape, seeds[step], 1e-20, 1.0, dtype=dtype)))


def _running_argmax(values: Callable[[int], Tensor], count: int) -> tuple[Tensor, Tensor]:
    """The maximum of ``values(0), ..., values(count - 1)`` and the first step reaching it (int32)."""
    best = values(0)
    index = ops.zeros(ops.shape(best), "int32")
    for step in range(1, count):
        value = values(step)
        index = ops.where(value > best, step, index)
        best = ops.maximum(best, value)
    return best, index
