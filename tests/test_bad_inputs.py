"""Bad and unusual input files through the real job: each converted, refused or ignored as the
README's "Bad input files" table says; never a traceback, never a silent wrong number, and
nothing written outside OUT whatever the names.

Each case drops one file (tests/bad_files.py) into a class folder of the synthetic group of a
small phantom set and runs ``medsyn-dask analyze`` on the shared two-worker cluster.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from bad_files import VOLUME_WRITERS, WRITERS

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset

GROUP, CLASS = "faithful", "lesion"
#: Refused files: ``--on-bad-image error`` stops naming them, ``skip`` lists them.
BAD = {
    "zero_bytes": "cannot decode",
    "truncated_png": "truncated",
    "text_as_png": "cannot decode",
    "one_pixel": "1 x 1 pixels",
    "decompression_bomb": "DecompressionBombError",
    "multipage_tiff": "2 frames",
    "symlink_loop": "loops",
    "dicom_without_pixels": "without pixel data",
    "nifti_4d": "expected a 3D volume",
    "nifti_nan": "NaN or infinite",
    "nifti_lying_header": "Expected",
    "nifti_short_header": "header and data disagree",
}
#: Converted files, each made from a real image: they must come out as copies of it.
CONVERTED = ("png_16bit", "cmyk_jpeg", "palette_transparent_png", "la_png", "odd_name")
#: Files that are not read (nothing listed, nothing refused).
IGNORED = ("hidden_files", "animated_gif")


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


def _dataset(tmp_path: Path, case: str):
    volumes = case in VOLUME_WRITERS
    kwargs = {"dims": 3, "size": 16} if volumes else {"size": 32}
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, **kwargs)
    sample = sorted((data.real / CLASS).iterdir())[0]
    writer = (VOLUME_WRITERS if volumes else WRITERS)[case]
    name = writer(data.synthetic[GROUP] / CLASS, sample)
    return data, sample, name


def _run(data, out: Path, address: str, *extra: str) -> int:
    args = ["analyze", "--real", str(data.real), "--synthetic", f"{GROUP}={data.synthetic[GROUP]}"]
    args += ["--output", str(out), "--resolution", "16", "--scheduler-address", address]
    return main([*args, *extra])


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _analyze(tmp_path, address, data, out, *extra) -> int:
    """Run the job; assert that every file it wrote lies under ``out``."""
    before = _files(tmp_path)
    code = _run(data, out, address, *extra)
    outside = sorted(str(p) for p in _files(tmp_path) - before if out not in p.parents)
    assert not outside, outside
    return code


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("medsyn-dask analyze: error")]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_named_or_skipped_and_listed(case, tmp_path, address, capsys):
    data, _, name = _dataset(tmp_path, case)
    # --on-bad-image error (the default): exit 2, one line naming the file, no metrics
    assert _analyze(tmp_path, address, data, tmp_path / "strict") == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{CLASS}/{name}" in line and BAD[case] in line
    assert not (tmp_path / "strict" / "metrics.json").exists()
    # --on-bad-image skip: exit 0, the file listed with its reason, left out of every number
    out = tmp_path / "lenient"
    assert _analyze(tmp_path, address, data, out, "--on-bad-image", "skip") == 0
    assert not _error_lines(capsys.readouterr().err)
    metrics = _metrics(out)
    assert metrics["bad_images"] == {"real": 0, GROUP: 1}
    (bad,) = metrics["bad_image_list"][GROUP]
    assert bad["path"] == f"{CLASS}/{name}" and BAD[case] in bad["reason"]
    table = pd.read_csv(out / "per_image" / f"{GROUP}.csv")
    assert len(table) == metrics["groups"][GROUP]["n_images"] == 8
    assert not table["path"].str.endswith(name).any()


@pytest.mark.parametrize("case", CONVERTED)
def test_converted_file_is_read_as_the_image_it_holds(case, tmp_path, address, capsys):
    data, sample, name = _dataset(tmp_path, case)
    out = tmp_path / "out"
    assert _analyze(tmp_path, address, data, out) == 0
    assert not _error_lines(capsys.readouterr().err)
    metrics = _metrics(out)
    assert metrics["bad_images"] == {"real": 0, GROUP: 0}
    table = pd.read_csv(out / "per_image" / f"{GROUP}.csv").set_index("path")
    row = table.loc[str(data.synthetic[GROUP] / CLASS / name)]
    # the converted file holds the pixels of a real image: found as a copy of that one
    assert row["nearest_real"] == str(sample)
    assert row["set"] == "copy" and row["copy_ratio"] < 0.5


def test_images_of_other_sizes_are_resized(tmp_path, address, capsys):
    data, sample, name = _dataset(tmp_path, "other_size")
    out = tmp_path / "out"
    assert _analyze(tmp_path, address, data, out) == 0
    metrics = _metrics(out)
    assert metrics["bad_images"] == {"real": 0, GROUP: 0}
    assert metrics["groups"][GROUP]["n_images"] == 9
    table = pd.read_csv(out / "per_image" / f"{GROUP}.csv").set_index("path")
    # a stretched real image is near that image, not on it
    assert table.loc[str(data.synthetic[GROUP] / CLASS / name), "nearest_real"] == str(sample)


@pytest.mark.parametrize("case", IGNORED)
def test_hidden_and_unread_files_are_ignored(case, tmp_path, address, caplog):
    data, _, name = _dataset(tmp_path, case)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="medsyn_dask"):
        assert _analyze(tmp_path, address, data, out) == 0
    metrics = _metrics(out)
    assert metrics["bad_images"] == {"real": 0, GROUP: 0}
    assert metrics["groups"][GROUP]["n_images"] == 8
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    if name.startswith("."):
        assert not warned  # hidden files are not even mentioned
    else:
        assert len(warned) == 1 and name in warned[0] and f"class {CLASS}" in warned[0]


def test_odd_class_names_work_and_stay_inside_out(tmp_path, address):
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, size=32)
    odd = "lé sion ..∕ x"
    for root in (data.real, data.synthetic[GROUP]):
        (root / CLASS).rename(root / odd)
    out = tmp_path / "out"
    assert _analyze(tmp_path, address, data, out) == 0
    metrics = _metrics(out)
    assert set(metrics["groups"][GROUP]["per_class"]) == {"normal", odd}
    assert (out / "mean_images" / GROUP / f"{odd}.png").is_file()
    table = pd.read_csv(out / "per_image" / f"{GROUP}.csv")
    assert (table["class"] == odd).sum() == 4


def test_symlinked_images_and_classes_are_read(tmp_path, address):
    """A dataset of links (a split made with ``ln -s``): read through them, fingerprinted by
    their targets."""
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, size=32)
    linked = tmp_path / "linked"
    (linked / CLASS).mkdir(parents=True)
    for path in sorted((data.synthetic[GROUP] / CLASS).iterdir()):
        (linked / CLASS / path.name).symlink_to(path)
    (linked / "normal").symlink_to(data.synthetic[GROUP] / "normal", target_is_directory=True)
    out = tmp_path / "out"
    args = ["analyze", "--real", str(data.real), "--synthetic", f"{GROUP}={linked}"]
    args += ["--output", str(out), "--resolution", "16", "--scheduler-address", address]
    assert main(args) == 0
    assert _metrics(out)["groups"][GROUP]["n_images"] == 8
