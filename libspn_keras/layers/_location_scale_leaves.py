"""Continuous leaves of the location-scale family: Normal, Cauchy and Laplace.

Their log-densities, modes and samples are written with ``keras.ops`` and ``keras.random`` (no TensorFlow
Probability); each leaf contributes its log-density and its standardized sampler, the base class the rest.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from libspn_keras.constraints import GreaterEqualEpsilon
from libspn_keras.initializers._clone import clone_initializer
from libspn_keras.layers._base_leaf import BaseLeaf
from libspn_keras.layers._validation import Shape, check_bool, checked_initializer
from libspn_keras.math import custom_gradient
from libspn_keras.math._backend import Tensor
from libspn_keras.optimizers._em_statistics import mark_em_statistic


def _without_leading_axis(variable: keras.Variable) -> Tensor:
    """A leaf parameter ``[1, *variables, K, var_dim]`` (the original's weight) as ``[*variables, K, var_dim]``."""
    return ops.reshape(variable, variable.shape[1:])


def _with_leading_axis(initializer: Callable[..., Any]) -> Callable[..., Any]:
    """Initialize a ``[1, *variables, K, var_dim]`` weight by ``initializer`` of ``[*variables, K, var_dim]``.

    Leaf initializers (``Equidistant``, ``PoonDomingos...``, ``KMeans``) see the parameter shape without the
    weight's leading axis.
    """

    def initialize(shape: Any, dtype: Any = None) -> Any:
        return keras.ops.reshape(initializer(tuple(shape)[1:], dtype=dtype), shape)

    return initialize


def softplus_inverse(x: Any) -> Any:
    """``log(exp(x) - 1)``, the inverse of ``softplus``, for positive ``x``, computed as ``x + log(-expm1(-x))``.

    Stable for tiny ``x`` (``expm1`` keeps its precision) and for large ``x``: above ``-log(eps)`` the correction
    ``log(1 - exp(-x))`` is below the dtype's resolution of ``x`` and ``x`` itself is returned (it would otherwise
    become ``-inf`` once ``exp(-x)`` underflows).

    Example:
        >>> import numpy as np
        >>> x = np.array([1e-6, 1.0, 200.0], "float32")
        >>> np.allclose(ops.softplus(softplus_inverse(x)), x, rtol=1e-6, atol=0)
        True
    """
    x = ops.convert_to_tensor(x)
    large = ops.greater(x, -math.log(float(np.finfo(keras.backend.standardize_dtype(x.dtype)).eps)))
    safe = ops.where(large, ops.ones_like(x), x)
    return ops.where(large, x, safe + ops.log(-ops.expm1(-safe)))


#: Floor of the raw value ``softplus^-1(scale)`` of a trainable scale: the original's weight constraint
#: ``GreaterEqualEpsilon(-2.0)`` (here ``GreaterEqualEpsilon`` requires a positive epsilon), so that a trained scale
#: stays at or above ``softplus(-2) ~ 0.127``.
RAW_SCALE_FLOOR = -2.0


def _floor_raw_scale(raw: Any) -> Any:
    """The weight constraint of a trainable scale's raw value: clip it from below at ``RAW_SCALE_FLOOR``."""
    return ops.maximum(raw, ops.cast(RAW_SCALE_FLOOR, raw.dtype))


_SERIALIZED = ("location_initializer", "scale_initializer", "accumulator_initializer", "scale_constraint")


class BaseLocationScaleLeaf(BaseLeaf):
    """Leaf whose components are location-scale distributions with diagonal scale over the variable dimensions.

    Parameters ``location`` and ``scale`` are the weights ``[1, *variables, num_components, var_dimensionality]``
    (the original's shape, with its leading axis; ``parameters()`` returns them without it). A trainable scale
    without accumulators is stored, as in LibSPN Keras 0.6, as its softplus inverse (see ``scale_trainable``). An
    observed ``+-inf`` has density zero under every component: its log-probability is ``-inf`` and it contributes
    no gradient (``NaN`` still marks a missing value, see ``BaseLeaf``).

    Args:
        num_components: Number of components per variable.
        location_initializer: Initializer for location variable (default ``TruncatedNormal(stddev=1.0)``).
        location_trainable: Whether location is trainable.
        scale_initializer: Initializer for scale variable (default ``Ones``).
        scale_trainable: Whether scale is trainable. Without accumulators the ``scale`` weight then holds
            ``softplus^-1(scale)``, as in LibSPN Keras 0.6: it is initialized to ``softplus^-1`` of the initializer's
            (checked) scales, kept at or above ``-2.0`` after each update (the original's ``GreaterEqualEpsilon(-2.0)``
            on that raw value), and the scale is ``scale_constraint(softplus(raw))``. An optimizer, ``get_weights`` and
            ``set_weights`` see the raw value, so the original's weights and its ``OnlineExpectationMaximization``
            update ``(1 - lr) raw - lr grad`` carry over. A fixed scale, and the scale of a leaf with accumulators,
            is stored as is.
        accumulator_initializer: Initializer of the EM count accumulators (used with ``use_accumulators``;
            default ``Ones``: the initial location and scale count as one observation).
        use_accumulators: Whether parameters are estimated by (online) EM from accumulated sufficient
            statistics: a count ``n`` and a first moment ``s1`` per component and dimension, and, for a normal
            leaf with trainable scale, a second count ``n2`` and second moment ``s2``, so that
            ``location = s1 / n`` and ``scale = sqrt(s2 / n2 - location**2)`` (the original's four accumulators:
            ``n2`` receives the same statistics as ``n`` and differs only if initialized differently; the leaf
            then has no ``scale`` weight and ``scale`` is ``None``). The backward pass of the leaf then delivers the
            posterior-weighted statistics of the batch (the E-step) and ``OnlineExpectationMaximization``
            updates the accumulators (the M-step). For Cauchy and Laplace leaves the posterior-weighted mean is
            used as location update and the scale stays fixed.
        scale_constraint: Constraint of the scale (default ``GreaterEqualEpsilon(1e-4)``, which keeps the scale
            positive): the weight constraint of a stored scale, applied to ``softplus(raw)`` for a softplus-stored
            one (see ``scale_trainable``).
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.
    """

    #: Whether the posterior-weighted variance is the EM update of the scale (only for the normal).
    scale_has_closed_form_em: ClassVar[bool] = False

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
        self.location_initializer = clone_initializer(
            keras.initializers.get(location_initializer or keras.initializers.TruncatedNormal(stddev=1.0))
        )
        owner = type(self).__name__
        self.location_trainable = check_bool(owner, "location_trainable", location_trainable)
        self.scale_initializer = keras.initializers.get(scale_initializer or keras.initializers.Ones())
        self.scale_trainable = check_bool(owner, "scale_trainable", scale_trainable)
        self.accumulator_initializer = keras.initializers.get(accumulator_initializer or keras.initializers.Ones())
        self.use_accumulators = check_bool(owner, "use_accumulators", use_accumulators)
        if self.use_accumulators and scale_trainable and not self.scale_has_closed_form_em:
            raise ValueError(
                f"Layer '{self.name}': {type(self).__name__} has no closed-form EM update of its scale; with "
                "use_accumulators=True the scale must be fixed. Received: scale_trainable=True"
            )
        self.scale_constraint = (
            keras.constraints.get(scale_constraint) if scale_constraint is not None else GreaterEqualEpsilon(1e-4)
        )

    def build(self, input_shape: Shape) -> None:
        """Create ``location`` and ``scale`` of shape ``[1, *variables, num_components, var_dimensionality]``.

        With ``use_accumulators``, ``location`` holds the first-moment accumulator ``s1`` instead and is
        preceded by ``count``; an EM-estimated normal scale replaces ``scale`` by the second moment's pair
        ``second_count``, ``second_moment``. The weights are created in the order of the original's (count, first
        moment, then scale or the second moment's pair), so that ``get_weights()`` lists them alike.
        """
        self._check_input_shape(input_shape)
        shape = (1, *tuple(input_shape)[1:-1], self.num_components, input_shape[-1])
        em = self.use_accumulators
        self.count: keras.Variable | None = None
        self.second_count: keras.Variable | None = None
        self.second_moment: keras.Variable | None = None
        self.scale: keras.Variable | None = None
        if em:
            self.count = self.add_weight(
                name="first_order_moment_denom_accum",
                shape=shape,
                initializer=_with_leading_axis(self.accumulator_initializer),
                trainable=self.location_trainable,
            )
        self.location = self.add_weight(
            name="first_order_moment_num_accum" if em else "location",
            shape=shape,
            initializer=checked_initializer(
                _with_leading_axis(self.location_initializer),
                self,
                "location_initializer",
                "finite locations",
                ops.isfinite,
                "location",
            ),
            trainable=self.location_trainable,
        )
        checked_scale = checked_initializer(
            _with_leading_axis(self.scale_initializer),
            self,
            "scale_initializer",
            "finite, positive scales",
            lambda scale: ops.logical_and(ops.isfinite(scale), ops.greater(scale, 0)),
            "scale",
        )
        if em and self.scale_trainable:  # the second moment's pair replaces the scale
            self.second_count = self.add_weight(
                name="second_order_moment_denom_accum",
                shape=shape,
                initializer=_with_leading_axis(self.accumulator_initializer),
                trainable=True,
            )
            self.second_moment = self.add_weight(
                name="second_order_moment_num_accum", shape=shape, initializer=checked_scale, trainable=True
            )
        elif self._softplus_scale:
            self.scale = self.add_weight(
                name="scale",
                shape=shape,
                # The scales are checked before the softplus inverse, which maps them to the raw value.
                initializer=lambda shape, dtype=None: softplus_inverse(checked_scale(shape, dtype=dtype)),
                trainable=True,
                constraint=_floor_raw_scale,
            )
        else:
            self.scale = self.add_weight(
                name="scale",
                shape=shape,
                initializer=checked_scale,
                trainable=self.scale_trainable and not em,
                constraint=self.scale_constraint,
            )
        if self.count is None:
            return
        # The variables hold the initial location (and scale) so far: turn them into statistics, s2 = (scale**2 +
        # location**2) * n2 first, then s1 = location * n (a variable read may alias the variable, so the location
        # is overwritten last).
        location = ops.convert_to_tensor(self.location)
        if self.second_moment is not None and self.second_count is not None:
            scale = ops.convert_to_tensor(self.second_moment)
            second_count = ops.convert_to_tensor(self.second_count)
            self.second_moment.assign((ops.square(scale) + ops.square(location)) * second_count)
            mark_em_statistic(self.second_count)
            mark_em_statistic(self.second_moment)
        self.location.assign(location * ops.convert_to_tensor(self.count))
        mark_em_statistic(self.count)
        mark_em_statistic(self.location)

    @property
    def _softplus_scale(self) -> bool:
        """Whether the ``scale`` weight holds ``softplus^-1(scale)`` (a trainable scale without accumulators)."""
        return self.scale_trainable and not self.use_accumulators

    def parameters(self) -> tuple[Tensor, Tensor]:
        """Return the current ``(location, scale)``, each ``[*variables, num_components, var_dimensionality]``.

        Without accumulators these are the variables themselves, except a trainable scale:
        ``scale_constraint(softplus(raw))`` of its raw weight. With accumulators they are derived from the
        sufficient statistics (counts are floored at 1e-12, the variance at the scale constraint).
        """
        if not self.use_accumulators:
            assert self.scale is not None, "build() creates the scale"
            scale = _without_leading_axis(self.scale)
            if self._softplus_scale:
                scale = self.scale_constraint(ops.softplus(scale))
            return _without_leading_axis(self.location), scale
        return self._parameters_from_statistics(*(_without_leading_axis(v) for v in self._statistics()))

    def _statistics(self) -> list[keras.Variable]:
        """``[count, first moment, scale]``, or ``[count, first moment, second count, second moment]``."""
        assert self.count is not None, "only with use_accumulators"
        if self.second_moment is None:
            assert self.scale is not None, "build() creates the scale"
            return [self.count, self.location, self.scale]
        assert self.second_count is not None, "build() creates the second moment's pair"
        return [self.count, self.location, self.second_count, self.second_moment]

    def _parameters_from_statistics(self, count: Tensor, first: Tensor, *second: Tensor) -> tuple[Tensor, Tensor]:
        """``(location, scale)`` from ``(count, first, scale)`` or ``(count, first, second_count, second)``."""
        tiny = ops.cast(1e-12, count.dtype)
        location = first / ops.maximum(count, tiny)
        if len(second) == 1:
            return location, second[0]
        second_count, second_moment = second
        variance = ops.maximum(second_moment / ops.maximum(second_count, tiny) - ops.square(location), tiny)
        return location, self.scale_constraint(ops.sqrt(variance))

    def component_modes(self) -> Tensor:
        """Return the locations (the mode of every location-scale component)."""
        return self.parameters()[0]

    def mode_log_prob(self) -> Tensor:
        """Return the log-density of every component at its location."""
        location, scale = self.parameters()
        return self.log_density(location, location, scale)

    def sample_components(self, num_samples: int | Tensor, seed: Any = None) -> Tensor:
        """Draw ``[num_samples, *variables, num_components, var_dimensionality]`` values, one per component.

        Args:
            num_samples: Number of samples.
            seed: Optional int or ``keras.random.SeedGenerator`` (``None``: Keras' global seed generator).

        Returns:
            ``location + scale * z`` with ``z`` drawn from the standardized distribution (``standard_sample``).
        """
        location, scale = self.parameters()
        shape = (num_samples, *location.shape)
        return self.standard_sample(shape, location.dtype, seed) * scale + location

    @staticmethod
    @abc.abstractmethod
    def log_density(x: Any, location: Any, scale: Any) -> Any:
        """Return the log-density of ``x`` per dimension under location-scale components (broadcasting).

        Args:
            x: Values, broadcastable against ``location`` and ``scale``.
            location: Locations.
            scale: Positive scales.

        Returns:
            ``log p(x | location, scale)``, finite for every finite ``x``.
        """

    @staticmethod
    @abc.abstractmethod
    def standard_sample(shape: Any, dtype: Any, seed: Any) -> Any:
        """Sample the standardized (location 0, scale 1) distribution.

        Args:
            shape: Shape of the sample.
            dtype: Floating-point dtype.
            seed: Int, ``keras.random.SeedGenerator`` or ``None``.

        Returns:
            Values of ``shape`` and ``dtype``.
        """

    def _log_prob_per_dim(self, x: Tensor) -> Tensor:
        location, scale = self.parameters()
        return self.log_density(ops.expand_dims(x, -2), location, scale)

    def _log_prob(self, x: Tensor, observed: Tensor | None) -> Tensor:
        # An observed +-inf has density 0 under every component: its log-probability is -inf with a zero gradient
        # (evaluated at an infinite x, the gradient of the parameters would be NaN and spoil them in training).
        infinite = ops.isinf(x)
        impossible = ops.any(infinite, axis=-1, keepdims=True)
        log_prob = self._finite_log_prob(ops.where(infinite, ops.zeros_like(x), x), observed)
        return ops.where(impossible, ops.convert_to_tensor(-float("inf"), log_prob.dtype), log_prob)

    def _finite_log_prob(self, x: Tensor, observed: Tensor | None) -> Tensor:
        if not self.use_accumulators:
            return super()._log_prob(x, observed)
        # The EM backward pass gives the statistics no gradient to the observations: ``em_log_prob`` closes over them
        # as constants (a custom gradient may only close over values that are not differentiated, e.g. on JAX).
        x = ops.stop_gradient(x)
        observed_f = ops.stop_gradient(ops.ones_like(x) if observed is None else ops.cast(observed, x.dtype))
        statistics = [_without_leading_axis(v) for v in self._statistics()]

        @custom_gradient
        def em_log_prob(*statistics: Tensor) -> tuple[Tensor, Any]:
            location, scale = self._parameters_from_statistics(*statistics)
            per_dim = self.log_density(ops.expand_dims(x, -2), location, scale)
            log_prob = ops.sum(per_dim * ops.expand_dims(observed_f, -2), axis=-1)

            def grad(dy: Tensor) -> tuple[Tensor, ...]:
                # E-step: posterior mass of each component, per observed dimension, and its moments.
                mass = ops.expand_dims(dy, -1) * ops.expand_dims(observed_f, -2)
                values = ops.expand_dims(x, -2)
                count, moment = ops.sum(mass, axis=0), ops.sum(mass * values, axis=0)
                if len(statistics) == 3:  # a fixed scale gets no statistic
                    return count, moment, ops.zeros_like(scale)
                return count, moment, count, ops.sum(mass * ops.square(values), axis=0)

            return log_prob, grad

        return em_log_prob(*statistics)

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
        >>> tuple(out.shape), round(float(out[0, 0, 0, 0]), 4)
        ((1, 3, 1, 2), -0.9189)
    """

    scale_has_closed_form_em = True

    @staticmethod
    def log_density(x: Any, location: Any, scale: Any) -> Any:
        """``-z**2 / 2 - log(scale) - log(2 pi) / 2`` with ``z = (x - location) / scale``."""
        z = (x - location) / scale
        return -0.5 * ops.square(z) - ops.log(scale) - 0.5 * math.log(2.0 * math.pi)

    @staticmethod
    def standard_sample(shape: Any, dtype: Any, seed: Any) -> Any:
        """Standard normal draws."""
        return keras.random.normal(shape, dtype=dtype, seed=seed)


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

    @staticmethod
    def log_density(x: Any, location: Any, scale: Any) -> Any:
        """``-log(pi) - log(scale) - log1p(z**2)`` with ``z = (x - location) / scale``, without overflow.

        For ``|z| > 1``, ``log1p(z**2) = 2 log|z| + log1p(1 / z**2)`` with ``log|z| = log|x - location| - log(scale)``,
        so neither ``z**2`` nor ``z`` itself can overflow (e.g. ``x = 1e30`` or ``scale = 1e-30``). Each branch
        only sees inputs it is valid for, so the gradient of the other one cannot turn into ``NaN``.
        """
        difference = x - location
        far = ops.abs(difference) > scale
        log_abs_z = ops.log(ops.abs(ops.where(far, difference, scale))) - ops.log(scale)  # >= 0 where far
        near_z = ops.where(far, ops.zeros_like(difference), difference) / scale  # |z| <= 1 where near
        log1p_z2 = ops.where(far, 2.0 * log_abs_z + ops.log1p(ops.exp(-2.0 * log_abs_z)), ops.log1p(ops.square(near_z)))
        return -math.log(math.pi) - ops.log(scale) - log1p_z2

    @staticmethod
    def standard_sample(shape: Any, dtype: Any, seed: Any) -> Any:
        """``tan(pi (u - 1/2))`` for ``u`` uniform in ``(0, 1)`` (the inverse CDF)."""
        tiny = float(np.finfo(keras.backend.standardize_dtype(dtype)).tiny)
        uniform = keras.random.uniform(shape, minval=tiny, maxval=1.0, dtype=dtype, seed=seed)
        return ops.tan(math.pi * (uniform - 0.5))


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

    @staticmethod
    def log_density(x: Any, location: Any, scale: Any) -> Any:
        """``-|x - location| / scale - log(2 scale)``."""
        return -ops.abs(x - location) / scale - ops.log(scale) - math.log(2.0)

    @staticmethod
    def standard_sample(shape: Any, dtype: Any, seed: Any) -> Any:
        """``-sign(u) log(1 - |u|)`` for ``u`` uniform in ``(-1, 1)`` (the inverse CDF)."""
        lowest = float(np.nextafter(np.array(-1.0, keras.backend.standardize_dtype(dtype)), 0))
        uniform = keras.random.uniform(shape, minval=lowest, maxval=1.0, dtype=dtype, seed=seed)
        return -ops.sign(uniform) * ops.log1p(-ops.abs(uniform))


#: LibSPN Keras 0.6's name of ``BaseLocationScaleLeaf``.
LocationScaleLeafBase = BaseLocationScaleLeaf
