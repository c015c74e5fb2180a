"""Distance metrics by name. Each module supplies:

- ``validate(name, array)``: SettingsError unless the features suit the metric;
- ``prepare(rows, centre, split=None, forms="both", backend="auto")``: a block of rows made
  ready for many block pairs (``split`` = (map, pieces): a thread pool's map may share the
  work; ``forms``: "left", "right" or "both", the sides of block pairs the rows will be on;
  ``backend``: the block_bounds backend they are for);
- ``block_bounds(x, y, centre, backend=...)``: the :class:`ScoreBlock` of a block of pairs
  (x and y: rows, or what ``prepare`` made of them);
- ``exact_distances(x, y, rows, cols)``: float64 distances of chosen pairs, as scipy's ``cdist``;
- optionally ``validate_pair(real, synthetic)``: SettingsError unless the two sets suit the
  metric together;
- optionally ``MAX_ROW_NORM``: the largest row norm its first pass holds (the input checks
  reject larger rows, naming the first);
- optionally ``scores_on_device(backend)``: whether its score blocks stay on a GPU under
  ``backend`` (the in-process runner then cuts larger blocks).
"""

from __future__ import annotations

from types import ModuleType

from ..checks import check_choice
from . import euclidean, hamming

#: Euclidean for continuous features, Hamming (fraction of differing positions) for codes.
METRICS: dict[str, ModuleType] = {"euclidean": euclidean, "hamming": hamming}


def get_metric(name: str) -> ModuleType:
    """The metric module registered under ``name``; SettingsError naming the choices otherwise."""
    return METRICS[check_choice(name, "metric", tuple(sorted(METRICS)))]


def max_row_norm(name: str) -> float | None:
    """The metric's ``MAX_ROW_NORM`` (the input checks refuse longer rows), None without one."""
    return getattr(get_metric(name), "MAX_ROW_NORM", None)
