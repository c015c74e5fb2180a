"""The entry point of an analysis: mean images, lossless sizes and variety of synthetic groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from ...checks import ALL_CLASSES
from ...errors import SettingsError
from ...sources.readers import read_image
from .codecs import Codec, check_codec, codec_version, lossless_size
from .graph import (
    PathsByClass,
    Reader,
    check_paths,
    check_reduction,
    first_image_shape,
    mean_images_delayed,
    partial_sums_delayed,
)
from .score import (
    Partial,
    all_classes_mean,
    class_mean,
    combine_partials,
    variety_scores,
    variety_undefined_reason,
)

#: Key of the reference (real) set among the groups of one computation; not a valid group name.
_REFERENCE = "\0reference"


@dataclass(frozen=True)
class GroupVariety:
    """Mean-image variety of several synthetic groups analysed together.

    ``class_means[group][cls]`` and ``all_classes[group]`` are the uint8 mean images
    (``(H, W, 3)`` or ``(X, Y, Z)``, one shape for all groups); ``sizes`` their lossless sizes
    in bytes (the raw measure); ``scores`` the normalised variety, ``None`` with ``reason``
    when it is undefined. ``reference_means`` are the real set's per-class means (same shape,
    for comparison only: the real set takes no part in the scores), ``reference_size`` the
    lossless size of its all-classes mean; both ``None`` when no reference was given.
    """

    class_means: dict[str, dict[str, np.ndarray]]
    all_classes: dict[str, np.ndarray]
    sizes: dict[str, int]
    scores: dict[str, float | None]
    reason: str | None
    codec: str
    codec_version: str | None
    shape: tuple[int, ...]
    reference_means: dict[str, np.ndarray] | None = None
    reference_size: int | None = None

    def image_sets(self, reference_name: str = "real") -> dict[str, dict[str, np.ndarray]]:
        """Name -> {class: mean, ``"all_classes"``: mean}: the reference set first, then groups."""
        out = {}
        if self.reference_means is not None:
            ref = dict(self.reference_means)
            out[reference_name] = {**ref, ALL_CLASSES: all_classes_mean(ref)}
        for group, means in self.class_means.items():
            out[group] = {**means, ALL_CLASSES: self.all_classes[group]}
        return out

    def to_dict(self) -> dict:
        """JSON-ready summary (no images): per group size and score, plus codec and shape."""
        return {
            "groups": {
                g: {"mean_image_bytes": self.sizes[g], "variety": self.scores[g]}
                for g in self.sizes
            },
            "variety_undefined_reason": self.reason,
            "codec": self.codec,
            "codec_version": self.codec_version,
            "shape": list(self.shape),
            "reference_mean_image_bytes": self.reference_size,
        }


def group_variety(
    paths_by_group: Mapping[str, PathsByClass],
    read: Reader = read_image,
    *,
    codec: Codec = "png",
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
    reference: PathsByClass | None = None,
    sums: Mapping[str, Any] | None = None,
    reference_sums: Any = None,
) -> GroupVariety:
    """Mean images, their lossless sizes and the variety scores of synthetic groups.

    ``paths_by_group`` maps group -> class -> paths. All groups' means are computed in one
    Dask computation on the current scheduler, every image resized to one ``target_size``
    (by default the shape of the first image of the first class of the first group), so that
    the sizes compare like with like. ``reference`` (class -> paths of the real set) adds the
    real set's mean images, computed in the same pass at the same size, for comparison; it
    takes no part in the scores. ``sums`` (group -> images already summed by the extraction,
    see :mod:`.sums`) and ``reference_sums`` join the reductions; their images are left out of
    the paths, and ``target_size`` and ``volumes`` must then be given. Other arguments are as
    for :func:`~medsyn_dask.metrics.variety.mean_images`.
    """
    check_codec(codec)
    if not paths_by_group:
        raise SettingsError("group_variety needs at least one group, got none")
    sums = dict(sums or {})
    if reference_sums is not None:
        sums[_REFERENCE] = reference_sums
    if sums and (target_size is None or volumes is None):
        raise SettingsError("group_variety with sums taken elsewhere needs target_size and volumes")
    sets = {g: check_paths(p, allow_empty=g in sums) for g, p in paths_by_group.items()}
    every = {f"{g}/{c}": p for g, classes in sets.items() for c, p in classes.items()}
    volumes = check_reduction(every, partition_size, target_size, volumes, split_every)
    if target_size is None:
        target_size = first_image_shape(next(iter(every.values()))[0], read, volumes)
    if reference is not None:
        sets[_REFERENCE] = check_paths(reference, allow_empty=_REFERENCE in sums)
    options = {
        "partition_size": partition_size,
        "target_size": target_size,
        "volumes": volumes,
        "split_every": split_every,
    }
    graphs = {
        g: (partial_sums_delayed if g in sums else mean_images_delayed)(classes, read, **options)
        for g, classes in sets.items()
    }
    (computed,) = dask.compute(graphs)
    class_means = {
        g: _means_with_sums(computed[g], sums[g], list(sets[g])) if g in sums else computed[g]
        for g in sets
    }
    reference_means = class_means.pop(_REFERENCE, None)
    reference_size = (
        None
        if reference_means is None
        else lossless_size(all_classes_mean(reference_means), codec, volume=volumes)
    )
    all_classes = {g: all_classes_mean(means) for g, means in class_means.items()}
    sizes = {g: lossless_size(m, codec, volume=volumes) for g, m in all_classes.items()}
    return GroupVariety(
        class_means=class_means,
        all_classes=all_classes,
        sizes=sizes,
        scores=variety_scores(sizes),
        reason=variety_undefined_reason(sizes),
        codec=codec,
        codec_version=codec_version(codec),
        shape=tuple(int(n) for n in target_size),
        reference_means=reference_means,
        reference_size=reference_size,
    )


def _means_with_sums(
    read: Mapping[str, Partial], sums: Mapping[str, Partial], classes: list[str]
) -> dict[str, np.ndarray]:
    """Class -> uint8 mean of the images read here and those summed elsewhere, added here."""
    means = {}
    for cls in classes:
        parts = [p for p in (read.get(cls), sums.get(cls)) if p is not None]
        means[cls] = class_mean(combine_partials(parts) if parts else (None, 0), cls)
    return means
