"""The embedded LocalCluster's workers: the environment they start with and its effect on torch."""

from __future__ import annotations

import os
import re
import sys

import dask
import pytest

from medsyn_dask.cluster import connect
from medsyn_dask.cluster.local import WORKER_ENVIRON, _worker_config

SPAWN_KEY = "distributed.nanny.pre-spawn-environ"


def _huge_page_advice() -> tuple[str | None, bool]:
    """In a worker: (THP_MEM_ALLOC_ENABLE, whether torch's mapping of a 16 MiB tensor is
    advised for huge pages: the ``hg`` flag of its /proc/self/smaps entry)."""
    import torch

    tensor = torch.empty(4 * 2**20)  # 16 MiB: above torch's 2 MiB threshold for the advice
    ptr = tensor.data_ptr()
    with open("/proc/self/smaps") as f:
        entries = re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", f.read())
    for entry in entries:
        start, stop = (int(x, 16) for x in entry.split()[0].split("-"))
        if start <= ptr < stop:
            flags = next(line for line in entry.splitlines() if line.startswith("VmFlags"))
            return os.environ.get("THP_MEM_ALLOC_ENABLE"), " hg" in flags
    raise AssertionError("the tensor's memory is in no mapping")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
def test_local_workers_advise_huge_pages_for_torch_buffers():
    with connect(workers=1, quiet=True) as client:
        ((env, advised),) = client.run(_huge_page_advice).values()
    assert env == "1"
    assert advised


def test_spawn_environ_adds_to_the_configured_one_without_overriding_it():
    with dask.config.set({SPAWN_KEY: {"OMP_NUM_THREADS": 1, "THP_MEM_ALLOC_ENABLE": "0"}}):
        environ = _worker_config()[SPAWN_KEY]
    assert environ == {"OMP_NUM_THREADS": 1, "THP_MEM_ALLOC_ENABLE": "0"}
    with dask.config.set({SPAWN_KEY: {"OMP_NUM_THREADS": 1}}):
        environ = _worker_config()[SPAWN_KEY]
    assert environ == {"OMP_NUM_THREADS": 1, **WORKER_ENVIRON}


PROFILE_KEY = "distributed.worker.profile.interval"


def _profile_interval() -> str:
    return dask.config.get(PROFILE_KEY)


def test_embedded_workers_profile_less_often_unless_configured():
    """Dask's 10 ms task profiler cost 3-4 % of an extraction; the embedded workers sample
    every 100 ms, or as the user's configuration says."""
    assert dask.config.get(PROFILE_KEY) == "10ms"  # Dask's default, as the test runs
    with connect(workers=1, quiet=True) as client:
        assert list(client.run(_profile_interval).values()) == ["100ms"]
    assert dask.config.get(PROFILE_KEY) == "10ms"  # the driver's own setting is left alone
    with dask.config.set({PROFILE_KEY: "20ms"}):
        assert PROFILE_KEY not in _worker_config()
        with connect(workers=1, quiet=True) as client:
            assert list(client.run(_profile_interval).values()) == ["20ms"]


def _heartbeat_filtered() -> tuple[bool, bool]:
    import logging

    log = logging.getLogger("distributed.worker")
    args = ("distributed.worker", logging.ERROR, __file__, 1)
    text = "Failed to communicate with scheduler during heartbeat."
    noise = log.makeRecord(*args, text, (), None)
    other = log.makeRecord(*args, "Compute Failed", (), None)
    return bool(log.filter(noise)), bool(log.filter(other))


def test_embedded_workers_do_not_print_heartbeats_that_meet_a_closed_scheduler():
    with connect(workers=1, quiet=True) as client:
        seen = client.run(_heartbeat_filtered)
    assert list(seen.values()) == [(False, True)]
