"""Datasets: listing ``ROOT/CLASS/file`` through fsspec, decoding files, preprocessing arrays.

- :mod:`.listing`: :func:`list_images` -> :class:`Dataset` (paths, classes, per-file
  fingerprints: size + mtime, or the object store's ETag / version id; optional sha256);
- :mod:`.readers`: :func:`read_image` (Pillow, nibabel, pydicom) and :class:`BadImageError`;
- :mod:`.preprocess`: METHOD.md preprocessing (grayscale/RGB, bilinear resize, [-1, 1]);
- :mod:`.patients`: patient labels of the real images (a CSV, or DICOM PatientID as a salted
  hash); :mod:`.anonymise`: stable hashes for paths in outputs (``--anonymize-paths``).
"""

from .listing import Dataset, dataset_root, is_volume_path, list_images, relative_path
from .preprocess import preprocess, preprocess_image, preprocess_volume
from .readers import BadImageError, MissingReaderError, decode_image, read_image

__all__ = [
    "BadImageError",
    "Dataset",
    "dataset_root",
    "decode_image",
    "is_volume_path",
    "MissingReaderError",
    "list_images",
    "preprocess",
    "preprocess_image",
    "preprocess_volume",
    "read_image",
    "relative_path",
]
