"""Listing a dataset root laid out as ``ROOT/CLASS/file`` through fsspec (disk or S3 alike).

Each file gets a fingerprint from the listing itself (no extra request): its size and
modification time on disk, its ETag and version id on an object store (as fsspec reports
them), so that stored features can be matched to the files they came from. A sha256 of the
content is added on request (``verify_content``), at the cost of reading every file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec

from ..errors import InputError

log = logging.getLogger(__name__)

#: File name endings read by Pillow (2D images).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: File name endings read by nibabel (3D volumes).
VOLUME_SUFFIXES = (".nii", ".nii.gz")
#: File name endings read by pydicom (2D images, or one slice each).
DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + VOLUME_SUFFIXES + DICOM_SUFFIXES


@dataclass(frozen=True)
class Dataset:
    """The images of one dataset root, in a fixed order (class, then file name).

    ``paths`` are full paths or URLs in the form ``root`` was given (``s3://...`` stays a URL);
    ``classes[i]`` is the class folder of ``paths[i]``; ``volumes`` says whether the files are
    3D volumes (NIfTI) rather than 2D images. A dataset never mixes the two.
    ``fingerprints[i]`` changes when ``paths[i]`` changes (see :func:`fingerprint`);
    ``content_sha256[i]`` is the sha256 (hex) of its bytes when listed with
    ``verify_content=True``, else the tuple is empty.
    """

    root: str
    paths: tuple[str, ...]
    classes: tuple[str, ...]
    class_names: tuple[str, ...]
    volumes: bool
    fingerprints: tuple[str, ...] = ()
    content_sha256: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)


def is_volume_path(path: str) -> bool:
    """Whether ``path`` names a 3D volume (``.nii`` / ``.nii.gz``)."""
    return path.lower().endswith(VOLUME_SUFFIXES)


def is_supported_path(path: str) -> bool:
    """Whether ``path`` has a file name ending that :func:`read_image` understands."""
    name = path.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.lower().endswith(SUPPORTED_SUFFIXES)


def list_images(
    root: str,
    class_names: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    verify_content: bool = False,
) -> Dataset:
    """List the images under ``root/CLASS/`` (one level; hidden and unknown files are ignored).

    ``class_names`` selects and orders classes; by default every class folder is used, sorted.
    Every file gets a :func:`fingerprint`; ``verify_content`` also reads every file for the
    sha256 of its content (:func:`content_digests`).
    Raises ``FileNotFoundError`` for a missing root or class and ``ValueError`` for a root with
    no images or one that mixes 2D images and 3D volumes.
    """
    root = dataset_root(root)
    fs, base, present = _open_root(root, storage_options)
    if class_names:
        missing = [c for c in class_names if c not in present]
        if missing:
            raise FileNotFoundError(
                f"class folder(s) {missing} not found under {root} (found: {present})"
            )
        chosen = list(dict.fromkeys(class_names))
    else:
        chosen = present
    paths: list[str] = []
    classes: list[str] = []
    prints: list[str] = []
    for cls in chosen:
        listed = _followed(fs, _fresh_ls(fs, f"{base}/{cls}"))
        entries = sorted(
            (_name(e["name"]), fingerprint(e))
            for e in listed
            if e["type"] == "file" and is_supported_path(e["name"])
        )
        _warn_unsupported(f"{base}/{cls}", listed)
        paths.extend(_join(root, f"{cls}/{n}") for n, _ in entries)
        prints.extend(f for _, f in entries)
        classes.extend([cls] * len(entries))
    if not paths:
        raise InputError(f"no images found under {root}/CLASS/ (classes: {chosen})")
    kinds = {is_volume_path(p) for p in paths}
    if len(kinds) > 1:
        vol = next(p for p in paths if is_volume_path(p))
        img = next(p for p in paths if not is_volume_path(p))
        raise InputError(
            f"dataset {root} mixes 3D volumes and 2D images (e.g. {_name(vol)} and {_name(img)});"
            " keep them in separate roots"
        )
    log.info("listed %d images in %d classes", len(paths), len(chosen))
    return Dataset(
        root=root,
        paths=tuple(paths),
        classes=tuple(classes),
        class_names=tuple(chosen),
        volumes=kinds == {True},
        fingerprints=tuple(prints),
        content_sha256=content_digests(paths, storage_options) if verify_content else (),
    )


#: Keys of an fsspec listing entry that identify a version of an object, then its content,
#: then its modification time, by backend (s3fs, gcsfs, adlfs, local...), first found wins.
_VERSION_KEYS = ("VersionId", "version_id", "generation")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "content_md5")
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified")


def fingerprint(entry: Mapping[str, Any]) -> str:
    """A short text that changes when the file of an fsspec listing ``entry`` changes.

    ``size=N`` followed by the object's version id and ETag when the backend reports them
    (object stores), else its modification time (local files: ``mtime`` in seconds, to the
    resolution of the file system). Equal fingerprints mean "same file" to the feature store.
    """
    parts = [f"size={entry.get('size')}"]
    for label, keys in (("version", _VERSION_KEYS), ("etag", _ETAG_KEYS)):
        value = next((entry[k] for k in keys if entry.get(k) not in (None, "")), None)
        if value is not None:
            parts.append(f"{label}={value}")
    if len(parts) == 1:
        mtime = next((entry[k] for k in _MTIME_KEYS if entry.get(k) is not None), None)
        parts.append(f"mtime={mtime!r}" if isinstance(mtime, float) else f"mtime={mtime}")
    return " ".join(parts)


def content_digests(
    paths: Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """The sha256 (hex) of the content of each file, read in chunks by a few threads (file
    reads are I/O-bound)."""
    opts = dict(storage_options or {})

    def digest(path: str) -> str:
        h = hashlib.sha256()
        with fsspec.open(path, "rb", **opts) as f:
            while chunk := f.read(4 * 2**20):
                h.update(chunk)
        return h.hexdigest()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return tuple(pool.map(digest, paths))


def dataset_root(root: str) -> str:
    """A dataset root as the tool holds and records it: absolute for a local path (workers, on
    other hosts or in other folders, get absolute paths), a URL without its trailing slash
    (``s3://b/real/`` is the folder ``s3://b/real``, one feature set)."""
    return root.rstrip("/") if "://" in root else os.path.abspath(root)


def relative_path(root: str, path: str) -> str:
    """``path`` relative to ``root`` (``CLASS/file``), as stored in the feature store."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise InputError(f"{path} is not under the dataset root {root}")
    return path[len(prefix) :]


def _fresh_ls(fs: Any, folder: str) -> list[dict[str, Any]]:
    """``fs.ls(folder, detail=True)`` past fsspec's listing cache."""
    fs.invalidate_cache(folder)
    return fs.ls(folder, detail=True)


def _open_root(root: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str, list[str]]:
    """The file system of ``root``, the root's path in it and its class folders (sorted,
    hidden ones left out).

    A failure of the storage backend (credentials, endpoint, a malformed bucket name...)
    raises one :class:`InputError` naming the root, with no credential of its URL in it.
    """
    try:
        fs, base = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
        base = base.rstrip("/")
        # A listing cached by fsspec (object stores) would hide files rewritten since.
        fs.invalidate_cache(base)
        if not fs.isdir(base):
            raise FileNotFoundError(f"dataset root not found or not a directory: {root}")
        entries = _followed(fs, fs.ls(base, detail=True))
    except FileNotFoundError:
        raise
    except Exception as exc:  # backends' own types (botocore, aiohttp); a 403 names no root
        from .anonymise import scrub  # (anonymise imports this module)

        text = f"cannot list the dataset root {root} ({type(exc).__name__}: {exc})"
        raise InputError(scrub(text, root)) from exc
    present = sorted(_name(e["name"]) for e in entries if e["type"] == "directory")
    return fs, base, [c for c in present if not c.startswith(".")]


def _followed(fs: Any, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listing ``entries`` with symbolic links (local disks) replaced by what they point to.

    fsspec lists a link as type ``"other"`` with the link's own times: the entry of its
    target is what a fingerprint needs (the target may change under the link). A link that
    loops or points nowhere stays a ``"file"`` when its name is an image's, so that reading it
    makes it a bad image (an error naming it, or skipped and listed), never a silent gap.
    """
    out = []
    for entry in entries:
        if entry.get("islink") and entry["type"] == "other":
            try:
                entry = fs.info(entry["name"])  # follows the link
            except OSError:
                entry = {**entry, "type": "file"}
        out.append(entry)
    return out


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _warn_unsupported(folder: str, entries: list[dict[str, Any]]) -> None:
    """Warn about files of a class folder that are not read (not about hidden files)."""
    names = sorted(
        _name(e["name"])
        for e in entries
        if not _name(e["name"]).startswith(".") and not is_supported_path(e["name"])
    )
    if names and (folder, tuple(names)) not in _WARNED:
        _WARNED.add((folder, tuple(names)))  # a run lists each root more than once: say it once
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        log.warning(
            "class %s: %d file(s) or folder(s) with an ending not read are ignored (%s); "
            "read endings: %s",
            _name(folder),
            len(names),
            shown,
            " ".join(SUPPORTED_SUFFIXES),
        )


def _join(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + rel


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
