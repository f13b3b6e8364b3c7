"""hclt / LatentTreeSum against an independent brute force over all latent states, and their training."""

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from libspn_keras import layers, losses, metrics, models, optimizers
from libspn_keras.datasets import load_debd
from libspn_keras.layers._scope_tracking import Scopes
from libspn_keras.structure import ChowLiuTree, chow_liu_tree, hclt
from tests.backend_utils import grad, jit, to_numpy
from tests.sum_op_cases import OPS

REPO = Path(__file__).resolve().parents[2]
DEBD_DIRS = [REPO.parent / "shared" / "data" / "debd", REPO.parent.parent / "shared" / "data" / "debd"]

#: Trees as parent lists (-1: root): a pair, a chain rooted at an end, a star, and unbalanced trees.
TREES = {
    "pair": [-1, 0],
    "chain": [-1, 0, 1, 2, 3],
    "star": [2, 2, -1, 2, 2],
    "unbalanced": [3, 0, -1, 2, 3, 4],
    "branches": [-1, 0, 0, 1, 1, 2],
}


def tree_of(parents, num_states):
    """A ChowLiuTree with the given parents (the other fields are not read by hclt)."""
    parents = np.asarray(parents)
    edges = [(int(p), v) for v, p in enumerate(parents) if p >= 0]
    root = int(np.flatnonzero(parents < 0)[0])
    n = len(parents)
    return ChowLiuTree(edges, root, parents, np.zeros((n, n)), np.zeros((n, num_states, num_states)))


def weights_of(layer, axis):
    values = np.asarray(layer.accumulators, dtype=np.float64)
    if layer.logspace_accumulators:
        return softmax(values, axis=axis)
    return values / values.sum(axis=axis, keepdims=True)


def root_prior(root, num_components=1):
    """p(component, z_root = k) ``[num_components, num_latents]``: the RootSum's accumulators, of the original
    layout ``[1, 1, num_components * num_latents, 1]`` (component-major), normalized."""
    assert tuple(root.accumulators.shape) == (1, 1, root.accumulators.shape[2], 1)
    return weights_of(root, axis=-2)[0, 0, :, 0].reshape(num_components, -1)


def brute_force_log_likelihood(spn, x, tree_accumulators=None):
    """log sum_m sum_z p(m, z_root) prod_c p(z_c | z_parent, m) prod_i p(x_i | z_i, m), enumerating every
    component m and every z (NaN: marginalized)."""
    _, _, leaf_sum, tree_sum, root = spn.layers
    num_components = leaf_sum.accumulators.shape[1]
    leaves = weights_of(leaf_sum, axis=-2)  # [n, M, S, K]: p(x_i = s | z_i = k, m)
    # [E, (M,) K child, K parent]: p(z_c = k' | z_parent = k, m)
    custom = tree_accumulators is not None
    transitions = softmax(tree_accumulators, axis=-2) if custom else weights_of(tree_sum, axis=-2)
    transitions = transitions.reshape(len(tree_sum.edge_children), num_components, *transitions.shape[-2:])
    priors = root_prior(root, num_components)
    num_vars, _, _, num_latents = leaves.shape
    parents = tree_sum.parents
    z = np.array(list(itertools.product(range(num_latents), repeat=num_vars)))  # [Z, n]
    per_component = []
    for m in range(num_components):
        log_joint = np.log(priors[m][z[:, parents.index(-1)]])
        for edge, child in enumerate(tree_sum.edge_children):
            log_joint = log_joint + np.log(transitions[edge, m][z[:, child], z[:, parents[child]]])
        rows = []
        for row in x:
            log_p = log_joint.copy()
            for i, value in enumerate(row):
                if not np.isnan(value):
                    log_p += np.log(leaves[i, m, int(value), z[:, i]])
            rows.append(logsumexp(log_p))
        per_component.append(rows)
    return logsumexp(np.array(per_component), axis=0)


def randomize(spn, seed):
    rng = np.random.default_rng(seed)
    for layer in spn.layers:
        if isinstance(layer, layers.BaseSum):
            shape = tuple(layer.accumulators.shape)
            value = rng.normal(size=shape) if layer.logspace_accumulators else rng.uniform(0.05, 2.0, shape)
            layer.accumulators.assign(value.astype(layer.accumulators.dtype))


def all_states(num_vars, num_states):
    return np.array(list(itertools.product(range(num_states), repeat=num_vars)), dtype=keras.config.floatx())


@pytest.mark.parametrize("name", sorted(TREES))
def test_log_likelihood_matches_brute_force_with_missing_values(name, floatx):
    parents, num_states, num_latents = TREES[name], 3, 2
    op = "grad" if len(parents) % 2 else "em"  # log-space and linear accumulators; every op: the test below
    spn = hclt(np.zeros((1, len(parents))), num_latents, tree=tree_of(parents, num_states), sum_op=OPS[op]())
    randomize(spn, seed=len(parents))
    rng = np.random.default_rng(0)
    x = rng.integers(0, num_states, (7, len(parents))).astype(floatx)
    x[rng.random(x.shape) < 0.3] = np.nan
    x[0] = np.nan  # everything missing: log p = 0
    expected = brute_force_log_likelihood(spn, x)
    rtol = 1e-5 if floatx == "float32" else 1e-12
    np.testing.assert_allclose(np.asarray(spn(x))[:, 0], expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(np.asarray(spn.predict(x, verbose=0))[:, 0], expected, rtol=rtol, atol=rtol)
    jitted = jit(spn)
    np.testing.assert_allclose(np.asarray(jitted(x))[:, 0], expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", ["chain", "star", "unbalanced", "branches"])
def test_gradient_matches_finite_differences_of_the_brute_force(name, float64):
    parents = TREES[name]
    spn = hclt(np.zeros((1, len(parents))), 2, tree=tree_of(parents, 2), sum_op=OPS["grad"]())
    randomize(spn, seed=1)
    tree_sum = spn.layers[3]
    x = np.random.default_rng(2).integers(0, 2, (5, len(parents))).astype("float64")
    x[1, 0] = np.nan
    (_, gradient) = grad(spn, x, variables=[tree_sum.accumulators])
    gradient = to_numpy(gradient)
    base = np.asarray(tree_sum.accumulators)
    expected = np.zeros_like(base)
    step = 1e-6
    for index in np.ndindex(base.shape):
        shift = np.zeros_like(base)
        shift[index] = step
        up = brute_force_log_likelihood(spn, x, base + shift).sum()
        down = brute_force_log_likelihood(spn, x, base - shift).sum()
        expected[index] = (up - down) / (2 * step)
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", sorted(OPS))
def test_normalized_over_all_joint_states(op, floatx):
    tree = chow_liu_tree(np.random.default_rng(3).integers(0, 3, (30, 5)))
    spn = hclt(np.zeros((1, 5)), 3, tree=tree, sum_op=OPS[op]())
    randomize(spn, seed=4)
    states = all_states(5, 3)
    log_p = np.asarray(spn(states), dtype=np.float64)[:, 0]
    np.testing.assert_allclose(logsumexp(log_p), 0.0, atol=1e-5 if floatx == "float32" else 1e-12)
    np.testing.assert_allclose(
        log_p, brute_force_log_likelihood(spn, states), rtol=1e-5 if floatx == "float32" else 1e-12
    )


@pytest.mark.parametrize("name", ["chain", "branches"])
def test_mixture_of_hclts_matches_brute_force_and_is_normalized(name, floatx):
    parents, num_states, num_latents, num_components = TREES[name], 2, 2, 3
    spn = hclt(
        np.zeros((1, len(parents))),
        num_latents,
        tree=tree_of(parents, num_states),
        sum_op=OPS["em"](),
        num_components=num_components,
    )
    assert tuple(spn.layers[3].accumulators.shape) == (len(parents) - 1, num_components, num_latents, num_latents)
    randomize(spn, seed=5)
    states = all_states(len(parents), num_states)
    x = np.concatenate([states, states[:4]])
    x[-4:, [0, 2]] = np.nan  # marginalized
    expected = brute_force_log_likelihood(spn, x)
    rtol = 1e-5 if floatx == "float32" else 1e-12
    np.testing.assert_allclose(np.asarray(spn(x))[:, 0], expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(logsumexp(expected[: len(states)]), 0.0, atol=rtol)
    # The components are not copies of one another: each has its own weights.
    transitions = np.asarray(spn.layers[3].accumulators)
    assert not np.allclose(transitions[:, 0], transitions[:, 1])


def test_mixture_of_hclts_trains_by_em_and_round_trips(tmp_path):
    data = np.random.default_rng(6).integers(0, 2, (200, 6)).astype("float32")
    data[:, 3] = data[:, 0]  # some structure to learn
    spn = hclt(data, 3, sum_op=OPS["em"](), num_components=2)
    before, after = fit_and_score(
        spn, data, optimizers.OnlineExpectationMaximization(0.2, normalized_update=True), 3, 50
    )
    assert after > before
    path = tmp_path / "mixture.keras"
    spn.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(data[:5])), np.asarray(spn(data[:5])), rtol=1e-6)


def fit_and_score(spn, data, optimizer, epochs, batch_size, jit_compile=False):
    spn.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood(), jit_compile=jit_compile)
    before = float(np.mean(spn.predict(data, verbose=0)))
    spn.fit(data, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
    return before, float(np.mean(spn.predict(data, verbose=0)))


@pytest.mark.parametrize(("op", "jit_compile"), [*((op, False) for op in sorted(OPS)), ("em", True)])
def test_fit_with_every_sum_op_improves_and_stays_normalized(op, jit_compile):
    rng = np.random.default_rng(5)
    hidden = rng.integers(0, 2, (400, 1))
    data = (hidden ^ (rng.random((400, 5)) < 0.15)).astype("float32")  # 5 noisy copies of one hidden bit
    spn = hclt(data, 3, sum_op=OPS[op]())
    optimizer = (
        keras.optimizers.Adam(0.05)
        if op == "grad"
        else optimizers.OnlineExpectationMaximization(learning_rate=0.5, normalized_update=True)
    )
    before, after = fit_and_score(spn, data, optimizer, epochs=4, batch_size=100, jit_compile=jit_compile)
    assert after > before + 0.1
    np.testing.assert_allclose(logsumexp(np.asarray(spn(all_states(5, 2)), np.float64)), 0.0, atol=1e-5)


def test_full_batch_em_is_monotone(float64):
    rng = np.random.default_rng(6)
    data = rng.integers(0, 2, (200, 6))
    data[:, 3] = data[:, 0] ^ (rng.random(200) < 0.2)
    data = data.astype("float64")
    spn = hclt(data, 3, sum_op=OPS["em"]())
    spn.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=1.0), loss=losses.NegativeLogLikelihood()
    )
    scores = [float(np.mean(spn(data)))]
    for _ in range(6):
        spn.fit(data, epochs=1, batch_size=len(data), verbose=0, shuffle=False)
        scores.append(float(np.mean(spn(data))))
    assert np.all(np.diff(scores) >= -1e-10), scores
    assert scores[-1] > scores[0] + 0.05


def test_config_round_trip_and_keras_file(tmp_path):
    data = np.random.default_rng(7).integers(0, 2, (50, 6)).astype("float32")
    spn = hclt(data, 4, sum_op=OPS["em"]())
    tree_sum = spn.layers[3]
    clone = layers.LatentTreeSum.from_config(tree_sum.get_config())
    assert clone.parents == tree_sum.parents and clone.get_config() == tree_sum.get_config()
    assert isinstance(clone.sum_op, type(tree_sum.sum_op)) and clone.logspace_accumulators is False
    x = data.copy()
    x[0, 2] = np.nan
    path = tmp_path / "hclt.keras"
    spn.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, models.SequentialSumProductNetwork)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(spn(x)), rtol=1e-6)
    assert tree_sum.compute_output_shape((None, 6, 1, 4)) == (None, 1, 1, 4)


def test_sampling_follows_the_model():
    tree = chow_liu_tree(np.random.default_rng(8).integers(0, 2, (40, 3)))
    spn = hclt(np.zeros((1, 3)), 2, tree=tree, sum_op=OPS["em"]())
    randomize(spn, seed=9)
    states = all_states(3, 2)
    probabilities = np.exp(brute_force_log_likelihood(spn, states))
    samples = np.asarray(spn.sample(20000, seed=0))
    codes = samples.astype(int) @ np.array([4, 2, 1])
    frequencies = np.bincount(codes, minlength=8) / len(samples)
    np.testing.assert_allclose(frequencies, probabilities, atol=0.015)


def test_layering_is_one_weighted_sum_per_height():
    chain = layers.LatentTreeSum(parents=[-1, *range(99)])  # rooted at an end: height 99
    centered = layers.LatentTreeSum(parents=chow_liu_tree_chain_center(100))
    balanced = layers.LatentTreeSum(parents=[-1, *((v - 1) // 2 for v in range(1, 100))])
    assert (chain.height, centered.height, balanced.height) == (99, 50, 6)
    for layer in (chain, balanced):
        layer.build((None, 100, 1, 2))
        assert tuple(layer.accumulators.shape) == (99, 2, 2)  # one [K, K] block per edge, no padding
        assert sorted(layer.edge_children) == sorted(set(range(100)) - {layer.parents.index(-1)})


def chow_liu_tree_chain_center(num_vars):
    data = np.random.default_rng(0).integers(0, 2, (2000, 1)) * np.ones((1, num_vars), dtype=int)
    flips = np.random.default_rng(1).random((2000, num_vars)) < 0.1
    data = np.cumsum(flips, axis=1) % 2 ^ data  # a Markov chain: each variable is the previous one, 10% flipped
    return chow_liu_tree(data).parents.tolist()


@pytest.mark.parametrize(
    ("parents", "error", "message"),
    [
        ([-1], ValueError, "at least two variables"),
        ([-1, -1], ValueError, "exactly one root"),
        ([1, 0], ValueError, "exactly one root"),
        ([-1, 2, 1], ValueError, r"Variables \[1, 2\] lie on a cycle"),
        ([-1, 5], ValueError, r"in \[0, 2\) or -1"),
        ([-1, 0.5], ValueError, r"parents=\[-1, 0.5\]"),
        ("ab", TypeError, "parents='ab'"),
    ],
)
def test_latent_tree_sum_rejects_bad_parents(parents, error, message):
    with pytest.raises(error, match=f"LatentTreeSum.*{message}"):
        layers.LatentTreeSum(parents=parents)


def test_latent_tree_sum_rejects_inputs_that_do_not_match():
    layer = layers.LatentTreeSum(parents=[-1, 0, 0], name="tree")
    with pytest.raises(ValueError, match=r"Layer 'tree'.*num_vars=3.*input_shape=\(2, 4, 1, 2\)"):
        layer(np.zeros((2, 4, 1, 2), "float32"))
    with pytest.raises(ValueError, match=r"Layer 'tree' expects inputs of rank 4"):
        layers.LatentTreeSum(parents=[-1, 0, 0], name="tree")(np.zeros((2, 3, 2), "float32"))
    with pytest.raises(TypeError, match=r"Layer 'tree' expects floating-point.*int32"):
        layers.LatentTreeSum(parents=[-1, 0, 0], name="tree")(np.zeros((2, 3, 1, 2), "int32"))


def test_latent_tree_sum_tracks_scopes_so_an_uncovered_variable_fails_at_build():
    with pytest.raises(ValueError, match=r"Layer 'root' is the root of the SPN.*variables \[2\] are not covered"):
        keras.Sequential(
            [
                keras.Input((3,)),
                layers.FlatToRegions(num_decomps=2),
                layers.IndicatorLeaf(num_components=2),
                layers.PermuteAndPadScopes(permutations=[[0, 1, 2], [0, 1, -1]]),  # pads variable 2 away
                layers.DenseSum(num_sums=2),
                layers.LatentTreeSum(parents=[-1, 0, 0]),
                layers.RootSum(return_weighted_child_logits=False, name="root"),
            ]
        )


def test_latent_tree_sum_rejects_overlapping_scopes():
    # No region layer makes overlapping cells (PermuteAndPadScopes rejects a repeated scope), so the scopes are
    # handed in directly: variable 1 is in the scopes of tree nodes 0 and 2 of decomposition 1.
    counts = np.zeros((3, 2, 3), dtype=int)
    counts[[0, 1, 2], 0, [0, 1, 2]] = 1
    counts[[0, 1, 2], 1, [1, 0, 1]] = 1
    layer = layers.LatentTreeSum(parents=[-1, 0, 0], name="tree")
    valid = layer._propagate_scopes(Scopes(counts[:, :1], True, origin=0, layout="region"), (None, 3, 1, 2))
    np.testing.assert_array_equal(valid.counts, [[[1, 1, 1]]])
    with pytest.raises(ValueError, match=r"Layer 'tree': the products at scope 0, decomposition 1 .*\[1\]"):
        layer._propagate_scopes(Scopes(counts, True, origin=0, layout="region"), (None, 3, 2, 2))


def test_hclt_rejects_bad_arguments():
    data = np.zeros((4, 3), dtype=int)
    with pytest.raises(ValueError, match="hclt expects num_latents to be a positive integer. Received: num_latents=0"):
        hclt(data, 0)
    with pytest.raises(ValueError, match="hclt expects num_components to be a positive integer. Received: num_comp"):
        hclt(data, 2, num_components=0)
    with pytest.raises(ValueError, match="hclt expects data with at least two variables.*1 data columns"):
        hclt(np.zeros((4, 1), dtype=int), 2)
    with pytest.raises(ValueError, match="3 data columns, a tree over 2 variables"):
        hclt(data, 2, tree=tree_of([-1, 0], 2))
    with pytest.raises(TypeError, match="hclt expects tree to be a ChowLiuTree"):
        hclt(data, 2, tree=[-1, 0, 0])
    with pytest.raises(ValueError, match="chow_liu_tree expects complete data"):
        hclt(np.array([[0.0, np.nan, 1.0]]), 2)


def test_em_on_nltcs_beats_the_chow_liu_tree():
    directory = next((path for path in DEBD_DIRS if (path / "nltcs.train.data.gz").exists()), None)
    if directory is None:
        pytest.skip(f"DEBD nltcs not found in {[str(path) for path in DEBD_DIRS]}")
    data = load_debd("nltcs", directory)
    train, test = data["train"].astype("float32"), data["test"].astype("float32")
    tree = chow_liu_tree(data["train"], alpha=1.0)
    tree_test = float(np.mean(tree.log_likelihood(data["test"])))
    spn = hclt(train, 8, tree=tree, sum_op=OPS["em"]())
    spn.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=0.1, normalized_update=True),
        loss=losses.NegativeLogLikelihood(),
        metrics=[metrics.LogLikelihood()],
    )
    history = spn.fit(train, epochs=4, batch_size=256, verbose=0)
    train_llh = history.history["llh"]
    assert train_llh[-1] > train_llh[0]
    hclt_test = float(np.mean(spn.predict(test, batch_size=2000, verbose=0)))
    assert hclt_test > tree_test + 0.3, (hclt_test, tree_test)


def test_mpe_completion_maximizes_the_joint_over_latents_and_missing_values():
    tree = tree_of(TREES["unbalanced"], 3)
    spn = hclt(np.zeros((1, 6)), 2, tree=tree, sum_op=OPS["em"]())
    randomize(spn, seed=11)
    rng = np.random.default_rng(12)
    x = rng.integers(0, 3, (4, 6)).astype("float32")
    x[rng.random(x.shape) < 0.5] = np.nan
    completed = np.asarray(spn.mpe(x))
    _, _, leaf_sum, tree_sum, root = spn.layers
    leaf = weights_of(leaf_sum, axis=-2)[:, 0]
    transitions, prior = weights_of(tree_sum, axis=1), root_prior(root)[0]
    for row, result in zip(x, completed, strict=True):
        best, best_value = None, -np.inf
        missing = np.flatnonzero(np.isnan(row))
        for fill in itertools.product(range(3), repeat=len(missing)):
            full = row.copy()
            full[missing] = fill
            for z in itertools.product(range(2), repeat=6):  # max over latents: the max-product path
                value = np.log(prior[z[tree.root]]) + sum(np.log(leaf[i, int(full[i]), z[i]]) for i in range(6))
                value += sum(
                    np.log(transitions[e][z[c], z[tree_sum.parents[c]]]) for e, c in enumerate(tree_sum.edge_children)
                )
                if value > best_value:
                    best, best_value = full.copy(), value
        np.testing.assert_array_equal(result, best)
