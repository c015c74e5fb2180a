"""Listing, reading and preprocessing of real image files, on disk and on S3 (moto server)."""

from __future__ import annotations

import numpy as np
import pytest
from image_files import mixed_dataset, png_dataset, upload, write_nifti, write_tiff16
from PIL import Image

from medsyn_dask.sources import (
    BadImageError,
    list_images,
    preprocess,
    read_image,
    relative_path,
)


def test_listing_orders_filters_and_ignores_other_files(tmp_path):
    root = mixed_dataset(tmp_path / "data", per_class=4)
    (root / "benign" / "notes.txt").write_text("not an image")
    (root / "benign" / ".hidden.png").write_bytes(b"")
    (root / ".cache").mkdir()
    ds = list_images(str(root))
    assert ds.class_names == ("benign", "malignant")
    assert len(ds) == 8 and not ds.volumes
    assert [relative_path(str(root), p) for p in ds.paths[:4]] == [
        "benign/img000.png",
        "benign/img001.tif",
        "benign/img002.jpg",
        "benign/img003.png",
    ]
    assert ds.classes == ("benign",) * 4 + ("malignant",) * 4
    only = list_images(str(root), class_names=["malignant"])
    assert only.class_names == ("malignant",) and set(only.classes) == {"malignant"}


def test_listing_errors_name_the_problem(tmp_path):
    root = png_dataset(tmp_path / "data", per_class=1)
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(str(root), class_names=["a", "nope"])
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(str(tmp_path / "missing"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        list_images(str(tmp_path / "empty"))
    write_nifti(root / "a" / "v.nii", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="mixes 3D volumes and 2D images"):
        list_images(str(root))


def test_read_keeps_decoded_values_and_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    arr16 = write_tiff16(tmp_path / "x.tif", rng)
    got = read_image(str(tmp_path / "x.tif"))
    assert got.dtype == np.uint16 and np.array_equal(got, arr16)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(read_image(str(tmp_path / "c.png")), rgb)
    Image.fromarray(rgb).save(tmp_path / "c.jpg")
    assert read_image(str(tmp_path / "c.jpg")).shape == (9, 7, 3)
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    assert np.array_equal(read_image(str(tmp_path / "c.bmp")), rgb)
    png16 = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    Image.fromarray(png16).save(tmp_path / "d.png")
    got16 = read_image(str(tmp_path / "d.png"))
    assert got16.dtype == np.uint16 and np.array_equal(got16, png16)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_read_nifti_applies_header_scaling(tmp_path, name):
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    write_nifti(tmp_path / name, raw, slope=2.0, inter=-3.0)
    vol = read_image(str(tmp_path / name))
    assert vol.shape == (4, 5, 6) and vol.dtype == np.float32
    np.testing.assert_allclose(vol, raw * 2.0 - 3.0)


def test_bad_files_raise_naming_the_file(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="trunc.png"):
        read_image(str(tmp_path / "trunc.png"))
    (tmp_path / "garbage.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(BadImageError, match="garbage.jpg: cannot decode"):
        read_image(str(tmp_path / "garbage.jpg"))
    write_nifti(tmp_path / "t.nii", np.zeros((3, 3, 3, 2), np.float32))
    with pytest.raises(
        BadImageError, match=r"t.nii: expected a 3D volume, got shape \(3, 3, 3, 2\)"
    ):
        read_image(str(tmp_path / "t.nii"))
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(BadImageError, match="junk.nii.gz: cannot decode"):
        read_image(str(tmp_path / "junk.nii.gz"))
    (tmp_path / "junk.nii").write_bytes(b"\0" * 400)
    with pytest.raises(BadImageError, match="junk.nii: cannot decode as NIfTI"):
        read_image(str(tmp_path / "junk.nii"))
    with pytest.raises(FileNotFoundError):
        read_image(str(tmp_path / "absent.png"))


def _reference_8bit(img: Image.Image, resolution: int, mode: str) -> np.ndarray:
    """The reference pipeline: convert, PIL bilinear resize, ToTensor, Normalize(0.5, 0.5)."""
    out = np.asarray(img.convert(mode).resize((resolution, resolution), Image.BILINEAR))
    out = out.astype(np.float32) / 255
    out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
    return (out - 0.5) / 0.5


def test_preprocess_8bit_matches_reference_pipeline():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    got1 = preprocess(rgb, 16, 1)
    assert got1.shape == (1, 16, 16) and got1.dtype == np.float32
    np.testing.assert_array_equal(got1, _reference_8bit(img, 16, "L"))
    got3 = preprocess(rgb, 48, 3)
    np.testing.assert_array_equal(got3, _reference_8bit(img, 48, "RGB"))
    gray = rgb[:, :, 0]
    rep = preprocess(gray, 16, 3)
    assert rep.shape == (3, 16, 16) and np.array_equal(rep[0], rep[2])
    assert -1 <= got1.min() and got1.max() <= 1


def test_preprocess_scales_16bit_by_dtype_range_and_floats_by_min_max():
    full = np.full((8, 8), 65535, np.uint16)
    np.testing.assert_allclose(preprocess(full, 8), 1.0)
    np.testing.assert_allclose(preprocess(np.zeros((8, 8), np.uint16), 8), -1.0)
    ramp = np.linspace(-500, 1500, 64, dtype=np.float32).reshape(8, 8)
    out = preprocess(ramp, 8)
    assert out.min() == -1.0 and out.max() == 1.0
    # 16-bit resized in floating point agrees with the 8-bit path on an 8-bit-exact image
    img8 = np.random.default_rng(4).integers(0, 256, (20, 20), dtype=np.uint8)
    as16 = img8.astype(np.uint16) * 257
    np.testing.assert_allclose(preprocess(as16, 10), preprocess(img8, 10), atol=2 / 255)


def test_preprocess_rejects_wrong_dimensions_and_options():
    with pytest.raises(BadImageError, match="shape"):
        preprocess(np.zeros((4, 4, 7), np.uint8), 8)
    with pytest.raises(BadImageError, match="3D volume"):
        preprocess(np.zeros((4, 4), np.float32), 8, volume=True)
    with pytest.raises(ValueError, match="num_channels"):
        preprocess(np.zeros((4, 4), np.uint8), 8, 2)


def test_preprocess_volume_shape_and_range():
    vol = np.random.default_rng(5).normal(size=(12, 10, 8)).astype(np.float32)
    out = preprocess(vol, 9, volume=True)  # 9: not a divisor of any side
    assert out.shape == (1, 9, 9, 9) and out.dtype == np.float32
    assert -1 <= out.min() < out.max() <= 1
    assert preprocess(vol, 9, 3, volume=True).shape == (3, 9, 9, 9)


def test_s3_listing_and_reading_match_disk(tmp_path, s3_server, s3_bucket):
    root = mixed_dataset(tmp_path / "data", per_class=4)
    fs = s3_server.filesystem()
    upload(root, fs, f"{s3_bucket}/ds")
    opts = s3_server.storage_options
    local = list_images(str(root))
    remote = list_images(f"{s3_bucket}/ds", storage_options=opts)
    assert remote.paths[0].startswith(f"{s3_bucket}/ds/")
    assert [relative_path(f"{s3_bucket}/ds", p) for p in remote.paths] == [
        relative_path(str(root), p) for p in local.paths
    ]
    assert remote.classes == local.classes
    for lp, rp in zip(local.paths, remote.paths, strict=True):
        assert np.array_equal(read_image(lp), read_image(rp, storage_options=opts))
    with pytest.raises(FileNotFoundError):
        list_images(f"{s3_bucket}/nothing", storage_options=opts)


def test_an_s3_key_with_a_version_mark_is_a_bad_image_naming_it(tmp_path, s3_server, s3_bucket):
    """s3fs reads ``?versionId=`` in a key as a version id: such an object failed with a bare
    "Bad Request" (OSError, a traceback); it is now a bad image naming the file."""
    boto3 = pytest.importorskip("boto3")
    opts = s3_server.storage_options
    client = boto3.client(
        "s3",
        endpoint_url=opts["endpoint_url"],
        aws_access_key_id=opts["key"],
        aws_secret_access_key=opts["secret"],
        **opts["client_kwargs"],
    )
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    bucket = s3_bucket.removeprefix("s3://")
    for key in ("ds/a/scan?versionId=7.png", "ds/a/plain.png"):
        client.put_object(Bucket=bucket, Key=key, Body=png.read_bytes())
    paths = list_images(f"{s3_bucket}/ds", storage_options=opts).paths
    assert paths == (f"{s3_bucket}/ds/a/plain.png", f"{s3_bucket}/ds/a/scan?versionId=7.png")
    assert read_image(paths[0], storage_options=opts).shape == (8, 8)
    with pytest.raises(BadImageError, match=r"scan\?versionId=7.png: cannot be read through"):
        read_image(paths[1], storage_options=opts)


def test_read_dicom_applies_rescale(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    raw = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7)
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = raw.tobytes()
    ds.save_as(str(tmp_path / "x.dcm"), enforce_file_format=True)
    assert pydicom.dcmread(str(tmp_path / "x.dcm")).Rows == 6
    got = read_image(str(tmp_path / "x.dcm"))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, raw * 2.0 - 1024)
    # floats are min-max scaled, so the rescale does not change the preprocessed image
    np.testing.assert_allclose(preprocess(got, 8), preprocess(raw.astype(np.float32), 8))


def test_gray_uint8_at_the_resolution_is_bit_identical_to_pillow_path():
    """The fast path (no Pillow round trip) gives the very bytes of the Pillow path."""
    from medsyn_dask.sources.preprocess import _normalise, preprocess

    rng = np.random.default_rng(1)
    every_level = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for shape in [(32, 32), (32, 32, 1), (32, 32, 2), every_level.shape]:
        a = every_level if shape == (16, 16) else rng.integers(0, 256, shape, dtype=np.uint8)
        plane = a if a.ndim == 2 else a[:, :, 0]
        img = Image.fromarray(np.ascontiguousarray(plane), mode="L").convert("L")
        expected = _normalise((np.asarray(img, dtype=np.float32) / np.float32(255))[None])
        got = preprocess(a, a.shape[0], 1)
        assert got.shape == expected.shape == (1,) + a.shape[:2] and got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
