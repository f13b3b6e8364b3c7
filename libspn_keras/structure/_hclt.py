"""Hidden Chow-Liu trees (HCLT): a latent variable per variable, connected by the data's Chow-Liu tree."""

from __future__ import annotations

from typing import Any

import keras

from libspn_keras.layers import DenseSum, FlatToRegions, IndicatorLeaf, LatentTreeSum, RootSum
from libspn_keras.layers._validation import check_positive_int
from libspn_keras.models import SequentialSumProductNetwork
from libspn_keras.structure._chow_liu import ChowLiuTree, chow_liu_tree
from libspn_keras.sum_ops import SumOpBase


def hclt(
    data: Any,
    num_latents: int,
    alpha: float = 1.0,
    sample_weight: Any = None,
    num_states: int | None = None,
    tree: ChowLiuTree | None = None,
    sum_op: SumOpBase | None = None,
    logspace_accumulators: bool | None = None,
    accumulator_initializer: keras.initializers.Initializer | None = None,
    linear_accumulator_constraint: keras.constraints.Constraint | None = None,
    num_components: int = 1,
    name: str | None = None,
) -> SequentialSumProductNetwork:
    """Build a hidden Chow-Liu tree (HCLT) of discrete data: a ready-to-train, normalized density model.

    Every variable ``X_i`` gets a latent ``Z_i`` with ``num_latents`` states; the latents are connected by the
    Chow-Liu tree of the data (``chow_liu_tree``), so that ``p(x) = sum_z p(z_root) prod_i p(z_i | z_parent(i))
    p(x_i | z_i)``, computed bottom-up without enumerating ``z``:

    ``keras.Input -> FlatToRegions(num_components) -> IndicatorLeaf(num_states) -> DenseSum(num_latents) ->
    LatentTreeSum(parents) -> RootSum``

    The ``DenseSum`` holds the categoricals ``p(x_i | Z_i = k)``, the ``LatentTreeSum`` the transitions
    ``p(z_c | z_parent)`` (one batched weighted sum per height of the tree) and the ``RootSum`` ``p(z_root)``. All
    sums share ``sum_op``, so the model trains with ``fit`` by gradient descent or EM
    (``OnlineExpectationMaximization`` with ``SumOpEMBackprop`` and the hard EM ops) like every other model, and
    ``NaN`` inputs are marginalized by the ``IndicatorLeaf``.

    With ``num_components > 1`` the model is a mixture of that many HCLTs over the same tree, each with its own
    (independently initialized) parameters, as the official HCLT code trains them (Liu & Van den Broeck, 2021:
    4 components): the HCLTs are the decompositions of the region layers, and the ``RootSum`` mixes the
    ``num_components * num_latents`` root states of all of them. Its parameters grow ``num_components``-fold.

    Args:
        data: ``[num_rows, num_vars]`` complete training data of integer states (at least two variables); only
            its Chow-Liu tree is used (unless ``tree`` is given): train the model on it with ``fit``.
        num_latents: Number of states ``K`` of every latent variable.
        alpha: Laplace smoothing of the mutual information (see ``chow_liu_tree``).
        sample_weight: Optional ``[num_rows]`` row weights for the mutual information.
        num_states: Number of states of every variable; inferred from ``data`` if ``None``.
        tree: A ``ChowLiuTree`` to use instead of learning one from ``data`` (``data`` is then only checked for
            its number of variables).
        sum_op: Sum op of all sums. Defaults to ``get_default_sum_op()``.
        logspace_accumulators: See ``BaseSum`` (``None``: the sum op's default).
        accumulator_initializer: Initializer of the accumulators of the ``DenseSum`` and ``LatentTreeSum``
            (default: ``get_default_accumulator_initializer()``, random, which breaks the symmetry of the latent
            states).
        linear_accumulator_constraint: Constraint of linear accumulators.
        num_components: Number of HCLTs in the mixture (1: a single HCLT).
        name: Name of the model.

    Returns:
        A ``SequentialSumProductNetwork``: input ``[batch, num_vars]`` floats (``NaN`` = missing), output
        ``[batch, 1]`` ``log p(x)``.

    Raises:
        TypeError: If ``data`` is not numeric or ``tree`` is not a ``ChowLiuTree``.
        ValueError: If ``data`` is invalid (see ``chow_liu_tree``), has fewer than two variables or does not match
            ``tree``, or ``num_latents`` or ``num_components`` is not a positive integer.

    Example:
        >>> import numpy as np
        >>> from libspn_keras import losses
        >>> data = np.random.default_rng(0).integers(0, 2, (100, 5))
        >>> spn = hclt(data, num_latents=4)
        >>> [type(layer).__name__ for layer in spn.layers]
        ['FlatToRegions', 'IndicatorLeaf', 'DenseSum', 'LatentTreeSum', 'RootSum']
        >>> spn.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
        >>> history = spn.fit(data.astype("float32"), epochs=1, batch_size=50, verbose=0)
        >>> tuple(spn(np.array([[0, 1, np.nan, 1, 0]], "float32")).shape)
        (1, 1)
        >>> mixture = hclt(data, num_latents=4, num_components=3)  # a mixture of 3 HCLTs
        >>> tuple(mixture.layers[3].accumulators.shape)  # [edges, components, child state, parent state]
        (4, 3, 4, 4)
    """
    num_latents = check_positive_int("hclt", "num_latents", num_latents)
    num_components = check_positive_int("hclt", "num_components", num_components)
    if tree is None:
        tree = chow_liu_tree(data, alpha=alpha, sample_weight=sample_weight, num_states=num_states)
    elif not isinstance(tree, ChowLiuTree):
        raise TypeError(f"hclt expects tree to be a ChowLiuTree or None. Received: tree={tree!r}")
    num_vars = getattr(data, "shape", (None, tree.num_vars))[-1]
    if num_vars != tree.num_vars or tree.num_vars < 2:
        raise ValueError(
            "hclt expects data with at least two variables, as many as the tree has. "
            f"Received: {num_vars} data columns, a tree over {tree.num_vars} variables"
        )
    sums: dict[str, Any] = {
        "sum_op": sum_op,
        "logspace_accumulators": logspace_accumulators,
        "linear_accumulator_constraint": linear_accumulator_constraint,
    }
    return SequentialSumProductNetwork(
        [
            keras.Input(shape=(tree.num_vars,)),
            FlatToRegions(num_decomps=num_components),
            IndicatorLeaf(num_components=tree.num_states, dtype=keras.config.floatx()),
            DenseSum(num_sums=num_latents, accumulator_initializer=accumulator_initializer, **sums),
            LatentTreeSum(parents=tree.parents.tolist(), accumulator_initializer=accumulator_initializer, **sums),
            RootSum(return_weighted_child_logits=False, **sums),
        ],
        name=name,
    )
