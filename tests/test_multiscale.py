"""MM-FID / MM-STD against the reference's scikit-learn computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.preprocessing import normalize

from medsyn_dask.metrics.multiscale import l2_normalise_rows, multiscale_score

RESOLUTIONS = (128, 256, 512, 1024)


def _reference(matrix: np.ndarray) -> tuple[float, float]:
    """The reference demo: sklearn row normalisation, then mean and std of all entries."""
    normed = normalize(matrix)
    return float(np.mean(normed)), float(np.std(normed))


def test_matches_sklearn_on_random_matrices():
    rng = np.random.default_rng(3)
    for n_models in (1, 2, 4):
        matrix = rng.gamma(2.0, 30.0, (n_models, len(RESOLUTIONS)))
        scores = {
            (f"m{i}", r): matrix[i, j] for i in range(n_models) for j, r in enumerate(RESOLUTIONS)
        }
        mm = multiscale_score(scores)
        np.testing.assert_allclose(mm.normalised, normalize(matrix), rtol=1e-15, atol=0)
        mean, std = _reference(matrix)
        assert mm.mean == pytest.approx(mean, rel=1e-14)
        assert mm.std == pytest.approx(std, rel=1e-12)
        np.testing.assert_array_equal(mm.values, matrix)


def test_rows_with_different_scales_weigh_the_same():
    # Model b is model a times 1000: after row normalisation they are identical.
    scores = {("a", r): v for r, v in zip(RESOLUTIONS, (1.0, 2.0, 3.0, 4.0), strict=True)}
    scores |= {("b", r): 1000 * v for (_, r), v in scores.items()}
    mm = multiscale_score(scores)
    np.testing.assert_allclose(mm.normalised[0], mm.normalised[1], rtol=1e-15)
    row = np.array([1.0, 2.0, 3.0, 4.0]) / np.sqrt(30.0)
    assert mm.mean == pytest.approx(row.mean(), rel=1e-15)


def test_zero_row_stays_zero_like_sklearn():
    matrix = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    np.testing.assert_array_equal(l2_normalise_rows(matrix), normalize(matrix))
    scores = {(m, r): matrix[i, j] for i, m in enumerate("ab") for j, r in enumerate((1, 2, 3))}
    assert multiscale_score(scores).mean == pytest.approx(normalize(matrix).mean())


def test_order_defaults_and_explicit_order():
    scores = {("z", 512): 3.0, ("z", 128): 1.0, ("a", 512): 1.0, ("a", 128): 2.0}
    mm = multiscale_score(scores)
    assert mm.models == ("z", "a")  # first appearance
    assert mm.resolutions == (128, 512)  # ascending
    np.testing.assert_array_equal(mm.values, [[1.0, 3.0], [2.0, 1.0]])
    swapped = multiscale_score(scores, models=["a", "z"], resolutions=[512, 128])
    np.testing.assert_array_equal(swapped.values, [[1.0, 2.0], [3.0, 1.0]])
    assert swapped.mean == pytest.approx(mm.mean) and swapped.std == pytest.approx(mm.std)


def test_to_dict_is_json_ready():
    mm = multiscale_score({("inception", 128): 10.0, ("inception", 256): 20.0})
    data = json.loads(json.dumps(mm.to_dict()))
    assert data["models"] == ["inception"] and data["resolutions"] == [128, 256]
    assert data["values"] == [[10.0, 20.0]]
    assert data["mean"] == pytest.approx((1 + 2) / np.sqrt(5) / 2)


def test_missing_cell_is_named():
    scores = {("a", 128): 1.0, ("a", 256): 2.0, ("b", 128): 3.0}
    with pytest.raises(ValueError, match=r"model 'b' at resolution 256"):
        multiscale_score(scores)
    with pytest.raises(ValueError, match=r"model 'a' at resolution 512"):
        multiscale_score({("a", 128): 1.0}, resolutions=[128, 512])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_non_finite_value_is_named(bad):
    with pytest.raises(ValueError, match=r"model 'a' at resolution 256 is"):
        multiscale_score({("a", 128): 1.0, ("a", 256): bad})


def test_bad_keys_and_empty_input():
    with pytest.raises(ValueError, match="at least one"):
        multiscale_score({})
    with pytest.raises(ValueError, match="pairs"):
        multiscale_score({"a": 1.0})
    with pytest.raises(ValueError, match="outside"):
        multiscale_score({("a", 128): 1.0, ("b", 128): 1.0}, models=["a"])


def test_rounding_level_row_stays_unscaled_like_sklearn():
    """scikit-learn leaves rows of norm below 10 eps unscaled (every FID of a model at
    rounding level: synthetic equal to real); they were scaled to norm 1."""
    matrix = np.array([[1e-16, 2e-16], [3.0, 4.0]])
    np.testing.assert_array_equal(l2_normalise_rows(matrix), normalize(matrix))
    scores = {(m, r): matrix[i, j] for i, m in enumerate("ab") for j, r in enumerate((1, 2))}
    assert multiscale_score(scores).mean == pytest.approx(_reference(matrix)[0], rel=1e-14)
