"""An independent numpy implementation of small region SPNs with indicator leaves, for brute-force checks.

Structure: ``FlatToRegions(D) -> IndicatorLeaf(K) -> PermuteAndPadScopes(perms) -> [DenseProduct(2) -> DenseSum]*
-> ReduceProduct? -> Undecompose -> RootSum``, written with explicit loops over scopes, decompositions and nodes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReferenceSPN:
    """Linear-space evaluation of a region SPN, node by node."""

    num_states: int
    permutations: np.ndarray  # [D, S]
    sum_weights: list[np.ndarray]  # each [S, D, N_in, N_out], normalized over N_in
    root_weights: np.ndarray  # [N_root_in], normalized
    values: list[np.ndarray] = field(default_factory=list)

    def leaves(self, x: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Indicator values per (batch, scope, decomp, state) after permutation (padding scopes are 1)."""
        batch = x.shape[0]
        num_decomps, num_scopes = self.permutations.shape
        out = np.ones((batch, num_scopes, num_decomps, self.num_states))
        for b, s, d in itertools.product(range(batch), range(num_scopes), range(num_decomps)):
            var = self.permutations[d, s]
            if var >= 0 and observed[b, var]:
                out[b, s, d] = 0.0
                out[b, s, d, int(x[b, var])] = 1.0
        return out

    @staticmethod
    def product(values: np.ndarray) -> np.ndarray:
        """Outer product of pairs of consecutive scopes; the first factor's node varies slowest."""
        batch, num_scopes, num_decomps, num_nodes = values.shape
        out = np.zeros((batch, num_scopes // 2, num_decomps, num_nodes * num_nodes))
        for b, s, d in itertools.product(range(batch), range(num_scopes // 2), range(num_decomps)):
            left, right = values[b, 2 * s, d], values[b, 2 * s + 1, d]
            for i, j in itertools.product(range(num_nodes), range(num_nodes)):
                out[b, s, d, i * num_nodes + j] = left[i] * right[j]
        return out

    def forward(self, x: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
        """Return p(x_E) per sample; stores every layer's values in ``self.values``."""
        observed = np.ones(x.shape, bool) if observed is None else observed
        h = self.leaves(x, observed)
        self.values = [h]
        for weights in self.sum_weights:
            h = self.product(h)
            self.values.append(h)
            h = np.einsum("bsdi,sdio->bsdo", h, weights)
            self.values.append(h)
        h = self.product(h) if h.shape[1] > 1 else h
        self.values.append(h)
        flat = h.reshape(h.shape[0], -1)  # Undecompose: [batch, decomps * nodes]
        return flat @ self.root_weights


def all_states(num_vars: int, num_states: int) -> np.ndarray:
    """Every joint state, ``[num_states ** num_vars, num_vars]``."""
    return np.array(list(itertools.product(range(num_states), repeat=num_vars)))
