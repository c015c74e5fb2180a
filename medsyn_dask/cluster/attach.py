"""Attaching to a scheduler and waiting for its workers: no workers is an error, not a hang.

A job that starts with no worker would wait forever at its first task. Instead the console
says what it waits for, and after ``timeout`` seconds with no worker the job stops with a
:class:`ClusterError` (exit status 2 on the command line) that says how many workers were
asked for and where to look.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import MedsynError
from ..progress import stage

#: Seconds between two polls of the scheduler, and between two "still waiting" lines.
_POLL, _REPORT_EVERY = 0.25, 30.0


class ClusterError(MedsynError):
    """The cluster did not come up: its scheduler cannot be reached or no worker joined."""


@contextlib.contextmanager
def attach(address: str, timeout: float) -> Iterator[Any]:
    """Yield a ``distributed.Client`` connected to the scheduler at ``address``."""
    from distributed import Client

    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({exc}); "
            "check the address, that the scheduler runs, and the network between here and it"
        ) from None
    with client:
        yield client


def worker_count(client: Any) -> int:
    """Workers connected to ``client``'s scheduler now."""
    return len(client.scheduler_info(n_workers=-1)["workers"])


def wait_for_workers(
    client: Any,
    expected: int,
    timeout: float,
    where: Callable[[], str],
    *,
    quiet: bool = False,
) -> int:
    """Wait until a first worker joins (of ``expected``), saying so; return the count.

    Raises:
        ClusterError: no worker joined within ``timeout`` seconds; the message names
            ``expected`` and ``where()`` (the place to look: job ids and logs, or the address).
    """
    start = time.monotonic()
    joined = worker_count(client)
    if joined:
        return joined
    stage(
        f"waiting for Dask workers: 0/{expected} joined ({where()}); "
        f"giving up after {timeout:g} s (--worker-timeout)",
        enabled=not quiet,
    )
    next_report = start + _REPORT_EVERY
    while not joined:
        now = time.monotonic()
        if now - start >= timeout:
            raise ClusterError(
                f"no Dask worker joined within {timeout:g} s: {expected} asked for, none "
                f"arrived. Look at {where()}"
            )
        if now >= next_report:
            stage(
                f"still waiting for Dask workers after {now - start:.0f} s: {where()}",
                enabled=not quiet,
            )
            next_report = now + _REPORT_EVERY
        time.sleep(_POLL)
        joined = worker_count(client)
    stage(
        f"{joined}/{expected} Dask workers joined after {time.monotonic() - start:.0f} s; "
        "the others join as they start",
        enabled=not quiet and joined < expected,
    )
    return joined
