"""Datasets: listing ``ROOT/CLASS/file`` through fsspec, decoding files, preprocessing arrays."""

from .listing import Dataset, is_volume_path, list_images, relative_path
from .preprocess import preprocess, preprocess_image, preprocess_volume
from .readers import BadImageError, MissingReaderError, decode_image, read_image

__all__ = [
    "BadImageError",
    "Dataset",
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
