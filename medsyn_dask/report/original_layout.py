"""The original package's output files, written beside a finished run's own, from what it stored.

MedSynAnalyzer (``synthetic-image-analyzer`` 1.0.0) wrote, under its ``--output_dir``:

- ``Features/<dir>_<model>.csv`` for the synthetic and the real folder: ``<dir>`` the folder's
  last path component, ``<model>`` its ``--select_model``; a pandas ``to_csv`` of the feature
  matrix with the row index first (an unnamed column), the feature columns ``0 .. D-1``, then
  ``filename``: the image path as ``os.path.join(FOLDER, CLASS, FILE)`` of the folder as given;
- ``Avgs/<dir>_<class>.png`` and ``Avgs/<dir>_all_classes.png``: the synthetic mean images,
  written by ``cv2.imwrite``.

:func:`write_original_layout` writes the same files from a run's feature store
(:func:`~medsyn_dask.features.load_features`) and its mean images (``mean_images/``), never
recomputing either. What differs on purpose: every image has its row (the original dropped up
to 15 in its last batch) in the store's order (the original's was shuffled), and a folder given
with a trailing ``/`` is still named by its last component (the original wrote ``_<model>.csv``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from PIL import Image

from ..checks import ALL_CLASSES
from ..features import load_features
from ..metrics.variety import encode_lossless

FEATURES_DIR, AVGS_DIR = "Features", "Avgs"
#: The mean-image folder of a run (:mod:`.tables`); a group's all-classes mean is ALL_CLASSES.
MEAN_IMAGES_DIR = "mean_images"


@dataclass(frozen=True)
class OriginalFolder:
    """One folder the original was given: its set name in the run (``real`` or a synthetic
    group), the path as the user typed it (the ``filename`` column and ``<dir>`` come from it),
    and whether it is synthetic (only synthetic folders have ``Avgs``)."""

    name: str
    given: str
    synthetic: bool

    @property
    def store_group(self) -> str:
        """Its group in the feature store, as :func:`medsyn_dask.job.analyze` names it."""
        return f"synthetic-{self.name}" if self.synthetic else self.name


def folder_label(given: str) -> str:
    """``<dir>`` of the original's file names: the folder's last path component."""
    return os.path.basename(given.rstrip("/")) or given


def features_table(features: np.ndarray, rel_paths: np.ndarray, given: str) -> pd.DataFrame:
    """The original's feature table: columns ``0 .. D-1`` of ``features`` ``(N, D)``, then
    ``filename`` = ``os.path.join(given, CLASS/FILE)`` for each row's ``rel_paths`` entry."""
    table = pd.DataFrame(np.asarray(features))
    table["filename"] = [os.path.join(given, *str(p).split("/")) for p in rel_paths]
    return table


def write_original_layout(
    output: str,
    store: str,
    folders: list[OriginalFolder],
    *,
    model: str,
    model_label: str,
    resolution: int,
    num_channels: int,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write ``Features/`` and ``Avgs/`` under ``output`` (see the module docstring).

    ``model`` is the extractor name the run stored (e.g. ``vqvae-bottom``), ``model_label`` the
    original's name for it (``vqvae_bottom``), ``resolution``/``num_channels`` pick the feature
    set. Returns the paths written, relative to ``output``.
    """
    options = dict(storage_options or {})
    fs, root = fsspec.core.url_to_fs(output, **options)
    written = []
    for folder in folders:
        loaded = load_features(
            store,
            folder.store_group,
            model=model,
            resolution=resolution,
            num_channels=num_channels,
            root=folder.given,
            storage_options=options,
        )
        prefix = loaded.provenance.root.rstrip("/")
        rel = [p[len(prefix) + 1 :] if prefix else p for p in loaded.paths]
        table = features_table(np.asarray(loaded.features), np.asarray(rel), folder.given)
        name = f"{FEATURES_DIR}/{folder_label(folder.given)}_{model_label}.csv"
        fs.makedirs(f"{root}/{FEATURES_DIR}", exist_ok=True)
        with fs.open(f"{root}/{name}", "w") as f:
            table.to_csv(f)
        written.append(name)
        if folder.synthetic:
            written += _write_avgs(fs, root, folder)
    return written


def _write_avgs(fs: Any, root: str, folder: OriginalFolder) -> list[str]:
    """``Avgs/<dir>_<class>.png`` from the run's ``mean_images/<group>/<class>.png``, encoded
    by OpenCV as the original's ``cv2.imwrite`` (volumes: none, the original had no 3D)."""
    source = f"{root}/{MEAN_IMAGES_DIR}/{folder.name}"
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(source, detail=False) if p.endswith(".png"))
    # The classes first, in the run's order, then the all-classes mean (as the original did).
    names.sort(key=lambda n: n == f"{ALL_CLASSES}.png")
    fs.makedirs(f"{root}/{AVGS_DIR}", exist_ok=True)
    out = []
    for name in names:
        with fs.open(f"{source}/{name}", "rb") as f:
            image = np.asarray(Image.open(io.BytesIO(f.read())))
        target = f"{AVGS_DIR}/{folder_label(folder.given)}_{name}"
        with fs.open(f"{root}/{target}", "wb") as f:
            f.write(encode_lossless(image, "png-opencv"))
        out.append(target)
    return out
