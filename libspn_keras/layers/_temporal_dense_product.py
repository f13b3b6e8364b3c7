"""Products that join the interface of the previous time step with the nodes of the current one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from libspn_keras.layers._scope_tracking import REGION_CELLS, Scopes, ScopeTracking, as_region, check_decomposable
from libspn_keras.layers._validation import Shape, check_float_dtype, check_rank
from libspn_keras.math._backend import Tensor

REGION_LAYOUT = "[batch, num_scopes, num_decomps, num_nodes]"


@keras.saving.register_keras_serializable(package="libspn_keras")
class TemporalDenseProduct(ScopeTracking, keras.layers.Layer):
    """Computes 'temporal' dense products.

    This is used to connect an interface stack at :math:`t - 1` of a dynamic SPN with a template SPN at
    :math:`t`. Computes a product of all possible combinations of nodes along the last axis of the two incoming
    layers, per scope and decomposition: with inputs ``a`` (``n1`` nodes) and ``b`` (``n2`` nodes), output node
    ``i * n2 + j`` is ``a[..., i] + b[..., j]`` in log-space, i.e. the node of the first input varies slowest
    (the same row-major order as ``DenseProduct``).

    The two inputs must cover disjoint sets of variables (e.g. the steps before ``t`` and step ``t``) for the
    products to be decomposable; the layer cannot check this.

    Args:
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        A list or tuple of two log-probability tensors ``[batch, num_scopes, num_decomps, n1]`` and
        ``[batch, num_scopes, num_decomps, n2]`` with the same ``num_scopes`` and ``num_decomps``.

    Output shape:
        ``[batch, num_scopes, num_decomps, n1 * n2]``.

    Raises:
        ValueError: If the input is not a pair of rank-4 tensors, if their scopes or decompositions differ or
            if a node axis is unknown.

    Example:
        >>> import numpy as np
        >>> a = np.log(np.array([[[[0.5, 0.25]]]], "float32"))
        >>> b = np.log(np.array([[[[0.1, 0.2, 0.4]]]], "float32"))
        >>> out = TemporalDenseProduct()([a, b])
        >>> tuple(out.shape)
        (1, 1, 1, 6)
        >>> [round(float(v), 3) for v in np.exp(np.asarray(out)).ravel()]
        [0.05, 0.1, 0.2, 0.025, 0.05, 0.1]
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def _split_shapes(self, input_shape: Any) -> tuple[Shape, Shape]:
        shapes = list(input_shape) if isinstance(input_shape, Sequence) else []
        if len(shapes) != 2 or not all(isinstance(shape, Sequence) for shape in shapes):
            raise ValueError(
                f"Layer '{self.name}' expects a list of two inputs [interface_t_minus_1, template_t], each with "
                f"layout {REGION_LAYOUT}. Received: input_shape={input_shape}"
            )
        return tuple(shapes[0]), tuple(shapes[1])

    def build(self, input_shape: Sequence[Shape]) -> None:
        """Check that both inputs share scopes and decompositions and have known node axes."""
        a_shape, b_shape = self._split_shapes(input_shape)
        check_rank(self.name, a_shape, 4, REGION_LAYOUT)
        check_rank(self.name, b_shape, 4, REGION_LAYOUT)
        if a_shape[-1] is None or b_shape[-1] is None:
            raise ValueError(
                f"Layer '{self.name}' needs known node axes for both inputs. Received: input_shape={[a_shape, b_shape]}"
            )
        for axis, name in ((1, "num_scopes"), (2, "num_decomps")):
            if a_shape[axis] is not None and b_shape[axis] is not None and a_shape[axis] != b_shape[axis]:
                raise ValueError(
                    f"Layer '{self.name}' multiplies nodes per scope and decomposition, so both inputs need the "
                    f"same {name}. Received: input_shape={[a_shape, b_shape]}"
                )

    def call(self, inputs: Sequence[Tensor]) -> Tensor:
        """Sum (log-space product) every pair of nodes of the two inputs."""
        a, b = inputs
        check_float_dtype(self.name, a.dtype)
        check_float_dtype(self.name, b.dtype)
        num_nodes = a.shape[-1] * b.shape[-1]
        out = ops.expand_dims(a, -1) + ops.expand_dims(b, -2)
        return ops.reshape(out, (*ops.shape(out)[:-2], num_nodes))

    def _propagate_scopes(self, scopes: tuple[Scopes | None, ...], input_shape: list[Shape]) -> Scopes | None:
        """Products per region of two inputs over the same variables must have disjoint scopes."""
        a, b = (as_region(input_scopes) for input_scopes in scopes)
        if a is None or b is None or a.origin != b.origin or a.counts.shape != b.counts.shape:
            return None  # different variables (or unknown): nothing to compare
        merged = a.counts + b.counts
        check_decomposable(self.name, merged, REGION_CELLS)
        return a.with_counts(merged)

    def compute_output_shape(self, input_shape: Sequence[Shape]) -> Shape:
        """Return ``[batch, num_scopes, num_decomps, n1 * n2]``."""
        a_shape, b_shape = self._split_shapes(input_shape)
        batch = a_shape[0] if a_shape[0] is not None else b_shape[0]
        scopes = a_shape[1] if a_shape[1] is not None else b_shape[1]
        decomps = a_shape[2] if a_shape[2] is not None else b_shape[2]
        num_nodes = None if a_shape[-1] is None or b_shape[-1] is None else a_shape[-1] * b_shape[-1]
        return (batch, scopes, decomps, num_nodes)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument (only the base layer's)."""
        return super().get_config()
