"""Block-wise neighbourhoods: exact k-th-neighbour radii of the real set and the real x synthetic
comparison, never holding an N x N or N x M matrix.

- ``registry``: the metrics by name (``euclidean``, ``hamming``);
- ``backend``: where block maths runs (NumPy, or torch on a worker's GPU) and the guard that
  keeps every float32 torch GEMM free of TF32 whatever other threads do;
- ``bounds``: the score of a block of pairs and the envelopes that bound exact distances;
- ``euclidean`` / ``hamming``: each metric's block scores, envelopes and exact distances;
- ``reductions``: the block maths, plain NumPy (k+1 smallest, per-real and per-synthetic
  partials, patient masks), with ``candidates`` (pairs with bounds), ``copy_ratio`` (the copy
  ratio's candidates) and ``scans`` (one-read passes over a score block, numba-compiled);
- ``graph`` (and ``patient_graph`` for patient mode): the Dask graph around them, the only
  place it is built;
- ``local``: the same block functions run in-process for problems of a few blocks.
"""

from .bounds import Envelope, ScoreBlock
from .graph import compare_graph, radii_graph
from .registry import METRICS, get_metric

__all__ = ["METRICS", "Envelope", "ScoreBlock", "compare_graph", "get_metric", "radii_graph"]
