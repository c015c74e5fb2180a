"""The end-to-end job: extract features, score every synthetic group, measure variety, write.

``analyze(settings)`` composes the pipeline: sources -> features (extracted once per image set
and configuration, reused on reruns) -> neighbours (real radii once, then the real x synthetic
pass per group) -> metrics (scores, FID/STD per model and resolution, MM-FID/MM-STD, mean-image
variety) -> report (:mod:`medsyn_dask.report`). It runs on the current Dask client.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache import cache_key, features_digest, load_real_neighbourhood, save_real_neighbourhood
from .evaluate import (
    EvaluationResult,
    RealNeighbourhood,
    evaluate_features,
    feature_statistics,
    real_fid_statistics,
    real_neighbourhood,
)
from .evaluate_patients import with_patient_radii
from .features import BadImage, ExtractionResult
from .features.store import LoadedFeatures
from .job_baseline import scored_groups, split_reference
from .job_features import (
    as_dask,
    extract_all,
    import_ahead,
    mean_image_target,
    model_resolution_pairs,
)
from .metrics.baseline import HOLDOUT
from .metrics.multiscale import multiscale_score
from .metrics.variety import GroupVariety, group_variety
from .metrics.variety.sums import MeanImageSums
from .progress import stage
from .settings import REAL, AnalyzeSettings, check_settings
from .sources import Dataset, read_image, relative_path


@dataclass
class AnalysisResult:
    """The results of a run: per group scores, variety, MM-FID/MM-STD, and the inputs' tables."""

    settings: AnalyzeSettings
    real: LoadedFeatures
    synthetic: dict[str, LoadedFeatures]
    scores: dict[str, EvaluationResult]
    variety: GroupVariety
    statistics: dict[tuple[str, int], dict[str, dict[str, float | None]]]
    multiscale: dict[str, Any] | None
    bad_images: dict[str, list[dict[str, str]]]
    #: The held-out real images scored as the reference row, and their features (or None).
    reference: EvaluationResult | None = None
    holdout: LoadedFeatures | None = None


def analyze(
    settings: AnalyzeSettings,
    *,
    progress: bool = True,
    datasets: tuple[Dataset, dict[str, Dataset]] | None = None,
) -> AnalysisResult:
    """Run the whole job on the current Dask client (see the module docstring).

    ``datasets`` is what :func:`check_settings` returned, when the caller has checked already
    (listing a large bucket twice is not free).
    """
    real_set, synthetic_sets = datasets or check_settings(settings)
    import_ahead(settings, real_set.volumes)
    classes = list(real_set.class_names)
    pairs = model_resolution_pairs(settings)
    listed = {REAL: real_set, **synthetic_sets}
    # The first pair's extraction also sums the images for the mean images: one read each.
    target, summed = mean_image_target(settings, synthetic_sets), {}
    features = {
        pair: extract_all(
            settings,
            pair,
            classes,
            listed=listed,
            progress=progress,
            mean_image=target if pair == pairs[0] else None,
            summed=summed,
        )
        for pair in pairs
    }
    features, patients = split_reference(settings, features, progress=progress)
    first = features[pairs[0]]
    scores = score_groups(
        settings, first[REAL], scored_groups(settings, first), patients=patients, progress=progress
    )
    statistics = pair_statistics(settings, features, scores, progress=progress)
    skipped = {name: f.bad_images for name, f in first.items()}
    variety = measure_variety(
        settings,
        synthetic_sets,
        real_set=real_set,
        skipped=skipped,
        progress=progress,
        mean_image=target,
        summed=summed,
    )
    return assemble_result(settings, features, scores, variety, statistics)


def assemble_result(
    settings: AnalyzeSettings,
    features: dict[tuple[str, int], dict[str, LoadedFeatures]],
    scores: dict[str, EvaluationResult],
    variety: GroupVariety,
    statistics: dict[tuple[str, int], dict[str, dict]] | None = None,
) -> AnalysisResult:
    """The :class:`AnalysisResult` of the stages' outputs (no computation).

    ``features`` is keyed by (model, resolution), the first pair's features being those
    scored; ``statistics`` defaults to the first pair's FID and STD from ``scores``. A
    ``"holdout"`` entry of ``scores`` becomes the reference row.
    """
    pairs = list(features)
    first = features[pairs[0]]
    reference = scores.get(HOLDOUT)
    scores = {g: scores[g] for g in settings.synthetic}
    if statistics is None:
        statistics = {pairs[0]: {g: {"fid": s.fid, "std": s.std} for g, s in scores.items()}}
    holdout = first.get(HOLDOUT)
    return AnalysisResult(
        settings=settings,
        real=as_dask(first[REAL]),
        synthetic={g: as_dask(first[g]) for g in settings.synthetic},
        scores=scores,
        reference=reference,
        holdout=None if holdout is None else as_dask(holdout),
        variety=variety,
        statistics=statistics,
        multiscale=_multiscale(statistics, settings) if len(statistics) > 1 else None,
        bad_images={name: _bad(f) for name, f in first.items()},
    )


def metric_for(features: LoadedFeatures) -> str:
    """Hamming for integer codes (VQ-VAE), Euclidean for continuous features."""
    return "hamming" if np.dtype(features.features.dtype).kind in "iu" else "euclidean"


def score_groups(
    settings: AnalyzeSettings,
    real: LoadedFeatures,
    synthetic: dict[str, LoadedFeatures],
    *,
    patients: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, EvaluationResult]:
    """Stage 2: the real radii once, then each group's real x synthetic pass (METHOD.md).

    ``patients`` (one label per real image) adds patient mode; a ``"holdout"`` entry of
    ``synthetic`` (held-out real images) is scored like a group, as the reference row.
    """
    metric = metric_for(real)
    reference = real_reference(settings, real, metric, progress=progress)
    if patients is not None:
        stage("neighbourhoods: patient radii (other patients only)", enabled=progress)
        reference = with_patient_radii(
            reference, real.features, patients, block_size=settings.block_size
        )
    out = {}
    for name, synth in synthetic.items():
        stage(f"neighbourhoods: real x {name}", enabled=progress)
        out[name] = evaluate_features(
            real.features,
            synth.features,
            metric=metric,
            nearest_k=settings.nearest_k,
            mode_collapse_threshold=settings.mode_collapse_threshold,
            block_size=settings.block_size,
            reference=reference,
            progress=progress,
            patients=patients,
        )
    return out


def real_reference(
    settings: AnalyzeSettings, real: LoadedFeatures, metric: str, *, progress: bool = True
) -> RealNeighbourhood:
    """The real radii and FID statistics: from the feature store's cache when an earlier run
    had the very same real features, metric and k (:mod:`medsyn_dask.cache`), else computed
    and stored there for the next run."""
    options = dict(settings.storage_options)
    key = cache_key(features_digest(real.features), metric, settings.nearest_k)
    cached = load_real_neighbourhood(settings.store, key, real.features.shape[0], options)
    if cached is not None:
        stage(
            f"neighbourhoods: real radii ({metric}, k={settings.nearest_k}) reused from the "
            "feature store (same real features)",
            enabled=progress,
        )
        return cached
    stage(f"neighbourhoods: real radii ({metric}, k={settings.nearest_k})", enabled=progress)
    reference = real_neighbourhood(
        real.features,
        metric=metric,
        nearest_k=settings.nearest_k,
        block_size=settings.block_size,
        compute_fid=True,  # the real FID statistics once, reused by every group
        progress=progress,
    )
    save_real_neighbourhood(settings.store, key, reference, options)
    return reference


def pair_statistics(
    settings: AnalyzeSettings,
    features: dict[tuple[str, int], dict[str, LoadedFeatures]],
    scores: dict[str, EvaluationResult],
    *,
    progress: bool = True,
) -> dict[tuple[str, int], dict[str, dict]]:
    """Stage 2b: FID and STD of every group for every (model, resolution), the first pair's
    taken from ``scores``; the inputs of MM-FID/MM-STD."""
    pairs = list(features)
    if len(pairs) > 1:
        stage(f"statistics: FID and STD for {len(pairs)} model/resolution pairs", enabled=progress)
    return {pair: _statistics(settings, features[pair], scores, pair == pairs[0]) for pair in pairs}


def _statistics(settings, features, scores, primary: bool) -> dict[str, dict]:
    """FID and STD per group for one (model, resolution)."""
    if primary:
        return {g: {"fid": s.fid, "std": s.std} for g, s in scores.items() if g != HOLDOUT}
    real = features[REAL]
    metric = metric_for(real)
    kwargs = {"metric": metric, "block_size": settings.block_size}
    real_fid = real_fid_statistics(real.features, **kwargs)  # once per pair, for every group
    return {
        g: feature_statistics(
            real.features, features[g].features, real_statistics=real_fid, **kwargs
        )
        for g in settings.synthetic
    }


def _multiscale(statistics, settings) -> dict[str, Any]:
    """MM-FID and MM-STD per group over all (model, resolution) pairs (METHOD.md)."""
    out: dict[str, Any] = {}
    for name in ("fid", "std"):
        per_group = {}
        for group in settings.synthetic:
            values = {pair: stats[group][name] for pair, stats in statistics.items()}
            if any(v is None for v in values.values()):
                per_group[group] = None
                continue
            per_group[group] = multiscale_score(values).to_dict()
        out[f"mm_{name}"] = per_group
    return out


def measure_variety(
    settings: AnalyzeSettings,
    synthetic_sets: dict[str, Dataset],
    *,
    real_set: Dataset | None = None,
    skipped: Mapping[str, Sequence[BadImage]] | None = None,
    progress: bool = True,
    mean_image: MeanImageSums | None = None,
    summed: Mapping[str, ExtractionResult] | None = None,
) -> GroupVariety:
    """Stage 3: the mean image of every group and class, its lossless size and the variety.

    With ``real_set``, the real set's mean images too (for comparison, not scored).
    ``skipped`` (set name -> bad images left out by extraction) are left out here too.
    ``summed`` (set name -> extraction that summed its images, see :func:`extract_all`) saves
    reading those images again; ``mean_image`` is then the target the sums were taken at.
    """
    stage(f"variety: mean images ({settings.codec})", enabled=progress)
    read = functools.partial(read_image, storage_options=dict(settings.storage_options))
    skipped, summed = skipped or {}, dict(summed or {}) if mean_image else {}

    def to_read(name: str, dataset: Dataset) -> dict[str, list[str]]:
        rows = summed[name].summed_rows if name in summed else ()  # () when none was summed
        return _paths_by_class(dataset, skipped.get(name, ()), rows)

    def sums(name: str) -> Any:
        done = summed.get(name)
        return None if done is None else done.image_sums

    paths = {g: to_read(g, d) for g, d in synthetic_sets.items()}
    group_sums = {g: sums(g) for g in synthetic_sets if sums(g) is not None}
    target = {"target_size": mean_image.shape, "volumes": mean_image.volume} if mean_image else {}
    return group_variety(
        paths,
        read,
        codec=settings.codec,
        reference=to_read(REAL, real_set) if real_set else None,
        sums=group_sums,
        reference_sums=sums(REAL) if real_set else None,
        **target,
    )


def _paths_by_class(
    dataset: Dataset, skipped: Sequence[BadImage] = (), summed_rows: Sequence[int] = ()
) -> dict[str, list[str]]:
    """Class -> paths of ``dataset``, without the ``skipped`` bad images and the rows
    ``summed_rows`` (indices into ``dataset.paths``)."""
    left_out = {bad.path for bad in skipped}
    summed = set(summed_rows)
    by_class: dict[str, list[str]] = {c: [] for c in dataset.class_names}
    for i, (path, cls) in enumerate(zip(dataset.paths, dataset.classes, strict=True)):
        if i not in summed and relative_path(dataset.root, path) not in left_out:
            by_class[cls].append(path)
    return by_class


def _bad(features: LoadedFeatures) -> list[dict[str, str]]:
    return [bad._asdict() for bad in features.bad_images]
