"""RAT-SPNs, hidden Chow-Liu trees or LearnSPN on the DEBD binary density-estimation benchmarks: log-likelihoods.

Each data set ``NAME`` is read from ``DATA_DIR/NAME.{train,valid,test}.data.gz`` (see
``libspn_keras.datasets.load_debd``). Without ``--data-dir`` the files come from ``../shared/data/debd`` next to
the repository if it holds them, else from the public DEBD repository, fetched once into
``~/.keras/datasets/debd``. For every data set a model with ``IndicatorLeaf(num_components=2)`` leaves is fitted by
maximum likelihood (no labels), keeping the weights of the epoch with the best validation log-likelihood, and
the mean train / valid / test log-likelihoods (nats per sample) are printed as a Markdown table, next to the
Chow-Liu tree of the training split (its Laplace smoothing picked on the validation split). ``--structure``
selects the model: ``ratspn`` (default; trained with Adam) or ``hclt`` (``libspn_keras.structure.hclt`` with
``--num-latents`` states per latent, or a mixture of ``--num-components`` such HCLTs, trained by EM: ``--epochs``
of mini-batch online EM whose step size decays from ``--learning-rate`` to a 40th of it on a cosine, then
``--full-batch-epochs`` of full-batch EM, each step accumulating the counts of the whole training split, with step
size 0.5; ``--pseudocount ALPHA`` adds ALPHA samples' worth of uniform counts to every sum in each EM update,
a Dirichlet prior) or ``learnspn`` (``libspn_keras.structure.learn_spn`` with ``--min-instances-slice``: the
learned SPN as it comes, then, with ``--epochs`` / ``--full-batch-epochs``, the same two EM phases fine-tune it,
early stopping from the learned SPN's validation log-likelihood). ``--restarts N`` trains each data set N times
(seeds ``--seed``, ``--seed`` + 1, ...) and keeps the run of best validation log-likelihood::

    python examples/debd.py --datasets nltcs plants --epochs 20
    python examples/debd.py --structure hclt --num-latents 32 --datasets nltcs plants --epochs 20
    python examples/debd.py --structure learnspn --datasets nltcs plants --epochs 5

Use ``--quick`` for a seconds-long smoke run (tiny model, one epoch on 500 training rows).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import data_paths  # examples/data_paths.py: finds and checks the data folder without TensorFlow


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (the data files too); needs no TensorFlow, so a bad path fails at once."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data_paths.add_data_dir_argument(parser, "NAME.SPLIT.data.gz files", "debd")
    parser.add_argument("--structure", choices=("ratspn", "hclt", "learnspn"), default="ratspn", help="model structure")
    parser.add_argument("--num-latents", type=int, default=None, help="states per latent variable (hclt)")
    parser.add_argument("--num-components", type=int, default=None, help="HCLTs in a mixture (hclt; default 1)")
    parser.add_argument(
        "--min-instances-slice", type=int, default=None, help="slices with fewer rows are factorized (learnspn)"
    )
    parser.add_argument("--datasets", nargs="+", default=["nltcs", "plants"], help="DEBD data set names")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on valid LL)")
    parser.add_argument("--num-decomps", type=int, default=None, help="decompositions (RAT-SPN repetitions)")
    parser.add_argument("--num-sums", type=int, default=None, help="sums per region")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument(
        "--full-batch-epochs",
        type=int,
        default=None,
        help="full-batch EM epochs after the mini-batch ones (hclt, learnspn)",
    )
    parser.add_argument(
        "--pseudocount",
        type=float,
        default=None,
        help="samples' worth of uniform counts added to every sum in each EM update (hclt, learnspn; default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (keras.utils.set_random_seed)")
    parser.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="train with seeds SEED, SEED + 1, ...; keep the run of best validation log-likelihood (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny model, 1 epoch on 500 rows (smoke test)")
    parser.add_argument("--verbose", action="store_true", help="print the log-likelihoods of every epoch")
    args = parser.parse_args(argv)
    if args.restarts < 1:
        parser.error(f"--restarts must be at least 1. Received: {args.restarts}")
    args.data_dir = data_paths.debd_data_dir(parser, args.data_dir, args.datasets)
    return args


if __name__ == "__main__":
    parse_args()  # bad arguments or a bad --data-dir fail here, before TensorFlow starts

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from libspn_keras import layers, losses, metrics, models, optimizers, sum_ops  # noqa: E402
from libspn_keras.datasets import load_debd  # noqa: E402
from libspn_keras.structure import ChowLiuTree, chow_liu_tree, hclt, learn_spn  # noqa: E402

# Published test log-likelihoods (nats per sample) for context: RAT-SPN (Peharz et al., UAI 2019, Table 2) and
# EiNets (Peharz et al., ICML 2020, Table 2).
REFERENCE = {
    "nltcs": {"RAT-SPN": -6.01, "EiNet": -6.02},
    "plants": {"RAT-SPN": -13.44, "EiNet": -13.68},
    "baudio": {"RAT-SPN": -39.96, "EiNet": -39.88},
    "jester": {"RAT-SPN": -52.97, "EiNet": -52.56},
    "bnetflix": {"RAT-SPN": -56.85, "EiNet": -56.54},
    "accidents": {"RAT-SPN": -35.48, "EiNet": -35.59},
    "pumsb_star": {"RAT-SPN": -32.53, "EiNet": -31.95},
    "dna": {"RAT-SPN": -97.23, "EiNet": -96.09},
}


@dataclass(frozen=True)
class Config:
    """Model size and training budget."""

    num_decomps: int = 10
    num_sums: int = 10
    epochs: int = 20
    batch_size: int = 100
    learning_rate: float = 0.05
    max_train_rows: int | None = None
    structure: str = "ratspn"
    num_latents: int = 32
    num_components: int = 1
    full_batch_epochs: int = 0
    pseudocount: float = 0.0
    min_instances_slice: int = 200


#: The HCLT's training budget where the command line does not set it (mini-batch EM with a decaying step size,
#: then full-batch EM), picked on the validation splits of nltcs and plants.
HCLT_DEFAULTS = {"epochs": 50, "batch_size": 100, "learning_rate": 0.1, "full_batch_epochs": 10}
#: LearnSPN's defaults: the learned SPN as it comes (``--epochs`` and ``--full-batch-epochs`` fine-tune it by EM).
LEARNSPN_DEFAULTS = {"epochs": 0, "batch_size": 100, "learning_rate": 0.05, "full_batch_epochs": 0}
#: Step size of the full-batch EM epochs (1.0 would be plain EM; 0.5 damps it).
FULL_BATCH_LEARNING_RATE = 0.5
#: Rows per batch of the full-batch EM epochs: the counts of the batches are accumulated, one update per epoch.
FULL_BATCH_ROWS = 2000


#: Laplace smoothing values tried for the Chow-Liu tree; the one of best validation log-likelihood is kept.
CHOW_LIU_ALPHAS = (0.01, 0.1, 1.0, 10.0)


def scope_factors(num_vars: int) -> list[int]:
    """Product factors (bottom to top) whose product covers ``num_vars`` with the least padding.

    Factors are 2s plus at most two 3s: one at the bottom (over 2-state indicators it makes only 2**3 = 8
    products) and one at the top (no sum above it), so no sum layer gets ``num_sums**3`` inputs. E.g. 16 variables
    give ``[2, 2, 2, 2]`` and 69 give ``[3, 2, 2, 2, 3]`` (72 scopes) instead of 128 for a binary tree.
    """
    candidates = []
    for num_threes in range(3):
        num_twos = max(0, math.ceil(math.log2(num_vars / 3**num_threes)))
        candidates.append((2**num_twos * 3**num_threes, num_threes, num_twos))
    _, num_threes, num_twos = min(candidates)
    return [3] * min(num_threes, 1) + [2] * num_twos + [3] * max(num_threes - 1, 0) or [2]


def build_ratspn(num_vars: int, config: Config, seed: int) -> models.SequentialSumProductNetwork:
    """RAT-SPN: binary indicators per variable, then levels of (products, sums) up to a single scope."""
    factors = scope_factors(num_vars)
    stack: list[keras.layers.Layer] = [
        keras.Input(shape=(num_vars,), dtype="int32"),
        layers.FlatToRegions(num_decomps=config.num_decomps),
        layers.IndicatorLeaf(num_components=2),
        layers.PermuteAndPadScopesRandom(factors=factors, seed=seed),  # one random order per decomposition
    ]
    for factor in factors[:-1]:
        stack += [
            layers.DenseProduct(num_factors=factor),
            # A fresh initializer per layer, created after keras.utils.set_random_seed: reproducible runs.
            layers.DenseSum(
                num_sums=config.num_sums,
                accumulator_initializer=keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5),
            ),
        ]
    stack += [
        layers.DenseProduct(num_factors=factors[-1]),  # -> 1 scope
        layers.Undecompose(),
        layers.RootSum(return_weighted_child_logits=False),
    ]
    return models.SequentialSumProductNetwork(stack, unsupervised=True, name=f"ratspn_{num_vars}_vars")


def best_chow_liu_tree(train: np.ndarray, valid: np.ndarray) -> ChowLiuTree:
    """The Chow-Liu tree of ``train`` whose smoothing (``CHOW_LIU_ALPHAS``) gives the best valid log-likelihood."""
    trees = [chow_liu_tree(train, alpha=alpha, num_states=2) for alpha in CHOW_LIU_ALPHAS]
    return max(trees, key=lambda tree: float(np.mean(tree.log_likelihood(valid))))


def online_em(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    samples_per_update: int,
    pseudocount: float,
    accumulate_batches: int = 1,
) -> optimizers.OnlineExpectationMaximization:
    """``OnlineExpectationMaximization`` interpolating normalized weights (the EM of Einsum Networks and PyJuice).

    ``pseudocount`` is in samples per update; the optimizer's counts are averages over ``samples_per_update``.
    """
    return optimizers.OnlineExpectationMaximization(
        learning_rate=learning_rate,
        normalized_update=True,
        accumulate_batches=accumulate_batches,
        pseudocount=pseudocount / samples_per_update,
    )


def build_model(
    train: np.ndarray, tree: ChowLiuTree, config: Config, seed: int
) -> tuple[models.SequentialSumProductNetwork, keras.optimizers.Optimizer]:
    """The model of ``config.structure`` and its optimizer: a RAT-SPN with Adam, an HCLT or LearnSPN with online EM.

    The EM step size decays from ``config.learning_rate`` to a 40th of it over the mini-batch epochs (cosine).
    """
    if config.structure in ("hclt", "learnspn"):
        if config.structure == "hclt":
            spn = hclt(
                train,
                config.num_latents,
                tree=tree,
                sum_op=sum_ops.SumOpEMBackprop(),
                num_components=config.num_components,
                name="hclt",
            )
        else:
            spn = learn_spn(
                train,
                min_instances_slice=config.min_instances_slice,
                num_states=2,
                seed=seed,
                sum_op=sum_ops.SumOpEMBackprop(),
                name="learnspn",
            )
        steps = math.ceil(len(train) / config.batch_size) * max(config.epochs, 1)
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=1 / 40)
        return spn, online_em(schedule, min(config.batch_size, len(train)), config.pseudocount)
    return build_ratspn(train.shape[1], config, seed), keras.optimizers.Adam(learning_rate=config.learning_rate)


class EarlyStoppingFrom(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that starts from a known best value and weights (those before this ``fit``)."""

    def __init__(self, best: float, best_weights: list[np.ndarray], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._initial = best, best_weights

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        super().on_train_begin(logs)
        self.best, self.best_weights = self._initial


def fit_full_batch(
    spn: models.SequentialSumProductNetwork,
    train: np.ndarray,
    valid: np.ndarray,
    epochs: int,
    pseudocount: float,
    verbose: int,
) -> list[float]:
    """Full-batch EM: each epoch accumulates the counts of all of ``train`` into one update.

    Returns the validation log-likelihood of each epoch run.

    Early stopping on the validation log-likelihood keeps the best weights (those of the mini-batch phase if no
    full-batch epoch improves on them).
    """
    batch_size = min(FULL_BATCH_ROWS, len(train))
    spn.compile(
        optimizer=online_em(
            FULL_BATCH_LEARNING_RATE, len(train), pseudocount, accumulate_batches=math.ceil(len(train) / batch_size)
        ),
        loss=losses.NegativeLogLikelihood(),
        metrics=[metrics.LogLikelihood()],
    )
    stop = EarlyStoppingFrom(
        float(spn.evaluate(valid, batch_size=1000, verbose=0, return_dict=True)["llh"]),
        spn.get_weights(),
        monitor="val_llh",
        mode="max",
        patience=3,
        restore_best_weights=True,
    )
    history = spn.fit(
        train, epochs=epochs, batch_size=batch_size, validation_data=(valid,), callbacks=[stop], verbose=verbose
    )
    return [float(v) for v in history.history["val_llh"]]


def fit_dataset(name: str, data_dir: Path | None, config: Config, seed: int, verbose: int = 0) -> dict[str, float]:
    """Train on ``name``'s train split (early stopping on valid) and return its log-likelihoods per split."""
    data = load_debd(name, data_dir)
    train = data["train"][: config.max_train_rows]
    tree = best_chow_liu_tree(train, data["valid"])
    start = time.perf_counter()  # LearnSPN's time includes learning the structure
    spn, optimizer = build_model(train, tree, config, seed)
    spn.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood(), metrics=[metrics.LogLikelihood()])
    valid_llh: list[float] = []
    stop: keras.callbacks.EarlyStopping
    if config.structure == "learnspn":  # fine-tuning keeps the learned SPN unless it improves on it
        valid_llh.append(float(spn.evaluate(data["valid"], batch_size=1000, verbose=0, return_dict=True)["llh"]))
        stop = EarlyStoppingFrom(
            valid_llh[0], spn.get_weights(), monitor="val_llh", mode="max", patience=3, restore_best_weights=True
        )
        print(f"{name}: the learned SPN has valid log-likelihood {valid_llh[0]:.3f}", flush=True)
    else:
        stop = keras.callbacks.EarlyStopping(
            monitor="val_llh", mode="max", patience=3, restore_best_weights=True, start_from_epoch=0
        )
    if config.epochs:
        history = spn.fit(
            train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation_data=(data["valid"],),
            callbacks=[stop],
            verbose=verbose,
        )
        valid_llh += [float(v) for v in history.history["val_llh"]]
    if config.structure in ("hclt", "learnspn") and config.full_batch_epochs:
        valid_llh += fit_full_batch(spn, train, data["valid"], config.full_batch_epochs, config.pseudocount, verbose)
    seconds = time.perf_counter() - start
    initial = int(config.structure == "learnspn")  # valid_llh[0] is the learned SPN's
    result: dict[str, float] = {
        split: float(spn.evaluate(array, batch_size=1000, verbose=0, return_dict=True)["llh"])
        for split, array in data.items()
    }
    result.update(
        chow_liu_test=float(np.mean(tree.log_likelihood(data["test"]))),
        num_vars=train.shape[1],
        num_params=spn.count_params(),
        epochs_run=len(valid_llh) - initial,
        best_epoch=int(np.argmax(valid_llh)) + 1 - initial,  # 0: the learned SPN (learnspn)
        seconds=seconds,
    )
    print(
        f"{name}: {result['num_vars']} vars, {result['num_params']:,} parameters, {result['epochs_run']} epochs "
        f"(best {result['best_epoch']}) in {seconds:.1f} s: log-likelihoods train {result['train']:.3f}, "
        f"valid {result['valid']:.3f}, test {result['test']:.3f}",
        flush=True,
    )
    return result


def best_restart(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of best validation log-likelihood (model selection on the validation split, as for a seed).

    With several runs, prints which seed was kept and the spread of the test log-likelihoods over all of them.
    """
    best = max(runs, key=lambda run: run["valid"])
    if len(runs) > 1:
        tests = np.array([run["test"] for run in runs])
        print(
            f"{name}: kept seed {best['seed']:.0f} of {len(runs)} restarts (best valid {best['valid']:.3f}): "
            f"test {best['test']:.3f}; test over all restarts: mean {tests.mean():.4f}, min {tests.min():.3f}, "
            f"max {tests.max():.3f}",
            flush=True,
        )
    return best


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """Format the log-likelihoods (and published references, where known) as a Markdown table."""
    lines = [
        "| data set | vars | params | epochs | train LL | valid LL | test LL | Chow-Liu test LL | RAT-SPN (paper) "
        "| EiNet (paper) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        ref = REFERENCE.get(name, {})
        paper = [f"{ref[k]:.2f}" if k in ref else "n/a" for k in ("RAT-SPN", "EiNet")]
        lines.append(
            f"| {name} | {r['num_vars']} | {r['num_params']:,} | {r['epochs_run']} | {r['train']:.3f} | "
            f"{r['valid']:.3f} | {r['test']:.3f} | {r['chow_liu_test']:.3f} | {paper[0]} | {paper[1]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    if args.quick:
        config = Config(
            num_decomps=2,
            num_sums=2,
            epochs=1,
            max_train_rows=500,
            num_latents=2,
            full_batch_epochs=1,
            min_instances_slice=100,
        )
    else:
        defaults = {"hclt": HCLT_DEFAULTS, "learnspn": LEARNSPN_DEFAULTS}.get(args.structure, {})
        config = Config(**defaults)
    overrides = {
        "structure": args.structure,
        "num_latents": args.num_latents,
        "num_components": args.num_components,
        "epochs": args.epochs,
        "num_decomps": args.num_decomps,
        "num_sums": args.num_sums,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "full_batch_epochs": args.full_batch_epochs,
        "pseudocount": args.pseudocount,
        "min_instances_slice": args.min_instances_slice,
    }
    config = Config(**{**config.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    source = args.data_dir.resolve() if args.data_dir is not None else "the cache (~/.keras/datasets/debd)"
    print(f"data: {source}\nconfig: {config}")

    results = {}
    for name in args.datasets:
        runs = []
        for seed in range(args.seed, args.seed + args.restarts):
            keras.utils.set_random_seed(seed)
            runs.append(
                {**fit_dataset(name, args.data_dir, config, seed, verbose=2 if args.verbose else 0), "seed": seed}
            )
        results[name] = best_restart(name, runs)
    print()
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
