"""Sequential SPN model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers import DenseProduct, PermuteAndPadScopesRandom, ReduceProduct
from libspn_keras.layers._scope_tracking import check_nested_outputs
from libspn_keras.math._backend import Tensor, backward_rules_traced, values_known
from libspn_keras.math._random import unseeded_draws_from
from libspn_keras.models import _masked_leaves as masked_leaves
from libspn_keras.models import _queries as queries
from libspn_keras.models._generative import GenerativeTrainingMixin, revive
from libspn_keras.models._input_checks import check_declared_dtype


def infer_factors(layers: Sequence[keras.layers.Layer]) -> None:
    """Give every ``PermuteAndPadScopesRandom`` without factors those of the product layers above it."""
    for index, layer in enumerate(layers):
        if isinstance(layer, PermuteAndPadScopesRandom) and layer.factors is None:
            factors = [
                above.num_factors for above in layers[index + 1 :] if isinstance(above, DenseProduct | ReduceProduct)
            ]
            if factors:
                layer.generate_factors(factors)


def _dtype_name(dtype: Any) -> str:
    """The Keras name of a dtype (``"float32"``), or the backend's own name where Keras has none (strings)."""
    try:
        return str(keras.backend.standardize_dtype(dtype))
    except (ValueError, TypeError, AttributeError):
        return str(getattr(dtype, "name", dtype))


def _is_numeric(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating, integer or boolean dtype (not complex, string or quantized)."""
    try:
        name = str(keras.backend.standardize_dtype(dtype))
    except (ValueError, TypeError, AttributeError):
        return False
    return "float" in name or "int" in name or name == "bool"


@keras.saving.register_keras_serializable(package="libspn_keras")
class SequentialSumProductNetwork(GenerativeTrainingMixin, keras.Sequential):
    """An analogue of ``keras.Sequential`` that can be trained in an unsupervised way.

    It does not expect labels ``y`` when calling ``.fit()`` if ``unsupervised == True``. Inherits from
    ``keras.Sequential``, so layers are passed to it as a list. The factors of a ``PermuteAndPadScopesRandom``
    layer given without ``factors`` are inferred from the ``DenseProduct`` / ``ReduceProduct`` layers above it.

    **Evidence.** Calling the model on a pair ``(x, evidence_mask)`` marginalizes the variables whose mask is
    ``False``: the mask (shaped like ``x``) follows ``x`` through ``FlatToRegions`` and is handed to the leaf
    layer. ``NaN`` entries of ``x`` are marginalized as well, which also works inside ``fit``.

    **Queries.** ``log_marginal`` (exact marginals with missing data), ``log_conditional``
    (``log p(x_Q | x_E)``), ``complete`` / ``mpe`` (completion of missing values: approximate MPE, or
    posterior-weighted leaf modes), ``sample`` (unconditional or conditioned on evidence) and
    ``zero_evidence_inference``. Only ``FlatToRegions`` and ``NormalizeStandardScore`` may precede the leaf
    layer; completions are returned in the units of the data (the normalization is undone with the statistics
    of the evidence).

    **Inference through the original entry points.** With ``infer_no_evidence=True``, calling the model on
    ``(x, evidence_mask)`` (also inside ``predict``) and ``zero_evidence_inference(n)`` return completed data,
    and the layers' own sum ops decide the query, as in the original library: ``SumOpGradBackprop`` and
    ``SumOpEMBackprop`` give posterior-weighted leaf values, ``SumOpHardEMBackprop`` and
    ``SumOpUnweightedHardEMBackprop`` the values on the max path (MPE), ``SumOpSampleBackprop`` a sample (a new
    one per call; draws follow ``keras.utils.set_random_seed``). The leaf's ``leaf_representation`` says what
    stands for a component: its mode (default) or a sample. ``infer_weighted_sum`` combines the components'
    values weighted by their signals (default) or takes each leaf's component with the largest signal.

    **Masked-leaf training.** With ``infer_no_evidence=True``, ``fit(x, evidence_mask)`` trains on completions, as
    the original's masked-leaf train step: the model completes ``x`` from the evidence, and the compiled loss and
    metrics compare ``x`` with the completion on the missing entries only (a Keras mask on the completion; with the
    default reduction the loss is the mean over the missing entries, e.g. their mean squared error for
    ``loss="mse"``); sample weights weigh the entries of their sample. ``evaluate(x, evidence_mask)`` reports the
    same. The gradient reaches the sum weights through the posterior signals (second order) and the leaves through
    their modes, so this needs ``SumOpGradBackprop`` sums and a gradient optimizer: with EM sum ops, leaves with
    ``use_accumulators=True`` or ``OnlineExpectationMaximization`` the backward pass is not a gradient of the loss,
    and ``fit`` raises a ``ValueError`` (train by EM without the mask and copy the weights instead).

    Args:
        layers: The layers, bottom (input) to top (root).
        infer_no_evidence: If ``True``, the model expects an evidence mask defined as a boolean tensor which is
            used to mask out variables that are not part of the evidence.
        unsupervised: If ``True`` the model does not expect label inputs in ``.fit()`` or ``.evaluate()``. Also,
            losses and metrics should not expect a target output, just a ``y_hat``. By default (``None``) it is
            inferred from ``infer_no_evidence``: ``False`` with it, ``True`` without.
        infer_weighted_sum: With ``infer_no_evidence``, combine the leaf representations weighted by the signals
            that the sum ops send to the leaves (``True``, default) or take the argmax of those signals.
        **kwargs: Passed on to ``keras.Sequential`` (``name``, ``trainable``).

    Example:
        >>> import numpy as np
        >>> from libspn_keras import layers, losses
        >>> spn = SequentialSumProductNetwork([
        ...     layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
        ...     layers.NormalLeaf(num_components=3),
        ...     layers.PermuteAndPadScopesRandom(seed=0),
        ...     layers.DenseProduct(num_factors=2),
        ...     layers.DenseSum(num_sums=2),
        ...     layers.ReduceProduct(num_factors=4),
        ...     layers.Undecompose(),
        ...     layers.RootSum(return_weighted_child_logits=False),
        ... ])
        >>> spn.output_shape
        (None, 1)
        >>> spn.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
        >>> history = spn.fit(np.random.randn(16, 6).astype("float32"), epochs=1, verbose=0)
    """

    def __init__(
        self,
        layers: Sequence[keras.layers.Layer] | None = None,
        infer_no_evidence: bool = False,
        unsupervised: bool | None = None,
        infer_weighted_sum: bool = True,
        **kwargs: Any,
    ) -> None:
        if layers:
            infer_factors(list(layers))
        super().__init__(layers=layers, **kwargs)
        self.infer_no_evidence = bool(infer_no_evidence)
        self.infer_weighted_sum = bool(infer_weighted_sum)
        self.unsupervised = not self.infer_no_evidence if unsupervised is None else bool(unsupervised)
        # On JAX, ``fit`` and ``predict`` trace the model, where Keras refuses its global generator: unseeded draws
        # there (sampling sum ops, sampled queries) come from this generator, whose state the trainer carries from
        # one compiled call to the next. Only on JAX, so that nothing changes elsewhere (e.g. the draws of later
        # unseeded initializers, which the generator's seed would advance).
        self.trace_seed_generator = keras.random.SeedGenerator() if backward_rules_traced() else None

    def build(self, input_shape: Any = None) -> None:
        """Build the layers on ``input_shape``; a nested model that makes the output is checked as a valid SPN."""
        super().build(input_shape)
        check_nested_outputs(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model, checking the data first: ``keras.Sequential`` casts it to ``keras.Input``'s dtype."""
        if args:
            args = (check_declared_dtype(self, args[0], self._owner), *args[1:])
        return super().__call__(*args, **kwargs)

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None, **kwargs: Any) -> Any:
        """Run the layers; ``inputs`` is ``x`` or a pair ``(x, evidence_mask)``.

        With ``infer_no_evidence=True`` and a pair, returns the completed data instead of log-probabilities: the
        query of the layers' own sum ops (see the class docstring).
        """
        with unseeded_draws_from(getattr(self, "trace_seed_generator", None)):
            return self._call(inputs, training=training, mask=mask, **kwargs)

    def _call(self, inputs: Any, training: bool | None = None, mask: Any = None, **kwargs: Any) -> Any:
        data = inputs[0] if isinstance(inputs, tuple | list) and len(inputs) == 2 else inputs
        dtype = getattr(data, "dtype", None)
        if dtype is not None and not _is_numeric(dtype):
            raise TypeError(
                f"{self._owner} expects numeric data (NaN marks a missing value). Received: dtype={_dtype_name(dtype)}"
            )
        if isinstance(inputs, tuple | list) and len(inputs) == 2:
            x, evidence_mask = inputs
            if self.infer_no_evidence:
                return queries.infer(self, x, evidence_mask, self.infer_weighted_sum)
            x = ops.convert_to_tensor(x)
            observed = queries.observed_mask(x, evidence_mask, self._owner)
            filled = ops.where(observed, x, ops.zeros_like(x))
            return queries.forward_with_evidence(self, filled, observed).root_output
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Like ``keras.Model.fit``; ``fit(x, evidence_mask)`` of an ``infer_no_evidence`` model trains on completions.

        Masked-leaf training (see the class docstring) is checked before anything is traced.

        Raises:
            ValueError: In masked-leaf training, if the optimizer is ``OnlineExpectationMaximization`` or some
                trainable variables receive EM counts.
        """
        if masked_leaves.is_masked_leaf_data(self, (x, y)):
            masked_leaves.check_masked_leaf_training(self)
        return super().fit(x, y, *args, **kwargs)

    def train_step(self, *args: Any) -> Any:
        """Like ``keras.Model.train_step``; with ``infer_no_evidence``, ``(x, evidence_mask)`` trains on completions.

        The arguments are those of the backend's ``train_step``: ``(data)`` on TensorFlow and PyTorch,
        ``(state, data)`` on JAX. See the class docstring (masked-leaf training).

        Raises:
            ValueError: In masked-leaf training, if the optimizer is ``OnlineExpectationMaximization`` or some
                trainable variables receive EM counts; otherwise as ``GenerativeTrainingMixin.train_step``.
        """
        with self._step_draws():
            if not masked_leaves.is_masked_leaf_data(self, args[-1]):
                return super().train_step(*args)
            masked_leaves.check_masked_leaf_training(self)
            with self._masked_leaf_step():
                return super().train_step(*args[:-1], masked_leaves.restructure(args[-1]))

    def test_step(self, *args: Any) -> Any:
        """Like ``keras.Model.test_step``; with ``infer_no_evidence``, ``(x, evidence_mask)`` as in ``train_step``."""
        with self._step_draws():
            if not masked_leaves.is_masked_leaf_data(self, args[-1]):
                return super().test_step(*args)
            with self._masked_leaf_step():
                return super().test_step(*args[:-1], masked_leaves.restructure(args[-1]))

    def predict_step(self, *args: Any) -> Any:
        """Like ``keras.Model.predict_step``; unseeded draws come from the model's generator (see ``_step_draws``)."""
        with self._step_draws():
            return super().predict_step(*args)

    def _step_draws(self) -> Any:
        """Inside ``fit`` / ``evaluate`` / ``predict`` steps, unseeded draws come from ``trace_seed_generator``.

        Only on JAX, where Keras runs the steps in a ``keras.StatelessScope`` (compiled or not), which would drop
        the global generator's update (every ``predict`` call would draw the same); elsewhere nothing changes.
        """
        return unseeded_draws_from(getattr(self, "trace_seed_generator", None), always=True)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """The compiled loss; in masked-leaf training that of the missing entries (see the class docstring)."""
        if getattr(self, "_in_masked_leaf_step", False):
            y, y_pred, sample_weight = masked_leaves.entries(x, y, y_pred, sample_weight)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Update the compiled metrics; in masked-leaf training those of the missing entries (see ``compute_loss``)."""
        if getattr(self, "_in_masked_leaf_step", False):
            y, y_pred, sample_weight = masked_leaves.entries(x, y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    @contextlib.contextmanager
    def _masked_leaf_step(self) -> Iterator[None]:
        """Mark the step being traced as masked-leaf training (``compute_loss`` and ``compute_metrics`` read it)."""
        self._in_masked_leaf_step = True
        try:
            yield
        finally:
            self._in_masked_leaf_step = False

    @property
    def _owner(self) -> str:
        return f"Model '{self.name}' (SequentialSumProductNetwork)"

    def log_marginal(self, x: Any, evidence_mask: Any = None) -> Tensor:
        """Return ``log p(x_E)`` per sample: unobserved values (mask ``False`` or ``NaN``) are summed out exactly.

        Args:
            x: Data shaped like the model input.
            evidence_mask: Optional boolean (or integer, nonzero = observed) mask shaped like ``x``.

        Returns:
            Log-probabilities ``[batch]``.
        """
        return queries.log_marginal(self, x, evidence_mask)

    def log_conditional(self, x: Any, query_mask: Any, evidence_mask: Any = None) -> Tensor:
        """Return ``log p(x_Q | x_E)`` per sample as ``log p(x_Q, x_E) - log p(x_E)``.

        Args:
            x: Data shaped like the model input.
            query_mask: Boolean mask of the query variables ``Q``.
            evidence_mask: Boolean mask of the evidence ``E`` (default: everything not in ``Q``). Variables in
                neither are marginalized.

        Returns:
            Conditional log-probabilities ``[batch]``.

        Raises:
            TypeError: If a mask is neither boolean nor integer (nonzero = observed).
            ValueError: If a mask is not shaped like ``x``, or ``query_mask`` and ``evidence_mask`` overlap.
        """
        x = ops.convert_to_tensor(x)
        query = queries.check_mask(x, query_mask, self._owner, "query_mask")
        evidence = (
            ops.logical_not(query) if evidence_mask is None else queries.check_mask(x, evidence_mask, self._owner)
        )
        overlap = ops.logical_and(query, evidence)
        if values_known(overlap) and bool(np.any(ops.convert_to_numpy(overlap))):
            raise ValueError(f"Model '{self.name}': query_mask and evidence_mask must not overlap.")
        joint = queries.log_marginal(self, x, ops.logical_or(query, evidence))
        return joint - queries.log_marginal(self, x, evidence)

    def complete(self, x: Any, evidence_mask: Any = None, method: str = "mpe", seed: Any = None) -> Tensor:
        """Fill in unobserved values (mask ``False`` or ``NaN``), e.g. for image completion.

        Args:
            x: Data shaped like the model input.
            evidence_mask: Optional boolean (or integer, nonzero = observed) mask shaped like ``x``.
            method: ``'mpe'``: modes of the leaf components on the approximate MPE path (each sum follows its
                maximum weighted child given the evidence); ``'posterior'``: leaf modes weighted by their
                marginal posterior given the evidence (the posterior mean of the component modes); ``'sample'``:
                a sample from ``p(x_missing | x_E)``.
            seed: Seed of ``method='sample'``: ``None`` (draws follow ``keras.utils.set_random_seed``), an int (the
                same completion every time) or a ``keras.random.SeedGenerator``.

        Returns:
            The completed data, shaped like ``x``; observed values are returned unchanged.

        Raises:
            ValueError: For an unknown ``method``.
            TypeError: If ``seed`` is not ``None``, an int or a ``keras.random.SeedGenerator``.
        """
        if method not in queries.SIGNAL_OPS:
            raise ValueError(f"method must be one of {sorted(queries.SIGNAL_OPS)}. Received: method={method!r}")
        return queries.complete(self, x, evidence_mask, method, seed=seed)

    def mpe(self, x: Any, evidence_mask: Any = None) -> Tensor:
        """Approximate MPE completion of unobserved values; shorthand for ``complete(..., method='mpe')``."""
        return self.complete(x, evidence_mask, method="mpe")

    def sample(
        self, num_samples: int | None = None, evidence: Any = None, evidence_mask: Any = None, seed: Any = None
    ) -> Tensor:
        """Draw samples, unconditionally or conditioned on evidence.

        Args:
            num_samples: Number of unconditional samples (ignored when ``evidence`` is given).
            evidence: Optional data shaped like the model input; its observed values are kept and the others
                are drawn from ``p(x_missing | x_E)``.
            evidence_mask: Optional boolean mask shaped like ``evidence`` (default: ``NaN`` marks missing).
            seed: ``None`` (draws follow ``keras.utils.set_random_seed``), an int (the same samples every time) or
                a ``keras.random.SeedGenerator``.

        Returns:
            Samples ``[num_samples or batch, *input_shape]`` (empty for ``num_samples=0``).

        Raises:
            ValueError: If neither ``num_samples`` nor ``evidence`` is given, or ``num_samples`` is negative.
            TypeError: If ``num_samples`` or ``seed`` has the wrong type.
        """
        if evidence is None:
            if num_samples is None:
                raise ValueError(f"Model '{self.name}': pass num_samples or evidence. Received neither.")
            evidence, evidence_mask = self._no_evidence(num_samples, "num_samples")
        return self.complete(evidence, evidence_mask, method="sample", seed=seed)

    def zero_evidence_inference(self, size: int) -> Tensor:
        """Infer ``size`` samples without any evidence, as calling the model on them with an all-``False`` mask.

        The layers' own sum ops decide the query (see the class docstring): e.g. with ``SumOpSampleBackprop``
        this draws ``size`` samples, with ``SumOpHardEMBackprop`` it returns the MPE.

        Args:
            size: Number of samples (``0`` gives an empty result).

        Returns:
            ``[size, *input_shape]`` inferred data.

        Raises:
            ValueError: If ``size`` is negative.
            TypeError: If ``size`` is not an integer.
        """
        x, evidence_mask = self._no_evidence(size, "size")
        return queries.infer(self, x, evidence_mask, self.infer_weighted_sum)

    def _no_evidence(self, size: int, argument: str) -> tuple[Tensor, Tensor]:
        count = np.asarray(size)  # Python, NumPy and eager backend integers
        if count.ndim != 0 or count.dtype.kind not in "iu":
            raise TypeError(f"Model '{self.name}' expects {argument} to be an integer. Received: {size!r}")
        size = int(count)
        if size < 0:
            raise ValueError(f"Model '{self.name}' expects {argument} >= 0. Received: {size}")
        if not self.inputs:
            raise ValueError(f"Model '{self.name}' needs a known input shape (build it first).")
        shape = (int(size), *tuple(self.inputs[0].shape)[1:])
        dtype = self.inputs[0].dtype if "float" in str(self.inputs[0].dtype) else self.compute_dtype
        return ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype="bool")

    def get_config(self) -> dict[str, Any]:
        """Return the model config with ``infer_no_evidence`` and ``unsupervised``."""
        return {
            **super().get_config(),
            "infer_no_evidence": self.infer_no_evidence,
            "infer_weighted_sum": self.infer_weighted_sum,
            "unsupervised": self.unsupervised,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> SequentialSumProductNetwork:
        """Revive the model, including its SPN-specific arguments."""
        config = dict(config)
        infer_no_evidence = config.pop("infer_no_evidence", False)
        infer_weighted_sum = config.pop("infer_weighted_sum", True)
        unsupervised = config.pop("unsupervised", not infer_no_evidence)
        model = revive(super().from_config, config, custom_objects, "SequentialSumProductNetwork")
        model.infer_no_evidence = infer_no_evidence
        model.infer_weighted_sum = infer_weighted_sum
        model.unsupervised = unsupervised
        return model
