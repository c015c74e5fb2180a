"""Which stored feature rows still match their files: the work plan of an extraction run.

An image's stored row is reused when a feature set of the same configuration holds a row for
the same path (``CLASS/file``) written from a file with the same fingerprint (size and
modification time, or ETag / version id), or, when the content is verified, the same sha256.
The set being written comes first, so a rerun over an unchanged layout rewrites only the
partitions that hold a changed image; sets of the same configuration but another image list
(files added or removed) then lend the rows they hold. Every other image is extracted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StoredRows:
    """The per-row record of one stored feature set: paths, fingerprints, content sha256."""

    name: str
    paths: np.ndarray
    fingerprints: np.ndarray
    content_sha256: np.ndarray


@dataclass(frozen=True)
class PartitionWork:
    """One partition to write: rows ``[start, stop)``, which to extract and which to copy.

    ``reuse`` holds ``(set name, target rows, source rows)``: rows of this set copied from
    rows of that set (absolute row numbers).
    """

    index: int
    start: int
    stop: int
    extract: tuple[int, ...]
    reuse: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]


@dataclass(frozen=True)
class Plan:
    """The partitions to write and what the run reuses (counts of images)."""

    work: tuple[PartitionWork, ...]
    n_reused: int
    n_changed: int  # images with a stored row whose file has changed since
    n_new: int  # images no stored set knows

    @property
    def n_extract(self) -> int:
        return sum(len(w.extract) for w in self.work)


def match_rows(
    rel_paths: Sequence[str],
    fingerprints: Sequence[str],
    content_sha256: Sequence[str],
    stored: Sequence[StoredRows],
    *,
    first: int = 0,
    matches: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each image, ``(index into stored, row there)`` of a matching stored row, ``-1``
    where none matches; the first matching set wins. ``content_sha256`` empty: compare the
    fingerprints, else compare the content digests. To continue an earlier call with more
    sets, pass its ``matches`` and ``first`` (the index of the first new set): only images
    still unmatched are looked up."""
    n = len(rel_paths)
    if matches is None:
        source, row = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    else:
        source, row = matches[0].copy(), matches[1].copy()
    verify = len(content_sha256) > 0
    for s in range(first, len(stored)):
        rows = stored[s]
        where = {p: j for j, p in enumerate(rows.paths)}
        ours, theirs = (
            (content_sha256, rows.content_sha256) if verify else (fingerprints, rows.fingerprints)
        )
        for i in np.flatnonzero(source < 0):
            j = where.get(rel_paths[i])
            if j is not None and theirs[j] and ours[i] == theirs[j]:
                source[i], row[i] = s, j
    return source, row


def plan_partitions(
    n_images: int,
    partition_size: int,
    finished: set[int],
    stored: Sequence[StoredRows],
    source: np.ndarray,
    row: np.ndarray,
    fingerprints: Sequence[str],
) -> Plan:
    """The partitions of the set ``stored[0]`` to write, given the matches of
    :func:`match_rows`.

    A partition is left alone when its marker is written and every row is its own stored row
    with the current fingerprint; otherwise it is rewritten, copying the matched rows and
    extracting the others. (A row matched by content whose fingerprint changed is copied onto
    itself, to record the new fingerprint.)
    """
    own = stored[0]
    current = (source == 0) & (row == np.arange(n_images))
    current &= np.asarray(own.fingerprints, dtype=object) == np.asarray(fingerprints, object)
    work = []
    for k in range(-(-n_images // partition_size)):
        start, stop = k * partition_size, min((k + 1) * partition_size, n_images)
        if k in finished and current[start:stop].all():
            continue
        part = slice(start, stop)
        reuse = tuple(
            (stored[s].name, tuple(int(i) for i in rows), tuple(int(j) for j in row[rows]))
            for s in np.unique(source[part][source[part] >= 0])
            for rows in [start + np.flatnonzero(source[part] == s)]
        )
        extract = tuple(int(i) for i in start + np.flatnonzero(source[part] < 0))
        work.append(PartitionWork(k, start, stop, extract, reuse))
    known = set()  # paths with a row written from some version of the file
    for rows in stored:
        known.update(rows.paths[np.asarray(rows.fingerprints, dtype=object) != ""].tolist())
    missing = np.flatnonzero(source < 0)
    n_changed = sum(1 for i in missing if own.paths[i] in known)
    return Plan(
        work=tuple(work),
        n_reused=int((source >= 0).sum()),
        n_changed=n_changed,
        n_new=len(missing) - n_changed,
    )
