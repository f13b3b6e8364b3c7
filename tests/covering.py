"""Pairwise covering of a test's parameter grid: the default run keeps a subset in which every pair of values occurs.

A test function marked ``@pytest.mark.pairwise`` runs all pairs of its parameter values (fixture parameters
included) by default: ``tests/conftest.py`` marks the other parametrizations ``slow``, so the full grid runs with
``python -m pytest -m slow``. The subset is chosen greedily (the first combination that covers most uncovered pairs,
in collection order) and so is the same in every run.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence


def _pairs(combination: Sequence[tuple[str, Hashable]]) -> set[tuple[tuple[str, Hashable], ...]]:
    """The pairs of values of ``combination``, and each value alone (so a grid of one parameter runs whole)."""
    return set(itertools.combinations(combination, 2)) | set(itertools.combinations(combination, 1))


def pairwise_subset(combinations: Sequence[Sequence[tuple[str, Hashable]]]) -> list[int]:
    """Indices of a subset of ``combinations`` in which every pair of values of any two parameters occurs.

    Every value occurs too (a single parameter's grid is kept whole).

    Args:
        combinations: Each a sequence of ``(parameter, value)`` in a fixed parameter order.

    Returns:
        The chosen indices, ascending.

    Example:
        >>> grid = [[("a", a), ("b", b), ("c", c)] for a in range(2) for b in range(2) for c in range(2)]
        >>> len(pairwise_subset(grid))  # 5 of the 8 combinations cover all 12 pairs (4 could; greedy is not optimal)
        5
    """
    pairs = [_pairs(combination) for combination in combinations]
    uncovered = set().union(*pairs) if pairs else set()
    chosen: list[int] = []
    while uncovered:
        best = max(range(len(pairs)), key=lambda index: (len(pairs[index] & uncovered), -index))
        chosen.append(best)
        uncovered -= pairs[best]
    return sorted(chosen)
