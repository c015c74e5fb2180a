"""The held-out baseline (METHOD.md, "Held-out baseline"): the split, and each group vs holdout.

Real images the generator never saw are scored as one more row, ``holdout``, against the
remaining real set; a group is then read against that row: ``fidelity_vs_holdout``,
``privacy_vs_holdout`` and the p-value of a one-sided two-proportion z-test (pooled) that the
group's copy share exceeds the holdout's. Plain NumPy and SciPy.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..errors import SettingsError
from .patients import patient_label

#: The role name of the held-out real images in the feature store, tables and metrics.json.
HOLDOUT = "holdout"
#: The test behind ``copy_test_p_value``, named in the output.
COPY_TEST = "one-sided two-proportion z-test (pooled)"


def holdout_split(classes: Any, fraction: float, seed: int, patients: Any = None) -> np.ndarray:
    """(N,) bool: the real images held out, a seeded random ``fraction`` of each class.

    Without ``patients`` images are drawn per class. With ``patients`` (one label per image)
    whole patients are drawn, each stratified by its most frequent class (ties: the first
    in sorted order), so that no patient is on both sides. Per stratum of n units,
    ``round(fraction * n)`` are held out, at most n - 1. SettingsError if none is held out.
    Units are drawn in the order of their first image, not of their labels: DICOM labels are
    hashes salted anew by each run, and the same seed must draw the same patients.
    """
    classes = np.asarray(classes).astype(str)
    units = np.arange(len(classes)) if patients is None else _labels(patients)
    _, first, unit_of = np.unique(units, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    unit_of = rank[unit_of]  # unit k: the k-th to appear
    strata = np.array([_main_class(classes[unit_of == u]) for u in range(len(first))])
    rng = np.random.default_rng(seed)
    held = np.zeros(len(first), dtype=bool)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        n = min(int(round(fraction * len(members))), len(members) - 1)
        held[rng.permutation(members)[:n]] = True
    mask = held[unit_of]
    if not mask.any():
        what = "image" if patients is None else "patient"
        single = all((strata == s).sum() == 1 for s in np.unique(strata))
        hint = (
            f"each class has one {what}, so no fraction holds one out: give --holdout ROOT"
            if single
            else "raise it or give --holdout ROOT"
        )
        raise SettingsError(
            f"holdout_fraction={fraction} holds out no {what} of the {len(classes)} real "
            f"images; {hint}"
        )
    return mask


def _labels(patients: Any) -> np.ndarray:
    """The labels as patient mode reads them (:func:`.patients.patient_label`)."""
    return np.asarray([str(patient_label(p)) for p in patients], dtype=str)


def _main_class(classes: np.ndarray) -> str:
    counts = Counter(classes.tolist())
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def copy_test_p_value(copies: int, n: int, holdout_copies: int, holdout_n: int) -> float:
    """One-sided pooled two-proportion z-test p-value for ``copies/n > holdout_copies/holdout_n``.

    ``z = (p1 - p2) / sqrt(p (1 - p) (1/n + 1/holdout_n))`` with the pooled share ``p``; the
    p-value is ``P(Z >= z)``. When both shares are 0 (or both 1) there is no evidence: 1.0.
    """
    p1, p2 = copies / n, holdout_copies / holdout_n
    pooled = (copies + holdout_copies) / (n + holdout_n)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n + 1.0 / holdout_n))
    if se == 0.0:
        return 1.0
    from scipy.stats import norm  # 0.4 s to import: only runs with a holdout

    return float(norm.sf((p1 - p2) / se))


def versus_holdout(group: dict[str, Any], holdout: dict[str, Any]) -> dict[str, Any]:
    """A group's differences to the holdout row, from both rows' ``to_dict()`` entries.

    ``*_vs_holdout`` are group minus holdout (privacy below 0: the group copies more often than
    unseen real images are "copies"); ``copy_test_p_value`` is small when it does so beyond
    chance. Patient mode adds ``patient_privacy_vs_holdout``.
    """
    n, n_h = group["n_synthetic"], holdout["n_synthetic"]
    out = {
        "fidelity_vs_holdout": group["fidelity"] - holdout["fidelity"],
        "privacy_vs_holdout": group["privacy"] - holdout["privacy"],
        "copy_test": COPY_TEST,
        "copy_test_p_value": copy_test_p_value(
            group["sets"]["copy"], n, holdout["sets"]["copy"], n_h
        ),
    }
    if "patient_privacy" in group and "patient_privacy" in holdout:
        out["patient_privacy_vs_holdout"] = group["patient_privacy"] - holdout["patient_privacy"]
    return out
