"""Fidelity and privacy scores from the per-synthetic set assignment (METHOD.md, "Scores")."""

from __future__ import annotations

import numpy as np

#: Set labels of a synthetic image.
COPY, REAL, NON_REAL = "copy", "real", "non-real"


def assign_sets(is_real: np.ndarray, is_copy: np.ndarray) -> np.ndarray:
    """Set label per synthetic image: copy, else real (realistic, not a copy), else non-real."""
    return np.where(is_copy, COPY, np.where(is_real, REAL, NON_REAL)).astype(object)


def fidelity(is_real: np.ndarray) -> float:
    """Fraction of synthetic images inside some real image's k-radius (copies included).

    The reference package calls it ``precision``; it equals prdc's precision for the same k.
    """
    return float(np.mean(is_real))


def privacy(is_copy: np.ndarray) -> float:
    """1 - fraction of synthetic images that copy some real image."""
    return 1.0 - float(np.mean(is_copy))


def precision_privacy(is_real: np.ndarray, is_copy: np.ndarray) -> float:
    """Fraction of synthetic images that are realistic and not copies."""
    return float(np.mean(is_real & ~is_copy))


def privacy_scores(is_copy: np.ndarray) -> np.ndarray:
    """Per synthetic image: 0 for a copy, 1 otherwise (int8)."""
    return np.where(is_copy, 0, 1).astype(np.int8)


def copy_margin(std_synthetic: float, threshold: float) -> float:
    """The copy margin: ``threshold`` when the synthetic set is collapsed (std <= threshold)."""
    return 0.0 if std_synthetic > threshold else float(threshold)
