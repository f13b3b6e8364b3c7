"""Global default initializer of sum accumulators."""

from __future__ import annotations

import keras

from libspn_keras.initializers._dirichlet import Dirichlet


def _factory_default() -> keras.initializers.Initializer:
    return Dirichlet(axis=-2, alpha=1.0)  # the original LibSPN Keras' default


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
        >>> spnk.set_default_accumulator_initializer(spnk.initializers.Dirichlet(axis=-2, alpha=1.0))
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
        ``Dirichlet(axis=-2, alpha=1.0)``, the original LibSPN Keras' default (random, so that sums over the same
        children break symmetry; uniform over the weights of each sum).
    """
    return _DEFAULT_ACCUMULATOR_INITIALIZER
