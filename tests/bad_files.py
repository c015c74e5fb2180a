"""Writing each kind of bad or unusual input file, in its real format, for the bad-input tests.

Every writer takes a folder and a sample image of the dataset (a real phantom file, for the
cases built from one) and writes one file there; it returns the file's name. :data:`WRITERS`
maps a case name to its writer.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Writer = Callable[[Path, Path], str]


def zero_bytes(folder: Path, sample: Path) -> str:
    (folder / "zz_empty.png").write_bytes(b"")
    return "zz_empty.png"


def truncated_png(folder: Path, sample: Path) -> str:
    data = sample.read_bytes()
    (folder / "zz_truncated.png").write_bytes(data[: len(data) // 2])
    return "zz_truncated.png"


def text_as_png(folder: Path, sample: Path) -> str:
    (folder / "zz_text.png").write_text("this is not an image\n")
    return "zz_text.png"


def _sample_pixels(sample: Path) -> np.ndarray:
    with Image.open(sample) as img:
        return np.asarray(img.convert("L"))


def png_16bit(folder: Path, sample: Path) -> str:
    pixels = _sample_pixels(sample).astype(np.uint16) * 257  # the same image on 0..65535
    Image.fromarray(pixels).save(folder / "zz_16bit.png")
    return "zz_16bit.png"


def cmyk_jpeg(folder: Path, sample: Path) -> str:
    Image.fromarray(_sample_pixels(sample)).convert("CMYK").save(folder / "zz_cmyk.jpg")
    return "zz_cmyk.jpg"


def palette_transparent_png(folder: Path, sample: Path) -> str:
    img = Image.fromarray(_sample_pixels(sample)).convert("P")
    img.save(folder / "zz_palette.png", transparency=0)
    return "zz_palette.png"


def la_png(folder: Path, sample: Path) -> str:
    gray = Image.fromarray(_sample_pixels(sample))
    alpha = Image.new("L", gray.size, 200)
    Image.merge("LA", (gray, alpha)).save(folder / "zz_la.png")
    return "zz_la.png"


def one_pixel(folder: Path, sample: Path) -> str:
    Image.new("L", (1, 1), 128).save(folder / "zz_1x1.png")
    return "zz_1x1.png"


def other_size(folder: Path, sample: Path) -> str:
    """The sample at a different size and aspect (stretched to 3/2 x 3/4 of it)."""
    img = Image.fromarray(_sample_pixels(sample))
    w, h = img.size
    img.resize((w * 3 // 2, h * 3 // 4), Image.Resampling.BILINEAR).save(folder / "zz_other.png")
    return "zz_other.png"


def decompression_bomb(folder: Path, sample: Path) -> str:
    """A valid PNG header of 100 000 x 100 000 pixels (10 G) with one tiny IDAT: Pillow
    refuses it on the header, nothing large is ever allocated."""
    side = 100_000
    raw = zlib.compress(b"\x00" * 64)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    (folder / "zz_bomb.png").write_bytes(data)
    return "zz_bomb.png"


def animated_gif(folder: Path, sample: Path) -> str:
    frames = [Image.new("L", (32, 32), v) for v in (0, 128, 255)]
    frames[0].save(folder / "zz_anim.gif", save_all=True, append_images=frames[1:], loop=0)
    return "zz_anim.gif"


def multipage_tiff(folder: Path, sample: Path) -> str:
    frames = [Image.fromarray(_sample_pixels(sample)), Image.new("L", (32, 32), 255)]
    frames[0].save(folder / "zz_pages.tif", save_all=True, append_images=frames[1:])
    return "zz_pages.tif"


def hidden_files(folder: Path, sample: Path) -> str:
    """macOS's ``.DS_Store`` and an AppleDouble ``._x.png`` (neither an image)."""
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    (folder / f"._{sample.name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    return ".DS_Store"


def symlink_loop(folder: Path, sample: Path) -> str:
    """``zz_loop.png -> zz_loop.png`` and a folder link to the class folder's parent."""
    (folder / "zz_loop.png").symlink_to("zz_loop.png")
    (folder / "zz_up").symlink_to("..", target_is_directory=True)
    return "zz_loop.png"


def odd_name(folder: Path, sample: Path) -> str:
    """A copy of the sample named with spaces, unicode and ``..``."""
    name = "zz ..é 𝕏 ../x.png".replace("/", "∕")  # '/' cannot be in a name: a look-alike
    (folder / name).write_bytes(sample.read_bytes())
    return name


# --- volumes (NIfTI) and DICOM ---


def _nifti_bytes(data: np.ndarray) -> bytes:
    import nibabel as nib

    return nib.Nifti1Image(data, affine=np.eye(4)).to_bytes()


def nifti_4d(folder: Path, sample: Path) -> str:
    data = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    (folder / "zz_4d.nii").write_bytes(_nifti_bytes(data))
    return "zz_4d.nii"


def nifti_nan(folder: Path, sample: Path) -> str:
    data = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    data[3, 4, 5], data[6, 7, 8] = np.nan, np.inf
    (folder / "zz_nan.nii").write_bytes(_nifti_bytes(data))
    return "zz_nan.nii"


def nifti_lying_header(folder: Path, sample: Path) -> str:
    """A header that says 64 x 64 x 64 over 16 x 16 x 16 voxels of data."""
    return _nifti_with_header_shape(folder, "zz_lying.nii", (64, 64, 64))


def _nifti_with_header_shape(folder: Path, name: str, shape: tuple[int, ...]) -> str:
    import nibabel as nib

    data = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    raw = bytearray(_nifti_bytes(data))
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])))
    header.set_data_shape(shape)
    raw[:348] = header.binaryblock
    (folder / name).write_bytes(bytes(raw))
    return name


def nifti_short_header(folder: Path, sample: Path) -> str:
    """A header that says 8 x 8 x 8 over 16 x 16 x 16 voxels of data."""
    return _nifti_with_header_shape(folder, "zz_short.nii", (8, 8, 8))


#: Patient-module values written into DICOM test files; none may appear in any output.
PATIENT_TAGS = {
    "PatientName": "Doe^Jane^Secretname",
    "PatientID": "PID-7731-SECRET",
    "PatientBirthDate": "19470203",
    "PatientSex": "F",
    "OtherPatientIDs": "OTHER-ID-99421",
    "PatientAddress": "12 Hidden Lane, Nowhere",
}


def write_dicom(path: Path, pixels: np.ndarray | None) -> None:
    """A Secondary Capture DICOM file with :data:`PATIENT_TAGS`, ``pixels`` as uint16 MONOCHROME2
    (none: no Pixel Data element)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    for key, value in PATIENT_TAGS.items():
        setattr(ds, key, value)
    if pixels is not None:
        arr = np.asarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def dicom_without_pixels(folder: Path, sample: Path) -> str:
    write_dicom(folder / "zz_nopixels.dcm", None)
    return "zz_nopixels.dcm"


#: Case name -> writer, for the 2D cases (a PNG dataset).
WRITERS: dict[str, Writer] = {
    "zero_bytes": zero_bytes,
    "truncated_png": truncated_png,
    "text_as_png": text_as_png,
    "png_16bit": png_16bit,
    "cmyk_jpeg": cmyk_jpeg,
    "palette_transparent_png": palette_transparent_png,
    "la_png": la_png,
    "one_pixel": one_pixel,
    "other_size": other_size,
    "decompression_bomb": decompression_bomb,
    "animated_gif": animated_gif,
    "multipage_tiff": multipage_tiff,
    "hidden_files": hidden_files,
    "symlink_loop": symlink_loop,
    "odd_name": odd_name,
    "dicom_without_pixels": dicom_without_pixels,
}
#: Case name -> writer, for the 3D cases (a NIfTI dataset).
VOLUME_WRITERS: dict[str, Writer] = {
    "nifti_4d": nifti_4d,
    "nifti_nan": nifti_nan,
    "nifti_lying_header": nifti_lying_header,
    "nifti_short_header": nifti_short_header,
}
