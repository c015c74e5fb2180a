"""The entry point of the neighbourhood method: features in, scores and per-image tables out.

``evaluate_features`` composes the pieces: input checks (:mod:`.evaluate_inputs`), one pass
for statistics (centre, finiteness, std), then one Dask graph for the real radii, the real x
synthetic comparison and the FID moments (an :class:`~.metrics.fid.FIDPlan`), then plain NumPy
to finish (:mod:`.evaluate_results`). The real set's parts can be computed once and reused by
every group: ``real_neighbourhood`` (radii, and with ``compute_fid=True`` the FID statistics)
for ``evaluate_features(reference=...)``, ``real_fid_statistics`` for
``feature_statistics(real_statistics=...)``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import dask
import numpy as np

from .checks import DEFAULT_BLOCK_SIZE
from .evaluate_inputs import (
    array_like,
    check_features,
    check_finite,
    check_options,
    check_real_statistics,
    check_reference,
    finite_flag,
    lazy_centre,
    scattered_inputs,
    usable_flag,
)
from .evaluate_patients import patient_radius, patient_scores
from .evaluate_results import EvaluationResult, RealNeighbourhood, assemble, combine_blocks
from .metrics import scores
from .metrics.fid import DEFAULT_FID_MAX_DIM, RealFID, plan_fid, real_fid_plan
from .metrics.patients import encode_patients
from .metrics.std import feature_std
from .neighbours import graph, local
from .neighbours.layout import pass_work
from .progress import bars_wanted

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_FID_MAX_DIM",
    "EvaluationResult",
    "RealFID",
    "RealNeighbourhood",
    "combine_blocks",
    "evaluate_features",
    "feature_statistics",
    "real_fid_statistics",
    "real_neighbourhood",
]


def _compute(*objs: Any, progress: bool, here: bool = False) -> tuple:
    """``dask.compute`` on the current scheduler (``here``: on this process's threads, for
    inputs that stay here), with a progress bar when asked (on a terminal only)."""
    progress = progress and bars_wanted()
    if here:
        from dask.diagnostics import ProgressBar

        with ProgressBar() if progress else nullcontext():
            return dask.compute(*objs, scheduler="threads")
    if not progress:
        return dask.compute(*objs)
    try:
        from distributed import get_client
        from distributed import progress as show_progress

        client = get_client()
    except (ImportError, ValueError):
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(*objs)
    # One Delayed per argument, so nested lists and tuples of collections compute as
    # dask.compute would compute them.
    futures = client.compute([dask.delayed(obj) for obj in objs])
    show_progress(futures, notebook=False)  # a text bar: a widget needs ipywidgets
    return tuple(client.gather(futures))


def _progress(progress: bool, here: bool = False):
    """``_compute`` with its settings bound, for the patient-mode passes."""
    return lambda *objs: _compute(*objs, progress=progress, here=here)


def real_neighbourhood(
    real: Any,
    *,
    metric: str = "euclidean",
    nearest_k: int = 5,
    block_size: int = DEFAULT_BLOCK_SIZE,
    backend: str = "auto",
    compute_fid: bool = False,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    progress: bool = False,
    patients: Any = None,
) -> RealNeighbourhood:
    """The k-th-neighbour radii of ``real`` (N x D), block by block (see RealNeighbourhood).

    With ``compute_fid`` (Euclidean, D <= ``fid_max_dim``) the result also carries the real
    set's FID statistics, so that ``evaluate_features(reference=...)`` computes only each
    group's own moments. With ``patients`` (one label per real image) it also carries the
    patient radii of patient mode.
    """
    check_options(metric, block_size, backend=backend, nearest_k=nearest_k)
    (real,) = local.in_memory_when_small([array_like(real)], block_size)
    here = local.runs_here([real], block_size)
    compute = _progress(progress, here)
    features = real
    with scattered_inputs({"real": real}, block_size, scatter=not here) as (real,):
        check_features(real, None, metric, nearest_k)
        fid = real_fid_plan(real, metric=metric, fid_max_dim=fid_max_dim, requested=compute_fid)
        ok, centre, fid_parts = compute(
            usable_flag(real, metric), lazy_centre(real, metric), fid.lazy
        )
        check_finite({"real": real}, [ok], metric)
        if here:
            work = pass_work(features.shape[0], 0, features.shape[1])
            options = {"block_size": block_size, "progress": progress, "work": work}
            with local.Runner(metric, centre, backend, **options) as run:
                smallest = [run.radii(features, nearest_k)]
        else:
            smallest = compute(graph.radii_graph(real, metric, centre, nearest_k, backend))[0]
        codes = radius = None
        if patients is not None:
            codes = encode_patients(patients, real.shape[0])[0]
            radius = patient_radius(real, codes, metric, centre, backend, compute)
    return RealNeighbourhood(
        np.concatenate(smallest),
        centre,
        metric,
        nearest_k,
        fid.finish_real(fid_parts),
        patient_radius_1=radius,
        patient_codes=codes,
    )


def real_fid_statistics(
    real: Any,
    *,
    metric: str = "euclidean",
    block_size: int = DEFAULT_BLOCK_SIZE,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    progress: bool = False,
) -> RealFID | None:
    """The real set's FID statistics alone, for ``feature_statistics(real_statistics=...)``.

    None where FID is not defined (Hamming codes, D above ``fid_max_dim``); passing None on
    makes ``feature_statistics`` decide and report the reason itself.
    """
    check_options(metric, block_size)
    with scattered_inputs({"real": real}, block_size) as (real,):
        check_features(real, None, metric)
        fid = real_fid_plan(real, metric=metric, fid_max_dim=fid_max_dim)
        ok, fid_parts = _compute(finite_flag(real), fid.lazy, progress=progress)
        check_finite({"real": real}, [ok])
    return fid.finish_real(fid_parts)


def evaluate_features(
    real: Any,
    synthetic: Any,
    *,
    metric: str = "euclidean",
    nearest_k: int = 5,
    mode_collapse_threshold: float = 0.05,
    block_size: int = DEFAULT_BLOCK_SIZE,
    backend: str = "auto",
    compute_fid: bool = True,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    reference: RealNeighbourhood | None = None,
    progress: bool = False,
    patients: Any = None,
) -> EvaluationResult:
    """Fidelity, privacy and their per-image details of ``synthetic`` against ``real``.

    Args:
        real: (N, D) real features; NumPy, Dask or Zarr. Floats for ``metric="euclidean"``,
            integer codes for ``metric="hamming"`` (distance = fraction of differing positions).
        synthetic: (M, D) synthetic features, same kind.
        nearest_k: k of the k-th-neighbour radius (default 5, as the reference).
        mode_collapse_threshold: copy margin applied when the synthetic feature std is at most
            this value (METHOD.md, "Mode collapse").
        block_size: rows per block; bounds each worker's memory, whatever N and M are.
        backend: "auto" (torch on a worker's GPU; int8 scores for D >= 512 on a CPU with
            AMX where torch is loaded; else NumPy), "numpy", "torch" or "int8".
        compute_fid: compute FID (Euclidean only); ``fid_max_dim`` caps D for the D x D route.
        reference: from :func:`real_neighbourhood` on the same ``real``, to skip the radii pass
            (and the real FID moments, when it carries ``fid_statistics``).
        progress: show a progress bar (distributed's when a Client is active).
        patients: one patient label per real image (str or int), row-aligned with ``real``:
            adds the patient-level copy test (METHOD.md, "Patient mode") as ``.patients``.

    Runs on the current Dask scheduler: a distributed Client's cluster when one is active.
    Inputs of a few blocks (:func:`~.neighbours.local.in_memory_when_small`) are read into
    this process and computed here, on one thread per core, without a graph.
    """
    check_options(
        metric, block_size, backend=backend, nearest_k=nearest_k, threshold=mode_collapse_threshold
    )
    real, synthetic = local.in_memory_when_small(
        [array_like(real), array_like(synthetic)], block_size
    )
    inputs = {"real": real, "synthetic": synthetic}
    here = local.runs_here(list(inputs.values()), block_size)
    compute = _progress(progress, here)
    with scattered_inputs(inputs, block_size, scatter=not here) as (real, synthetic):
        check_features(real, synthetic, metric, nearest_k)
        check_reference(reference, real, metric, nearest_k)
        if here:
            ok_real, ok_synthetic, std, centre = local.summary(*inputs.values(), metric)
        else:
            ok_real, ok_synthetic, std, centre = compute(
                usable_flag(real, metric),
                usable_flag(synthetic, metric),
                feature_std(synthetic),
                lazy_centre(real, metric) if reference is None else None,
            )
        centre = centre if reference is None else reference.centre
        check_finite({"real": real, "synthetic": synthetic}, [ok_real, ok_synthetic], metric)
        margin = scores.copy_margin(float(std), mode_collapse_threshold)
        settings = {"nearest_k": nearest_k, "metric": metric, "centre": centre, "backend": backend}
        if here:
            n_real, (n_synthetic, dim) = len(inputs["real"]), inputs["synthetic"].shape
            work = pass_work(n_real, n_synthetic, dim, radii=reference is None)
            options = {"block_size": block_size, "progress": progress, "work": work}
            run = local.Runner(metric, centre, backend, **options)
            smallest, per_real, per_synth = _neighbourhoods_here(
                run, *inputs.values(), reference, margin, nearest_k
            )
        else:
            smallest, per_real, per_synth = _neighbourhood_graph(
                real, synthetic, reference, margin, **settings
            )
        fid = plan_fid(
            real,
            synthetic,
            metric=metric,
            compute_fid=compute_fid,
            fid_max_dim=fid_max_dim,
            real_fid=reference.fid_statistics if reference is not None else None,
        )
        if here and not fid.lazy:  # all computed already: no graph to walk
            fid_parts = ()
        else:
            smallest, per_real, per_synth, fid_parts = compute(
                smallest, per_real, per_synth, fid.lazy
            )
        patient = None
        if patients is not None:
            patient = patient_scores(
                real,
                synthetic,
                patients,
                reference=reference,
                margin=margin,
                metric=metric,
                centre=centre,
                backend=backend,
                compute=compute,
            )
    fid_statistics = reference.fid_statistics if reference is not None else None
    result = assemble(
        RealNeighbourhood(np.concatenate(smallest), centre, metric, nearest_k, fid_statistics),
        combine_blocks(per_real),
        combine_blocks(per_synth),
        std=float(std),
        margin=margin,
        fid=fid.finish(fid_parts),
        fid_reason=fid.reason,
        block_size=block_size,
    )
    result.patients = patient
    return result


def _neighbourhoods_here(
    run: local.Runner,
    real: np.ndarray,
    synthetic: np.ndarray,
    reference: RealNeighbourhood | None,
    margin: float,
    nearest_k: int,
) -> tuple[list, list, list]:
    """Radii (one array in a list), per-real and per-synthetic partials of in-memory features,
    computed now in this process (:mod:`.neighbours.local`)."""
    with run:
        if reference is None:
            smallest = run.radii(real, nearest_k, synthetic)
        else:
            smallest = reference.smallest
        per_real, per_synth = run.compare(real, synthetic, smallest, margin, nearest_k)
    return [smallest], per_real, per_synth


def _neighbourhood_graph(
    real: Any, synthetic: Any, reference: RealNeighbourhood | None, margin: float, **settings: Any
) -> tuple[list, list, list]:
    """The same as lazy Delayed objects of one graph (:mod:`.neighbours.graph`)."""
    if reference is None:
        smallest = graph.radii_graph(real, **settings)
    else:
        smallest = np.split(reference.smallest, np.cumsum(real.chunks[0])[:-1])
    per_real, per_synth = graph.compare_graph(real, synthetic, smallest, margin, **settings)
    return smallest, per_real, per_synth


def feature_statistics(
    real: Any,
    synthetic: Any,
    *,
    metric: str = "euclidean",
    block_size: int = DEFAULT_BLOCK_SIZE,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    real_statistics: RealFID | None = None,
    progress: bool = False,
) -> dict[str, float | str | None]:
    """``std`` of the synthetic features and ``fid`` (None, with ``fid_reason``, for codes).

    The per-(model, resolution) numbers behind MM-FID and MM-STD; no neighbourhoods. Same input
    checks as :func:`evaluate_features`. ``real_statistics``, from :func:`real_fid_statistics`
    on the same ``real``, skips the real set's pass and decomposition.
    """
    check_options(metric, block_size)
    inputs = {"real": real, "synthetic": synthetic}
    with scattered_inputs(inputs, block_size) as (real, synthetic):
        check_features(real, synthetic, metric)
        check_real_statistics(real_statistics, real)
        fid = plan_fid(
            real, synthetic, metric=metric, fid_max_dim=fid_max_dim, real_fid=real_statistics
        )
        ok_real, ok_synthetic, std, fid_parts = _compute(
            finite_flag(real),
            finite_flag(synthetic),
            feature_std(synthetic),
            fid.lazy,
            progress=progress,
        )
        check_finite({"real": real, "synthetic": synthetic}, [ok_real, ok_synthetic])
    return {"std": float(std), "fid": fid.finish(fid_parts), "fid_reason": fid.reason}
