"""The compiled per-group merges (neighbours/groups.py) give the values and indices of the
sorts they replace in reductions.py: ties, groups with fewer than n candidates, empty groups,
+inf and NaN values."""

from __future__ import annotations

import numpy as np
import pytest

from medsyn_dask.neighbours import groups
from medsyn_dask.neighbours.reductions import (
    Candidates,
    column_minimum,
    keep_smallest,
    smallest_values,
)


def _lists(seed: int, n_groups: int = 40, size: int = 600):
    rng = np.random.default_rng(seed)
    key = rng.integers(0, n_groups, size)
    key[key == 7] = 8  # group 7 is empty
    values = np.round(rng.random(size), 1)  # many ties
    values[::17] = np.inf
    return key, rng.permutation(size), values


def _both(fn, monkeypatch):
    got = fn()
    with monkeypatch.context() as patch:
        patch.setattr(groups, "_kernels", lambda: None)
        want = fn()
    return got, want


@pytest.mark.parametrize("n", [1, 6, 30])
def test_keep_smallest_equals_the_sort(n, monkeypatch):
    key, _, values = _lists(1)
    lower = np.maximum(values - 0.15, 0)
    for by in ("row", "col"):
        cands = Candidates(key, key[::-1].copy(), lower, values)
        got, want = _both(lambda c=cands, b=by: keep_smallest(c, n, by=b), monkeypatch)
        for name in ("row", "col", "lower", "upper"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


@pytest.mark.parametrize("n", [1, 6, 30])
def test_smallest_values_equal_the_sort(n, monkeypatch):
    key, _, values = _lists(2)
    got, want = _both(lambda: smallest_values(key, values, 40, n), monkeypatch)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("with_nan", [False, True])
def test_column_minimum_equals_the_sort(with_nan, monkeypatch):
    key, index, values = _lists(3)
    if with_nan:
        values[::5] = np.nan
        values[key == 9] = np.nan  # a group of NaN only
    got, want = _both(lambda: column_minimum(key, index, values, 40), monkeypatch)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[1][7] == -1 and got[0][7] == np.inf
