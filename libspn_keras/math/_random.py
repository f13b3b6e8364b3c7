"""Seeds for stateless random ops, drawn with Keras' seed machinery."""

from __future__ import annotations

from typing import Any, TypeAlias

import keras
import tensorflow as tf

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


def stateless_seed(seed: Seed) -> tf.Tensor:
    """Draw a seed ``[2]`` (int32) for TensorFlow's stateless random ops (``tf.random.stateless_*``).

    Stateless ops keep no state in their kernels: unlike ``tf.random.uniform`` under a global seed, which creates
    a new kernel (and keeps it) on every eager call, the same kernel serves every call. The seed is one
    ``keras.random.randint`` draw, itself stateless.

    Args:
        seed: ``None`` (Keras' global generator, reset by ``keras.utils.set_random_seed``), an integer (the same
            seed every time) or a ``keras.random.SeedGenerator`` (advanced by the draw).

    Returns:
        An int32 tensor of shape ``[2]``.

    Example:
        >>> import numpy as np
        >>> a, b = stateless_seed(7), stateless_seed(7)
        >>> bool(np.all(a.numpy() == b.numpy()))
        True
        >>> generator = keras.random.SeedGenerator(7)
        >>> bool(np.all(stateless_seed(generator).numpy() == stateless_seed(generator).numpy()))
        False
    """
    return tf.convert_to_tensor(keras.random.randint([2], 0, 2**31 - 1, dtype="int32", seed=seed))
