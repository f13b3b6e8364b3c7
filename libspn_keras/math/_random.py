"""Seeds for stateless random ops, drawn with Keras' seed machinery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeAlias

import keras
import numpy as np
from keras import ops

from libspn_keras.math._backend import Tensor, backend, global_seeds_refused

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
    seed = resolve_seed(seed, several=True)
    return keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed


#: The generators that ``unseeded_draws_from`` made the source of unseeded draws, each with its ``always``.
_TRACE_SOURCES: list[tuple[keras.random.SeedGenerator, bool]] = []


@contextlib.contextmanager
def unseeded_draws_from(generator: keras.random.SeedGenerator | None, always: bool = False) -> Iterator[None]:
    """Let draws with ``seed=None`` take their seeds from ``generator`` inside a traced JAX function (or always).

    Keras refuses its global generator while a JAX function is traced (``jax.jit``, hence ``fit`` and
    ``predict``): a model passes a generator it tracks (whose state Keras' JAX trainer carries from one compiled
    call to the next, so that every call draws anew). Elsewhere ``seed=None`` keeps drawing from Keras' global
    generator, unless ``always`` (a model's own training, evaluation or prediction step: Keras' JAX trainer runs
    it in a ``keras.StatelessScope``, also uncompiled, where the global generator's update would be dropped).
    ``None`` changes nothing.

    Args:
        generator: A ``keras.random.SeedGenerator`` tracked by a layer or model, or ``None``.
        always: Whether the generator serves unseeded draws also outside a traced function.

    Yields:
        Nothing; the generator is the source until the ``with`` block ends.
    """
    if generator is None:
        yield
        return
    _TRACE_SOURCES.append((generator, always))
    try:
        yield
    finally:
        _TRACE_SOURCES.pop()


class _TraceSeeds(keras.random.SeedGenerator):
    """Seeds ``[base, 0], [base, 1], ...`` without state (no variable), for a trace that no generator serves."""

    def __init__(self, base: int) -> None:  # no super().__init__: no state variable
        self.base = base
        self.count = 0

    def next(self, ordered: bool = True) -> Tensor:
        """Return the next seed of this trace."""
        self.count += 1
        dtype = keras.backend.random_seed_dtype()
        return ops.convert_to_tensor(np.array([self.base, self.count - 1]), dtype=dtype)


def resolve_seed(seed: Seed, several: bool = False) -> Seed:
    """``seed``, unless it is ``None`` where Keras refuses its global generator (a traced JAX function).

    There (and inside an ``unseeded_draws_from(..., always=True)``) the seeds come from the generator of the
    innermost ``unseeded_draws_from`` (a model's, so that each compiled call draws anew), else from NumPy's global
    generator when the function is traced (which ``keras.utils.set_random_seed`` also seeds): fixed inside one
    compiled function, as Keras warns that unseeded draws would be (``docs/backends.md``).

    Args:
        seed: ``None``, an integer or a ``keras.random.SeedGenerator``.
        several: Whether the result serves several draws that must differ (a query): without a tracked
            generator, a stateless ``keras.random.SeedGenerator`` then stands in for the integer.

    Returns:
        The seed to draw with.
    """
    if seed is not None:
        return seed
    traced = global_seeds_refused()
    if _TRACE_SOURCES and (traced or any(always for _, always in _TRACE_SOURCES)):
        return _TRACE_SOURCES[-1][0]
    if not traced:
        return seed
    base = int(np.random.randint(0, 2**31 - 1))
    return _TraceSeeds(base) if several else base


def derived_seeds(seed: Tensor, count: int) -> Tensor:
    """``count`` seeds (int32 ``[count, 2]``) drawn statelessly from one seed (int32 ``[2]``, ``stateless_seed``).

    Example:
        >>> seed = stateless_seed(3)
        >>> a, b = derived_seeds(seed, 4), derived_seeds(seed, 4)
        >>> tuple(a.shape), bool(np.all(ops.convert_to_numpy(a) == ops.convert_to_numpy(b)))
        ((4, 2), True)
    """
    key = ops.cast(seed, "uint32") if backend() == "jax" else seed
    return ops.convert_to_tensor(keras.random.randint([count, 2], 0, 2**31 - 1, dtype="int32", seed=DrawnSeed(key)))


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
