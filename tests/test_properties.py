"""Property-based checks: randomly drawn valid SPN architectures are normalized, marginalize exactly, report their
output shapes and survive a ``.keras`` round trip.

Region SPNs over 2-6 discrete variables and DGC-SPNs over tiny binary images are small enough to enumerate every
joint state, so ``logsumexp_x log p(x) == 0`` and ``log p(x without v) == logsumexp_{x_v} log p(x)`` are checked
exactly (up to float32 round-off). Architectures are valid by construction: the region strategy pads scopes to the
product of the factors, and the spatial strategy propagates cell scopes in numpy (independently of the layers) and
only draws products that fit, are decomposable and end with every cell covering the whole image. Every sum layer
gets a random sum op (the forward pass is the same for all of them) and a seeded random initializer.

The default examples are derandomized so that CI is deterministic; ``pytest -m slow`` runs a larger random budget.
``test_*_check_detects_*`` show that each checker fails on a broken SPN.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from libspn_keras import initializers, layers, models, sum_ops
from libspn_keras.region import RegionNode, RegionVariable, random_region_graph, ratspn, region_graph_to_dense_spn
from tests import spatial_reference as ref
from tests.backend_utils import to_numpy
from tests.reference_spn import all_states

ATOL = 2e-5  # float32 round-off of a log-probability summed over at most a few thousand states
CHUNK = 8192  # rows per forward pass when enumerating the 65536 images of 4x4 pixels


def profile(max_examples: int, derandomize: bool = True) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


# --------------------------------------------------------------------------------------------------------------------
# Checkers (each one is shown to fail on a broken SPN at the end of the file)


def log_probs(model: keras.Model, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``log p`` of every row (float64); weighted child logits of a ``RootSum`` are summed over the children."""
    outs = []
    for start in range(0, len(x), CHUNK):
        rows = x[start : start + CHUNK]
        out = model(rows) if mask is None else model((rows, mask[start : start + CHUNK]))
        outs.append(np.asarray(out, np.float64))
    out = np.concatenate(outs)
    assert out.ndim == 2 and len(out) == len(x)
    assert not np.isnan(out).any(), "the SPN returned NaN"
    return logsumexp(out, axis=-1)


def assert_normalized(log_p: np.ndarray) -> None:
    """``log p`` over all joint states sums to probability one and no state has ``p > 1``."""
    total = logsumexp(log_p)
    assert abs(total) <= ATOL, f"the sum over all joint states is exp({total:.3g}), not 1"
    assert np.all(log_p <= ATOL)


def assert_marginalizes(
    log_p_fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    states: np.ndarray,
    joint: np.ndarray,
    num_states: int,
    var: int,
    how: str,
) -> None:
    """``log p`` with variable ``var`` missing (``NaN`` or a ``False`` evidence mask) equals the joint summed over it.

    Args:
        log_p_fn: ``(rows [n, num_vars], mask or None) -> log p [n]``.
        states: All joint states ``[num_states ** num_vars, num_vars]`` in ``itertools.product`` order.
        joint: ``log p`` of every state.
        num_states: Number of states per variable.
        var: The variable to marginalize.
        how: ``'nan'`` or ``'evidence_mask'``.
    """
    num_vars = states.shape[1]
    rows = states[states[:, var] == 0].copy()
    mask = None
    if how == "nan":
        rows[:, var] = np.nan
    else:
        mask = np.ones(rows.shape, bool)
        mask[:, var] = False
        rows[:, var] = num_states - 1  # a value behind a False mask must be ignored
    expected = logsumexp(joint.reshape((num_states,) * num_vars), axis=var).reshape(-1)
    np.testing.assert_allclose(log_p_fn(rows, mask), expected, rtol=0, atol=ATOL, err_msg=f"{how}, variable {var}")


def assert_output_shapes(model: keras.Model, x: np.ndarray) -> None:
    """Every layer's ``compute_output_shape`` equals its actual output shape, for a known and an unknown batch."""
    h = keras.ops.convert_to_tensor(x)
    for layer in model.layers:
        known = tuple(layer.compute_output_shape(tuple(h.shape)))
        unknown = tuple(layer.compute_output_shape((None, *h.shape[1:])))
        h = layer(h)
        actual = tuple(h.shape)
        assert known == actual, f"{layer.name}: compute_output_shape gives {known}, the output is {actual}"
        assert unknown == (None, *actual[1:]), f"{layer.name}: {unknown} for an unknown batch, output {actual}"
        assert tuple(layer.output.shape) == unknown, f"{layer.name}: symbolic output {layer.output.shape}"
    assert tuple(model.compute_output_shape((None, *x.shape[1:]))) == model.output_shape


def assert_same_outputs(model: keras.Model, other: keras.Model, x: np.ndarray) -> None:
    assert [type(layer) for layer in other.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(model(x)))


def save_and_load(model: keras.Model) -> keras.Model:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "spn.keras")
        model.save(path)
        return keras.models.load_model(path)


# --------------------------------------------------------------------------------------------------------------------
# Sum layers: a random sum op and a seeded random initializer

SUM_OPS = ("grad-logspace", "grad-linear", "em", "hard_em", "unweighted_hard_em", "sample")


@dataclass(frozen=True)
class SumSpec:
    num_sums: int
    op: str
    sample_prob: float | None
    initializer: str
    spread: float
    seed: int

    def kwargs(self) -> dict:
        """Constructor arguments of a sum layer (all but ``num_sums``)."""
        if self.op.startswith("grad"):
            op, logspace = sum_ops.SumOpGradBackprop(), self.op == "grad-logspace"
        elif self.op == "em":
            op, logspace = sum_ops.SumOpEMBackprop(), None
        elif self.op == "hard_em":
            op, logspace = sum_ops.SumOpHardEMBackprop(sample_prob=self.sample_prob), None
        elif self.op == "unweighted_hard_em":
            op, logspace = sum_ops.SumOpUnweightedHardEMBackprop(sample_prob=self.sample_prob), None
        else:
            op, logspace = sum_ops.SumOpSampleBackprop(), None
        if self.initializer == "dirichlet":
            init = initializers.Dirichlet(alpha=self.spread, seed=self.seed)
        else:
            init = keras.initializers.RandomUniform(minval=0.05, maxval=0.05 + 4 * self.spread, seed=self.seed)
        return {"sum_op": op, "logspace_accumulators": logspace, "accumulator_initializer": init}


seeds = st.integers(0, 2**16)


@st.composite
def sum_specs(draw: st.DrawFn, max_sums: int = 3) -> SumSpec:
    return SumSpec(
        num_sums=draw(st.integers(1, max_sums)),
        op=draw(st.sampled_from(SUM_OPS)),
        sample_prob=draw(st.sampled_from([None, 0.0, 0.5, 1.0])),
        initializer=draw(st.sampled_from(["dirichlet", "uniform"])),
        spread=draw(st.floats(0.1, 2.0)),
        seed=draw(seeds),
    )


# --------------------------------------------------------------------------------------------------------------------
# (a) Region SPNs over discrete variables


@dataclass(frozen=True)
class RegionSpec:
    num_vars: int
    num_states: int
    num_decomps: int
    input_sum: SumSpec | None  # mixes the indicators of each variable into "leaf components"
    permutations: tuple[tuple[int, ...], ...] | None  # None: PermuteAndPadScopesRandom(seed=permutation_seed)
    permutation_seed: int
    products: tuple[tuple[str, int], ...]  # ("dense" | "reduce", num_factors), bottom to top
    sums: tuple[SumSpec | None, ...]  # the DenseSum after each product layer
    dropout: tuple[bool, ...]  # a LogDropout (the identity at inference) before that sum
    partial_undecompose: int | None  # Undecompose(num_decomps=k) and a DenseSum before merging all decompositions
    mixing_sum: SumSpec | None
    root: SumSpec
    weighted_child_logits: bool

    def build(self) -> models.SequentialSumProductNetwork:
        stack: list = [
            keras.Input(shape=(self.num_vars,)),
            layers.FlatToRegions(num_decomps=self.num_decomps),
            layers.IndicatorLeaf(num_components=self.num_states, dtype="float32"),
        ]
        if self.input_sum is not None:
            stack.append(layers.DenseSum(self.input_sum.num_sums, **self.input_sum.kwargs()))
        if self.permutations is None:  # factors are inferred from the product layers by the model
            stack.append(layers.PermuteAndPadScopesRandom(seed=self.permutation_seed))
        else:
            stack.append(layers.PermuteAndPadScopes(self.permutations))
        for (kind, factors), spec, dropout in zip(self.products, self.sums, self.dropout, strict=True):
            stack.append(layers.DenseProduct(factors) if kind == "dense" else layers.ReduceProduct(factors))
            if spec is not None:
                if dropout:
                    stack.append(layers.LogDropout(rate=0.5, seed=spec.seed, axis_at_least_one=-1))
                stack.append(layers.DenseSum(spec.num_sums, **spec.kwargs()))
        if self.partial_undecompose is not None and self.mixing_sum is not None:
            stack.append(layers.Undecompose(num_decomps=self.partial_undecompose))
            stack.append(layers.DenseSum(self.mixing_sum.num_sums, **self.mixing_sum.kwargs()))
        stack.append(layers.Undecompose())
        stack.append(layers.RootSum(return_weighted_child_logits=self.weighted_child_logits, **self.root.kwargs()))
        return models.SequentialSumProductNetwork(stack)


@st.composite
def region_specs(draw: st.DrawFn) -> RegionSpec:
    num_vars = draw(st.integers(2, 6))
    num_states = draw(st.sampled_from([2, 3])) if num_vars <= 4 else 2
    num_decomps = draw(st.integers(1, 4))
    input_sum = draw(st.none() | sum_specs())
    factors = draw(st.lists(st.sampled_from([2, 3]), min_size=1, max_size=3))
    while math.prod(factors) < num_vars:
        factors.append(2)
    num_scopes = math.prod(factors)
    nodes = num_states if input_sum is None else input_sum.num_sums
    products, sums = [], []
    for level, num_factors in enumerate(factors):
        kind = draw(st.sampled_from(["dense", "reduce"]))
        if kind == "dense" and nodes**num_factors > 27:
            kind = "reduce"
        nodes = nodes**num_factors if kind == "dense" else nodes
        top = level == len(factors) - 1
        spec = draw(st.none() | sum_specs()) if top or nodes <= 3 else draw(sum_specs())
        nodes = nodes if spec is None else spec.num_sums
        products.append((kind, num_factors))
        sums.append(spec)
    permutations = None
    if draw(st.booleans()):  # explicit: every variable at a random slot of every decomposition, -1 pads
        rows = []
        for _ in range(num_decomps):
            slots = draw(st.permutations(range(num_scopes)))
            row = [-1] * num_scopes
            for var, slot in enumerate(slots[:num_vars]):
                row[slot] = var
            rows.append(tuple(row))
        permutations = tuple(rows)
    partial = 2 if num_decomps == 4 and draw(st.booleans()) else None
    return RegionSpec(
        num_vars=num_vars,
        num_states=num_states,
        num_decomps=num_decomps,
        input_sum=input_sum,
        permutations=permutations,
        permutation_seed=draw(seeds),
        products=tuple(products),
        sums=tuple(sums),
        dropout=tuple(draw(st.booleans()) for _ in sums),
        partial_undecompose=partial,
        mixing_sum=draw(sum_specs()) if partial else None,
        root=draw(sum_specs()),
        weighted_child_logits=draw(st.booleans()),
    )


def check_region_spn(spec: RegionSpec | GraphSpec, var: int, how: str) -> None:
    model = spec.build()
    states = all_states(spec.num_vars, spec.num_states).astype("float32")

    joint = log_probs(model, states)

    assert_normalized(joint)
    assert_marginalizes(
        lambda rows, mask: log_probs(model, rows, mask), states, joint, spec.num_states, var % spec.num_vars, how
    )
    assert_output_shapes(model, states)


def check_region_round_trip(spec: RegionSpec) -> None:
    model = spec.build()
    x = all_states(spec.num_vars, spec.num_states).astype("float32")
    x[::3, 0] = np.nan
    assert_same_outputs(model, save_and_load(model), x)


@profile(max_examples=25)
@given(spec=region_specs(), var=st.integers(0, 5), how=st.sampled_from(["nan", "evidence_mask"]))
def test_region_spn_is_normalized_marginalizes_and_reports_its_shapes(spec, var, how):
    check_region_spn(spec, var, how)


@profile(max_examples=5)
@given(spec=region_specs())
def test_region_spn_save_and_load_gives_identical_outputs(spec):
    check_region_round_trip(spec)


@pytest.mark.slow
@profile(max_examples=150, derandomize=False)
@given(spec=region_specs(), var=st.integers(0, 5), how=st.sampled_from(["nan", "evidence_mask"]))
def test_region_spn_properties_large_budget(spec, var, how):
    check_region_spn(spec, var, how)


@pytest.mark.slow
@profile(max_examples=25, derandomize=False)
@given(spec=region_specs())
def test_region_spn_round_trip_large_budget(spec):
    check_region_round_trip(spec)


# --- Region graphs (libspn_keras.region) -----------------------------------------------------------------------


@st.composite
def region_trees(draw: st.DrawFn, variables: tuple[int, ...]) -> RegionNode | RegionVariable:
    """A random (possibly unbalanced) region tree: every region is split into 2-3 non-empty parts."""
    if len(variables) == 1:
        return RegionVariable(variables[0])
    arity = draw(st.integers(2, min(3, len(variables))))
    cuts = sorted(
        draw(st.lists(st.integers(1, len(variables) - 1), min_size=arity - 1, max_size=arity - 1, unique=True))
    )
    parts = [variables[start:stop] for start, stop in itertools.pairwise([0, *cuts, len(variables)])]
    return RegionNode([draw(region_trees(part)) for part in parts])


@dataclass(frozen=True)
class GraphSpec:
    num_vars: int
    num_states: int
    roots: tuple | None  # None: ratspn(...) with ratspn_args
    ratspn_args: tuple[int, int, int, int] | None  # depth, repetitions, input distributions, sums
    num_sums: tuple[int, ...]
    product_first: bool
    num_classes: int | None
    weighted_child_logits: bool
    logspace: bool | None
    initializer: SumSpec
    seed: int

    def build(self) -> models.SequentialSumProductNetwork:
        leaf = layers.IndicatorLeaf(num_components=self.num_states, dtype="float32")
        init = self.initializer.kwargs()["accumulator_initializer"]
        if self.roots is None:
            depth, repetitions, inputs, sums = self.ratspn_args
            return ratspn(
                self.num_vars,
                depth,
                repetitions,
                inputs,
                sums,
                leaf=leaf,
                num_classes=self.num_classes,
                return_weighted_child_logits=self.weighted_child_logits,
                seed=self.seed,
                logspace_accumulators=self.logspace,
                accumulator_initializer=init,
            )
        return region_graph_to_dense_spn(
            list(self.roots),
            leaf,
            self.num_sums,
            self.weighted_child_logits,
            logspace_accumulators=self.logspace,
            accumulator_initializer=init,
            product_first=self.product_first,
            num_classes=self.num_classes,
        )


@st.composite
def graph_specs(draw: st.DrawFn) -> GraphSpec:
    num_vars = draw(st.integers(2, 6))
    seed = draw(seeds)
    if draw(st.booleans()):
        depth = draw(st.integers(1, 2 if num_vars >= 4 else 1))
        ratspn_args = (depth, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        roots = None
        # Cross-check: the random graphs cover every variable once.
        for root in random_region_graph(num_vars, depth, ratspn_args[1], seed):
            assert sorted(root.scope) == list(range(num_vars))
    else:
        ratspn_args = None
        roots = tuple(
            draw(region_trees(tuple(draw(st.permutations(range(num_vars)))))) for _ in range(draw(st.integers(1, 2)))
        )
        assume(all(isinstance(root, RegionNode) for root in roots))
    return GraphSpec(
        num_vars=num_vars,
        num_states=draw(st.sampled_from([2, 3])) if num_vars <= 4 else 2,
        roots=roots,
        ratspn_args=ratspn_args,
        num_sums=tuple(draw(st.lists(st.integers(1, 3), min_size=8, max_size=8))),
        product_first=draw(st.booleans()),
        num_classes=draw(st.none() | st.integers(1, 3)),
        weighted_child_logits=draw(st.booleans()),
        logspace=draw(st.sampled_from([None, True, False])),
        initializer=draw(sum_specs()),
        seed=seed,
    )


@profile(max_examples=15)
@given(spec=graph_specs(), var=st.integers(0, 5), how=st.sampled_from(["nan", "evidence_mask"]))
def test_region_graph_spn_is_normalized_and_marginalizes(spec, var, how):
    check_region_spn(spec, var, how)


# --------------------------------------------------------------------------------------------------------------------
# (b) Spatial DGC-SPNs on tiny binary images

IMAGE_SIZES = [(2, 2), (2, 3), (3, 3), (4, 4)]
MAX_SPATIAL_PRODUCTS = 5
MAX_GRID = 8
PRODUCT_GEOMETRIES = [
    (kernel, strides, dilations, padding)
    for kernel in [(2, 2), (1, 2), (2, 1)]
    for strides in itertools.product([1, 2], repeat=2)
    for dilations in itertools.product([1, 2, 4], repeat=2)
    for padding in ["valid", "full", "final"]
    if all(k > 1 or d == 1 for k, d in zip(kernel, dilations, strict=True))
]


def product_scopes(scopes: np.ndarray, kernel, strides, dilations, padding) -> np.ndarray | None:
    """Scopes ``[H', W', pixels]`` of a product layer's cells, or ``None`` if it does not fit or is not decomposable.

    Written with the padding and output-size formulas of ``tests/spatial_reference.py``; padding cells have empty
    scopes. (The loop version ``spatial_reference.product_scopes`` is too slow to search with.)
    """
    height, width, _ = scopes.shape
    (top, bottom), (left, right) = (
        ref.conv_pads(height, kernel[0], dilations[0], padding),
        ref.conv_pads(width, kernel[1], dilations[1], padding),
    )
    out_h = ref.conv_out_size(height, kernel[0], strides[0], dilations[0], padding)
    out_w = ref.conv_out_size(width, kernel[1], strides[1], dilations[1], padding)
    if not (1 <= out_h <= MAX_GRID and 1 <= out_w <= MAX_GRID):
        return None
    padded = np.pad(scopes.astype(np.int32), ((top, bottom), (left, right), (0, 0)))
    count = np.zeros((out_h, out_w, scopes.shape[-1]), np.int32)
    for u, v in itertools.product(range(kernel[0]), range(kernel[1])):
        rows = slice(u * dilations[0], u * dilations[0] + strides[0] * (out_h - 1) + 1, strides[0])
        cols = slice(v * dilations[1], v * dilations[1] + strides[1] * (out_w - 1) + 1, strides[1])
        count += padded[rows, cols]
    return None if count.max() > 1 else count > 0


def product_options(scopes: np.ndarray) -> list[tuple[tuple, np.ndarray]]:
    """Decomposable products that grow the largest scope and drop no pixel, with their output scopes."""
    options = []
    largest = scopes.sum(axis=-1).max()
    for geometry in PRODUCT_GEOMETRIES:
        out = product_scopes(scopes, *geometry)
        if out is not None and out.sum(axis=-1).max() > largest and out.any(axis=(0, 1)).all():
            options.append((geometry, out))
    return options


@dataclass(frozen=True)
class SpatialSpec:
    size: tuple[int, int]
    products: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int], str, str, int | None, int], ...]
    sums: tuple[tuple[str, SumSpec] | None, ...]  # ("local" | "conv", spec) after each product
    top_sum: SumSpec | None
    root: SumSpec
    weighted_child_logits: bool

    def build(self) -> models.SequentialSumProductNetwork:
        stack: list = [keras.Input(shape=(*self.size, 1)), layers.IndicatorLeaf(num_components=2, dtype="float32")]
        for (kernel, strides, dilations, padding, channels, num_channels, seed), sum_layer in zip(
            self.products, self.sums, strict=True
        ):
            stack.append(
                layers.Conv2DProduct(
                    strides=strides,
                    dilations=dilations,
                    kernel_size=kernel,
                    padding=padding,
                    depthwise=channels == "depthwise",
                    num_channels=num_channels,
                    seed=seed,
                )
            )
            if sum_layer is not None:
                kind, spec = sum_layer
                sum_cls = layers.Local2DSum if kind == "local" else layers.Conv2DSum
                stack.append(sum_cls(spec.num_sums, **spec.kwargs()))
        stack.append(layers.SpatialToRegions())
        if self.top_sum is not None:
            stack.append(layers.DenseSum(self.top_sum.num_sums, **self.top_sum.kwargs()))
        stack.append(layers.RootSum(return_weighted_child_logits=self.weighted_child_logits, **self.root.kwargs()))
        return models.SequentialSumProductNetwork(stack)


@st.composite
def spatial_specs(draw: st.DrawFn, sizes: list[tuple[int, int]] = IMAGE_SIZES) -> SpatialSpec:
    height, width = size = draw(st.sampled_from(sizes))
    scopes = np.eye(height * width, dtype=bool).reshape(height, width, height * width)
    channels = 2
    products, sums = [], []
    while not scopes.all():
        options = product_options(scopes)
        assume(options and len(products) < MAX_SPATIAL_PRODUCTS)
        complete = [option for option in options if option[1].all()]
        if complete and draw(st.integers(0, 9)) < 7:  # finish when possible, most of the time
            options = complete
        (kernel, strides, dilations, padding), scopes = options[draw(st.integers(0, len(options) - 1))]
        all_combinations = channels ** (kernel[0] * kernel[1])
        mode = draw(st.sampled_from(["depthwise", "all", "subset"]))
        if mode == "all" and all_combinations > 16:
            mode = "subset"
        num_channels = draw(st.integers(1, min(all_combinations, 8))) if mode == "subset" else None
        channels = {"depthwise": channels, "all": all_combinations, "subset": num_channels}[mode]
        products.append((kernel, strides, dilations, padding, mode, num_channels, draw(seeds)))
        sum_kind = draw(st.sampled_from([None, "local", "conv"]))
        spec = None if sum_kind is None else draw(sum_specs())
        sums.append(None if spec is None else (sum_kind, spec))
        channels = channels if spec is None else spec.num_sums
    return SpatialSpec(
        size=size,
        products=tuple(products),
        sums=tuple(sums),
        top_sum=draw(st.none() | sum_specs()),
        root=draw(sum_specs()),
        weighted_child_logits=draw(st.booleans()),
    )


def check_spatial_spn(spec: SpatialSpec, pixel: int, how: str) -> None:
    model = spec.build()
    height, width = spec.size
    states = all_states(height * width, 2).astype("float32")

    def log_p_fn(rows: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        shape = (-1, height, width, 1)
        return log_probs(model, rows.reshape(shape), None if mask is None else mask.reshape(shape))

    joint = log_p_fn(states, None)

    assert_normalized(joint)
    assert_marginalizes(log_p_fn, states, joint, 2, pixel % (height * width), how)
    assert_output_shapes(model, states[:5].reshape(-1, height, width, 1))


@pytest.mark.parametrize("size", IMAGE_SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_dgcspn_is_normalized_marginalizes_and_reports_its_shapes(size):
    @profile(max_examples=3 if size == (4, 4) else 8)  # 65536 images of 4x4 pixels take a few seconds each
    @given(spec=spatial_specs(sizes=[size]), pixel=st.integers(0, 15), how=st.sampled_from(["nan", "evidence_mask"]))
    def check(spec, pixel, how):
        check_spatial_spn(spec, pixel, how)

    check()


@profile(max_examples=4)
@given(spec=spatial_specs(sizes=[(2, 2), (2, 3), (3, 3)]))
def test_dgcspn_save_and_load_gives_identical_outputs(spec):
    model = spec.build()
    x = all_states(spec.size[0] * spec.size[1], 2).astype("float32").reshape(-1, *spec.size, 1)
    x[::3, 0, 0, 0] = np.nan
    assert_same_outputs(model, save_and_load(model), x)


@pytest.mark.slow
@profile(max_examples=100, derandomize=False)
@given(spec=spatial_specs(), pixel=st.integers(0, 15), how=st.sampled_from(["nan", "evidence_mask"]))
def test_dgcspn_properties_large_budget(spec, pixel, how):
    check_spatial_spn(spec, pixel, how)


# --------------------------------------------------------------------------------------------------------------------
# Every checker fails on a broken SPN


def _small_region_spn() -> models.SequentialSumProductNetwork:
    spec = SumSpec(2, "grad-linear", None, "uniform", 1.0, 7)
    return RegionSpec(
        num_vars=3,
        num_states=2,
        num_decomps=2,
        input_sum=None,
        permutations=None,
        permutation_seed=0,
        products=(("dense", 2), ("dense", 2)),
        sums=(spec, None),
        dropout=(False, False),
        partial_undecompose=None,
        mixing_sum=None,
        root=SumSpec(1, "em", None, "dirichlet", 0.5, 3),
        weighted_child_logits=False,
    ).build()


def test_normalization_check_detects_one_unnormalized_weight():
    model = _small_region_spn()
    states = all_states(3, 2).astype("float32")
    assert_normalized(log_probs(model, states))
    # The root's input, and its weights with one of them scaled by 1.2 (so they sum to more than one).
    children = np.asarray(keras.Sequential(model.layers[:-1])(states), np.float64)
    root = model.layers[-1]
    weights = np.asarray(root.accumulators, np.float64)[:, 0]
    weights = weights / weights.sum()
    weights[0] *= 1.2

    with pytest.raises(AssertionError, match="sum over all joint states"):
        assert_normalized(logsumexp(children + np.log(weights), axis=-1))


def test_marginalization_check_detects_a_model_that_ignores_missing_values():
    model = _small_region_spn()
    states = all_states(3, 2).astype("float32")
    joint = log_probs(model, states)

    def treats_nan_as_zero(rows, mask):
        return log_probs(model, np.nan_to_num(rows, nan=0.0))

    def treats_missing_as_observed(rows, mask):
        return log_probs(model, rows)

    with pytest.raises(AssertionError, match="nan, variable 1"):
        assert_marginalizes(treats_nan_as_zero, states, joint, 2, 1, "nan")
    with pytest.raises(AssertionError, match="evidence_mask, variable 2"):
        assert_marginalizes(treats_missing_as_observed, states, joint, 2, 2, "evidence_mask")


class _RootWithWrongShape(layers.RootSum):
    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)


def test_shape_check_detects_a_wrong_compute_output_shape():
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(3,)),
            *_small_region_spn().layers[:-1],
            _RootWithWrongShape(return_weighted_child_logits=False, name="bad_root"),
        ]
    )
    with pytest.raises(AssertionError, match="bad_root: compute_output_shape gives"):
        assert_output_shapes(model, all_states(3, 2).astype("float32"))


def test_round_trip_check_detects_a_changed_weight():
    model = _small_region_spn()
    other = save_and_load(model)
    x = all_states(3, 2).astype("float32")
    assert_same_outputs(model, other, x)
    accumulators = other.layers[-1].accumulators
    factors = np.ones(accumulators.shape)
    factors[..., 0, :] = 2.0  # the root's first child, accumulators [1, 1, num_in, 1]
    accumulators.assign(to_numpy(accumulators) * factors)

    with pytest.raises(AssertionError, match="Arrays are not equal"):
        assert_same_outputs(model, other, x)
