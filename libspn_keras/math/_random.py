"""Seeds for stateless random ops, drawn with Keras' seed machinery."""

from __future__ import annotations

from typing import Any, TypeAlias

import keras
from keras import ops

from libspn_keras.math._backend import Tensor, backend

#: What a ``seed`` argument of this library's random queries accepts.
Seed: TypeAlias = int | keras.random.SeedGenerator | None


def check_seed(owner: str, seed: Any) -> Seed:
    """Return ``seed`` if it is ``None``, an integer or a ``keras.random.SeedGenerator``.

    Args:
        owner: What takes the seed, quoted in the error (e.g. ``"Model 'spn'"``).
        seed: The value to check.

    Returns:
        ``seed`` unchanged.

    Raises:
        TypeError: For any other value (booleans included).
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    raise TypeError(f"{owner} expects seed to be None, an int or a keras.random.SeedGenerator. Received: seed={seed!r}")


def seed_generator(seed: Seed) -> keras.random.SeedGenerator | None:
    """The generator a query draws all its seeds from: a new one for an int, ``None`` for Keras' global one.

    A query that draws several times (one seed per sum layer and one for the leaves) must not reuse an integer
    seed for each draw: the draws would be the same stream. A ``keras.random.SeedGenerator`` created from the
    integer gives every draw its own seed and the query as a whole the same result each time it is called.

    Args:
        seed: ``None``, an integer or a ``keras.random.SeedGenerator`` (returned as it is).

    Returns:
        A generator, or ``None``: draw from Keras' global generator, which ``keras.utils.set_random_seed`` resets.
    """
    return keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed


def stateless_seed(seed: Seed) -> Tensor:
    """Draw a seed ``[2]`` (int32) for stateless random ops (TensorFlow's ``tf.random.stateless_*``).

    Stateless ops keep no state in their kernels: unlike ``tf.random.uniform`` under a global seed, which creates
    a new kernel (and keeps it) on every eager call, the same kernel serves every call. The seed is one
    ``keras.random.randint`` draw, itself stateless. To pass it to ``keras.random.*`` instead, use ``draw_seed``.

    Args:
        seed: ``None`` (Keras' global generator, reset by ``keras.utils.set_random_seed``), an integer (the same
            seed every time) or a ``keras.random.SeedGenerator`` (advanced by the draw).

    Returns:
        An int32 tensor of shape ``[2]`` (of the Keras backend).

    Example:
        >>> import numpy as np
        >>> a, b = stateless_seed(7), stateless_seed(7)
        >>> bool(np.all(ops.convert_to_numpy(a) == ops.convert_to_numpy(b)))
        True
        >>> generator = keras.random.SeedGenerator(7)
        >>> first, second = stateless_seed(generator), stateless_seed(generator)
        >>> bool(np.all(ops.convert_to_numpy(first) == ops.convert_to_numpy(second)))
        False
    """
    return ops.convert_to_tensor(keras.random.randint([2], 0, 2**31 - 1, dtype="int32", seed=seed))


class DrawnSeed(keras.random.SeedGenerator):
    """A seed drawn once (``stateless_seed``), in the form ``keras.random.*`` take as ``seed``.

    Every ``keras.random`` call given the same ``DrawnSeed`` uses the same seed (the same stream), like a seed
    tensor passed to several stateless ops: draw one per random call that must differ. It holds no state (no
    variable) and is not meant to be stored or serialized.
    """

    def __init__(self, seed: Tensor) -> None:  # no super().__init__: no state variable
        self.seed = seed

    def next(self, ordered: bool = True) -> Tensor:
        """Return the drawn seed (always the same)."""
        return self.seed


def draw_seed(seed: Seed) -> DrawnSeed:
    """Draw a seed, as ``stateless_seed``, in the form every ``keras.random.*`` function takes as ``seed``.

    ``keras.random.uniform(shape, minval, maxval, dtype, seed=draw_seed(s))`` gives on TensorFlow exactly
    ``tf.random.stateless_uniform(shape, stateless_seed(s), minval, maxval, dtype)`` (likewise ``normal``,
    ``categorical``, ``randint``, ...), so code that used ``stateless_seed`` with TensorFlow's stateless ops keeps
    its numbers; on JAX the same two integers are the key (``uint32``).

    The semantics are those of ``stateless_seed``: an integer gives the same seed every time, a
    ``keras.random.SeedGenerator`` is advanced by each ``draw_seed`` (not by the ``keras.random`` calls that use the
    result), ``None`` draws from Keras' global generator (reset by ``keras.utils.set_random_seed``).

    Args:
        seed: ``None``, an integer or a ``keras.random.SeedGenerator``.

    Returns:
        A ``DrawnSeed`` (a ``keras.random.SeedGenerator`` that always returns the drawn seed).

    Example:
        >>> import numpy as np
        >>> a = keras.random.uniform([3], seed=draw_seed(7))
        >>> b = keras.random.uniform([3], seed=draw_seed(7))
        >>> bool(np.all(ops.convert_to_numpy(a) == ops.convert_to_numpy(b)))
        True
        >>> generator = keras.random.SeedGenerator(7)
        >>> a = keras.random.uniform([3], seed=draw_seed(generator))
        >>> b = keras.random.uniform([3], seed=draw_seed(generator))
        >>> bool(np.all(ops.convert_to_numpy(a) == ops.convert_to_numpy(b)))
        False
    """
    drawn = stateless_seed(seed)
    if backend() == "jax":  # JAX keys are uint32 (the draw is in [0, 2**31 - 1), so the cast is exact)
        drawn = ops.cast(drawn, "uint32")
    return DrawnSeed(drawn)
