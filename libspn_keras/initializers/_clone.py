"""Per-layer copies of initializers, so unseeded random initializers give every layer its own draw."""

from __future__ import annotations

from typing import Any

import keras


def clone_initializer(initializer: Any) -> Any:
    """Return a fresh copy of ``initializer`` made from its config.

    Keras fixes the seed of an unseeded random initializer when it is constructed, so one instance shared by
    several layers (a global default, or one object passed to every layer) would give identical weights to
    layers of the same shape, and would ignore a later ``keras.utils.set_random_seed``. A copy made from the config
    draws a new seed; an explicitly seeded initializer keeps its seed. Only Keras' own initializers are copied;
    libspn_keras initializers and other callables are returned as is.

    Args:
        initializer: A Keras initializer (or any callable).

    Returns:
        The copy.

    Example:
        >>> import keras
        >>> init = keras.initializers.RandomUniform()
        >>> clone_initializer(init) is init
        False
    """
    if not isinstance(initializer, keras.initializers.Initializer) or not type(initializer).__module__.startswith(
        "keras."
    ):
        # libspn_keras' own random initializers draw from Keras' global seed generator on every call, and the
        # data-driven ones (quantiles, k-means) hold data that their configs deliberately leave out.
        return initializer
    return keras.initializers.get(keras.saving.serialize_keras_object(initializer))
