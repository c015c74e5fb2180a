"""Variety from the mean image (METHOD.md, "Variety from the mean image").

The raw variety measure of a synthetic group is the losslessly compressed size, in bytes, of
its all-classes mean image: a varied group averages to a blurry image, which compresses well.

Layout, plain NumPy maths first and the Dask graph around it in one place:

- :mod:`.image`: one image as read -> the uint8 array that is averaged
  (:func:`to_uint8_image`, the conventions of the reference's ``cv2.imread``), and its
  bilinear resizing (:func:`resize_image`); what it shares with extraction comes from
  :mod:`medsyn_dask.sources.preprocess`;
- :mod:`.score`: partial sums and truncated means (:func:`accumulate`,
  :func:`combine_partials`, :func:`finalize_mean`, :func:`all_classes_mean`) and the score
  from sizes (:func:`variety_scores`, :func:`variety_undefined_reason`);
- :mod:`.codecs`: lossless sizes through codec libraries (:data:`CODECS`,
  :func:`check_codec`, :func:`encode_lossless`, :func:`lossless_size`);
- :mod:`.graph`: the Dask graph (:func:`mean_images_delayed`, :func:`mean_images`): one task
  per partition of paths, partial sums added in a tree;
- :mod:`.group`: the entry point of an analysis, :func:`group_variety` -> :class:`GroupVariety`.

Shapes: 2D images are ``uint8`` ``(H, W, 3)``, 3D volumes ``uint8`` ``(X, Y, Z)``.
"""

from .codecs import (
    CODECS,
    Codec,
    CodecUnavailableError,
    check_codec,
    codec_version,
    encode_lossless,
    lossless_size,
)
from .graph import mean_images, mean_images_delayed
from .group import GroupVariety, group_variety
from .image import resize_image, to_uint8_image
from .score import (
    Partial,
    accumulate,
    all_classes_mean,
    combine_partials,
    finalize_mean,
    variety_scores,
    variety_undefined_reason,
)

__all__ = [
    "CODECS",
    "Codec",
    "CodecUnavailableError",
    "GroupVariety",
    "Partial",
    "accumulate",
    "all_classes_mean",
    "check_codec",
    "codec_version",
    "combine_partials",
    "encode_lossless",
    "finalize_mean",
    "group_variety",
    "lossless_size",
    "mean_images",
    "mean_images_delayed",
    "resize_image",
    "to_uint8_image",
    "variety_scores",
    "variety_undefined_reason",
]
