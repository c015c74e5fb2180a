"""Lossless codecs of the mean image: exact round trips through independent decoders, sizes."""

from __future__ import annotations

import io
import sys

import cv2
import imagecodecs
import numpy as np
import pytest
from PIL import Image

from medsyn_dask.errors import SettingsError
from medsyn_dask.metrics.variety import (
    CODECS,
    CodecUnavailableError,
    check_codec,
    codec_version,
    encode_lossless,
    lossless_size,
)
from medsyn_dask.metrics.variety import codecs as variety_codecs


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _sof3_decode(data: bytes) -> np.ndarray:
    # The T.81 lossless process is frame type SOF3 (marker FFC3), and no other frame type.
    frames = {
        data[i + 1] for i in range(len(data) - 1) if data[i] == 0xFF and 0xC0 <= data[i + 1] <= 0xCF
    }
    assert 0xC3 in frames and not frames & {0xC0, 0xC1, 0xC2}, sorted(frames)
    # jpegsof3 (Rorden's decoder) is not libjpeg-turbo, the encoder: an independent reading.
    return imagecodecs.jpegsof3_decode(data)


#: Each codec's decoder, from a library other than the encoder's where there is one.
DECODERS = {
    "png": _pillow_decode,
    "png-opencv": _pillow_decode,  # OpenCV wrote it, Pillow reads it: RGB must stay RGB
    "jpeg2000": _pillow_decode,
    "webp": _pillow_decode,
    "jpeg-ls": imagecodecs.jpegls_decode,
    "jpeg-lossless": _sof3_decode,
}


def _assert_same_pixels(decoded: np.ndarray, image: np.ndarray) -> None:
    assert decoded.dtype == np.uint8
    if image.ndim == 2 and decoded.ndim == 3:  # WebP has no gray mode: gray is stored as RGB
        image = np.repeat(image[:, :, None], decoded.shape[2], axis=2)
    np.testing.assert_array_equal(decoded, image)


def test_every_codec_has_a_decoder_here():
    assert set(DECODERS) == set(CODECS)
    for codec in CODECS:
        check_codec(codec)
        assert codec_version(codec)


def _test_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    i, j = np.mgrid[0:33, 0:47]
    return {
        "noise-rgb": rng.integers(0, 256, (33, 47, 3), dtype=np.uint8),
        # incompressible: the file is larger than the pixels (a codec's buffer must allow it)
        "noise-rgb-big": rng.integers(0, 256, (128, 160, 3), dtype=np.uint8),
        # distinct channels: a swap of R and B would show
        "ramps-rgb": np.stack([i * 7 % 256, j * 5 % 256, (i * j) % 256], axis=2).astype(np.uint8),
        "noise-gray": rng.integers(0, 256, (33, 47), dtype=np.uint8),
        "extremes-gray": np.where((i + j) % 2 == 0, 0, 255).astype(np.uint8),
    }


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", sorted(_test_images()))
def test_codecs_round_trip_exactly(codec, name):
    image = _test_images()[name]
    data = encode_lossless(image, codec)
    _assert_same_pixels(DECODERS[codec](data), image)
    assert encode_lossless(image, codec) == data  # deterministic
    assert lossless_size(image, codec) == len(data)


@pytest.mark.parametrize("codec", CODECS)
def test_volume_slices_round_trip_and_add_up(codec):
    volume = np.random.default_rng(3).integers(0, 256, (19, 23, 4), dtype=np.uint8)
    volume[:, :, 1] = np.arange(23, dtype=np.uint8)[None, :] * 11  # a smooth slice too
    total = 0
    for z in range(volume.shape[2]):
        data = encode_lossless(volume[:, :, z], codec)  # a strided view, as the sum takes it
        _assert_same_pixels(DECODERS[codec](data), volume[:, :, z])
        total += len(data)
    assert lossless_size(volume, codec, volume=True) == total


@pytest.mark.parametrize("codec", CODECS)
def test_a_blurrier_mean_compresses_better(codec):
    # The measure's premise: a smooth (varied, averaged) image is smaller than a noisy one.
    noisy = _test_images()["noise-rgb"]
    smooth = np.broadcast_to(np.linspace(0, 255, 47).astype(np.uint8)[None, :, None], noisy.shape)
    assert lossless_size(np.ascontiguousarray(smooth), codec) < lossless_size(noisy, codec)


def _pattern_images() -> dict[str, np.ndarray]:
    """Deterministic test images (no RNG, so that the golden sizes below stay valid)."""
    i, j = np.mgrid[0:97, 0:131]
    texture = ((i * 7 + j * 13) ^ (i * j)) % 256
    grad = (i + 2 * j) % 256
    big = np.tile(((i * i + 3 * j) % 251).astype(np.uint8), (4, 3))
    return {
        "texture": np.repeat(texture.astype(np.uint8)[:, :, None], 3, axis=2),
        "color": np.stack([texture, grad, (texture // 3 + grad // 2) % 256], axis=2).astype(
            np.uint8
        ),
        "big": np.repeat(big[:, :, None], 3, axis=2),
    }


@pytest.mark.parametrize("name", sorted(_pattern_images()))
def test_png_opencv_is_what_opencv_writes(name):
    image = _pattern_images()[name]
    # What the reference's cv2.imwrite wrote for these pixels (OpenCV holds them as BGR).
    ok, expected = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    assert ok
    assert encode_lossless(image, "png-opencv") == expected.tobytes()
    assert lossless_size(image[:, :, 0], "png-opencv") == len(
        cv2.imencode(".png", image[:, :, 0])[1]
    )
    # Pillow's PNG is a different (smaller) file of the same pixels.
    assert lossless_size(image, "png") != len(expected)


# Sizes of ``cv2.imencode(".png", image[..., ::-1])`` with OpenCV 5.0.0, what the reference's
# ``cv2.imwrite`` wrote (they were also the sizes of the hand-written encoder this replaced).
OPENCV_PNG_SIZES = {"texture": 34670, "color": 28747, "big": 8858}


@pytest.mark.skipif(
    not cv2.__version__.startswith("5.0."),
    reason=f"golden sizes are for OpenCV 5.0, not {cv2.__version__}",
)
@pytest.mark.parametrize("name", sorted(OPENCV_PNG_SIZES))
def test_png_opencv_matches_the_reference_writer(name):
    assert lossless_size(_pattern_images()[name], "png-opencv") == OPENCV_PNG_SIZES[name]


def test_png_keeps_its_sizes():
    # Pillow's PNG at fixed settings (zlib level 6): the default, whose numbers must not move.
    image = _pattern_images()["texture"]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6, optimize=False)
    assert lossless_size(image, "png") == len(buf.getvalue())


def test_codec_errors(monkeypatch):
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(SettingsError, match="unknown codec 'jpeg-xl'"):
        lossless_size(image, "jpeg-xl")
    monkeypatch.setattr(variety_codecs.features, "check", lambda name: False)
    with pytest.raises(RuntimeError, match="jpg_2000"):
        lossless_size(image, "jpeg2000")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="volume=True"):
        lossless_size(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        lossless_size(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(SettingsError, match="3D volume"):
        lossless_size(image[:, :, 0], volume=True)


@pytest.mark.parametrize(
    ("module", "codecs", "extra"),
    [("cv2", ["png-opencv"], "opencv"), ("imagecodecs", ["jpeg-ls", "jpeg-lossless"], "codecs")],
)
def test_a_missing_library_names_its_extra(monkeypatch, module, codecs, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import now fails, as if not installed
    for codec in codecs:
        with pytest.raises(CodecUnavailableError, match=rf"{module}.*medsyn-dask\[{extra}\]"):
            check_codec(codec)
        # A settings error for the command line, a RuntimeError for library callers.
        with pytest.raises(SettingsError):
            encode_lossless(np.zeros((2, 2), np.uint8), codec)
        with pytest.raises(RuntimeError):
            lossless_size(np.zeros((2, 2), np.uint8), codec)
    check_codec("png")
