"""Models saved under one Keras backend and loaded under the other (``tests/test_cross_backend.py``).

Run as a script in a subprocess, so that it picks its own backend from ``KERAS_BACKEND``::

    python tests/cross_backend_models.py save DIR [CASE...]  # build, train, save DIR/<case>.keras and .npz
    python tests/cross_backend_models.py load DIR [CASE...]  # load DIR/<case>.keras, compare with its .npz
    python tests/cross_backend_models.py both DIR [CASE...]  # load DIR/in, then save DIR/out

``save`` trains each model a few steps and writes, next to its ``.keras`` file, the fixed data, the
log-likelihoods the model gave under the backend that saved it (``predict``), its compiled loss of them, its
optimizer's step count and the backend's name. ``load`` loads each model and checks its ``predict`` against the
saved log-likelihoods (float32 tolerance), that the compiled loss and the optimizer came back (the same loss, the
same step count) and that one more ``fit`` step runs. It prints one ``CASE <name> OK <max relative difference>``
line per model and returns the number of failures (the script's exit status is 1 if any failed).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: The tolerance of a log-likelihood computed by the other backend (float32 arithmetic in a different order).
RTOL = 1e-5
ATOL = 1e-5


def _rat_spn_normal():
    import keras

    from libspn_keras import initializers, layers, losses, models

    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(8,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(
                num_components=3, location_initializer=initializers.Equidistant(-2.0, 2.0), scale_trainable=True
            ),
            layers.PermuteAndPadScopesRandom(),  # unseeded: the file must carry the permutations
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood())
    x = np.random.default_rng(1).normal(size=(32, 8)).astype("float32")
    return model, x, None


def _rat_spn_indicator():
    import keras

    from libspn_keras import layers, losses, models

    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(6,)),
            layers.FlatToRegions(num_decomps=2),
            layers.IndicatorLeaf(num_components=3),
            layers.PermuteAndPadScopesRandom(),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, logspace_accumulators=False),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood())
    x = np.random.default_rng(2).integers(0, 3, size=(32, 6)).astype("float32")
    x[::5, 1] = np.nan  # marginalized
    return model, x, None


def _dgcspn():
    import keras

    from libspn_keras import layers, losses, models

    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4, 4, 1)),
            layers.NormalLeaf(num_components=2),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, padding="valid"),  # [2, 2, 16]
            layers.Local2DSum(num_sums=3),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),  # [3, 3, 3]
            layers.Conv2DSum(num_sums=3),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="final", num_channels=6),
            layers.SpatialToRegions(),
            layers.RootSum(return_weighted_child_logits=True),
        ],
        unsupervised=False,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogJoint())
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 6, size=(24, 1))
    return model, x, y


def _hclt():
    import keras

    from libspn_keras import losses
    from libspn_keras.structure import hclt

    data = np.random.default_rng(4).integers(0, 2, size=(64, 6))
    data[:, 1] = data[:, 0]  # some structure for the Chow-Liu tree
    model = hclt(data, num_latents=3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood())
    return model, data.astype("float32"), None


def _learn_spn():
    from libspn_keras import losses, optimizers, sum_ops
    from libspn_keras.structure import learn_spn

    rng = np.random.default_rng(7)
    hidden = rng.integers(0, 2, size=(96, 1))
    data = np.concatenate([hidden ^ (rng.random((96, 4)) < 0.2), rng.integers(0, 2, size=(96, 2))], axis=1)
    model = learn_spn(data, min_instances_slice=30, sum_op=sum_ops.SumOpEMBackprop())
    model.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=0.3), loss=losses.NegativeLogLikelihood()
    )
    return model, data.astype("float32"), None


def _rat_spn_trained_by_em(op_name: str, leaf_name: str, num_vars: int, num_decomps: int, num_sums: int, lr: float):
    """A small RAT-SPN whose sums use the EM op ``op_name``, trained by ``OnlineExpectationMaximization``."""
    import keras

    from libspn_keras import layers, losses, models, optimizers, sum_ops

    op = getattr(sum_ops, op_name)()
    leaf = layers.IndicatorLeaf(num_components=2) if leaf_name == "indicator" else layers.NormalLeaf(num_components=2)
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=num_decomps),
            leaf,
            layers.PermuteAndPadScopesRandom(),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=num_sums, sum_op=op),
            layers.ReduceProduct(num_factors=num_vars // 2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op),
        ]
    )
    model.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=lr), loss=losses.NegativeLogLikelihood()
    )
    return model


def _rat_spn_em():
    x = np.random.default_rng(5).integers(0, 2, size=(32, 6)).astype("float32")
    return _rat_spn_trained_by_em("SumOpEMBackprop", "indicator", 6, 2, 3, lr=0.3), x, None


def _rat_spn_hard_em():
    x = np.random.default_rng(6).normal(size=(32, 4)).astype("float32")
    return _rat_spn_trained_by_em("SumOpHardEMBackprop", "normal", 4, 1, 2, lr=0.2), x, None


#: name -> a function returning a compiled model, its fixed data and its labels (``None``: unsupervised).
CASES: dict[str, Callable[[], tuple]] = {
    "rat_spn_normal": _rat_spn_normal,
    "rat_spn_indicator": _rat_spn_indicator,
    "dgcspn": _dgcspn,
    "hclt": _hclt,
    "learnspn": _learn_spn,
    "rat_spn_em": _rat_spn_em,
    "rat_spn_hard_em": _rat_spn_hard_em,
}

#: Training steps before saving, so that the weights are not the initial ones.
TRAIN_STEPS = 2


def _log_likelihoods(model, x) -> np.ndarray:
    """``log p(x)`` (or the joint ``log p(x, y)`` per class) through ``predict``.

    ``predict`` is compiled (``jax.jit`` on JAX); an eager call on JAX would compile every op on its own, which takes
    longer for these small models than the compiled function.
    """
    return np.asarray(model.predict(x, batch_size=len(x), verbose=0))


def _loss(model, log_likelihoods, y) -> float:
    """The model's compiled loss of the log-likelihoods (and labels ``y``)."""
    import keras

    return float(keras.ops.convert_to_numpy(model.loss(y, log_likelihoods)))


def save(directory: Path, cases: list[str] | None = None) -> None:
    """Build, train and save ``cases`` (default: all of ``CASES``) into ``directory``."""
    import keras

    directory.mkdir(parents=True, exist_ok=True)
    for name in cases or list(CASES):
        make = CASES[name]
        start = time.process_time()
        keras.utils.set_random_seed(7)
        model, x, y = make()
        before = [np.array(w) for w in model.get_weights()]
        model.fit(x, y, batch_size=len(x) // TRAIN_STEPS, epochs=1, shuffle=False, verbose=0)
        moved = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(before, model.get_weights(), strict=True)
            if a.dtype.kind == "f"
        )
        assert moved > 1e-4, f"{name}: training did not move the weights"
        log_likelihoods = _log_likelihoods(model, x)
        assert np.all(np.isfinite(log_likelihoods)), name
        model.save(directory / f"{name}.keras")
        np.savez(
            directory / f"{name}.npz",
            x=x,
            y=np.zeros(0) if y is None else y,
            has_y=y is not None,
            log_likelihoods=log_likelihoods,
            loss=_loss(model, log_likelihoods, y),
            iterations=int(model.optimizer.iterations),
            backend=keras.backend.backend(),
        )
        print(f"SAVED {name} ({time.process_time() - start:.1f} s CPU)", flush=True)


def load(directory: Path, cases: list[str] | None = None) -> int:
    """Load and check ``cases`` (default: all of ``CASES``) from ``directory``; return the number of failures."""
    import keras

    import libspn_keras  # noqa: F401  (registers the classes the files name)

    failures = 0
    for name in cases or list(CASES):
        start = time.process_time()
        saved = np.load(directory / f"{name}.npz")
        x, y = saved["x"], (saved["y"] if bool(saved["has_y"]) else None)
        try:
            model = keras.models.load_model(directory / f"{name}.keras")
            expected = saved["log_likelihoods"]
            predicted = _log_likelihoods(model, x)
            np.testing.assert_allclose(predicted, expected, rtol=RTOL, atol=ATOL, err_msg=name)
            loss = _loss(model, predicted, y)
            np.testing.assert_allclose(loss, float(saved["loss"]), rtol=RTOL, atol=ATOL, err_msg=name)
            assert int(model.optimizer.iterations) == int(saved["iterations"]), name
            model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)  # training goes on under this backend
            assert int(model.optimizer.iterations) == int(saved["iterations"]) + 1, name
            assert np.all(np.isfinite(_log_likelihoods(model, x))), name
        except Exception as error:  # report every case, then fail
            failures += 1
            print(
                f"CASE {name} FAILED ({saved['backend']} -> {keras.backend.backend()}): {str(error)[:2000]}", flush=True
            )
            import traceback

            traceback.print_exc()
            continue
        difference = float(np.max(np.abs(predicted - expected) / np.maximum(np.abs(expected), 1e-30)))
        print(f"CASE {name} OK {difference:.3g} ({time.process_time() - start:.1f} s CPU)", flush=True)
    return failures


def main(argv: list[str]) -> int:
    """``save DIR [CASE...]``, ``load DIR [CASE...]`` or ``both DIR [CASE...]`` (load ``DIR/in``, save ``DIR/out``)."""
    command, directory, cases = argv[1], Path(argv[2]), argv[3:] or None
    if command == "save":
        save(directory, cases)
        return 0
    if command == "load":
        return 1 if load(directory, cases) else 0
    if command == "both":
        failures = load(directory / "in", cases)
        save(directory / "out", cases)
        return 1 if failures else 0
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv))
