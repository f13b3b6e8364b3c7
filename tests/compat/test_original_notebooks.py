"""The original LibSPN Keras tutorial notebooks, ported with only the edits Keras 3 forces, at tiny sizes.

Each test holds one notebook of the original 0.6.0 release (``examples/notebooks/*.ipynb`` of
pronobis/libspn-keras): its model code cell for cell, with the sizes shrunk (fewer sums, components,
decompositions, images and epochs) so that it runs in seconds, and with MNIST (``tensorflow_datasets``, not
available offline) replaced by the 8x8 digits of scikit-learn scaled up to 28x28. The only edits beyond sizes and
data are the ones listed in ``docs/differences.md`` (``save_weights`` needs ``.weights.h5``). A test fails where a
name, default or behaviour differs from the original's in a way that stops the notebook or changes what it shows.
"""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf  # a default dependency: installed with either backend

import libspn_keras as spnk

# The original notebooks, replayed as written: TensorFlow code (tf.data pipelines, tf.keras, tf.random).
pytestmark = pytest.mark.requires_tensorflow

# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
SHARED_DATA = Path(
    os.environ.get("LIBSPN_KERAS_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
)


@pytest.fixture(autouse=True)
def _restore_global_defaults():
    """The notebooks set global defaults; restore them so that later tests see the library's own."""
    saved = (
        spnk.get_default_sum_op(),
        spnk.get_default_accumulator_initializer(),
        spnk.get_default_linear_accumulators_constraint(),
        spnk.get_default_logspace_accumulators_constraint(),
    )
    yield
    spnk.set_default_sum_op(saved[0])
    spnk.set_default_accumulator_initializer(saved[1])
    spnk.set_default_linear_accumulators_constraint(saved[2])
    spnk.set_default_logspace_accumulators_constraint(saved[3])


def digits_28x28(num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in for MNIST: scikit-learn's 8x8 digits scaled to 24x24 and padded to ``[n, 28, 28, 1]`` (0..255)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images[:num_images], np.ones((3, 3))) * (255.0 / 16.0)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return images[..., None].astype(np.float32), digits.target[:num_images].astype(np.int64)


def test_benchmark_with_einsum_networks():
    """'Benchmark With Einsum Networks': a RAT-SPN over binary data trained by online EM, ending in a RootSum.

    The notebook's RAT-SPN ends ``DenseSum(num_sums=1) -> RootSum`` over all repetitions (no ``Undecompose``), takes
    int32 input through ``FlatToRegions(..., input_shape=[num_vars], dtype=tf.int32)`` and initializes sums with
    ``RandomUniform()`` (negative values, made valid by the accumulator constraint).
    """
    depth, num_repetitions, num_input_distributions, num_sums, batch_size = 2, 3, 4, 3, 50
    file = SHARED_DATA / "debd" / "nltcs.train.data.gz"
    if not file.is_file():
        pytest.skip(f"DEBD nltcs not found at {file}")
    with gzip.open(file) as handle:
        train_x_orig = np.loadtxt(handle, delimiter=",", dtype=np.int32)[:500].astype(np.float32)
    tf.random.set_seed(1234)

    def build_ratspn(num_vars, depth):
        spnk.set_default_sum_op(spnk.SumOpEMBackprop())
        spnk.set_default_accumulator_initializer(tf.keras.initializers.RandomUniform())
        sum_product_stack = [
            spnk.layers.FlatToRegions(num_decomps=num_repetitions, input_shape=[num_vars], dtype=tf.int32),
            spnk.layers.IndicatorLeaf(num_components=2),
            spnk.layers.DenseSum(num_sums=num_input_distributions),
            spnk.layers.PermuteAndPadScopesRandom(),
            spnk.layers.ReduceProduct(num_factors=int(np.ceil(num_vars / 2**depth))),
        ]
        for i in range(depth):
            sum_product_stack += [
                spnk.layers.DenseProduct(num_factors=2),
                spnk.layers.DenseSum(num_sums=num_sums if i < depth - 1 else 1),
            ]
        sum_product_stack.append(spnk.layers.RootSum(return_weighted_child_logits=False))
        return spnk.models.SequentialSumProductNetwork(sum_product_stack)

    train_ds = tf.data.Dataset.from_tensor_slices((train_x_orig,)).shuffle(1000).batch(batch_size)
    spn = build_ratspn(train_x_orig.shape[1], depth=depth)
    spn.compile(
        loss=spnk.losses.NegativeLogLikelihood(),
        metrics=[spnk.metrics.LogLikelihood()],
        optimizer=spnk.optimizers.OnlineExpectationMaximization(learning_rate=0.05),
    )
    spn.summary()
    before = spn.evaluate(train_ds, verbose=0, return_dict=True)
    spn.fit(train_ds, epochs=2, verbose=0)
    after = spn.evaluate(train_ds, verbose=0, return_dict=True)
    assert np.isfinite(after["loss"])
    assert after["loss"] < before["loss"] - 0.1, (before, after)
    # A normalized model: the likelihoods of all 2^16 states would sum to 1; here at least each is a probability.
    assert np.all(np.asarray(spn.predict(train_x_orig[:20], verbose=0)) <= 0.0)


def dgcspn_classification_stack(normalize, num_sums: int) -> list[keras.layers.Layer]:
    """The 'DGC-SPN Image Classification' notebook's stack with every ``num_sums`` set to ``num_sums``."""
    conv = spnk.layers.Conv2DProduct
    return [
        normalize,
        spnk.layers.NormalLeaf(
            num_components=4,
            location_trainable=True,
            location_initializer=keras.initializers.TruncatedNormal(stddev=1.0, mean=0.0),
        ),
        conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
        spnk.layers.Local2DSum(num_sums=num_sums),
        conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
        spnk.layers.Local2DSum(num_sums=num_sums),
        conv(depthwise=True, strides=[1, 1], dilations=[1, 1], kernel_size=[2, 2], padding="full"),
        spnk.layers.Local2DSum(num_sums=num_sums),
        conv(depthwise=True, strides=[1, 1], dilations=[2, 2], kernel_size=[2, 2], padding="full"),
        spnk.layers.Local2DSum(num_sums=num_sums),
        conv(depthwise=True, strides=[1, 1], dilations=[4, 4], kernel_size=[2, 2], padding="full"),
        spnk.layers.Local2DSum(num_sums=num_sums),
        conv(depthwise=True, strides=[1, 1], dilations=[8, 8], kernel_size=[2, 2], padding="final"),
        spnk.layers.SpatialToRegions(),
        spnk.layers.DenseSum(num_sums=10),
        spnk.layers.RootSum(return_weighted_child_logits=True),
    ]


def test_dgcspn_image_classification(tmp_path):
    """'DGC-SPN Image Classification': a DGC-SPN in ``keras.Sequential`` trained by Adam on class logits."""
    print(spnk.get_default_sum_op())
    spnk.set_default_sum_op(spnk.SumOpGradBackprop())
    spnk.set_default_accumulator_initializer(keras.initializers.TruncatedNormal(stddev=0.5, mean=1.0))
    images, labels = digits_28x28(96)
    batch_size = 32
    normalize = spnk.layers.NormalizeStandardScore(axes=spnk.layers.NormalizeAxes.GLOBAL, input_shape=(28, 28, 1))
    normalize.adapt(tf.data.Dataset.from_tensor_slices(images).batch(batch_size))
    sum_product_network = keras.Sequential(dgcspn_classification_stack(normalize, num_sums=4))
    sum_product_network.summary()
    train = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(1024).batch(batch_size)
    sum_product_network.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        optimizer=keras.optimizers.Adam(learning_rate=1e-2),
    )
    history = sum_product_network.fit(train, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    sum_product_network.evaluate(train, verbose=0)
    # Keras 3: save_weights needs the '.weights.h5' suffix (docs/differences.md).
    sum_product_network.save_weights(str(tmp_path / "spn_weights.weights.h5"))
    copy = keras.Sequential(dgcspn_classification_stack(normalize, num_sums=4))
    copy.build((None, 28, 28, 1))
    copy.load_weights(str(tmp_path / "spn_weights.weights.h5"))
    np.testing.assert_allclose(copy.predict(images[:8], verbose=0), sum_product_network.predict(images[:8], verbose=0))


def olivetti(num_images: int, size: int) -> np.ndarray:
    """The first ``num_images`` Olivetti faces, ``[n, size, size, 1]`` float32 (0..255), downsampled by striding."""
    from scipy.io import loadmat

    file = SHARED_DATA / "olivetti" / "olivettifaces.mat"
    if not file.is_file():
        pytest.skip(f"Olivetti faces not found at {file}")
    faces = loadmat(file)["faces"].T.reshape(400, 64, 64).transpose(0, 2, 1)
    step = 64 // size
    return faces[:num_images, ::step, ::step, None].astype(np.float32)


def test_dgcspn_image_completion():
    """'DGC-SPN Image Completion': EM training, then completion by a gradient twin with ``infer_no_evidence``."""
    size = 16
    x = olivetti(40, size)
    train_x, test_x = x[:-10], x[-10:]
    train_x_ds = tf.data.Dataset.from_tensor_slices((train_x,)).batch(32)
    spnk.set_default_accumulator_initializer(spnk.initializers.Dirichlet(alpha=0.1))
    normalize = spnk.layers.NormalizeStandardScore(axes=spnk.layers.NormalizeAxes.GLOBAL, input_shape=(size, size, 1))
    normalize.adapt(train_x_ds)
    train_x_normalized = train_x_ds.map(normalize)
    location_initializer = spnk.initializers.PoonDomingosMeanOfQuantileSplit(data=train_x_normalized)

    def define_spn(sum_op, infer_no_evidence=False):
        spnk.set_default_sum_op(sum_op)
        spnk.set_default_linear_accumulators_constraint(spnk.constraints.GreaterEqualEpsilon())
        conv = spnk.layers.Conv2DProduct
        stack = [
            spnk.layers.NormalizeStandardScore(input_shape=(size, size, 1)),
            spnk.layers.NormalLeaf(
                num_components=4,
                location_trainable=True,
                location_initializer=location_initializer,
                use_accumulators=True,
                scale_trainable=False,
            ),
            tf.keras.layers.Dropout(rate=0.1),
            conv(depthwise=True, strides=[1, 1], dilations=[1, 1], kernel_size=[2, 2], padding="full"),
            spnk.layers.Local2DSum(num_sums=2),
            conv(depthwise=False, strides=[1, 1], dilations=[2, 2], kernel_size=[2, 2], padding="full"),
            spnk.layers.Local2DSum(num_sums=2),
            conv(depthwise=False, strides=[1, 1], dilations=[4, 4], kernel_size=[2, 2], padding="full"),
            spnk.layers.Local2DSum(num_sums=2),
            conv(depthwise=False, strides=[1, 1], dilations=[8, 8], kernel_size=[2, 2], padding="full"),
            spnk.layers.Local2DSum(num_sums=2),
            conv(depthwise=False, strides=[1, 1], dilations=[16, 16], kernel_size=[2, 2], padding="final"),
            spnk.layers.LogDropout(rate=0.1),
            spnk.layers.SpatialToRegions(),
            spnk.layers.RootSum(return_weighted_child_logits=False),
        ]
        return spnk.models.SequentialSumProductNetwork(stack, infer_no_evidence=infer_no_evidence)

    sum_product_network = define_spn(sum_op=spnk.SumOpEMBackprop())
    sum_product_network.summary()
    train_data = tf.data.Dataset.from_tensor_slices((train_x,)).shuffle(350).batch(10)
    test_data = tf.data.Dataset.from_tensor_slices((test_x,)).batch(10)
    sum_product_network.compile(
        optimizer=spnk.optimizers.OnlineExpectationMaximization(learning_rate=0.05),
        loss=spnk.losses.NegativeLogLikelihood(),
        metrics=[spnk.metrics.LogLikelihood()],
    )
    history = sum_product_network.fit(train_data, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    sum_product_network.evaluate(test_data, verbose=0)

    completion_model = define_spn(sum_op=spnk.SumOpGradBackprop(logspace_accumulators=False), infer_no_evidence=True)
    completion_model.set_weights(sum_product_network.get_weights())
    completion_model.compile(metrics=[keras.metrics.MeanSquaredError()])
    half = size // 2
    evidence_mask = np.concatenate([np.zeros([10, half, size, 1]), np.ones([10, half, size, 1])], axis=1)
    evidence_mask = evidence_mask.astype(bool)  # the notebook's np.bool is gone from numpy
    completion_model.evaluate([test_x, evidence_mask], test_x, verbose=0)
    completion_out = np.asarray(completion_model.predict([test_x, evidence_mask], verbose=0))
    assert completion_out.shape == test_x.shape
    # Observed pixels come back as they were; the completed half lies within the data's range and is no copy of
    # the (unseen) truth.
    np.testing.assert_allclose(completion_out[:, half:], test_x[:, half:], rtol=1e-4, atol=1e-2)
    assert np.all(np.isfinite(completion_out))
    assert completion_out[:, :half].min() > train_x.min() - 3 * train_x.std()
    assert completion_out[:, :half].max() < train_x.max() + 3 * train_x.std()


def test_randomly_structured_spns_image_classification():
    """'Randomly Structured SPNs Image Classification': a RAT-SPN over flattened images trained by Adam."""
    spnk.set_default_sum_op(spnk.SumOpGradBackprop())
    spnk.set_default_accumulator_initializer(keras.initializers.TruncatedNormal(stddev=0.5, mean=1.0))
    sum_product_stack = [
        spnk.layers.ReduceProduct(num_factors=8),
        spnk.layers.DenseSum(num_sums=4),
        spnk.layers.ReduceProduct(num_factors=8),
        spnk.layers.DenseSum(num_sums=4),
        spnk.layers.DenseProduct(num_factors=2),
        spnk.layers.DenseSum(num_sums=4),
        spnk.layers.DenseProduct(num_factors=2),
        spnk.layers.DenseSum(num_sums=4),
        spnk.layers.DenseProduct(num_factors=2),
        spnk.layers.DenseSum(num_sums=4),
        spnk.layers.DenseProduct(num_factors=2),
        spnk.layers.DenseSum(num_sums=1),
        spnk.layers.Undecompose(),
        spnk.layers.RootSum(return_weighted_child_logits=True),
    ]
    factors = [
        layer.num_factors
        for layer in sum_product_stack
        if isinstance(layer, spnk.layers.DenseProduct | spnk.layers.ReduceProduct)
    ]
    pre_stack = [
        spnk.layers.NormalizeStandardScore(input_shape=[784]),
        spnk.layers.FlatToRegions(num_decomps=10),  # one decomposition per class, as in the notebook
        spnk.layers.NormalLeaf(
            num_components=4, location_initializer=keras.initializers.TruncatedNormal(stddev=0.5, mean=0.0)
        ),
        spnk.layers.PermuteAndPadScopesRandom(factors=factors),
    ]
    rat_spn = keras.Sequential(pre_stack + sum_product_stack)
    rat_spn.summary()
    images, labels = digits_28x28(128)
    train = tf.data.Dataset.from_tensor_slices((images.reshape(-1, 784), labels)).shuffle(1000).batch(32)
    rat_spn.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        optimizer=keras.optimizers.Adam(learning_rate=1e-2),
    )
    history = rat_spn.fit(train, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    rat_spn.evaluate(train, verbose=0)


def test_sampling_with_conv_spns():
    """'Sampling with conv SPNs': a supervised DGC-SPN trained by EM, then sampled through a sampling twin."""
    spnk.set_default_accumulator_initializer(spnk.initializers.Dirichlet())
    images, labels = digits_28x28(64)
    normalize = spnk.layers.NormalizeStandardScore(
        input_shape=(28, 28, 1), axes=spnk.layers.NormalizeAxes.GLOBAL, normalization_epsilon=1e-3
    )
    mnist_images = tf.data.Dataset.from_tensor_slices(images).batch(32)
    normalize.adapt(mnist_images)
    location_initializer = spnk.initializers.PoonDomingosMeanOfQuantileSplit(mnist_images.map(normalize))

    def build_spn(sum_op, return_logits, infer_no_evidence=False):
        spnk.set_default_sum_op(sum_op)
        conv = spnk.layers.Conv2DProduct
        return spnk.models.SequentialSumProductNetwork(
            [
                normalize,
                spnk.layers.NormalLeaf(
                    num_components=4,
                    location_trainable=True,
                    location_initializer=location_initializer,
                    scale_trainable=True,
                ),
                conv(depthwise=False, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
                spnk.layers.Local2DSum(num_sums=4),
                conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
                spnk.layers.Local2DSum(num_sums=4),
                tf.keras.layers.ZeroPadding2D(((0, 1), (0, 1))),
                conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
                spnk.layers.Local2DSum(num_sums=4),
                conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
                # 16 channels (the notebook has 1024): LogDropout(0.5) drops all of a sample's children with
                # probability 0.5 ** channels, which gives log p(x, y) = -inf (the original's behaviour too).
                spnk.layers.Local2DSum(num_sums=16),
                conv(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
                spnk.layers.LogDropout(rate=0.5),
                spnk.layers.DenseSum(num_sums=10),
                spnk.layers.RootSum(return_weighted_child_logits=return_logits),
            ],
            infer_no_evidence=infer_no_evidence,
            unsupervised=False,
        )

    sum_product_network = build_spn(spnk.SumOpEMBackprop(), return_logits=True)
    sum_product_network.summary()
    train = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(1024).batch(32)
    sum_product_network.compile(
        loss=spnk.losses.NegativeLogJoint(),
        metrics=[],
        optimizer=spnk.optimizers.OnlineExpectationMaximization(learning_rate=0.05, accumulate_batches=1),
    )
    history = sum_product_network.fit(
        train,
        epochs=3,
        verbose=0,
        callbacks=[tf.keras.callbacks.ReduceLROnPlateau(monitor="loss", min_delta=0.1, patience=2, factor=0.5)],
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    sum_product_network.evaluate(train, verbose=0)

    sample_model = build_spn(spnk.SumOpSampleBackprop(), return_logits=False, infer_no_evidence=True)
    sample_model.set_weights(sum_product_network.get_weights())
    sample = np.asarray(sample_model.zero_evidence_inference(16))
    assert sample.shape == (16, 28, 28, 1)
    assert np.all(np.isfinite(sample))
    # Samples, not a mode: the draws differ from each other and between calls.
    assert len({row.tobytes() for row in sample}) == 16
    again = np.asarray(sample_model.zero_evidence_inference(16))
    assert not np.allclose(again, sample)


def test_understanding_region_spns(capsys):
    """'Understanding Region SPNs': region graphs printed, overlaps rejected, dense SPNs built and visualized."""
    x0, x1, x2 = spnk.RegionVariable(0), spnk.RegionVariable(1), spnk.RegionVariable(2)
    print(x0)
    print(x1)
    print(x2)
    x0_x1 = spnk.RegionNode([x0, x1])
    x0_x2 = spnk.RegionNode([x0, x2])
    x1_x2 = spnk.RegionNode([x1, x2])
    x0_x1_x2 = spnk.RegionNode([x0, x1, x2])
    print(x0_x1)
    print(x0_x1_x2)
    assert capsys.readouterr().out.split("\n")[:5] == ["x0", "x1", "x2", "{x0, x1}", "{x0, x1, x2}"]

    def try_to_combine(a, b):
        try:
            spnk.RegionNode([a, b])
        except spnk.region.OverlappingScopesException as e:
            print(e)
            return True
        return False

    assert try_to_combine(x0, x0)
    assert try_to_combine(x0, x0_x1)
    assert try_to_combine(x0_x1, x1_x2)
    x0x2_x1 = spnk.RegionNode([x0_x2, x1])
    dense_spn = spnk.region_graph_to_dense_spn(
        x0x2_x1,
        num_sums_iterable=iter([2, 2]),
        leaf_node=spnk.layers.NormalLeaf(num_components=2),
        return_weighted_child_logits=False,
    )
    dense_spn.summary(line_length=80)
    figure = spnk.visualize_dense_spn(dense_spn, show_legend=True, transparent=False)
    assert len(figure.data) > 0
    spnk.visualize_dense_spn(dense_spn, show_legend=True, show_padding=False, transparent=False)
    flat = spnk.region_graph_to_dense_spn(
        x0_x1_x2,
        num_sums_iterable=iter([]),
        leaf_node=spnk.layers.NormalLeaf(num_components=2),
        return_weighted_child_logits=False,
    )
    spnk.visualize_dense_spn(flat, show_legend=True, transparent=False)
    nodes = [spnk.RegionVariable(i) for i in range(32)]
    while len(nodes) > 1:
        nodes = [spnk.RegionNode([nodes[i], nodes[i + 1]]) for i in range(0, len(nodes), 2)]
    deep = spnk.region_graph_to_dense_spn(
        nodes[0],
        num_sums_iterable=itertools.cycle([2]),
        leaf_node=spnk.layers.NormalLeaf(num_components=2),
        return_weighted_child_logits=False,
    )
    spnk.visualize_dense_spn(deep, node_size=16, transparent=False)
    # The region SPN is a density: finite log-likelihoods for data.
    out = np.asarray(deep(np.random.default_rng(0).normal(size=(4, 32)).astype("float32")))
    assert np.all(np.isfinite(out))
