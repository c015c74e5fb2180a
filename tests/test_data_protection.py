"""Data protection: no credential and no DICOM patient tag in anything written or printed, and
``--anonymize-paths`` leaving no file name in the outputs.

The credential runs read DICOM files carrying patient tags from moto's S3 server on loopback
with secret storage options, then every file under OUT and everything printed or logged (at
DEBUG) is searched for the secrets.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_files import PATIENT_TAGS, dicom_without_pixels, write_dicom
from image_files import upload
from PIL import Image

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.settings import AnalyzeSettings
from medsyn_dask.sources.anonymise import SALT_ENV, anonymise_path, redact

KEY_ID, SECRET = "AKIAMEDSYNKEYID7Q3Z", "s3cr3t-Pa55-medsyn-9f2d"
URL_PASSWORD = "url-pa55word-77"
#: Strings that must appear nowhere: the credentials and the patient tags' values.
SECRETS = (KEY_ID, SECRET, URL_PASSWORD, *(v for v in PATIENT_TAGS.values() if len(v) > 2))


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


def _dicom_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """The phantoms' real set and one group rewritten as DICOM files with patient tags."""
    data = write_demo_dataset(tmp_path / "png", n_real=8, n_synthetic=4, size=32)
    roots = {"real": data.real, "faithful": data.synthetic["faithful"]}
    for name, png_root in roots.items():
        for png in sorted(png_root.rglob("*.png")):
            target = tmp_path / "dicom" / name / png.parent.name / png.with_suffix(".dcm").name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(target, np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 257)
    dicom_without_pixels(tmp_path / "dicom" / "faithful" / "lesion", target)
    return tmp_path / "dicom" / "real", tmp_path / "dicom" / "faithful"


def _flat(options: dict, prefix: str = ""):
    for key, value in options.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _leaks(root: Path, *texts: str) -> list[str]:
    """Each secret found in a file under ``root`` or in ``texts``, with where."""
    found = []
    for secret in SECRETS:
        needle = secret.encode("utf-8")
        for path in root.rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                found.append(f"{secret!r} in {path}")
        found += [f"{secret!r} printed" for text in texts if secret in text]
    return found


def test_credentials_and_patient_tags_never_leave(
    tmp_path, address, s3_server, s3_bucket, capfd, caplog
):
    real, synthetic = _dicom_dataset(tmp_path)
    fs = s3_server.filesystem()
    upload(real, fs, f"{s3_bucket}/real")
    upload(synthetic, fs, f"{s3_bucket}/faithful")
    # moto takes any credentials: these secret ones are the run's
    options = {**s3_server.storage_options, "key": KEY_ID, "secret": SECRET}
    flags = [f"--storage-option={k}={v}" for k, v in _flat(options)]
    args = ["analyze", "--real", f"{s3_bucket}/real"]
    args += ["--synthetic", f"faithful={s3_bucket}/faithful", "--resolution", "16"]
    args += ["--scheduler-address", address, *flags]
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        # a bad DICOM stops the strict run: one line naming the file, and nothing secret
        assert main(["-v", *args, "--output", str(tmp_path / "strict")]) == 2
        strict = capfd.readouterr()
        assert "zz_nopixels.dcm: DICOM file without pixel data" in strict.err
        assert main(["-v", *args, "--output", str(out), "--on-bad-image", "skip"]) == 0
    printed = capfd.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["groups"]["faithful"]["n_images"] == 8
    assert metrics["bad_image_list"]["faithful"][0]["path"] == "lesion/zz_nopixels.dcm"
    assert (out / "report.html").is_file() and (out / "features.zarr").is_dir()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    texts = (strict.out, strict.err, printed.out, printed.err, logged)
    assert not _leaks(tmp_path / "strict", *texts) and not _leaks(out)


def test_a_password_in_a_root_url_is_never_shown(tmp_path, address, capsys):
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, size=32)
    real = f"s3://reader:{URL_PASSWORD}@no-such-bucket-medsyn/real"
    args = ["analyze", "--real", real, "--synthetic", f"g={data.synthetic['faithful']}"]
    args += ["--output", str(tmp_path / "out"), "--storage-option", "anon=true"]
    args += ["--scheduler-address", address]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "s3://***@no-such-bucket-medsyn/real" in err and URL_PASSWORD not in err
    # recorded settings hide the user information of every root URL
    settings = AnalyzeSettings(
        real=real, synthetic={"g": f"https://u:{URL_PASSWORD}@host/x?sig=abc"}, output="o"
    ).to_dict()
    assert URL_PASSWORD not in json.dumps(settings) and "abc" not in json.dumps(settings)
    assert settings["synthetic"]["g"] == "https://***@host/x?sig=***"


def test_redact_leaves_plain_paths_and_hides_query_secrets():
    assert redact("/data/a@b/c.png") == "/data/a@b/c.png"
    assert redact("s3://bucket/a@b.png") == "s3://bucket/a@b.png"
    assert redact("http://u:p@ss@h/x") == "http://***@h/x"
    text = "https://h/x?X-Amz-Credential=K&X-Amz-Signature=S&size=2"
    assert redact(text) == "https://h/x?X-Amz-Credential=***&X-Amz-Signature=***&size=2"
    assert redact({"a": ["ftp://u:p@h/"], "n": 3}) == {"a": ["ftp://***@h/"], "n": 3}


def _anonymised_run(data, out: Path, address: str, *extra: str) -> int:
    args = ["analyze", "--real", str(data.real), "--output", str(out), "--resolution", "16"]
    args += ["--synthetic", f"faithful={data.synthetic['faithful']}"]
    args += ["--synthetic", f"memorizer={data.synthetic['memorizer']}"]
    return main([*args, "--scheduler-address", address, "--anonymize-paths", *extra])


def test_anonymize_paths_hides_every_name_and_keeps_tables_joinable(tmp_path, address, monkeypatch):
    monkeypatch.setenv(SALT_ENV, "team-salt-1")
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, size=32)
    (data.synthetic["faithful"] / "lesion" / "zz_broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert _anonymised_run(data, out, address, "--on-bad-image", "skip") == 0
    hashed = re.compile(r"(normal|lesion)/[0-9a-f]{16}\.png")
    per_real = pd.read_csv(out / "per_real.csv")
    assert per_real["path"].str.fullmatch(hashed).all()
    memorizer = pd.read_csv(out / "per_image" / "memorizer.csv")
    assert memorizer["path"].str.fullmatch(hashed).all()
    assert set(memorizer["nearest_real"]) <= set(per_real["path"])  # the tables still join
    # the known answer survives: each copy points at the hash of the image it copies
    salt, root = b"team-salt-1", data.root
    copied = {
        anonymise_path(f"{root}/{synth}", salt): anonymise_path(f"{root}/{real}", salt)
        for synth, real in data.memorized_from.items()
    }
    assert dict(zip(memorizer["path"], memorizer["nearest_real"], strict=True)) == copied
    metrics = json.loads((out / "metrics.json").read_text())
    (bad,) = metrics["bad_image_list"]["faithful"]
    assert bad["path"] == anonymise_path(f"{data.synthetic['faithful']}/lesion/zz_broken.png", salt)
    # no file name, class-folder path or root in any output (the feature store keeps the
    # relative paths it matches features by: it is not an output to share)
    outputs = [p for p in out.rglob("*") if p.is_file() and "features.zarr" not in p.parts]
    for path in outputs:
        text = path.read_bytes()
        assert b"phantom_" not in text and b"zz_broken" not in text, path
        assert str(data.root).encode() not in text, path  # (OUT's own path may appear)
    # stable: a rerun with the same salt writes the same tables; another salt, others
    again = tmp_path / "again"
    assert _anonymised_run(data, again, address, "--on-bad-image", "skip") == 0
    assert (again / "per_real.csv").read_bytes() == (out / "per_real.csv").read_bytes()
    monkeypatch.setenv(SALT_ENV, "another-salt")
    other = tmp_path / "other"
    assert _anonymised_run(data, other, address, "--on-bad-image", "skip") == 0
    assert not set(pd.read_csv(other / "per_real.csv")["path"]) & set(per_real["path"])


def test_anonymize_paths_without_a_given_salt_keeps_one_per_user(tmp_path, monkeypatch):
    from medsyn_dask.sources.anonymise import path_salt

    monkeypatch.delenv(SALT_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first = path_salt()
    assert len(first) == 64 and path_salt() == first
    salt_file = tmp_path / "config" / "medsyn-dask" / "path-salt"
    assert salt_file.stat().st_mode & 0o077 == 0  # readable by its user only


def test_anonymize_paths_refuses_a_gallery(tmp_path, capsys):
    args = ["analyze", "--real", str(tmp_path), "--synthetic", f"g={tmp_path}"]
    args += ["--output", str(tmp_path / "out"), "--anonymize-paths", "--gallery", "3"]
    assert main(args) == 2
    assert "anonymize_paths" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_patient_mode_with_a_relative_root_and_anonymised_paths(tmp_path, address, monkeypatch):
    """Two bugs of patient mode: a relative --real root stopped the run ("not under the
    dataset root": the stored paths are absolute), and per_patient/GROUP.csv kept the raw path
    of each patient's nearest synthetic image under --anonymize-paths."""
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=4, size=32)
    real = sorted(p.relative_to(data.real) for p in data.real.rglob("*.png"))
    rows = [f"{p.as_posix()},P{i // 2}" for i, p in enumerate(real)]
    (tmp_path / "patients.csv").write_text("path,patient\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    relative = data.real.relative_to(tmp_path)
    args = ["analyze", "--real", str(relative), "--output", str(out), "--resolution", "16"]
    args += ["--synthetic", f"memorizer={data.synthetic['memorizer']}"]
    args += ["--patients", "patients.csv", "--anonymize-paths", "--scheduler-address", address]
    assert main(args) == 0
    table = pd.read_csv(out / "per_patient" / "memorizer.csv")
    assert len(table) == len(real) // 2
    assert table["nearest_synthetic"].str.fullmatch(r"(normal|lesion)/[0-9a-f]{16}\.png").all()
    # the report of that run re-rendered with a gallery: refused as analyze refuses it
    assert main(["report", str(out), "--gallery", "2"]) == 2
