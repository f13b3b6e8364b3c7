"""Continuous leaves of the location-scale family: Normal, Cauchy and Laplace."""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from libspn_keras.constraints import GreaterEqualEpsilon
from libspn_keras.layers._base_leaf import BaseLeaf
from libspn_keras.layers._validation import Shape

_SERIALIZED = ("location_initializer", "scale_initializer", "accumulator_initializer", "scale_constraint")


class BaseLocationScaleLeaf(BaseLeaf):
    """Leaf whose components are location-scale distributions with diagonal scale over the variable dimensions.

    Parameters ``location`` and ``scale`` have shape ``[*variables, num_components, var_dimensionality]``.

    Args:
        num_components: Number of components per variable.
        location_initializer: Initializer for location variable (default ``TruncatedNormal(stddev=1.0)``).
        location_trainable: Whether location is trainable.
        scale_initializer: Initializer for scale variable (default ``Ones``).
        scale_trainable: Whether scale is trainable.
        accumulator_initializer: Initializer of the EM accumulators (used with ``use_accumulators``).
        use_accumulators: Whether parameters are estimated by EM from accumulated sufficient statistics.
        scale_constraint: Constraint applied to scale after each update (default
            ``GreaterEqualEpsilon(1e-4)``, which keeps the scale positive).
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.
    """

    distribution: ClassVar[type[tfp.distributions.Distribution]]

    def __init__(
        self,
        num_components: int,
        location_initializer: keras.initializers.Initializer | None = None,
        location_trainable: bool = True,
        scale_initializer: keras.initializers.Initializer | None = None,
        scale_trainable: bool = False,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        use_accumulators: bool = False,
        scale_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_components, **kwargs)
        self.location_initializer = keras.initializers.get(
            location_initializer or keras.initializers.TruncatedNormal(stddev=1.0)
        )
        self.location_trainable = bool(location_trainable)
        self.scale_initializer = keras.initializers.get(scale_initializer or keras.initializers.Ones())
        self.scale_trainable = bool(scale_trainable)
        self.accumulator_initializer = keras.initializers.get(accumulator_initializer or keras.initializers.Zeros())
        if use_accumulators:
            raise NotImplementedError(
                f"Layer '{self.name}': use_accumulators=True (EM-estimated leaf parameters) is not available yet; "
                "train leaf parameters by gradient (use_accumulators=False)."
            )
        self.use_accumulators = bool(use_accumulators)
        self.scale_constraint = scale_constraint if scale_constraint is not None else GreaterEqualEpsilon(1e-4)

    def build(self, input_shape: Shape) -> None:
        """Create ``location`` and ``scale`` of shape ``[*variables, num_components, var_dimensionality]``."""
        self._check_input_shape(input_shape)
        shape = (*tuple(input_shape)[1:-1], self.num_components, input_shape[-1])
        self.location = self.add_weight(
            name="location", shape=shape, initializer=self.location_initializer, trainable=self.location_trainable
        )
        self.scale = self.add_weight(
            name="scale",
            shape=shape,
            initializer=self.scale_initializer,
            trainable=self.scale_trainable,
            constraint=self.scale_constraint,
        )

    def _log_prob_per_dim(self, x: tf.Tensor) -> tf.Tensor:
        dist = self.distribution(loc=self.location, scale=self.scale)
        return dist.log_prob(x[..., tf.newaxis, :])

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        config = super().get_config()
        config.update(
            location_trainable=self.location_trainable,
            scale_trainable=self.scale_trainable,
            use_accumulators=self.use_accumulators,
        )
        for key in _SERIALIZED:
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BaseLocationScaleLeaf:
        """Create the layer from ``get_config()``'s output."""
        config = dict(config)
        for key in _SERIALIZED:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package="libspn_keras")
class NormalLeaf(BaseLocationScaleLeaf):
    """Computes the log probability of multiple components per variable along the final axis.

    Each component is modelled as a normal distribution with a diagonal covariance matrix. See
    ``BaseLocationScaleLeaf`` for the arguments and ``BaseLeaf`` for shapes and missing data.

    Example:
        >>> import numpy as np, keras
        >>> leaf = NormalLeaf(num_components=2, location_initializer=keras.initializers.Zeros())
        >>> out = leaf(np.zeros((1, 3, 1, 1), "float32"))
        >>> out.shape, round(float(out[0, 0, 0, 0]), 4)
        (TensorShape([1, 3, 1, 2]), -0.9189)
    """

    distribution = tfp.distributions.Normal


@keras.saving.register_keras_serializable(package="libspn_keras")
class CauchyLeaf(BaseLocationScaleLeaf):
    """Computes the log probability of multiple components per variable along the final axis.

    Each component is modelled as a Cauchy distribution, factorized over the variable dimensions. See
    ``BaseLocationScaleLeaf`` for the arguments and ``BaseLeaf`` for shapes and missing data.

    Example:
        >>> import numpy as np, keras
        >>> leaf = CauchyLeaf(num_components=1, location_initializer=keras.initializers.Zeros())
        >>> round(float(leaf(np.zeros((1, 1, 1, 1), "float32"))[0, 0, 0, 0]), 4)
        -1.1447
    """

    distribution = tfp.distributions.Cauchy


@keras.saving.register_keras_serializable(package="libspn_keras")
class LaplaceLeaf(BaseLocationScaleLeaf):
    """Computes the log probability of multiple components per variable along the final axis.

    Each component is modelled as a Laplace distribution, factorized over the variable dimensions. See
    ``BaseLocationScaleLeaf`` for the arguments and ``BaseLeaf`` for shapes and missing data.

    Example:
        >>> import numpy as np, keras
        >>> leaf = LaplaceLeaf(num_components=1, location_initializer=keras.initializers.Zeros())
        >>> round(float(leaf(np.zeros((1, 1, 1, 1), "float32"))[0, 0, 0, 0]), 4)
        -0.6931
    """

    distribution = tfp.distributions.Laplace
