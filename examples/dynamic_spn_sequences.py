"""Dynamic SPN on variable-length sequences from a hidden Markov model with known parameters.

Data (synthetic, fully specified below): a hidden Markov model with 3 hidden states and 4 binary observed
variables per step, conditionally independent given the state. The chain starts in its stationary distribution.
Sequences have 5 to 25 steps (uniformly drawn) and are pre-padded with all-NaN rows to a common length, which is
how ``DynamicSumProductNetwork`` learns each sequence's length.

Why a stationary start: a dynamic SPN re-uses the same weights at every step and starts every sequence with the
same (empty) interface, so it represents an HMM exactly when the HMM's state marginal is the same at every step.
Then the interface node ``z`` at step ``t`` is ``p(x_<t | z_t = z)``, the interface network holds the reversed
chain ``p(z_t-1 | z_t)`` and the root weights are the stationary distribution. The script checks this by setting
a dynamic SPN's weights to the true HMM's and comparing with the forward algorithm.

Reported: the mean test log-likelihood per sequence (nats) and per step of

* the true HMM, by the forward algorithm (what no model can beat in expectation);
* a dynamic SPN with the true HMM's weights (equal to the forward algorithm up to float32 round-off);
* dynamic SPNs with random initial weights trained by gradient descent (Adam) and by online (soft) EM;
* independent steps (each variable a Bernoulli, fitted by counting), a baseline without temporal structure.

    python examples/dynamic_spn_sequences.py           # about 2 minutes on 2 CPU cores
    python examples/dynamic_spn_sequences.py --quick   # smoke test, a few seconds after the imports
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from libspn_keras import layers, losses, models, optimizers, sum_ops  # noqa: E402

# The data-generating HMM: transitions[i, j] = p(z_t+1 = j | z_t = i); emissions[z, v] = p(x_v = 1 | z).
TRANSITIONS = np.array([[0.85, 0.10, 0.05], [0.05, 0.80, 0.15], [0.20, 0.05, 0.75]])
EMISSIONS = np.array([[0.90, 0.80, 0.10, 0.20], [0.10, 0.30, 0.85, 0.70], [0.50, 0.90, 0.90, 0.05]])


def stationary_distribution(transitions: np.ndarray) -> np.ndarray:
    """The left eigenvector of the transition matrix for eigenvalue 1, normalized."""
    values, vectors = np.linalg.eig(transitions.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return pi / pi.sum()


PI = stationary_distribution(TRANSITIONS)


def sample_sequences(rng: np.random.Generator, num: int, min_len: int, max_len: int) -> np.ndarray:
    """Sample ``num`` sequences of ``min_len..max_len`` steps, pre-padded with NaN rows: ``[num, max_len, 4]``."""
    lengths = rng.integers(min_len, max_len + 1, size=num)
    num_states = len(PI)
    x = np.full((num, max_len, EMISSIONS.shape[1]), np.nan, "float32")
    state = rng.choice(num_states, size=num, p=PI)
    for t in range(max_len):
        real = t >= max_len - lengths
        observed = (rng.uniform(size=(num, EMISSIONS.shape[1])) < EMISSIONS[state]).astype("float32")
        x[real, t] = observed[real]
        # Sequences start at t = max_len - length in the stationary distribution: only move after a real step.
        moved = np.array([rng.choice(num_states, p=TRANSITIONS[s]) for s in state])
        state = np.where(real, moved, state)
    return x


def forward_log_likelihood(x: np.ndarray) -> np.ndarray:
    """log p(sequence) under the true HMM by the scaled forward algorithm, vectorized over pre-padded sequences."""
    real = ~np.isnan(x).all(axis=-1)  # [num, max_len]
    started = np.zeros(len(x), bool)
    alpha = np.zeros((len(x), len(PI)))
    total = np.zeros(len(x))
    for t in range(x.shape[1]):
        obs = np.nan_to_num(x[:, t])[:, np.newaxis, :]  # [num, 1, vars]
        emit = np.prod(np.where(obs == 1.0, EMISSIONS, 1.0 - EMISSIONS), axis=-1)  # [num, states]
        predicted = np.where(started[:, np.newaxis], alpha @ TRANSITIONS, PI)
        new = predicted * emit
        scale = new.sum(axis=1)
        total = np.where(real[:, t], total + np.log(scale), total)
        alpha = np.where(real[:, t, np.newaxis], new / scale[:, np.newaxis], alpha)
        started |= real[:, t]
    return total


def dynamic_spn(num_states: int, num_vars: int, op: sum_ops.SumOpBase) -> models.DynamicSumProductNetwork:
    """An HMM-shaped dynamic SPN: template = one product of per-variable mixtures per latent state."""
    template = keras.Sequential(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=2),
            layers.DenseSum(num_sums=num_states, sum_op=op),  # emission of each variable per state
            layers.ReduceProduct(num_factors=num_vars),  # [batch, 1, 1, num_states]
        ]
    )
    return models.DynamicSumProductNetwork(
        template_network=template,
        interface_network_t0=layers.DenseSum(num_sums=num_states, sum_op=op),
        interface_network_t_minus_1=keras.Sequential(
            [keras.Input(shape=(1, 1, num_states**2)), layers.DenseSum(num_sums=num_states, sum_op=op)]
        ),
        top_network=layers.RootSum(return_weighted_child_logits=False, sum_op=op),
    )


def hmm_weighted_dynamic_spn() -> models.DynamicSumProductNetwork:
    """The dynamic SPN with the true HMM's weights (linear accumulators hold the probabilities directly)."""
    num_states, num_vars = EMISSIONS.shape
    model = dynamic_spn(num_states, num_vars, sum_ops.SumOpGradBackprop(logspace_accumulators=False))
    model(np.zeros((1, 1, num_vars), "float32"))
    model.template_network.layers[2].accumulators.assign(
        np.stack([1.0 - EMISSIONS.T, EMISSIONS.T], axis=1)[:, np.newaxis]
    )
    model.interface_network_t0.accumulators.assign(np.eye(num_states)[np.newaxis, np.newaxis])
    # Interface node z at step t: p(x_<t | z_t = z) = sum_i p(z_t-1 = i | z_t = z) p(x_<t-1 | z_t-1 = i) e_i(x_t-1),
    # and the temporal product node i * num_states + j is p(x_<t-1 | z_t-1 = i) e_j(x_t-1): only i = j is used.
    reversed_chain = PI[:, np.newaxis] * TRANSITIONS / PI[np.newaxis, :]
    weights = np.zeros((num_states, num_states, num_states))
    weights[np.arange(num_states), np.arange(num_states)] = reversed_chain
    model.interface_network_t_minus_1.layers[0].accumulators.assign(weights.reshape(1, 1, num_states**2, -1))
    model.top_network.accumulators.assign(np.diag(PI).reshape(1, 1, -1, 1))  # RootSum: [1, 1, num_in, 1]
    return model


def independent_steps_log_likelihood(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Each variable of each step an independent Bernoulli fitted on the training steps (no temporal structure)."""
    p = np.clip(np.nanmean(train.reshape(-1, train.shape[-1]), axis=0), 1e-6, 1 - 1e-6)
    log_probs = np.where(test == 1.0, np.log(p), np.log1p(-p))
    return np.nansum(log_probs, axis=(1, 2))


def log_likelihood(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x))[:, 0]


def train(model: keras.Model, optimizer: keras.optimizers.Optimizer, train_x: np.ndarray, epochs: int) -> float:
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    start = time.perf_counter()
    model.fit(train_x, epochs=epochs, batch_size=64, verbose=0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and 2 epochs (smoke test)")
    parser.add_argument("--num-states", type=int, default=6, help="latent states of the learned dynamic SPNs")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 15, 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_states < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--num-states and --epochs must be positive")
    epochs = args.epochs or (2 if args.quick else 15)
    num_train, num_test, min_len, max_len = (128, 64, 3, 8) if args.quick else (2000, 1000, 5, 25)

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x = sample_sequences(rng, num_train, min_len, max_len)
    test_x = sample_sequences(rng, num_test, min_len, max_len)
    steps = (~np.isnan(test_x).all(axis=-1)).sum()
    print(
        f"HMM: {len(PI)} states, {EMISSIONS.shape[1]} binary variables per step, stationary start "
        f"pi={np.round(PI, 3).tolist()}; {num_train} training / {num_test} test sequences of {min_len}-{max_len} "
        f"steps ({steps / num_test:.1f} on average), pre-padded with NaN rows to {max_len}"
    )

    results: dict[str, float] = {}
    true_ll = forward_log_likelihood(test_x)
    results["true HMM (forward algorithm)"] = true_ll.mean()
    oracle_ll = log_likelihood(hmm_weighted_dynamic_spn(), test_x)
    results["dynamic SPN with the true HMM weights"] = oracle_ll.mean()
    oracle_error = float(np.abs(oracle_ll - true_ll).max())

    num_vars = EMISSIONS.shape[1]
    gradient_model = dynamic_spn(args.num_states, num_vars, sum_ops.SumOpGradBackprop())
    seconds = train(gradient_model, keras.optimizers.Adam(learning_rate=0.05), train_x, epochs)
    results[f"dynamic SPN, {args.num_states} states, Adam ({seconds:.0f} s)"] = log_likelihood(
        gradient_model, test_x
    ).mean()
    em_model = dynamic_spn(args.num_states, num_vars, sum_ops.SumOpEMBackprop())
    seconds = train(em_model, optimizers.OnlineExpectationMaximization(learning_rate=0.3), train_x, epochs)
    results[f"dynamic SPN, {args.num_states} states, online EM ({seconds:.0f} s)"] = log_likelihood(
        em_model, test_x
    ).mean()
    results["independent steps (Bernoulli per variable)"] = independent_steps_log_likelihood(train_x, test_x).mean()

    print(f"\nMean test log-likelihood ({epochs} epochs of training):")
    print(f"| {'model':<48} | per sequence | per step |")
    print(f"|{'-' * 50}|-------------:|---------:|")
    for name, value in results.items():
        print(f"| {name:<48} | {value:12.3f} | {value * num_test / steps:8.4f} |")
    print(f"\nmax |dynamic SPN with HMM weights - forward algorithm| over test sequences: {oracle_error:.2e} nats")
    results["oracle_max_abs_error"] = oracle_error
    return results


if __name__ == "__main__":
    main()
