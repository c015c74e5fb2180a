"""The writer's lock of a feature set: one run at a time writes it, on disk or on S3 alike.

The lock is the object ``STORE/GROUP/lock-NAME/zarr.json``, created exclusively (``O_EXCL``
on disk, a conditional ``If-None-Match: *`` PUT on S3) and removed when the run ends. It is
a valid Zarr group node whose attributes name the holder (run id, host, process id, start
time), so Zarr listings of the group stay clean. A second driver gets
:class:`FeatureSetBusy`; a lock left on this host by a process that no longer exists (a
killed driver) is taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import fsspec

from ..checks import check_bucket
from ..errors import InputError

log = logging.getLogger(__name__)

LOCK_KEY = "medsyn_dask_lock"


class FeatureSetBusy(InputError):
    """Another run holds the lock of the feature set."""


class SetLock:
    """Context manager holding the lock of feature set ``group/name`` of ``store``."""

    def __init__(
        self,
        store: str,
        storage_options: Mapping[str, Any] | None,
        group: str,
        name: str,
        run_id: str,
    ) -> None:
        self.fs, root = fsspec.core.url_to_fs(store, **dict(storage_options or {}))
        check_bucket(self.fs, root, store, "features store")
        self.folder = f"{root.rstrip('/')}/{group}/lock-{name}"
        self.path = f"{self.folder}/zarr.json"
        self.label = f"{group}/{name}"
        self.shown = f"{store.rstrip('/')}/{group}/lock-{name}"  # as the user named the store
        self.holder = {
            "run": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def __enter__(self) -> SetLock:
        if not self._create():
            other = self._read()
            if not _dead_here(other):
                raise FeatureSetBusy(
                    f"feature set {self.label} is being written by run {other.get('run', '?')} "
                    f"on host {other.get('host', '?')} since {other.get('since', '?')}; "
                    f"wait or remove {self.shown} if that run is dead"
                )
            log.warning("taking over the lock of %s left by dead process %s", self.label, other)
            self._remove()
            if not self._create():
                raise FeatureSetBusy(f"feature set {self.label} was locked again meanwhile")
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _create(self) -> bool:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {LOCK_KEY: self.holder}}
        self.fs.makedirs(self.folder, exist_ok=True)  # its bucket exists (checked above)
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(json.dumps(doc).encode())
        except FileExistsError:
            return False
        return True

    def _read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.fs.cat_file(self.path))["attributes"][LOCK_KEY])
        except (FileNotFoundError, ValueError, KeyError):
            return {}  # being written or removed this instant: report it as unknown

    def _remove(self) -> None:
        try:
            self.fs.rm(self.folder, recursive=True)
        except FileNotFoundError:
            pass


def _dead_here(holder: Mapping[str, Any]) -> bool:
    """Whether ``holder`` was a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False  # this very process: a lock taken twice is a real conflict
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
