"""Base class of leaf layers: missing-data handling and per-dimension log-probabilities."""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any

import keras
from keras import ops

from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking, variable_scopes
from libspn_keras.layers._validation import (
    Shape,
    check_float_dtype,
    check_mask_dtype,
    check_positive_int,
    pop_input_shape,
    raise_deferred_initial_value_error,
)
from libspn_keras.math._backend import Tensor
from libspn_keras.math._random import Seed


class LeafRepresentation(enum.Enum):
    """What stands for a leaf component when a query fills in missing values (``get_leaf_representation``).

    ``MODE``: the mode of the component (e.g. MPE estimates, or images drawn as the modes of sampled leaves);
    ``SAMPLE``: a value drawn from the component.
    """

    MODE = "mode"
    SAMPLE = "sample"


class BaseLeaf(ScopeTracking, keras.layers.Layer):
    """Turns raw observations into log-probabilities of ``num_components`` components per variable.

    The last input axis holds the dimensions of one (possibly multivariate) variable; components factorize
    over it (diagonal covariance). All other non-batch axes index variables (scopes, decompositions or spatial
    positions), each with its own parameters.

    **Missing data.** A variable that is not part of the evidence is marginalized: its log-probabilities
    become 0. Two equivalent ways to say a value is missing:

    * ``NaN`` in a floating-point input (as in SPFlow), per dimension;
    * an explicit boolean ``evidence_mask`` passed to ``call`` (``True`` = observed), shaped either like the
      input (per dimension) or like the input without its last axis (per variable).

    For the factorized (diagonal) components, marginalizing a single dimension of a multivariate variable is
    exact: its term is dropped from the sum over dimensions.

    Subclasses implement ``_log_prob_per_dim``.

    Args:
        num_components: Number of components per variable.
        leaf_representation: What stands for a component when ``SequentialSumProductNetwork(infer_no_evidence=True)``
            fills in missing values: its mode (``LeafRepresentation.MODE`` or ``"mode"``, default) or a sample
            (``LeafRepresentation.SAMPLE`` or ``"sample"``). See ``get_leaf_representation``.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, *variables, var_dimensionality]``, e.g. ``[batch, num_scopes, num_decomps, var_dim]`` after
        ``FlatToRegions`` or ``[batch, height, width, channels]`` for images.

    Output shape:
        ``[batch, *variables, num_components]``.
    """

    def __init__(
        self,
        num_components: int,
        leaf_representation: LeafRepresentation | str = LeafRepresentation.MODE,
        **kwargs: Any,
    ) -> None:
        input_shape = pop_input_shape(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self._input_shape_arg = input_shape  # read by keras.Sequential to create its input
        self.num_components = check_positive_int(type(self).__name__, "num_components", num_components)
        try:
            self.leaf_representation = LeafRepresentation(leaf_representation)
        except ValueError:
            choices = [member.value for member in LeafRepresentation]
            raise ValueError(
                f"{type(self).__name__} expects leaf_representation to be a LeafRepresentation or one of {choices}. "
                f"Received: leaf_representation={leaf_representation!r}"
            ) from None

    def _check_input_shape(self, input_shape: Shape) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) < 3 or None in input_shape[1:]:
            raise ValueError(
                f"Layer '{self.name}' expects inputs of shape [batch, *variables, var_dimensionality] with at least "
                "one variable axis and known non-batch sizes (use FlatToRegions for [batch, num_vars] data). "
                f"Received: input_shape={input_shape}"
            )
        self.input_spec = keras.InputSpec(shape=(None, *input_shape[1:]))  # parameters exist per variable

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Observations in, log-probabilities out; a model input starts tracking with one variable per cell."""
        if scopes is None:
            return variable_scopes(input_shape[1:-1], log_probabilities=True, layout=None)
        if scopes.log_probabilities:
            raise ValueError(
                f"Layer '{self.name}' is a leaf: it evaluates observations, but its input holds log-probabilities "
                f"over scopes of {scopes.counts.shape[-1]} variables (the output of a leaf or of an SPN layer above "
                "one). Stack sums and products on a leaf, not another leaf."
            )
        return dataclasses.replace(scopes, log_probabilities=True)

    def _check_input_dtype(self, dtype: Any) -> None:
        """Raise a ``TypeError`` unless the leaf can evaluate inputs of ``dtype`` (floating point by default)."""
        check_float_dtype(self.name, dtype, "observations (NaN marks a missing value); cast integer data first")

    @abc.abstractmethod
    def _log_prob_per_dim(self, x: Tensor) -> Tensor:
        """Return log-probabilities ``[batch, *variables, num_components, var_dim]`` of finite inputs ``x``."""

    @abc.abstractmethod
    def component_modes(self) -> Tensor:
        """Return the mode of every component, ``[*variables, num_components, var_dimensionality]``."""

    @abc.abstractmethod
    def mode_log_prob(self) -> Tensor:
        """Return the log-density of every component at its mode, per dimension, ``[*variables, K, var_dim]``."""

    @abc.abstractmethod
    def sample_components(self, num_samples: int | Tensor, seed: Seed = None) -> Tensor:
        """Draw one value from every component for each of ``num_samples`` samples.

        Draws are stateless (``libspn_keras.math.stateless_seed``): the same int seed gives the same values.

        Args:
            num_samples: Number of samples.
            seed: ``None`` (Keras' global generator, which ``keras.utils.set_random_seed`` resets), an int or a
                ``keras.random.SeedGenerator``.

        Returns:
            Samples ``[num_samples, *variables, num_components, var_dimensionality]``.
        """

    def get_modes(self) -> Tensor:
        """Return the mode of every component with a leading axis of one, as the original library does.

        Returns:
            ``[1, *variables, num_components, var_dimensionality]``.
        """
        return ops.expand_dims(self.component_modes(), 0)

    def get_leaf_representation(self, size: int | Tensor, seed: Seed = None) -> Tensor:
        """The value that stands for each component when missing values are filled in (``leaf_representation``).

        Args:
            size: Number of samples (the batch size of the completion).
            seed: Seed of the draws for ``LeafRepresentation.SAMPLE`` (see ``sample_components``); ignored for
                ``MODE``.

        Returns:
            ``[size, *variables, num_components, var_dimensionality]``: the component modes repeated ``size``
            times, or one draw from every component per sample.

        Example:
            >>> import numpy as np
            >>> from libspn_keras.layers import NormalLeaf
            >>> leaf = NormalLeaf(num_components=2, leaf_representation="sample")
            >>> leaf.build((None, 3, 1, 1))
            >>> a = leaf.get_leaf_representation(4, seed=0)
            >>> tuple(a.shape)
            (4, 3, 1, 2, 1)
            >>> bool(np.all(np.asarray(a) == np.asarray(leaf.get_leaf_representation(4, seed=0))))
            True
        """
        if self.leaf_representation is LeafRepresentation.SAMPLE:
            return self.sample_components(size, seed=seed)
        modes = self.get_modes()
        return ops.repeat(modes, size, axis=0)

    def _missing(self, x: Tensor, evidence_mask: Any) -> Tensor | None:
        """Boolean tensor shaped like ``x`` that is ``True`` where a value is missing, or ``None``."""
        missing = ops.isnan(x) if "float" in keras.backend.standardize_dtype(x.dtype) else None
        if evidence_mask is None:
            return missing
        check_mask_dtype(f"Layer '{self.name}'", "evidence_mask", evidence_mask)
        mask = ops.convert_to_tensor(evidence_mask)
        if keras.backend.standardize_dtype(mask.dtype) != "bool":
            mask = ops.cast(mask, "bool")
        if len(mask.shape) == len(x.shape) - 1:
            mask = ops.expand_dims(mask, -1)
        if (
            len(mask.shape) != len(x.shape)
            or not all(m is None or d is None or m in (1, d) for d, m in zip(x.shape[1:], mask.shape[1:], strict=True))
            or mask.shape[0] not in (None, 1, x.shape[0])
            and x.shape[0] is not None
        ):
            raise ValueError(
                f"Layer '{self.name}' expects an evidence_mask shaped like its input {tuple(x.shape)} or like its "
                f"input without the last axis. Received: evidence_mask.shape={tuple(evidence_mask.shape)}"
            )
        not_observed = ops.broadcast_to(ops.logical_not(mask), ops.shape(x))
        return not_observed if missing is None else ops.logical_or(missing, not_observed)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the layer; a mask of the wrong dtype is named before Keras converts it (see ``check_mask_dtype``).

        Invalid initial parameters found after the layer was built raise here (see ``checked_initializer``).
        """
        raise_deferred_initial_value_error(self)
        mask = kwargs.get("evidence_mask", args[0] if args else None)
        if mask is not None:
            check_mask_dtype(f"Layer '{self.name}'", "evidence_mask", mask)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, x: Tensor, evidence_mask: Any = None) -> Tensor:
        """Compute log-probabilities, marginalizing missing values.

        Args:
            x: Observations ``[batch, *variables, var_dimensionality]``; ``NaN`` marks a missing value.
            evidence_mask: Optional boolean mask, ``True`` where observed, shaped like ``x`` or like ``x``
                without its last axis.

        Returns:
            Log-probabilities ``[batch, *variables, num_components]``.

        Raises:
            TypeError: If ``x`` has a dtype the leaf cannot evaluate, or ``evidence_mask`` is not boolean.
            ValueError: If ``evidence_mask`` is not shaped like ``x`` (or like ``x`` without its last axis).
        """
        self._check_input_dtype(x.dtype)
        missing = self._missing(x, evidence_mask)
        if missing is None:
            return self._log_prob(x, None)
        return self._log_prob(ops.where(missing, ops.zeros_like(x), x), ops.logical_not(missing))

    def _log_prob(self, x: Tensor, observed: Tensor | None) -> Tensor:
        """Sum the per-dimension log-probabilities of the observed dimensions.

        Args:
            x: Finite observations ``[batch, *variables, var_dim]`` (missing values already replaced).
            observed: Boolean tensor shaped like ``x`` (``True`` = observed), or ``None`` if all are observed.

        Returns:
            Log-probabilities ``[batch, *variables, num_components]``.
        """
        log_prob = self._log_prob_per_dim(x)
        if observed is not None:
            log_prob = ops.where(ops.expand_dims(observed, -2), log_prob, ops.zeros_like(log_prob))
        return ops.sum(log_prob, axis=-1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, *variables, num_components]``."""
        return (*tuple(input_shape)[:-1], self.num_components)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {
            "num_components": self.num_components,
            "leaf_representation": self.leaf_representation.value,
            **super().get_config(),
        }
