"""Dynamic SPN: template, interface and top networks re-used at every time step of variable-length sequences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from libspn_keras.layers import TemporalDenseProduct
from libspn_keras.math._backend import Tensor, check, recurrence, value_check_error
from libspn_keras.models._generative import GenerativeTrainingMixin

_NETWORKS = ("template_network", "interface_network_t0", "interface_network_t_minus_1", "top_network")
SEQUENCES_KEY = "sequences"
LENGTHS_KEY = "sequence_lengths"


def _is_shape(value: Any) -> bool:
    """Whether ``value`` is one shape (a sequence of ints / ``None``) rather than a structure of shapes."""
    return isinstance(value, Sequence) and all(d is None or isinstance(d, int) for d in value)


@keras.saving.register_keras_serializable(package="libspn_keras")
class DynamicSumProductNetwork(GenerativeTrainingMixin, keras.Model):
    r"""SPN that re-uses its nodes at each time step (a dynamic SPN, Melibari et al., 2016).

    The input is expected to be pre-padded sequences with a full tensor shape of
    ``[num_batch, max_sequence_len, num_variables]``: sequences of different lengths are aligned at their *last*
    step, so every sequence ends at step ``max_sequence_len - 1`` and padding precedes it.

    **Structure.** With :math:`T_t` = ``template_network(x_t)``, :math:`A_t` = ``interface_network_t0(T_t)``
    (``n_t0`` nodes) and the previous interface :math:`B_t` (``n_prev`` nodes), every step computes

    * :math:`B_t` = ``interface_network_t_minus_1(P_{t-1})`` for :math:`t > s`; at the first step :math:`s` of
      a sequence there is no previous interface and :math:`B_s` is the constant 1 (log-probability 0, an empty
      scope), so the recursion starts fresh at every sequence's first real step;
    * :math:`P_t` = ``TemporalDenseProduct()([B_t, A_t])`` (``n_prev * n_t0`` nodes, node ``i * n_t0 + j`` is
      :math:`B_t[i] \cdot A_t[j]`), which covers the variables of steps :math:`s, \dots, t`;
    * the root ``top_network(P_t)``, i.e. :math:`\log p(x_s, \dots, x_t)`.

    As in the original library, "t0" names the current step and "t minus 1" the previous one. The temporal product
    is part of this model: the networks do not contain it. The SPN is valid (it sums to one over all sequences of
    each length) when the template is a valid SPN over the variables of one step and the interfaces and the top
    network are (normalized) sums over their inputs ending, for the top network, with a ``RootSum``. With
    ``n_prev = n_t0 = K`` and a template whose ``K`` outputs are emission distributions, it represents a hidden
    Markov model with ``K`` states started in its stationary distribution (``examples/dynamic_spn_sequences.py``
    sets such weights and compares with the forward algorithm). Networks are any Keras layers or models; they
    are built on first use if needed.

    **Sequence lengths and padding.** Two ways to say how long each sequence is (both work with ``fit``,
    ``evaluate`` and ``predict``):

    * Pass ``x`` alone: rows (steps) whose values are *all* ``NaN`` at the start of a sequence are its padding,
      and the sequence starts at its first row with at least one observed value. Partly ``NaN`` rows are steps
      with missing values, which the leaves marginalize. An all-``NaN`` row *after* the first real row is
      ambiguous (post-padding or a fully unobserved step?) and raises an ``InvalidArgumentError``, as does a
      sequence without any real row. Integer sequences cannot hold ``NaN`` and all have length ``max_len``.
    * Pass ``(x, sequence_lengths)`` or ``{"sequences": x, "sequence_lengths": sequence_lengths}`` with integer
      lengths ``[batch]`` in ``[1, max_len]``: the first ``max_len - length`` rows of each sequence are padding
      whatever their values, and all-``NaN`` rows inside a sequence are marginalized steps.

    Unlike the original library the lengths are part of the inputs, not the targets, so that ``predict`` and
    ``evaluate`` see them too; a ``tf.data.Dataset`` yields the dict (or ``((x, sequence_lengths),)``, since a
    bare pair would be read as ``(x, y)``).

    Padding never changes the likelihood: padded steps are skipped (their rows are replaced by the sequence's first
    real row before the template sees them, so leaves never receive invalid values, and the recursion restarts at
    the first real step), and no signal (gradient or EM count) reaches them. The data-dependent checks run eagerly
    and inside ``tf.function``; under XLA (``jit_compile=True``) and in traced JAX functions (``jit``, as in ``fit``
    on JAX) they are skipped.

    **Computation.** The template and ``interface_network_t0`` do not depend on the recursion and run once on all
    ``batch * max_len`` steps; only ``interface_network_t_minus_1`` and the temporal product run inside a loop
    over time (a ``tf.while_loop`` on TensorFlow, ``jax.lax.scan`` on JAX), and ``top_network`` runs once (on the
    last step, or on all steps batched).

    Args:
        template_network: Template network that is applied to the leaves and ends with nodes that cover all
            variables for each timestep: ``[batch, *step_shape]`` (e.g. ``[batch, num_vars]``) to
            ``[batch, num_scopes, num_decomps, n_template]`` (usually one scope and decomposition).
        interface_network_t0: Interface network for the current step, applied on top of the template network's
            output at the current timestep: ``[..., n_template]`` to ``[batch, num_scopes, num_decomps, n_t0]``.
        interface_network_t_minus_1: Interface network for the previous step, applied to the output of the
            interfaced output of the previous timestep (the temporal product :math:`P_{t-1}`):
            ``[batch, num_scopes, num_decomps, n_prev * n_t0]`` to ``[batch, num_scopes, num_decomps, n_prev]``.
            Its output is fed back to its input, so its input shape must be known: create it with ``keras.Input``
            (functional) or as a ``keras.Sequential`` starting with ``keras.Input``.
        top_network: Network on top of the interfaced network at the current timestep (covers all variables of
            the current timestep, including those of previous timesteps): ``[..., n_prev * n_t0]`` to
            ``[batch, num_roots]``. This network must end with a root sum layer.
        return_last_step: Whether to return only the roots at the last step with shape ``[batch, num_roots]``
            or those of every step, ``[batch, max_len, num_roots]`` (entry ``t`` is
            :math:`\log p(x_s, \dots, x_t)`; padded steps hold 0, the log-probability of the empty sequence,
            so differences of consecutive steps are the conditionals :math:`\log p(x_t | x_{<t})`). Train with
            ``True``: the loss then is the likelihood of whole sequences.
        unsupervised: If ``True`` (default) the model does not expect label inputs in ``.fit()`` or
            ``.evaluate()``; losses and metrics should not expect a target output, just a ``y_hat``.
        **kwargs: Passed on to ``keras.Model`` (``name``, ``trainable``, ``dtype``).

    Input shape:
        ``[batch, max_len, *step_shape]`` pre-padded sequences, optionally with ``sequence_lengths`` ``[batch]``
        (see above).

    Output shape:
        ``[batch, num_roots]`` if ``return_last_step`` else ``[batch, max_len, num_roots]``.

    Raises:
        TypeError: If a network is not a Keras layer.
        ValueError: At build time, if the networks' shapes do not fit together (the error names the network);
            when called, for an unknown input structure or badly shaped lengths.
        InvalidArgumentError: When called (eagerly or in a ``tf.function``) on lengths outside ``[1, max_len]`` or
            on ambiguous ``NaN`` padding: ``tf.errors.InvalidArgumentError`` on TensorFlow, a ``ValueError`` on
            other backends (eagerly; not checked in a traced JAX function).

    Example:
        A hidden-Markov-like dynamic SPN over two binary variables per step:

        >>> import keras, numpy as np
        >>> from libspn_keras import layers, losses
        >>> template = keras.Sequential([
        ...     keras.Input(shape=(2,)),
        ...     layers.FlatToRegions(num_decomps=1),
        ...     layers.IndicatorLeaf(num_components=2),
        ...     layers.DenseSum(num_sums=3),
        ...     layers.ReduceProduct(num_factors=2),
        ... ])
        >>> spn = DynamicSumProductNetwork(
        ...     template_network=template,
        ...     interface_network_t0=layers.DenseSum(num_sums=3),
        ...     interface_network_t_minus_1=keras.Sequential(
        ...         [keras.Input(shape=(1, 1, 9)), layers.DenseSum(num_sums=3)]),
        ...     top_network=layers.RootSum(return_weighted_child_logits=False),
        ... )
        >>> x = np.array([[[np.nan, np.nan], [0, 1], [1, 1]],
        ...               [[1, 0], [0, 0], [1, 1]]], "float32")  # lengths 2 and 3
        >>> tuple(spn(x).shape)
        (2, 1)
        >>> same = spn((x, np.array([2, 3])))  # explicit lengths: the padding values are never read
        >>> bool(np.allclose(same, spn(x)))
        True
        >>> spn.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
        >>> history = spn.fit(x, epochs=1, verbose=0)
    """

    def __init__(
        self,
        template_network: keras.layers.Layer,
        interface_network_t0: keras.layers.Layer,
        interface_network_t_minus_1: keras.layers.Layer,
        top_network: keras.layers.Layer,
        return_last_step: bool = True,
        unsupervised: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        networks = (template_network, interface_network_t0, interface_network_t_minus_1, top_network)
        for name, network in zip(_NETWORKS, networks, strict=True):
            if not isinstance(network, keras.layers.Layer):
                raise TypeError(
                    f"DynamicSumProductNetwork expects {name} to be a Keras layer or model. Received: {network!r}"
                )
        self.template_network = template_network
        self.interface_network_t0 = interface_network_t0
        self.interface_network_t_minus_1 = interface_network_t_minus_1
        self.top_network = top_network
        self.return_last_step = bool(return_last_step)
        self.unsupervised = bool(unsupervised)
        self.temporal_product = TemporalDenseProduct(name="temporal_dense_product")
        self._interface_shape: tuple[int, int, int] | None = None
        self._num_roots: int | None = None

    # -- inputs ------------------------------------------------------------------------------------------------

    def _split_structure(self, inputs: Any) -> tuple[Any, Any]:
        """Return ``(sequences, sequence_lengths or None)`` of an input (or input-shape) structure."""
        if isinstance(inputs, Mapping):
            unknown = set(inputs) - {SEQUENCES_KEY, LENGTHS_KEY}
            if SEQUENCES_KEY not in inputs or unknown:
                raise ValueError(
                    f"Model '{self.name}' expects a dict input with keys '{SEQUENCES_KEY}' and optionally "
                    f"'{LENGTHS_KEY}'. Received keys: {sorted(inputs)}"
                )
            return inputs[SEQUENCES_KEY], inputs.get(LENGTHS_KEY)
        if isinstance(inputs, tuple | list) and not _is_shape(inputs):
            if len(inputs) != 2:
                raise ValueError(
                    f"Model '{self.name}' expects sequences, a pair (sequences, sequence_lengths) or a dict. "
                    f"Received a {type(inputs).__name__} of {len(inputs)} elements."
                )
            return inputs[0], inputs[1]
        return inputs, None

    # -- building ----------------------------------------------------------------------------------------------

    def _symbolic_shape(self, name: str, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """Call network ``name`` symbolically on ``shape`` (building it if needed) and return its output shape."""
        network = getattr(self, name)
        try:
            out = network(keras.KerasTensor(shape, dtype=self.compute_dtype))
        except (ValueError, TypeError) as error:
            raise ValueError(f"Model '{self.name}': {name} does not accept inputs of shape {shape}: {error}") from error
        if not isinstance(out, keras.KerasTensor):
            raise ValueError(f"Model '{self.name}': {name} must return a single tensor. Received: {out!r}")
        return tuple(out.shape)

    def _check_region(self, name: str, shape: tuple[Any, ...], expected: tuple[Any, ...] | None = None) -> None:
        if len(shape) != 4 or None in shape[1:]:
            raise ValueError(
                f"Model '{self.name}': {name} must output region tensors [batch, num_scopes, num_decomps, "
                f"num_nodes] with known sizes. Received output shape {shape}"
            )
        if expected is not None and shape[1:3] != expected:
            raise ValueError(
                f"Model '{self.name}': {name} must keep num_scopes and num_decomps {expected} of the template "
                f"network. Received output shape {shape}"
            )

    def _known_input_shape(self, name: str) -> tuple[Any, ...]:
        network = getattr(self, name)
        for getter in (lambda: network.input_shape, lambda: network.input.shape):
            try:
                shape = getter()
            except (AttributeError, ValueError):
                continue
            if _is_shape(shape):
                return tuple(shape)
        raise ValueError(
            f"Model '{self.name}': {name} needs a known input shape [batch, num_scopes, num_decomps, "
            "n_prev * n_t0], because its output (n_prev nodes) is fed back to its input. Create it with "
            "keras.Input, e.g. keras.Sequential([keras.Input(shape=(1, 1, n_prev * n_t0)), DenseSum(n_prev)])."
        )

    def build(self, input_shape: Any) -> None:
        """Build the networks and check that their shapes fit together.

        Args:
            input_shape: Shape of the sequences ``[batch, max_len, *step_shape]``, optionally paired with the
                shape of the lengths (as a pair or a dict, like the inputs).

        Raises:
            ValueError: If the networks' shapes do not fit together.
        """
        x_shape, _ = self._split_structure(input_shape)
        if not _is_shape(x_shape) or len(x_shape) < 3 or None in tuple(x_shape)[2:]:
            raise ValueError(
                f"Model '{self.name}' expects sequences [batch, max_len, *step_shape] with known step shape. "
                f"Received: input_shape={input_shape}"
            )
        step_shape = (None, *tuple(x_shape)[2:])
        template = self._symbolic_shape("template_network", step_shape)
        self._check_region("template_network", template)
        regions = template[1:3]
        current = self._symbolic_shape("interface_network_t0", template)
        self._check_region("interface_network_t0", current, regions)
        product_in = self._known_input_shape("interface_network_t_minus_1")
        previous = self._symbolic_shape("interface_network_t_minus_1", product_in)
        self._check_region("interface_network_t_minus_1", previous, regions)
        expected_in = (None, *regions, previous[-1] * current[-1])
        if product_in[1:] != expected_in[1:]:
            raise ValueError(
                f"Model '{self.name}': interface_network_t_minus_1 takes the temporal product of its own output "
                f"({previous[-1]} nodes) and interface_network_t0's output ({current[-1]} nodes), so its input "
                f"shape must be {expected_in}. Received input shape {product_in}"
            )
        self.temporal_product.build([previous, current])
        roots = self._symbolic_shape("top_network", expected_in)
        if len(roots) != 2 or roots[-1] is None:
            raise ValueError(
                f"Model '{self.name}': top_network must end with a RootSum and output [batch, num_roots]. "
                f"Received output shape {roots}"
            )
        self._interface_shape = (regions[0], regions[1], previous[-1])
        self._num_roots = roots[-1]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        """Return ``[batch, num_roots]`` or ``[batch, max_len, num_roots]``."""
        if self._num_roots is None:
            self.build(input_shape)
        x_shape, _ = self._split_structure(input_shape)
        if self.return_last_step:
            return (x_shape[0], self._num_roots)
        return (x_shape[0], x_shape[1], self._num_roots)

    # -- forward pass ------------------------------------------------------------------------------------------

    def _first_steps(self, x: Tensor, lengths: Any, max_len: Any) -> Tensor:
        """Index of the first real step of each sequence, ``[batch]`` int32 (checks valid lengths / padding)."""
        batch = ops.shape(x)[0]
        error = value_check_error()
        if lengths is None:
            if "float" not in keras.backend.standardize_dtype(x.dtype):
                return ops.zeros((batch,), "int32")
            padding = ops.cast(ops.all(ops.isnan(x), axis=tuple(range(2, len(x.shape)))), "int32")
            leading = ops.sum(ops.cumprod(padding, axis=1), axis=1)
            leading = check(
                ops.less(leading, max_len),
                f"Model '{self.name}': a sequence has no real step (every row is all-NaN padding)",
                error,
                depends=leading,
            )
            return check(
                ops.equal(ops.sum(padding, axis=1), leading),
                f"Model '{self.name}': an all-NaN row follows a real step. Sequences must be pre-padded "
                "(padding first); to marginalize a fully unobserved step, pass sequence_lengths",
                error,
                depends=leading,
            )
        lengths = ops.convert_to_tensor(lengths)
        dtype = keras.backend.standardize_dtype(lengths.dtype)
        if not ("int" in dtype or "float" in dtype):
            raise TypeError(f"Model '{self.name}' expects integer sequence_lengths. Received: dtype={dtype}")
        if len(lengths.shape) == 2 and lengths.shape[1] == 1:
            lengths = lengths[:, 0]
        if len(lengths.shape) != 1:
            raise ValueError(
                f"Model '{self.name}' expects sequence_lengths of shape [batch]. Received: shape={lengths.shape}"
            )
        if lengths.shape[0] is not None and x.shape[0] is not None and lengths.shape[0] != x.shape[0]:
            raise ValueError(
                f"Model '{self.name}' expects sequence_lengths with one length per sequence. "
                f"Received: {lengths.shape[0]} lengths for {x.shape[0]} sequences"
            )
        int_lengths = ops.cast(lengths, "int32")
        message = f"Model '{self.name}' expects sequence_lengths to be integers in [1, max_len]"
        checks = [
            (ops.equal(ops.shape(lengths)[0], batch), f"{message}, one length per sequence"),
            (ops.greater_equal(int_lengths, 1), message),
            (ops.less_equal(int_lengths, max_len), message),
        ]
        if "float" in dtype:
            checks.append((ops.equal(lengths, ops.cast(int_lengths, lengths.dtype)), message))
        first = max_len - int_lengths
        for ok, text in checks:
            first = check(ok, text, error, depends=first)
        return first

    def call(self, inputs: Any, training: bool | None = None) -> Tensor:
        """Compute the log-probability of the sequences (at the last step or at every step).

        Args:
            inputs: Sequences ``[batch, max_len, *step_shape]``, a pair ``(sequences, sequence_lengths)`` or a
                dict with keys ``'sequences'`` and ``'sequence_lengths'``.
            training: Passed on to the networks.

        Returns:
            ``[batch, num_roots]`` or ``[batch, max_len, num_roots]`` log-probabilities.
        """
        x, lengths = self._split_structure(inputs)
        x = ops.convert_to_tensor(x)
        if len(x.shape) < 3:
            raise ValueError(
                f"Model '{self.name}' expects sequences [batch, max_len, *step_shape]. Received: shape={x.shape}"
            )
        batch = ops.shape(x)[0]
        max_len = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
        first = self._first_steps(x, lengths, ops.convert_to_tensor(max_len, "int32"))
        steps = ops.arange(max_len, dtype="int32")

        # Padding rows become copies of the first real row (valid values for every leaf), gathered time-major:
        # row t * batch + b of ``flat`` is step max(t, first[b]) of sequence b.
        source = ops.maximum(steps[:, None], first[None, :])  # [max_len, batch]
        source = source + ops.arange(batch, dtype="int32")[None, :] * max_len
        step_shape = ops.shape(x)[2:]
        flat = ops.take(ops.reshape(x, (-1, *step_shape)), ops.reshape(source, (-1,)), axis=0)

        # Template and current interface do not depend on the recursion: one batched call for all steps.
        current = self.interface_network_t0(self.template_network(flat, training=training), training=training)
        current = ops.reshape(current, (max_len, batch, *current.shape[1:]))
        restart = ops.less_equal(steps[:, None], first[None, :])  # [max_len, batch]: no previous interface
        num_scopes, num_decomps, num_prev = self._interface_shape  # type: ignore[misc]
        start = ops.zeros((batch, num_scopes, num_decomps, num_prev), dtype=current.dtype)
        product = self.temporal_product([start, current[0]])

        def step(product: Tensor, current_t: Tensor, restart_t: Tensor) -> Tensor:
            previous = self.interface_network_t_minus_1(product, training=training)
            previous = ops.where(restart_t[:, None, None, None], ops.zeros_like(previous), previous)
            return self.temporal_product([previous, current_t])

        product, products = recurrence(step, product, [current, restart], collect=not self.return_last_step)
        if self.return_last_step:
            return self.top_network(product, training=training)
        # products: [max_len, batch, num_scopes, num_decomps, num_nodes]
        roots = self.top_network(ops.reshape(products, (-1, *products.shape[2:])), training=training)
        roots = ops.reshape(roots, (max_len, batch, *roots.shape[1:]))
        padded = ops.less(steps[:, None], first[None, :])[..., None]
        roots = ops.where(padded, ops.zeros_like(roots), roots)
        return ops.transpose(roots, (1, 0, 2))

    # -- serialization -----------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument, the networks serialized with ``keras.saving``."""
        config = super().get_config()
        for name in _NETWORKS:
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        config.update(return_last_step=self.return_last_step, unsupervised=self.unsupervised)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> DynamicSumProductNetwork:
        """Create the model (and its networks) from ``get_config()``'s output."""
        config = dict(config)
        for name in _NETWORKS:
            config[name] = keras.saving.deserialize_keras_object(config[name], custom_objects=custom_objects)
        return cls(**config)
