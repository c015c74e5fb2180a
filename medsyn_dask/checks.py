"""The rules for values that enter the package, in one place (every boundary calls these).

Each check raises :class:`~medsyn_dask.errors.SettingsError` naming the option and the value.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from .errors import InputError, SettingsError, unreachable_errors

#: Smallest and largest image side for extraction (pixels): below 8 no extractor has anything
#: to see; above 8192 one 3D volume alone would not fit in a worker.
MIN_RESOLUTION, MAX_RESOLUTION = 8, 8192
#: Rows per distance block: a worker's peak memory grows with block_size**2 (~40 bytes a pair).
DEFAULT_BLOCK_SIZE = 2048
#: Image side for extraction when none is given. 256 keeps the pixel and VQ-VAE defaults
#: cheap; the compat CLI keeps the original's 512.
DEFAULT_RESOLUTION = 256
#: The file name of a set's mean image over all classes (``mean_images/SET/all_classes.png``):
#: no class folder may take it.
ALL_CLASSES = "all_classes"
#: The characters of a plain name: names of groups in a run and in a feature store, used as
#: folder and file names.
_PLAIN = "A-Za-z0-9_.-"
PLAIN_NAME = re.compile(f"[{_PLAIN}]+")
#: What a plain name may not hold (:func:`plain_name`).
NOT_PLAIN = re.compile(f"[^{_PLAIN}]+")
ON_BAD_IMAGE = ("error", "skip")
#: Lossless codecs of the mean images (:mod:`medsyn_dask.metrics.variety.codecs`), default first.
Codec = Literal["png", "png-opencv", "jpeg2000", "webp", "jpeg-ls", "jpeg-lossless"]
CODECS: tuple[str, ...] = get_args(Codec)
NUM_CHANNELS = (1, 3)


def check_plain_name(value: Any, option: str) -> str:
    """A name of letters, digits, ``_``, ``.``, ``-`` (not ``.`` or ``..``)."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value) or value in (".", ".."):
        raise SettingsError(f"{option} must be letters, digits, '_', '.', '-': got {value!r}")
    return value


def plain_name(text: str, fallback: str) -> str:
    """``text`` made a plain name: each run of other characters an ``_`` (``my synth`` ->
    ``my_synth``), no leading or trailing dot or ``_``; ``fallback`` if nothing is left."""
    return NOT_PLAIN.sub("_", text).strip("._") or fallback


def check_int(value: Any, option: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (bools and non-integral values refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not (hasattr(value, "__index__") and not isinstance(value, bool)):
            raise SettingsError(f"{option} must be an integer, got {value!r}")
        value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{option} must be {bound}, got {value}")
    return int(value)


def check_number(value: Any, option: str, *, minimum: float = 0.0) -> float:
    """A finite real number ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise SettingsError(f"{option} must be a number, got {value!r}")
    if value in (float("inf"), float("-inf")) or value < minimum:
        raise SettingsError(f"{option} must be finite and >= {minimum}, got {value!r}")
    return float(value)


def check_resolution(value: Any, option: str = "resolution") -> int:
    """An image side in pixels, ``MIN_RESOLUTION..MAX_RESOLUTION``."""
    return check_int(value, option, minimum=MIN_RESOLUTION, maximum=MAX_RESOLUTION)


def check_nearest_k_below(nearest_k: int, n_real: int) -> None:
    """SettingsError unless ``nearest_k`` is below the number of real images (each real
    image's k-th neighbour is another real image)."""
    if nearest_k >= n_real:
        raise SettingsError(
            f"nearest_k={nearest_k} must be smaller than the number of real images {n_real}"
        )


def check_choice(value: Any, option: str, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise SettingsError(f"{option} must be one of {list(choices)}, got {value!r}")
    return value


def check_bucket(fs: Any, path: str, url: str, what: str) -> None:
    """InputError where ``url`` (``path`` in its file system ``fs``) is on an object store
    whose bucket does not exist: making a folder there creates the bucket (s3fs), so a typo
    would write into a new bucket, or into someone else's. ConnectionError naming ``what``
    where the store does not answer."""
    if "://" not in url or url.startswith("file://"):
        return
    bucket = path.split("/", 1)[0]
    if not bucket:
        return
    try:  # not fs.exists: s3fs answers False for a bucket it could not reach
        fs.info(bucket)
    except FileNotFoundError:
        raise InputError(
            f"{what} {url}: bucket {bucket!r} does not exist; create it first"
        ) from None
    except PermissionError:
        pass  # a bucket one may write into but not look at: the write probe decides
    except unreachable_errors() as exc:  # often the first request to this store: say which
        raise ConnectionError(f"{what} {url}: {exc}") from exc
