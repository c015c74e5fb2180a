"""The real set's derived results (radii, FID statistics) kept beside its features, for reuse.

A study of many checkpoints against one real set should pay the real set's radii and FID
statistics once. They are stored in the feature store under ``cache/real-neighbourhood/KEY.npz``
where KEY is a sha256 over the real features THEMSELVES (every row's bytes, in order), the
metric, ``nearest_k`` and the package version: a feature changed anywhere, a row added, removed
or reordered, or another k gives another key, so a stale entry can never be read for new
inputs. Entries are written to a temporary name and moved into place (never half-written);
an unreadable entry is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import fsspec
import numpy as np

from . import __version__ as PACKAGE_VERSION
from .evaluate_results import RealNeighbourhood
from .metrics.fid_linalg import RealFID

log = logging.getLogger(__name__)

CACHE_DIR = "cache/real-neighbourhood"
#: Rows per hashed block.
DIGEST_ROWS = 4096


def _block_digest(block: np.ndarray) -> bytes:
    block = np.ascontiguousarray(block)
    head = f"{block.dtype.str}{block.shape}".encode()
    return hashlib.sha256(head + block.tobytes()).digest()


def features_digest(features: Any) -> str:
    """sha256 (hex) of a 2-D feature array's dtype, shape and bytes, in row order.

    ``features`` is a NumPy or Dask array; a Dask array is hashed block by block on the
    workers (one pass over the data, far cheaper than the radii it protects).
    """
    darr = features if isinstance(features, da.Array) else da.from_array(np.asarray(features))
    darr = darr.rechunk({0: DIGEST_ROWS, 1: -1})  # fixed blocks: the digest ignores chunking
    parts = darr.map_blocks(
        lambda b: np.frombuffer(_block_digest(b), dtype=np.uint8)[None, :],
        dtype=np.uint8,
        chunks=((1,) * darr.numblocks[0], (32,)),
        name="digest-real-features",
    )
    (blocks,) = dask.compute(parts)
    h = hashlib.sha256(f"{darr.dtype.str}{darr.shape}".encode())
    h.update(np.asarray(blocks).tobytes())
    return h.hexdigest()


def cache_key(digest: str, metric: str, nearest_k: int) -> str:
    text = f"{digest}|{metric}|k={nearest_k}|{PACKAGE_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _path(store: str, key: str) -> str:
    return f"{store.rstrip('/')}/{CACHE_DIR}/{key}.npz"


def load_real_neighbourhood(
    store: str, key: str, n_images: int, storage_options: Mapping[str, Any] | None = None
) -> RealNeighbourhood | None:
    """The cached radii (and FID statistics) under ``key``, or None when absent or unusable."""
    fs, path = fsspec.core.url_to_fs(_path(store, key), **dict(storage_options or {}))
    try:
        with fs.open(path, "rb") as f:
            arrays = dict(np.load(io.BytesIO(f.read()), allow_pickle=False))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged entry: recompute rather than fail
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None
    smallest = arrays["smallest"]
    if smallest.shape[0] != n_images:
        return None
    fid = {k.removeprefix("fid_"): v for k, v in arrays.items() if k.startswith("fid_")}
    return RealNeighbourhood(
        smallest=smallest,
        centre=arrays["centre"] if arrays["centre"].size else None,
        metric=str(arrays["metric"]),
        nearest_k=int(arrays["nearest_k"]),
        fid_statistics=RealFID.from_arrays(fid) if fid else None,
    )


def save_real_neighbourhood(
    store: str,
    key: str,
    neighbourhood: RealNeighbourhood,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Store ``neighbourhood`` under ``key``, atomically (temporary name, then moved)."""
    arrays: dict[str, np.ndarray] = {
        "smallest": neighbourhood.smallest,
        "centre": np.empty(0) if neighbourhood.centre is None else neighbourhood.centre,
        "metric": np.asarray(neighbourhood.metric),
        "nearest_k": np.asarray(neighbourhood.nearest_k),
    }
    if neighbourhood.fid_statistics is not None:
        arrays.update({f"fid_{k}": v for k, v in neighbourhood.fid_statistics.to_arrays().items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fs, path = fsspec.core.url_to_fs(_path(store, key), **dict(storage_options or {}))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.partial"
    with fs.open(tmp, "wb") as f:
        f.write(buf.getvalue())
    fs.mv(tmp, path)
