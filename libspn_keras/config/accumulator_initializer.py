"""Global default initializer of sum accumulators."""

from __future__ import annotations

import keras


def _factory_default() -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5)


_DEFAULT_ACCUMULATOR_INITIALIZER: keras.initializers.Initializer = _factory_default()


def set_default_accumulator_initializer(initializer: keras.initializers.Initializer) -> None:
    """Configure the default accumulator that will be used for sum accumulators.

    The default is resolved once, when a sum layer is constructed. Linear-space values are produced by the
    initializer; layers with log-space accumulators wrap it with ``logspace_wrapper_initializer``.

    Args:
        initializer: The initializer which will be used by default for sum accumulators.

    Raises:
        TypeError: If ``initializer`` is not a Keras initializer.

    Example:
        >>> import keras
        >>> import libspn_keras as spnk
        >>> spnk.set_default_accumulator_initializer(keras.initializers.Constant(1.0))
        >>> type(spnk.get_default_accumulator_initializer()).__name__
        'Constant'
        >>> spnk.set_default_accumulator_initializer(
        ...     keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5))
    """
    global _DEFAULT_ACCUMULATOR_INITIALIZER
    if not isinstance(initializer, keras.initializers.Initializer):
        raise TypeError(
            "set_default_accumulator_initializer expects a keras.initializers.Initializer. "
            f"Received: initializer={initializer!r}"
        )
    _DEFAULT_ACCUMULATOR_INITIALIZER = initializer


def get_default_accumulator_initializer() -> keras.initializers.Initializer:
    """Obtain default accumulator initializer.

    Returns:
        The default accumulator initializer that will be used in sum accumulators, unless specified explicitly at
        initialization. Without a call to ``set_default_accumulator_initializer`` this is
        ``TruncatedNormal(mean=1.0, stddev=0.5)`` (random, so that sums over the same children break symmetry).
    """
    return _DEFAULT_ACCUMULATOR_INITIALIZER
