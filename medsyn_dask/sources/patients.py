"""The patient of every real image: from a ``path,patient`` CSV, or from DICOM PatientID.

A CSV's ``path`` is relative to the real root (``CLASS/file``, as in the per-image tables);
its ``patient`` is any label, kept as given. With ``dicom``, each file's PatientID is replaced
on the worker that reads it by a salted sha256 (the salt is random per run and held only in
memory): the raw identifier never leaves the reading task and is never written or logged.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from ..errors import InputError
from .listing import relative_path
from .readers import read_bytes

#: The ``patients`` setting that reads PatientID from the DICOM files themselves.
DICOM = "dicom"
#: Hex digits of the salted hash kept as a DICOM patient's label.
HASH_DIGITS = 16
#: Files whose headers one task reads.
FILES_PER_TASK = 64


def read_patient_table(
    source: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``path`` -> ``patient`` from a CSV with those two columns (local path or URL).

    InputError naming the file for a missing column, an empty label, or a path listed twice
    with two patients.
    """
    try:
        with fsspec.open(source, "rb", **dict(storage_options or {})) as f:
            table = pd.read_csv(f, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"patients file {source}: cannot be read as CSV ({exc})") from exc
    missing = [c for c in ("path", "patient") if c not in table.columns]
    if missing:
        raise InputError(
            f"patients file {source}: needs columns path,patient; missing {', '.join(missing)}"
        )
    table["path"] = table["path"].str.strip().str.lstrip("/")
    table["patient"] = table["patient"].str.strip()
    empty = table.index[(table["patient"] == "") | (table["path"] == "")]
    if len(empty):
        raise InputError(f"patients file {source}: row {int(empty[0]) + 2} has an empty value")
    labels = table.groupby("path")["patient"].nunique()
    twice = labels.index[labels > 1]
    if len(twice):
        raise InputError(f"patients file {source}: {twice[0]} is given two patients")
    return dict(zip(table["path"], table["patient"], strict=True))


def patients_from_table(paths: Sequence[str], root: str, table: Mapping[str, str]) -> np.ndarray:
    """(N,) object array of the patient of each image of ``root``; InputError if any is missing."""
    relative = [relative_path(root, p) for p in paths]
    absent = [r for r in relative if r not in table]
    if absent:
        raise InputError(
            f"patients: {len(absent)} real image(s) have no row in the patients file, "
            f"e.g. {absent[0]} (paths are relative to the real root: CLASS/file)"
        )
    return np.asarray([table[r] for r in relative], dtype=object)


def dicom_patients(
    paths: Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """(N,) object array: a salted sha256 of each DICOM file's PatientID (read on the workers).

    The salt is drawn per call, so labels compare within a run only. InputError naming the file
    for a file without a PatientID.
    """
    import dask

    salt = secrets.token_bytes(16)
    options = dict(storage_options or {})
    tasks = [
        dask.delayed(_hashed_ids)(list(paths[s : s + FILES_PER_TASK]), salt, options)
        for s in range(0, len(paths), FILES_PER_TASK)
    ]
    parts = dask.compute(*tasks)
    return np.asarray([h for part in parts for h in part], dtype=object)


def _hashed_ids(paths: list[str], salt: bytes, storage_options: dict) -> list[str]:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - pydicom is a declared dependency
        raise InputError("patients=dicom needs pydicom: pip install 'medsyn-dask[dicom]'") from exc
    out = []
    for path in paths:
        try:
            header = pydicom.dcmread(
                io.BytesIO(read_bytes(path, storage_options)), stop_before_pixels=True
            )
        except Exception as exc:  # noqa: BLE001 - any parse failure is the file's fault
            raise InputError(f"patients=dicom: {path} is not readable as DICOM ({exc})") from None
        patient_id = str(getattr(header, "PatientID", "") or "").strip()
        if not patient_id:
            raise InputError(f"patients=dicom: {path} has no PatientID")
        digest = hashlib.sha256(salt + patient_id.encode("utf-8")).hexdigest()
        out.append(digest[:HASH_DIGITS])
    return out


def real_patients(
    setting: str, paths: Sequence[str], root: str, storage_options: Mapping[str, Any] | None
) -> np.ndarray:
    """The patient label of every real image for the ``patients`` setting (CSV or "dicom")."""
    if setting == DICOM:
        return dicom_patients(paths, storage_options)
    return patients_from_table(paths, root, read_patient_table(setting, storage_options))
