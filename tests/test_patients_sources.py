"""Patient labels: the path,patient CSV (and its errors) and DICOM PatientID as a salted hash."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from bad_files import write_dicom

from medsyn_dask.errors import InputError
from medsyn_dask.sources.patients import (
    dicom_patients,
    patients_from_table,
    read_patient_table,
    real_patients,
)


def test_csv_labels_follow_the_real_paths(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("path,patient\na/1.png,P1\n/a/2.png,P2\nb/3.png,P1\n")
    paths = [f"{tmp_path}/root/{p}" for p in ("b/3.png", "a/1.png", "a/2.png")]
    labels = real_patients(str(csv), paths, f"{tmp_path}/root", None)
    assert labels.tolist() == ["P1", "P1", "P2"]
    with pytest.raises(InputError, match="c/4.png"):
        patients_from_table([f"{tmp_path}/root/c/4.png"], f"{tmp_path}/root", {"a/1.png": "P1"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,patient\na,P\n", "missing path"),
        ("path,patient\na.png,\n", "row 2 has an empty value"),
        ("path,patient\na.png,P1\na.png,P2\n", "a.png is given two patients"),
        ("", "cannot be read as CSV"),  # was pandas' EmptyDataError and a traceback
    ],
)
def test_bad_csv_is_an_input_error_naming_the_file(tmp_path, text, message):
    csv = tmp_path / "p.csv"
    csv.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_patient_table(str(csv))
    assert str(csv) in str(info.value)


def test_dicom_patient_ids_are_salted_hashes(tmp_path):
    paths = []
    for i, pid in enumerate(["PID-A-SECRET", "PID-B-SECRET", "PID-A-SECRET"]):
        path = tmp_path / f"{i}.dcm"
        write_dicom(path, np.full((4, 4), i))
        ds = pydicom.dcmread(path)
        ds.PatientID = pid
        ds.save_as(path)
        paths.append(str(path))
    labels = dicom_patients(paths)
    assert labels[0] == labels[2] != labels[1]
    assert not any("SECRET" in label or "PID" in label for label in labels)
    assert not np.array_equal(labels, dicom_patients(paths))  # a fresh salt per run
    ds = pydicom.dcmread(paths[1])
    del ds.PatientID
    ds.save_as(paths[1])
    with pytest.raises(InputError, match="1.dcm has no PatientID"):
        dicom_patients(paths)
