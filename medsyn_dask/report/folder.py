"""Reading a finished output folder back: metrics.json, the per-image tables, the mean images.

The report is rendered from these files alone, never from a second computation, so that
``medsyn-dask report OUT`` and the job show the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd

from ..checks import ALL_CLASSES
from ..errors import InputError
from .tables import METRICS_FILE

_MEAN_ENDINGS = (".png", ".nii.gz")


@dataclass
class RunOutputs:
    """What a run wrote under ``output``.

    ``per_image`` maps each group to its per-image table (``per_image/GROUP.csv``);
    ``mean_images`` maps a set (``"real"`` when written, then the groups, in metrics order) to
    ``{name: (file name, bytes)}`` with the classes first and ``all_classes`` last.
    """

    output: str
    metrics: dict[str, Any]
    per_image: dict[str, pd.DataFrame]
    mean_images: dict[str, dict[str, tuple[str, bytes]]]

    @property
    def classes(self) -> list[str]:
        """The classes of the run, in the order of the per-class results."""
        for group in self.metrics["groups"].values():
            if group.get("per_class"):
                return list(group["per_class"])
        return sorted({c for t in self.per_image.values() for c in t["class"].astype(str)})


def read_metrics(output: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The content of ``output/metrics.json``; :class:`InputError` when there is none."""
    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    path = f"{root}/{METRICS_FILE}"
    if not fs.exists(path):
        raise InputError(
            f"{output} holds no {METRICS_FILE}: not an output folder of medsyn-dask analyze, "
            "or the run did not finish"
        )
    try:
        with fs.open(path, "r") as f:
            metrics = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{output}: {METRICS_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict) or "groups" not in metrics:
        raise InputError(f"{output}: {METRICS_FILE} is not the metrics of a medsyn-dask run")
    return metrics


def read_outputs(output: str, storage_options: dict | None = None) -> RunOutputs:
    """Read the output folder ``output`` (local path or URL).

    Raises :class:`InputError` when ``metrics.json`` is missing (the run did not finish) or a
    per-image table it names is missing.
    """
    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    metrics = read_metrics(output, storage_options)
    per_image = {}
    for group in metrics["groups"]:
        path = f"{root}/per_image/{group}.csv"
        if not fs.exists(path):
            raise InputError(f"{output}: per_image/{group}.csv is missing")
        with fs.open(path, "r") as f:
            per_image[group] = pd.read_csv(f)
    sets = ["real", *metrics["groups"]]
    mean_images = {s: _mean_images(fs, f"{root}/mean_images/{s}") for s in sets}
    return RunOutputs(
        output=output,
        metrics=metrics,
        per_image=per_image,
        mean_images={s: images for s, images in mean_images.items() if images},
    )


def _mean_images(fs, folder: str) -> dict[str, tuple[str, bytes]]:
    if not fs.isdir(folder):
        return {}
    found = {}
    for path in sorted(fs.ls(folder, detail=False)):
        file_name = path.rsplit("/", 1)[-1]
        for ending in _MEAN_ENDINGS:
            if file_name.endswith(ending):
                with fs.open(path, "rb") as f:
                    found[file_name.removesuffix(ending)] = (file_name, f.read())
    last = found.pop(ALL_CLASSES, None)
    return {**found, ALL_CLASSES: last} if last else found
