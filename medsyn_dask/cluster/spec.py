"""What Dask cluster a job runs on: the :class:`ClusterSpec` and the rules for its values.

One spec describes every way a job finds its workers: the embedded LocalCluster
(``local``), a batch system through dask-jobqueue (``slurm``, ``pbs``, ``sge``, ``lsf``) or a
running scheduler (an address such as ``tcp://10.0.0.5:8786``). It is validated where it is
made, before any cluster starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..checks import check_int, check_number
from ..errors import SettingsError

#: Batch systems started through dask-jobqueue, and their dask-jobqueue class names.
BATCH_SYSTEMS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
}
#: The values of ``cluster`` besides an address.
KINDS = ("local", *BATCH_SYSTEMS)
#: Seconds to wait for the first worker by default (a batch queue may take minutes).
DEFAULT_WORKER_TIMEOUT = 300.0
#: Where the dashboard listens unless told otherwise: loopback, as it has no authentication
#: (port 8787, or a free one when taken).
DEFAULT_DASHBOARD = "127.0.0.1:8787"
#: ``tcp://host:port``, ``tls://host:port``, ``ucx://...``, ``ws(s)://...`` or ``host:port``.
_ADDRESS = re.compile(r"([a-z]+://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")
_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):\d{1,5}|:?\d{1,5}")


def is_address(value: str) -> bool:
    """Whether ``value`` names a scheduler address rather than a kind of cluster."""
    return bool(_ADDRESS.fullmatch(value))


@dataclass(frozen=True)
class ClusterSpec:
    """Where a job's Dask workers come from, validated on creation.

    Attributes:
        cluster: ``local``, ``slurm``, ``pbs``, ``sge``, ``lsf`` or a scheduler address.
        workers: workers of a LocalCluster, jobs of a batch system (one worker each unless
            the ``processes`` option says otherwise), or the workers an attached scheduler
            must have; None: the default (one per core locally, one job, one worker).
        adapt: ``(minimum, maximum)`` jobs for an adaptive batch cluster, or None.
        options: dask-jobqueue keyword arguments (``cores``, ``memory``, ``walltime``, ...),
            on top of Dask's ``jobqueue.<system>`` configuration.
        gpus_per_worker: GPUs each batch job asks for; its worker then advertises the Dask
            resource ``GPU=gpus_per_worker``. 0: none.
        worker_timeout: seconds to wait for the first worker before giving up (exit 2).
        dashboard_address: ``host:port`` of the scheduler's dashboard (loopback by default).
    """

    cluster: str = "local"
    workers: int | None = None
    adapt: tuple[int, int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    gpus_per_worker: int = 0
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT
    dashboard_address: str = DEFAULT_DASHBOARD

    def __post_init__(self) -> None:
        cluster = self.cluster
        if not isinstance(cluster, str) or not (cluster in KINDS or is_address(cluster)):
            raise SettingsError(
                f"cluster must be one of {', '.join(KINDS)} or a scheduler address "
                f"(tcp://HOST:PORT), got {cluster!r}"
            )
        if self.workers is not None:
            check_int(self.workers, "workers")
        if self.adapt is not None:
            _check_adapt(self.adapt)
            if self.kind != "batch":
                raise SettingsError(
                    f"adapt applies to a batch system (slurm, pbs, sge, lsf), not to {cluster!r}"
                )
        check_int(self.gpus_per_worker, "gpus_per_worker", minimum=0)
        if self.gpus_per_worker and self.kind != "batch":
            raise SettingsError(
                f"gpus_per_worker asks a batch system for GPUs; with cluster {cluster!r} "
                "start GPU workers with `dask worker ... --resources GPU=1` instead"
            )
        check_number(self.worker_timeout, "worker_timeout", minimum=0.1)
        if not isinstance(self.dashboard_address, str) or not _HOST_PORT.fullmatch(
            self.dashboard_address
        ):
            raise SettingsError(
                f"dashboard_address must be HOST:PORT (e.g. 127.0.0.1:8787), "
                f"got {self.dashboard_address!r}"
            )
        if not isinstance(self.options, Mapping):
            raise SettingsError(f"cluster_options must be a mapping, got {self.options!r}")
        if self.options and self.kind != "batch":
            raise SettingsError(
                f"cluster_options apply to a batch system (slurm, pbs, sge, lsf), not to "
                f"{cluster!r}: got {', '.join(self.options)}"
            )
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def kind(self) -> str:
        """``local``, ``batch`` or ``address``."""
        if self.cluster == "local":
            return "local"
        return "batch" if self.cluster in BATCH_SYSTEMS else "address"

    @property
    def address(self) -> str | None:
        """The scheduler address to attach to, or None when the job starts its cluster."""
        return self.cluster if self.kind == "address" else None


def _check_adapt(adapt: Any) -> None:
    if not isinstance(adapt, tuple) or len(adapt) != 2:
        raise SettingsError(f"adapt must be (MIN, MAX), got {adapt!r}")
    low = check_int(adapt[0], "adapt minimum", minimum=0)
    high = check_int(adapt[1], "adapt maximum", minimum=1)
    if low > high:
        raise SettingsError(f"adapt minimum {low} is above its maximum {high}")
