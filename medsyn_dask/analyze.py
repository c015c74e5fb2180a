"""The end-to-end job: extract features, score every synthetic group, measure variety, write.

``analyze(settings)`` composes the pipeline: sources -> features (extracted once per image set
and configuration, reused on reruns) -> neighbours (real radii once, then the real x synthetic
pass per group) -> metrics (scores, FID/STD per model and resolution, MM-FID/MM-STD, mean-image
variety) -> report (:mod:`medsyn_dask.report`). It runs on the current Dask client.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .evaluate import EvaluationResult, evaluate_features, feature_statistics, real_neighbourhood
from .features import extract_features, load_features
from .features.base import resolve_name
from .features.store import LoadedFeatures
from .metrics.multiscale import multiscale_score
from .metrics.variety import CODECS, GroupVariety, group_variety
from .sources import Dataset, list_images, read_image

_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class AnalyzeSettings:
    """Everything a run needs. Roots and ``output`` are local paths or fsspec URLs.

    ``models`` x ``resolutions`` are all extracted; the first pair gives the neighbourhood
    scores and per-image tables, all pairs give FID and STD (MM-FID/MM-STD when there are
    several). ``weights`` maps a model name to its weights file.
    """

    real: str
    synthetic: Mapping[str, str]
    output: str
    models: tuple[str, ...] = ("pixels",)
    resolutions: tuple[int, ...] = (256,)
    weights: Mapping[str, str] = field(default_factory=dict)
    num_channels: int = 1
    nearest_k: int = 5
    class_names: tuple[str, ...] | None = None
    features_store: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    codec: str = "png"
    mode_collapse_threshold: float = 0.05
    block_size: int = 2048
    batch_size: int = 32
    on_bad_image: str = "error"

    @property
    def store(self) -> str:
        return self.features_store or f"{self.output.rstrip('/')}/features.zarr"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, without storage options (they may hold credentials)."""
        out = asdict(self)
        out.pop("storage_options")
        out["features_store"] = self.store
        return out


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


def check_settings(settings: AnalyzeSettings) -> tuple[Dataset, dict[str, Dataset]]:
    """Fail fast, before any work: names, models, codec, roots and their classes.

    Returns the listed real and synthetic datasets.
    """
    if not settings.synthetic:
        raise ValueError("at least one synthetic group is needed (--synthetic NAME=ROOT)")
    for name in settings.synthetic:
        if not _GROUP_NAME.fullmatch(name) or name == "real":
            raise ValueError(
                f"synthetic group name must be letters, digits, '_', '.', '-' "
                f"(and not 'real'): {name!r}"
            )
    for model in settings.models:
        resolve_name(model, settings.weights.get(model))
    if settings.codec not in CODECS:
        raise ValueError(f"codec must be one of {list(CODECS)}, got {settings.codec!r}")
    if not settings.resolutions or min(settings.resolutions) < 8:
        raise ValueError(f"resolutions must be at least 8 pixels, got {settings.resolutions}")
    so = dict(settings.storage_options)
    real = list_images(settings.real, settings.class_names, so)
    synthetic = {}
    for name, root in settings.synthetic.items():
        synthetic[name] = list_images(root, settings.class_names, so)
        if set(synthetic[name].class_names) != set(real.class_names):
            raise ValueError(
                f"classes differ between real ({', '.join(real.class_names)}) and synthetic "
                f"group {name!r} ({', '.join(synthetic[name].class_names)}); "
                "use --class-names to pick the shared ones"
            )
    for dataset in (real, *synthetic.values()):
        empty = sorted(set(dataset.class_names) - set(dataset.classes))
        if empty:
            raise ValueError(f"class folder {dataset.root}/{empty[0]} holds no images")
    if any(d.volumes != real.volumes for d in synthetic.values()):
        raise ValueError("real and synthetic sets mix 2D images and 3D volumes")
    return real, synthetic


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
    classes = list(real_set.class_names)
    pairs = [(m, r) for m in settings.models for r in settings.resolutions]
    features = {pair: _extract_all(settings, pair, classes, progress) for pair in pairs}
    real, synthetic = (
        features[pairs[0]]["real"],
        {g: features[pairs[0]][g] for g in settings.synthetic},
    )
    scores = _score_groups(settings, real, synthetic, progress)
    statistics = {
        pair: _statistics(settings, features[pair], scores, pair == pairs[0]) for pair in pairs
    }
    return AnalysisResult(
        settings=settings,
        real=real,
        synthetic=synthetic,
        scores=scores,
        variety=_variety(settings, synthetic_sets),
        statistics=statistics,
        multiscale=_multiscale(statistics, settings) if len(pairs) > 1 else None,
        bad_images={name: _bad(f) for name, f in features[pairs[0]].items()},
    )


def _extract_all(settings, pair, classes, progress) -> dict[str, LoadedFeatures]:
    """Features of the real set and every group for one (model, resolution)."""
    model, resolution = pair
    roots = {"real": settings.real, **settings.synthetic}
    out = {}
    for name, root in roots.items():
        group = name if name == "real" else f"synthetic-{name}"
        if progress:
            print(f"features: {name} ({model}, {resolution} px)", flush=True)
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
            progress=progress,
        )
        out[name] = load_features(
            settings.store, group, name=done.name, storage_options=dict(settings.storage_options)
        )
    return out


def metric_for(features: LoadedFeatures) -> str:
    """Hamming for integer codes (VQ-VAE), Euclidean for continuous features."""
    return "hamming" if np.dtype(features.features.dtype).kind in "iu" else "euclidean"


def _score_groups(settings, real, synthetic, progress) -> dict[str, EvaluationResult]:
    metric = metric_for(real)
    if progress:
        print(f"neighbourhoods: real radii ({metric}, k={settings.nearest_k})", flush=True)
    reference = real_neighbourhood(
        real.features,
        metric=metric,
        nearest_k=settings.nearest_k,
        block_size=settings.block_size,
        progress=progress,
    )
    out = {}
    for name, synth in synthetic.items():
        if progress:
            print(f"neighbourhoods: real x {name}", flush=True)
        out[name] = evaluate_features(
            real.features,
            synth.features,
            metric=metric,
            nearest_k=settings.nearest_k,
            mode_collapse_threshold=settings.mode_collapse_threshold,
            block_size=settings.block_size,
            reference=reference,
            progress=progress,
        )
    return out


def _statistics(settings, features, scores, primary: bool) -> dict[str, dict]:
    """FID and STD per group for one (model, resolution)."""
    if primary:
        return {g: {"fid": s.fid, "std": s.std} for g, s in scores.items()}
    real = features["real"]
    return {
        g: feature_statistics(real.features, features[g].features, metric=metric_for(real))
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


def _variety(settings, synthetic_sets: dict[str, Dataset]) -> GroupVariety:
    read = functools.partial(read_image, storage_options=dict(settings.storage_options))
    paths = {
        g: {
            c: [p for p, k in zip(d.paths, d.classes, strict=True) if k == c] for c in d.class_names
        }
        for g, d in synthetic_sets.items()
    }
    return group_variety(paths, read, codec=settings.codec)


def _bad(features: LoadedFeatures) -> list[dict[str, str]]:
    return list(features.provenance.get("bad_images", []))
