"""The files of a run: ``metrics.json``, per-image CSV tables, mean images.

Everything is written through fsspec, so ``OUT`` may be a local folder or an ``s3://`` prefix.
``metrics.json`` is removed when a run starts and written last, in one step (a temporary file
moved into place), so an interrupted run never leaves one that looks complete.
"""

from __future__ import annotations

import io
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from ..checks import check_bucket
from ..job import AnalysisResult
from ..metrics.baseline import HOLDOUT, versus_holdout
from ..metrics.scores import COPY, NON_REAL, REAL
from ..metrics.variety import encode_lossless, lossless_size
from ..sources.anonymise import shown_paths, shown_relative_paths

METRICS_FILE = "metrics.json"
#: Files rendered from ``metrics.json`` (:mod:`.html`, :mod:`.summary`); removed with it when a
#: run starts, so a folder never pairs a new run's tables with an old run's report.
REPORT_FILE, SUMMARY_FILE = "report.html", "summary.txt"
RENDERED_FILES = (REPORT_FILE, SUMMARY_FILE)
#: The tables and images a run writes (:func:`write_outputs`): an earlier run's are removed
#: when a run starts, so a rerun with fewer groups or classes, or without patient mode, leaves
#: no table beside the new ``metrics.json`` that looks current.
TABLE_FILES = ("per_real.csv", "per_image/*.csv", "per_patient/*.csv", "mean_images/*/*")
_VERSIONED = ("medsyn-dask", "dask", "distributed", "numpy", "torch", "zarr", "pillow")


def prepare_output(output: str, storage_options: dict | None = None) -> None:
    """Create ``output``, check it is writable and remove an earlier run's ``metrics.json``,
    report and tables (:data:`TABLE_FILES`; other files are left alone).

    Raises ``PermissionError``/``OSError`` naming the folder before any work is done.
    """
    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    check_bucket(fs, root, output, "output")
    try:
        fs.makedirs(root, exist_ok=True)
        probe = f"{root}/.medsyn-write-test"
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except OSError as exc:
        raise PermissionError(f"output {output} is not writable: {exc}") from exc
    for pattern in (METRICS_FILE, *RENDERED_FILES, *TABLE_FILES):  # metrics.json first
        for path in fs.glob(f"{root}/{pattern}"):
            if fs.isfile(path):
                fs.rm(path)


def metrics_dict(result: AnalysisResult) -> dict[str, Any]:
    """The content of ``metrics.json``: per group scores, variety, MM-FID/MM-STD, settings."""
    groups = {}
    for name, score in result.scores.items():
        entry = score.to_dict()
        entry.pop("block_size", None)
        entry["variety"] = result.variety.scores[name]
        entry["mean_image_bytes"] = result.variety.sizes[name]
        entry["n_images"] = entry.pop("n_synthetic")
        entry.pop("n_real")
        entry["per_class"] = class_scores(
            score.per_synthetic["set"].to_numpy(), result.synthetic[name].classes
        )
        if result.reference is not None:
            entry.update(versus_holdout(score.to_dict(), result.reference.to_dict()))
        groups[name] = entry
    return {
        "complete": True,
        "real": {"n_images": len(result.real.paths)},
        "groups": groups,
        "reference": reference_entry(result),
        "variety": {**result.variety.to_dict(), "mean_images": mean_image_sizes(result)},
        "per_model_resolution": [
            {"model": m, "resolution": r, "groups": stats}
            for (m, r), stats in result.statistics.items()
        ],
        "multiscale": result.multiscale,
        "bad_images": {k: len(v) for k, v in result.bad_images.items()},
        # What the report lists: each skipped file (CLASS/file under its root) and why.
        "bad_image_list": {k: _bad_list(result, k, v) for k, v in result.bad_images.items()},
        "settings": result.settings.to_dict(),
        "versions": _versions(),
    }


def reference_entry(result: AnalysisResult) -> dict[str, Any] | None:
    """The holdout row (held-out real images scored like a group), or None without one."""
    if result.reference is None:
        return None
    entry = result.reference.to_dict()
    for key in ("block_size", "n_real"):
        entry.pop(key, None)
    entry["name"] = HOLDOUT
    entry["n_images"] = entry.pop("n_synthetic")
    entry["source"] = (
        result.settings.holdout
        if result.settings.holdout is not None
        else f"fraction {result.settings.holdout_fraction} of the real set "
        f"(seed {result.settings.holdout_seed})"
    )
    return entry


def class_scores(sets: np.ndarray, classes: Any) -> dict[str, dict[str, Any]]:
    """Fidelity, privacy and precision_privacy of one group per class (METHOD.md, "Scores").

    ``sets`` holds each synthetic image's set label (copy / real / non-real), ``classes`` its
    class, both ``(M,)`` in the same order. Returns class -> scores, ``n_images`` and ``sets``.
    """
    sets, classes = np.asarray(sets), np.asarray(classes)
    out = {}
    for cls in dict.fromkeys(classes.tolist()):
        mine = sets[classes == cls]
        counts = {s: int(np.count_nonzero(mine == s)) for s in (COPY, REAL, NON_REAL)}
        n = len(mine)
        out[str(cls)] = {
            "n_images": n,
            "fidelity": (counts[COPY] + counts[REAL]) / n,
            "privacy": 1.0 - counts[COPY] / n,
            "precision_privacy": counts[REAL] / n,
            "sets": counts,
        }
    return out


def mean_image_sizes(result: AnalysisResult) -> dict[str, dict[str, int]]:
    """Lossless size in bytes (the run's codec) of every mean image: set -> class -> bytes.

    Sets are the real set (when its means were computed) and the groups. A group's
    ``all_classes`` size is the one its variety uses (``mean_image_bytes``); the others are
    measured the same way, for the report to show beside each image.
    """
    variety = result.variety
    volume = len(variety.shape) == 3
    return {
        name: {c: lossless_size(image, variety.codec, volume=volume) for c, image in means.items()}
        for name, means in variety.image_sets().items()
    }


def per_image_table(result: AnalysisResult, group: str) -> pd.DataFrame:
    """One row per synthetic image of ``group``: path, class, set, nearest real image, ..."""
    table = _scored(result)[group].per_synthetic
    synth = _scored_features(result)[group]
    return pd.DataFrame(
        {
            "path": _shown(result, synth.paths),
            "class": synth.classes,
            "set": table["set"],
            "nearest_real": _shown(result, result.real.paths[table["nearest_real"].to_numpy()]),
            "distance": table["distance"],
            "copy_ratio": table["copy_ratio"],
            "privacy_score": table["privacy_score"],
        }
    )


def per_real_table(result: AnalysisResult) -> pd.DataFrame:
    """One row per real image: its radii and, per group, its copies and in-radius counts."""
    first = next(iter(result.scores.values()))
    table = pd.DataFrame(
        {
            "path": _shown(result, result.real.paths),
            "class": result.real.classes,
            "radius_k": first.radius_k,
            "radius_1": first.radius_1,
        }
    )
    if first.patients is not None:
        table["patient_radius_1"] = first.patients.patient_radius_1
    for name, score in result.scores.items():
        table[f"copies_{name}"] = score.per_real["copies"].to_numpy()
        table[f"in_radius_{name}"] = score.per_real["in_radius"].to_numpy()
    return table


def per_patient_table(result: AnalysisResult, group: str) -> pd.DataFrame:
    """One row per real patient for ``group`` (patient mode): patient (as given; a salted hash
    for DICOM), images, copies, nearest synthetic image (path), its distance, smallest copy
    ratio."""
    score = _scored(result)[group]
    table = score.patients.per_patient.copy()
    paths = _scored_features(result)[group].paths
    table["nearest_synthetic"] = _shown(result, paths[table["nearest_synthetic"].to_numpy()])
    return table


def _scored(result: AnalysisResult) -> dict[str, Any]:
    """Every scored row: the groups, then the holdout row when there is one."""
    extra = {HOLDOUT: result.reference} if result.reference is not None else {}
    return {**result.scores, **extra}


def _scored_features(result: AnalysisResult) -> dict[str, Any]:
    extra = {HOLDOUT: result.holdout} if result.holdout is not None else {}
    return {**result.synthetic, **extra}


def _shown(result: AnalysisResult, paths: Any) -> list[str]:
    """Paths as the outputs show them (anonymised with ``--anonymize-paths``)."""
    return shown_paths(paths, result.settings.anonymize_paths)


def _bad_list(result: AnalysisResult, name: str, bad: list[dict[str, str]]) -> list[dict]:
    """The bad images of set ``name``: path (``CLASS/file`` under its root) and reason."""
    root = {"real": result.settings.real, **result.settings.synthetic}.get(name)
    paths = [b.get("path", "?") for b in bad]
    shown = shown_relative_paths(root, paths, result.settings.anonymize_paths)
    return [{"path": p, "reason": b.get("error", "?")} for p, b in zip(shown, bad, strict=True)]


def write_outputs(
    result: AnalysisResult, output: str, storage_options: dict | None = None
) -> dict[str, Any]:
    """Write every output under ``output``; ``metrics.json`` last. Returns its content."""
    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    for group, score in _scored(result).items():
        _write_csv(fs, f"{root}/per_image/{group}.csv", per_image_table(result, group))
        if score.patients is not None:
            _write_csv(fs, f"{root}/per_patient/{group}.csv", per_patient_table(result, group))
    _write_csv(fs, f"{root}/per_real.csv", per_real_table(result))
    _write_mean_images(fs, f"{root}/mean_images", result)
    metrics = json.loads(json.dumps(metrics_dict(result), default=_json_default))
    write_atomic(output, METRICS_FILE, json.dumps(metrics, indent=2), storage_options)
    return metrics


def write_atomic(
    output: str, name: str, data: str | bytes, storage_options: dict | None = None
) -> str:
    """Write ``data`` to ``output/name`` in one step (a temporary file moved into place).

    Text is written as UTF-8. Returns the path written (local path or URL).
    """
    fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
    tmp = f"{root}/.{name}.partial"
    with fs.open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    fs.mv(tmp, f"{root}/{name}")
    return f"{output.rstrip('/')}/{name}"


def _write_csv(fs, path: str, table: pd.DataFrame) -> None:
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        table.to_csv(f, index=False)


def _write_mean_images(fs, root: str, result: AnalysisResult) -> None:
    for group, images in result.variety.image_sets().items():
        fs.makedirs(f"{root}/{group}", exist_ok=True)
        for name, image in images.items():
            if image.ndim == 3 and image.shape[-1] != 3:  # a volume
                data, suffix = _nifti_bytes(image), "nii.gz"
            else:
                data, suffix = encode_lossless(image, "png"), "png"
            with fs.open(f"{root}/{group}/{name}.{suffix}", "wb") as f:
                f.write(data)


def _nifti_bytes(volume: np.ndarray) -> bytes:
    import gzip

    import nibabel as nib

    raw = nib.Nifti1Image(volume.astype(np.uint8), affine=np.eye(4)).to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
