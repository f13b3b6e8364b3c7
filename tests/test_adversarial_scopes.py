"""Invalid SPN structures are rejected when the model is built (issue 18, item 1); valid ones still build.

Every layer tracks the scopes of its symbolic output: products need disjoint children (decomposability), sums
children with equal scopes (completeness) and the root covers every variable exactly once. Each rejected case is
first reproduced as it was before the check (the same layers called eagerly, where nothing is tracked) to show the
wrong normalization the check prevents; accepted structures are checked to sum to 1 by brute-force enumeration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from libspn_keras import layers, models
from tests.backend_utils import jit as compiled
from tests.backend_utils import tensor
from tests.test_validity import all_states, randomize_accumulators

LayerFactory = Callable[[], list[keras.layers.Layer]]


def states(shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """Every binary joint state of ``prod(shape)`` variables, ``[2 ** n, *shape]``."""
    return all_states(int(np.prod(shape)), 2, dtype).reshape(-1, *shape)


def eager_log_partition(make_layers: LayerFactory, shape: tuple[int, ...]) -> float:
    """``log Z`` of the layers called eagerly on every binary state (no scope tracking, as before the check)."""
    spn_layers = make_layers()
    x = tensor(states(shape))
    out = x
    for layer in spn_layers:
        out = layer(out)
    randomize_accumulators(SimpleNamespace(layers=spn_layers), np.random.default_rng(0))
    out = x
    for layer in spn_layers:
        out = layer(out)
    return float(logsumexp(np.asarray(out, np.float64)))


def model_log_partition(model: keras.Model, shape: tuple[int, ...], dtype: str = "float32", jit: bool = False) -> float:
    """``log Z`` of a built model by enumerating every binary state (child logits of the root are summed out)."""
    randomize_accumulators(model, np.random.default_rng(1))
    forward = compiled(model) if jit else model
    out = np.asarray(forward(tensor(states(shape, dtype))), np.float64)
    return float(logsumexp(out))


def sequential(shape: tuple[int, ...], make_layers: LayerFactory) -> keras.Model:
    return keras.Sequential([keras.Input(shape), *make_layers()])


# --------------------------------------------------------------------------------------------------------------------
# The cases of the issue


def uncovered_pixel() -> list[keras.layers.Layer]:
    return [
        layers.IndicatorLeaf(num_components=2),
        layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, padding="valid"),
        layers.SpatialToRegions(),
        layers.RootSum(return_weighted_child_logits=False),
    ]


def test_spatial_root_must_cover_every_input_cell():
    # Before: it built, and its probabilities over all 512 states summed to 2 ** 5 (5 pixels never read).
    np.testing.assert_allclose(eager_log_partition(uncovered_pixel, (3, 3, 1)), 5 * np.log(2), atol=1e-4)
    match = (
        r"Layer 'root_sum\w*' is the root of the SPN, so its children must cover all 9 variables exactly once, but "
        r"at scope 0, decomposition 0 variables \[2, 5, 6, 7, 8\] are not covered \(its scope: variables "
        r"\[0, 1, 3, 4\]\)"
    )
    with pytest.raises(ValueError, match=match):
        sequential((3, 3, 1), uncovered_pixel)


@pytest.mark.parametrize(
    "product", [layers.ReduceProduct, layers.DenseProduct], ids=["reduce_product", "dense_product"]
)
def test_region_products_on_a_spatial_grid_are_rejected(product):
    def make_layers() -> list[keras.layers.Layer]:
        return [
            layers.IndicatorLeaf(num_components=2),
            product(num_factors=2),
            layers.SpatialToRegions(),
            layers.RootSum(return_weighted_child_logits=False),
        ]

    # Before: rows were read as scopes and columns as decompositions; the root mixed two columns: Z = 4.
    np.testing.assert_allclose(eager_log_partition(make_layers, (2, 2, 1)), np.log(4), atol=1e-5)
    match = (
        r"Layer 'spatial_to_regions\w*' expects a spatial grid \[batch, height, width, channels\] with one variable "
        r"per cell, but its input has the region layout .*: \(scope 0, decomposition 0\) covers variables \[0, 1\]; "
        r"\(scope 0, decomposition 1\) covers variables \[0, 1\]\."
    )
    with pytest.raises(ValueError, match=match):
        sequential((2, 2, 1), make_layers)


@pytest.mark.parametrize(
    ("shape", "bottom"),
    [((4,), lambda: [layers.FlatToRegions(num_decomps=2)]), ((2, 2, 1), list)],
    ids=["region", "spatial"],
)
@pytest.mark.parametrize(
    "second",
    [lambda: layers.NormalLeaf(num_components=2), lambda: layers.IndicatorLeaf(num_components=2)],
    ids=["normal", "indicator"],
)
def test_a_leaf_stacked_on_a_leaf_is_rejected(shape, bottom, second):
    # One component, so that the first leaf's output has the shape of observations (it built before the check).
    match = r"Layer '\w*leaf\w*' is a leaf: it evaluates observations, but its input holds log-probabilities over "
    with pytest.raises(ValueError, match=match + r"scopes of 4 variables"):
        sequential(shape, lambda: [*bottom(), layers.NormalLeaf(num_components=1), second()])


def test_a_leaf_above_an_spn_layer_is_rejected():
    with pytest.raises(ValueError, match=r"Layer 'late_leaf' is a leaf"):
        sequential(
            (2,),
            lambda: [
                layers.FlatToRegions(),
                layers.IndicatorLeaf(num_components=2),
                layers.DenseSum(num_sums=1),
                layers.IndicatorLeaf(num_components=2, name="late_leaf"),
            ],
        )


# --------------------------------------------------------------------------------------------------------------------
# Every rule, in every kind of model


def padded_root() -> list[keras.layers.Layer]:
    return [
        layers.FlatToRegions(),
        layers.IndicatorLeaf(num_components=2),
        layers.PermuteAndPadScopes([[0, -1]]),  # variable 1 replaced by padding
        layers.DenseProduct(num_factors=2),
        layers.RootSum(return_weighted_child_logits=False),
    ]


def test_a_region_root_over_a_padded_subset_is_rejected():
    np.testing.assert_allclose(eager_log_partition(padded_root, (2,)), np.log(2), atol=1e-5)
    with pytest.raises(ValueError, match=r"root_sum\w*' .* all 2 variables .* variables \[1\] are not covered"):
        sequential((2,), padded_root)


def incomplete_mixture() -> list[keras.layers.Layer]:
    return [
        layers.FlatToRegions(num_decomps=2),
        layers.IndicatorLeaf(num_components=2),
        layers.PermuteAndPadScopes([[0, 1, 2, 3], [0, 2, 1, 3]]),
        layers.DenseProduct(num_factors=2),
        layers.DenseSum(num_sums=2),
        layers.Undecompose(),
        layers.DenseSum(num_sums=1),
        layers.ReduceProduct(num_factors=2),
        layers.RootSum(return_weighted_child_logits=False),
    ]


def test_undecompose_of_regions_with_different_scopes_is_rejected():
    # Decomposition 0 pairs {0, 1}, {2, 3}, decomposition 1 {0, 2}, {1, 3}: a sum mixing them is not complete.
    assert abs(eager_log_partition(incomplete_mixture, (4,))) > 0.01
    match = (
        r"Layer 'undecompose\w*' merges regions \(scope 0, decomposition 0\) and \(scope 0, decomposition 1\) with "
        r"different scopes \(variables \[0, 1\] and variables \[0, 2\]\); .* \(completeness\)"
    )
    with pytest.raises(ValueError, match=match):
        sequential((4,), incomplete_mixture)


def test_temporal_product_of_overlapping_scopes_is_rejected():
    x = keras.Input((2,))
    leaf = layers.IndicatorLeaf(num_components=2)(layers.FlatToRegions()(x))
    match = (
        r"Layer 'temporal_dense_product\w*': the products at scope 0, decomposition 0 have children with overlapping "
        r"scopes \(variables \[0\] occur in more than one child\)"
    )
    with pytest.raises(ValueError, match=match):
        layers.TemporalDenseProduct()([leaf, leaf])


@pytest.mark.parametrize("how", ["functional", "sequential_spn", "lazy_sequential"])
def test_rejected_in_every_way_a_model_is_built(how):
    if how == "functional":
        x = keras.Input((3, 3, 1))
        with pytest.raises(ValueError, match="not covered"):
            out = x
            for layer in uncovered_pixel():
                out = layer(out)
    elif how == "sequential_spn":
        with pytest.raises(ValueError, match="not covered"):
            models.SequentialSumProductNetwork([keras.Input((3, 3, 1)), *uncovered_pixel()])
    else:  # no Input: built by the first call on data (symbolically)
        model = keras.Sequential(uncovered_pixel())
        with pytest.raises(ValueError, match="not covered"):
            model.predict(states((3, 3, 1))[:4], verbose=0)


def test_eager_calls_on_concrete_tensors_are_not_checked():
    # Scopes are tracked on symbolic tensors only: eager layer calls carry none, so nothing is checked.
    assert np.isfinite(eager_log_partition(uncovered_pixel, (3, 3, 1)))


def test_layers_expose_the_scopes_of_their_symbolic_output():
    model = sequential((2,), lambda: padded_root()[:-1])  # without the root
    permute, product = model.layers[2], model.layers[3]
    np.testing.assert_array_equal(permute.output_scopes, [[[1, 0]], [[0, 0]]])  # [scopes, decomps, variables]
    np.testing.assert_array_equal(product.output_scopes, [[[1, 0]]])


# --------------------------------------------------------------------------------------------------------------------
# Valid structures still build and sum to 1


def rat_spn(num_vars: int) -> LayerFactory:
    def make_layers() -> list[keras.layers.Layer]:
        return [
            layers.FlatToRegions(num_decomps=3),
            layers.IndicatorLeaf(num_components=2),
            layers.PermuteAndPadScopesRandom(factors=[2, 2], seed=3),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.LogDropout(rate=0.0),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]

    return make_layers


def dgc_spn(strides: int, padding: str, top_dilations: int) -> LayerFactory:
    def make_layers() -> list[keras.layers.Layer]:
        return [
            layers.IndicatorLeaf(num_components=2),
            layers.Conv2DProduct(strides=strides, dilations=1, kernel_size=2, padding=padding, depthwise=True),
            layers.Local2DSum(num_sums=2),
            layers.Conv2DProduct(
                strides=1, dilations=top_dilations, kernel_size=2, padding="final", num_channels=3, seed=0
            ),
            layers.Conv2DSum(num_sums=2),
            layers.SpatialToRegions(),
            layers.DenseSum(num_sums=2),
            layers.RootSum(return_weighted_child_logits=False),
        ]

    return make_layers


VALID = [
    pytest.param((3,), rat_spn(3), id="rat_spn_padded_3vars"),
    pytest.param((4,), rat_spn(4), id="rat_spn_4vars"),
    pytest.param((2, 2, 1), dgc_spn(1, "full", 2), id="dgc_spn_full_then_final"),
    pytest.param((4, 4, 1), dgc_spn(2, "valid", 1), id="dgc_spn_strided_then_final"),
]


@pytest.mark.parametrize(("shape", "make_layers"), VALID)
def test_valid_structures_build_and_sum_to_one(shape, make_layers, floatx):
    model = models.SequentialSumProductNetwork([keras.Input(shape), *make_layers()])
    np.testing.assert_allclose(model_log_partition(model, shape, floatx), 0.0, atol=1e-4)


def test_a_leaf_on_a_region_input_reads_one_variable_per_scope():
    # keras.Input([num_vars, num_decomps, 1]) straight into a leaf: decompositions share the scope's variable, as
    # after FlatToRegions, so the decompositions of a RAT-SPN mix at the root.
    model = sequential((3, 2, 1), lambda: rat_spn(3)()[1:])
    randomize_accumulators(model, np.random.default_rng(2))
    tiled = np.repeat(all_states(3, 2, "float32")[:, :, np.newaxis, np.newaxis], 2, axis=2)
    np.testing.assert_allclose(logsumexp(np.asarray(model(tiled), np.float64)), 0.0, atol=1e-5)


def test_a_spatial_layer_after_region_layers_is_rejected():
    with pytest.raises(ValueError, match=r"Layer 'conv' expects a spatial grid .* region layout"):
        sequential(
            (4, 4, 1),
            lambda: [
                layers.IndicatorLeaf(num_components=2),
                layers.ReduceProduct(num_factors=2),
                layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, name="conv"),
            ],
        )


def test_valid_structure_sums_to_one_under_jit():
    model = sequential((2, 2, 1), dgc_spn(1, "full", 2))
    np.testing.assert_allclose(model_log_partition(model, (2, 2, 1), jit=True), 0.0, atol=1e-4)


def test_saved_model_reloads_with_its_scopes_checked(tmp_path):
    model = models.SequentialSumProductNetwork([keras.Input((3,)), *rat_spn(3)()])
    path = str(tmp_path / "spn.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x = states((3,))
    np.testing.assert_allclose(np.asarray(restored(x)), np.asarray(model(x)), rtol=1e-6)
    assert restored.layers[-2].output_scopes.tolist() == [[[1, 1, 1]]]


# --------------------------------------------------------------------------------------------------------------------
# Nested models: Keras computes a nested model's symbolic output without calling its layers, so the layers propagate
# scopes in ``compute_output_spec`` as well


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model``, those of nested models included."""
    found = []
    for layer in model.layers:
        found += flat_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


def nested_log_partition(model: keras.Model, shape: tuple[int, ...]) -> float:
    """``log Z`` of a model with nested models (their sums randomized too), by enumerating every binary state."""
    randomize_accumulators(SimpleNamespace(layers=flat_layers(model)), np.random.default_rng(1))
    return float(logsumexp(np.asarray(model(tensor(states(shape))), np.float64)))


def wrap(kind: str, shape: tuple[int, ...] | None, spn_layers: list[keras.layers.Layer]) -> keras.Model:
    """``spn_layers`` as a model of ``kind``, on ``keras.Input(shape)`` (built lazily without one)."""
    inputs = [] if shape is None else [keras.Input(shape)]
    if kind == "sequential":
        return keras.Sequential([*inputs, *spn_layers])
    if kind == "spn":
        return models.SequentialSumProductNetwork([*inputs, *spn_layers])
    assert shape is not None, "a functional model needs its input"
    out = x = keras.Input(shape)
    for layer in spn_layers:
        out = layer(out)
    return keras.Model(x, out) if kind == "functional" else models.SumProductNetwork(x, out)


NESTED_KINDS = ["sequential", "functional", "spn", "spn_functional"]


@pytest.mark.parametrize("inner_kind", NESTED_KINDS)
@pytest.mark.parametrize("outer_kind", ["sequential", "functional"])
def test_a_root_after_a_nested_model_must_cover_every_variable(outer_kind, inner_kind):
    # Before: it built, and the probabilities over both binary variables summed to 2 (variable 1 padded out).
    inner = wrap(inner_kind, (2,), padded_root()[:-1])
    root = layers.RootSum(return_weighted_child_logits=False)
    if outer_kind == "sequential":
        build = lambda: keras.Sequential([keras.Input((2,)), inner, root])  # noqa: E731
    else:
        x = keras.Input((2,))
        build = lambda: keras.Model(x, root(inner(x)))  # noqa: E731
    with pytest.raises(ValueError, match=r"root_sum\w*' .* all 2 variables .* variables \[1\] are not covered"):
        build()


def overlap_across_the_boundary() -> list[keras.layers.Layer]:
    """Valid up to the first ``Conv2DProduct`` (padding "full": neighbouring cells share pixels); then invalid."""
    return [
        layers.IndicatorLeaf(num_components=2),
        layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
        layers.Local2DSum(num_sums=2),
        layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, depthwise=True, name="inner_product"),
        layers.Local2DSum(num_sums=2),
        layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, depthwise=True),
        layers.SpatialToRegions(),
        layers.RootSum(return_weighted_child_logits=False),
    ]


def test_an_overlap_across_the_boundary_of_a_nested_model_is_rejected():
    # The inner model (on log-probabilities, so unchecked when it was built) takes products of neighbouring cells
    # of the outer model's product and ends with the root: no layer above the nested call checks it, the SPN model
    # does when it is built.
    # Before: pixels occur several times in the products' children, so Z != 1.
    assert abs(eager_log_partition(overlap_across_the_boundary, (2, 2, 1))) > 0.01
    outer, inner = overlap_across_the_boundary()[:2], overlap_across_the_boundary()[2:]
    inner_model = keras.Sequential([keras.Input((3, 3, 2)), *inner])
    match = r"Layer 'inner_product': the product at output cell \(0, 0\) has children with overlapping scopes"
    with pytest.raises(ValueError, match=match):
        models.SequentialSumProductNetwork([keras.Input((2, 2, 1)), *outer, inner_model])
    x = keras.Input((2, 2, 1))
    out = x
    for layer in outer:
        out = layer(out)
    with pytest.raises(ValueError, match=match):
        models.SumProductNetwork(x, inner_model(out))


@pytest.mark.parametrize("lazy", [False, True], ids=["input", "no_input"])
def test_nested_models_of_depth_two_are_checked(lazy):
    shape = None if lazy else (2,)
    bottom, top = padded_root()[:2], padded_root()[2:-1]
    middle = keras.Sequential([wrap("sequential", shape, bottom), *top])
    with pytest.raises(ValueError, match=r"variables \[1\] are not covered"):
        models.SequentialSumProductNetwork(
            [keras.Input((2,)), middle, layers.RootSum(return_weighted_child_logits=False)]
        )


@pytest.mark.parametrize("inner_kind", NESTED_KINDS)
@pytest.mark.parametrize(("shape", "make_layers", "split"), [(*VALID[1].values, 4), (*VALID[3].values, 3)])
def test_valid_structures_split_into_nested_models_build_and_sum_to_one(inner_kind, shape, make_layers, split):
    spn_layers = make_layers()
    bottom = wrap(inner_kind, shape, spn_layers[:split])
    middle = keras.Sequential(spn_layers[split:-1])  # no keras.Input: built when the outer model calls it
    model = keras.Sequential([keras.Input(shape), bottom, middle, spn_layers[-1]])
    np.testing.assert_allclose(nested_log_partition(model, shape), 0.0, atol=1e-4)


class SubclassedInner(keras.Model):
    """An SPN without its root as a subclassed model: Keras traces its symbolic output from ``call``."""

    def __init__(self) -> None:
        super().__init__()
        self.spn_layers = padded_root()[:-1]

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        for layer in self.spn_layers:
            x = layer(x)
        return x


@pytest.mark.parametrize("case", ["subclassed_inner", "root_in_inner_plain_outer"])
def test_what_nested_models_leave_unchecked(case):
    # Documented in docs/errors.md: a subclassed model's symbolic output is traced from its ``call`` on backend
    # tensors, so no scopes come out of it; and in a plain Keras model no layer of ours sees the output of a nested
    # model that holds the root (the SPN models check it when they are built).
    if case == "subclassed_inner":
        model = keras.Sequential(
            [keras.Input((2,)), SubclassedInner(), layers.RootSum(return_weighted_child_logits=False)]
        )
        np.testing.assert_allclose(nested_log_partition(model, (2,)), np.log(2), atol=1e-5)
    else:
        outer, inner = overlap_across_the_boundary()[:2], overlap_across_the_boundary()[2:]
        model = keras.Sequential([keras.Input((2, 2, 1)), *outer, keras.Sequential([keras.Input((3, 3, 2)), *inner])])
        assert abs(nested_log_partition(model, (2, 2, 1))) > 0.01


# --------------------------------------------------------------------------------------------------------------------
# Random structures: accepted exactly when valid, and then normalized


def random_spatial_layers(rng: np.random.Generator, shape: tuple[int, ...]) -> LayerFactory:
    """Random convolutional products (kernel, stride, dilation, padding), each followed by a sum.

    Three in four end with a product whose kernel spans the whole grid left, which covers all of it.
    """
    specs = [
        {
            "kernel_size": int(rng.integers(1, 4)),
            "strides": int(rng.integers(1, 3)),
            "dilations": int(rng.integers(1, 3)),
            "padding": str(rng.choice(["valid", "full", "final"])),
        }
        for _ in range(int(rng.integers(1, 3)))
    ]
    if rng.random() < 0.75:
        grid = (None, *shape)
        for spec in specs:
            grid = layers.Conv2DProduct(depthwise=True, **spec).compute_output_shape(grid)
        if min(grid[1:3]) >= 1:
            specs.append({"kernel_size": list(grid[1:3]), "strides": 1, "dilations": 1, "padding": "valid"})

    def make_layers() -> list[keras.layers.Layer]:
        spatial = []
        for spec in specs:
            spatial += [layers.Conv2DProduct(depthwise=True, **spec), layers.Local2DSum(num_sums=2)]
        return [
            layers.IndicatorLeaf(num_components=2),
            *spatial,
            layers.SpatialToRegions(),
            layers.RootSum(return_weighted_child_logits=False),
        ]

    return make_layers


def test_random_spatial_structures_are_accepted_only_when_they_sum_to_one():
    rng = np.random.default_rng(7)
    accepted, rejected = 0, 0
    for _ in range(40):
        shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4)), 1)
        make_layers = random_spatial_layers(rng, shape)
        try:
            model = sequential(shape, make_layers)
        except ValueError as error:
            message = str(error)
            if "not covered" in message:  # a root over counts <= 1: each missing binary pixel doubles Z
                missing = re.search(r"variables \[([\d, ]*)\] are not covered", message)
                assert missing is not None
                num_missing = len(missing.group(1).split(","))
                np.testing.assert_allclose(eager_log_partition(make_layers, shape), num_missing * np.log(2), atol=1e-4)
            else:
                assert re.search(r"overlapping scopes|covers a different scope|does not fit", message), message
            rejected += 1
            continue
        np.testing.assert_allclose(model_log_partition(model, shape), 0.0, atol=1e-4)
        accepted += 1
    assert accepted >= 3 and rejected >= 3, (accepted, rejected)


def test_random_region_permutations_are_accepted_exactly_when_every_decomposition_covers_all_variables():
    rng = np.random.default_rng(3)
    num_vars = 3
    outcomes = set()
    for _ in range(12):
        perms = np.full((2, 4), -1)
        for decomp in range(2):
            used = rng.permutation(num_vars)[: int(rng.integers(2, num_vars + 1))]
            perms[decomp, rng.choice(4, size=len(used), replace=False)] = used
        covers_all = all(set(row[row >= 0]) == set(range(num_vars)) for row in perms)

        def make_layers(perms: np.ndarray = perms) -> list[keras.layers.Layer]:
            return [
                layers.FlatToRegions(num_decomps=2),
                layers.IndicatorLeaf(num_components=2),
                layers.PermuteAndPadScopes(perms),
                layers.DenseProduct(num_factors=2),
                layers.DenseSum(num_sums=2),
                layers.ReduceProduct(num_factors=2),
                layers.Undecompose(),
                layers.RootSum(return_weighted_child_logits=False),
            ]

        try:
            model = sequential((num_vars,), make_layers)
        except ValueError as error:
            assert not covers_all, str(error)
            outcomes.add("rejected")
            continue
        assert covers_all
        np.testing.assert_allclose(model_log_partition(model, (num_vars,)), 0.0, atol=1e-5)
        outcomes.add("accepted")
    assert outcomes == {"accepted", "rejected"}
