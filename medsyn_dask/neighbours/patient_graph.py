"""The Dask graphs of patient mode (METHOD.md, "Patient mode"), around the NumPy reductions.

``patient_radius_1`` reuses the real radii graph with same-patient pairs masked inside each
block; the real x synthetic pass lists patient copy pairs and each real image's nearest
synthetic image. Task key prefixes: ``patient-real-synthetic``, ``patient-copies-per-synthetic``,
``patient-nearest-select``, ``patient-nearest-exact``, ``patient-nearest-merge``.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed

from .graph import _block_keys, _Graph, _in_block, radii_graph
from .reductions import Candidates, PatientCopies, column_minimum, patient_copy_block
from .registry import get_metric


def patient_radii_graph(
    real: da.Array, patients: np.ndarray, metric: str, centre, backend: str
) -> list[Delayed]:
    """Per real block, a Delayed (rows, 1) array: ``patient_radius_1``, the distance of each
    real image to the nearest real image of ANOTHER patient (+inf if there is none).

    ``patients`` holds (N,) int patient codes. Same-patient pairs are masked inside each
    block's candidate step; the exact pass and merge are those of :func:`radii_graph`.
    """
    return radii_graph(real, metric, centre, 0, backend, patients=patients)


# --- patient mode: real x synthetic patient copies and each real image's nearest synthetic ---


def _patient_compare(x, y, threshold, codes, synth_offset, metric, centre, backend):
    block = get_metric(metric).block_bounds(x, y, centre, backend=backend)
    return patient_copy_block(block, threshold, codes, synth_offset)


def _patient_copies(parts: list[PatientCopies], synth_offset: int) -> tuple:
    merged = PatientCopies.merge(parts, by="col")
    return merged.patient, merged.col + synth_offset


def _patient_select(parts: list[PatientCopies]) -> Candidates:
    return PatientCopies.merge(parts, by="row").nearest


def _patient_exact(x, y, y_offset, metric, selected: Candidates) -> tuple:
    """Exact distances of the selected (real row, synthetic) pairs whose image is in block y."""
    sel = _in_block(selected, y_offset, len(y))
    rows, cols = sel.row.astype(np.int64), sel.col.astype(np.int64)
    return rows, cols, get_metric(metric).exact_distances(x, y, rows, cols - y_offset)


def _patient_nearest(parts: list[tuple], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols, values = (np.concatenate(v) for v in zip(*parts, strict=True))
    return column_minimum(rows, cols, values, n_rows)


def patient_compare_graph(
    real: da.Array,
    synthetic: da.Array,
    threshold: np.ndarray,
    patients: np.ndarray,
    metric: str,
    centre,
    backend: str,
) -> tuple[list[Delayed], list[Delayed]]:
    """The patient-mode pass of one group (METHOD.md, "Patient mode").

    ``threshold`` (N,) float64 is patient_radius_1 + margin, ``patients`` (N,) int codes.
    Returns per real block a Delayed ``(distance, synthetic index)`` of each real image's
    nearest synthetic image (lowest index among ties), and per synthetic block a Delayed
    ``(patient codes, synthetic indices)`` listing each patient copy pair once.
    """
    real_blocks, _ = _block_keys(real)
    synth_blocks, synth_offsets = _block_keys(synthetic)
    token = tokenize(real, synthetic, threshold, patients, metric, centre, backend)
    g = _Graph(f"patient-compare-{token}", [real, synthetic])
    centre_key = g.value((f"centre-{token}",), centre)
    thresholds = g.block_values("threshold", threshold, real)
    codes = g.block_values("patients", patients, real)
    grid = [
        [
            g.task(
                (f"patient-real-synthetic-{token}", i, j),
                _patient_compare,
                x,
                y,
                thresholds[i],
                codes[i],
                synth_offsets[j],
                metric,
                centre_key,
                backend,
            )
            for j, y in enumerate(synth_blocks)
        ]
        for i, x in enumerate(real_blocks)
    ]
    per_synthetic = [
        g.task(
            (f"patient-copies-per-synthetic-{token}", j),
            _patient_copies,
            [row[j] for row in grid],
            synth_offsets[j],
        )
        for j in range(len(synth_blocks))
    ]
    per_real = []
    for i, x in enumerate(real_blocks):
        selected = g.task((f"patient-nearest-select-{token}", i), _patient_select, grid[i])
        exact = [
            g.task(
                (f"patient-nearest-exact-{token}", i, j),
                _patient_exact,
                x,
                y,
                synth_offsets[j],
                metric,
                selected,
            )
            for j, y in enumerate(synth_blocks)
        ]
        per_real.append(
            g.task(
                (f"patient-nearest-merge-{token}", i), _patient_nearest, exact, real.chunks[0][i]
            )
        )
    outputs = g.outputs(per_real + per_synthetic)
    return outputs[: len(per_real)], outputs[len(per_real) :]
