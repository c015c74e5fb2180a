"""The end-to-end job: extract features, score every synthetic group, measure variety, write.

``analyze(settings)`` composes the pipeline: sources -> features (extracted once per image set
and configuration, reused on reruns) -> neighbours (real radii once, then the real x synthetic
pass per group) -> metrics (scores, FID/STD per model and resolution, MM-FID/MM-STD, mean-image
variety) -> report (:mod:`medsyn_dask.report`). It runs on the current Dask client.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cache import cache_key, features_digest, load_real_neighbourhood, save_real_neighbourhood
from .cluster import ImportAhead
from .evaluate import (
    EvaluationResult,
    RealNeighbourhood,
    evaluate_features,
    feature_statistics,
    real_fid_statistics,
    real_neighbourhood,
)
from .evaluate_patients import with_patient_radii
from .features import BadImage, ExtractionResult, extract_features, load_features
from .features.store import LoadedFeatures
from .job_baseline import scored_groups, split_reference
from .metrics.baseline import HOLDOUT
from .metrics.multiscale import multiscale_score
from .metrics.variety import GroupVariety, group_variety
from .metrics.variety.graph import first_readable_shape
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
    _import_torch_ahead()
    real_set, synthetic_sets = datasets or check_settings(settings)
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
    features, patients = split_reference(settings, features, real_set, progress=progress)
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


def _import_torch_ahead() -> None:
    """Workers load torch now, all at once, for the extraction (see ImportAhead)."""
    from distributed import get_client

    with contextlib.suppress(ValueError):  # no distributed client: nothing to warm
        get_client().register_plugin(ImportAhead(["torch"]))


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
    return AnalysisResult(
        settings=settings,
        real=first[REAL],
        synthetic={g: first[g] for g in settings.synthetic},
        scores=scores,
        reference=reference,
        holdout=first.get(HOLDOUT),
        variety=variety,
        statistics=statistics,
        multiscale=_multiscale(statistics, settings) if len(statistics) > 1 else None,
        bad_images={name: _bad(f) for name, f in first.items()},
    )


def model_resolution_pairs(settings: AnalyzeSettings) -> list[tuple[str, int]]:
    """Every (model, resolution) of the run; the first gives the neighbourhood scores."""
    return [(m, r) for m in settings.models for r in settings.resolutions]


def extract_all(
    settings: AnalyzeSettings,
    pair: tuple[str, int],
    classes: list[str],
    *,
    listed: Mapping[str, Dataset] | None = None,
    progress: bool = True,
    mean_image: MeanImageSums | None = None,
    summed: dict[str, ExtractionResult] | None = None,
) -> dict[str, LoadedFeatures]:
    """Stage 1: features of the real set and every group for one (model, resolution).

    Extracted into ``settings.store`` (reused when already there) and loaded back; keyed by
    ``"real"`` and the group names. ``listed`` holds the sets :func:`check_settings` listed
    (by the same keys), so that a large bucket is not listed again. With ``mean_image``, the
    real set's and the groups' tasks also sum the images they read for the mean images, and
    ``summed`` receives each of those sets' :class:`ExtractionResult` for
    :func:`measure_variety`.
    """
    model, resolution = pair
    roots = {REAL: settings.real, **settings.synthetic}
    if settings.holdout is not None and pair == model_resolution_pairs(settings)[0]:
        roots[HOLDOUT] = settings.holdout  # scored once, as the reference row
    out = {}
    for name, root in roots.items():
        group = name if name in (REAL, HOLDOUT) else f"synthetic-{name}"
        stage(f"features: {name} ({model}, {resolution} px)", enabled=progress)
        done = extract_features(
            root,
            settings.store,
            group,
            model,
            weights=settings.weights.get(model),
            resolution=resolution,
            num_channels=settings.num_channels,
            class_names=classes,
            storage_options=dict(settings.storage_options),
            batch_size=settings.batch_size,
            on_bad_image=settings.on_bad_image,
            verify_content=settings.verify_content,
            progress=progress,
            dataset=(listed or {}).get(name),
            mean_image=None if name == HOLDOUT else mean_image,
        )
        if mean_image is not None and summed is not None and name != HOLDOUT:
            summed[name] = done
        out[name] = load_features(
            settings.store, group, name=done.name, storage_options=dict(settings.storage_options)
        )
    return out


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


def mean_image_target(
    settings: AnalyzeSettings, synthetic_sets: dict[str, Dataset]
) -> MeanImageSums:
    """The mean images' one shape: that of the first readable image of the first group
    (METHOD.md), read before the extraction so that its tasks can sum the images."""
    first = next(iter(synthetic_sets.values()))  # its paths are listed class by class
    read = functools.partial(read_image, storage_options=dict(settings.storage_options))
    return MeanImageSums(first_readable_shape(first.paths, read, first.volumes), first.volumes)


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
