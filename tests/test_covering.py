"""The pairwise covering subset of tests/covering.py covers every pair and is much smaller than the grid."""

import itertools

import pytest

from tests.covering import pairwise_subset


@pytest.mark.parametrize("sizes", [(2, 2, 2), (4, 4, 6, 2), (3, 4, 2, 3, 4), (5,), (3, 1, 2)])
def test_every_pair_of_values_is_covered(sizes):
    names = [f"p{i}" for i in range(len(sizes))]
    grid = [list(zip(names, values, strict=True)) for values in itertools.product(*(range(n) for n in sizes))]
    chosen = pairwise_subset(grid)
    assert chosen == sorted(set(chosen)) and pairwise_subset(grid) == chosen  # deterministic
    covered = {pair for index in chosen for pair in itertools.combinations(grid[index], 2)}
    for first, second in itertools.combinations(range(len(sizes)), 2):
        for a, b in itertools.product(range(sizes[first]), range(sizes[second])):
            assert ((names[first], a), (names[second], b)) in covered
    largest = sorted(sizes)[-2:]
    if len(sizes) >= 2:  # at least the product of the two largest axes, and far fewer than the grid
        assert largest[0] * largest[1] <= len(chosen) <= 2 * largest[0] * largest[1]
    else:
        assert chosen == list(range(sizes[0]))  # one parameter: every value, i.e. the whole grid


def test_missing_combinations_are_allowed():
    grid = [[("a", 0), ("b", 0)], [("a", 1), ("b", 1)]]  # e.g. parametrizations skipped on this backend
    assert pairwise_subset(grid) == [0, 1]
