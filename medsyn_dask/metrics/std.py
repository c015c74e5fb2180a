"""The feature-STD variety measure (METHOD.md: ``std_S``), as a Dask reduction."""

from __future__ import annotations

import dask.array as da


def feature_std(features: da.Array) -> da.Array:
    """Mean over dimensions of the population std (ddof=0) of ``features`` (n, D): a 0-d array.

    Computed in float64 whatever the input dtype (integer codes included).
    """
    return features.astype("float64").std(axis=0, ddof=0).mean()
