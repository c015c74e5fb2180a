"""A Dask worker preload that records where extraction tasks ran (for the cluster tests).

Loaded with ``DASK_DISTRIBUTED__WORKER__PRELOAD='["<this file>"]'`` in the environment of the
workers (a batch job inherits it from the submitting process); each finished task whose key
starts with ``extract-features`` appends one JSON line to ``$MEDSYN_TASK_LOG``: the key, the
worker's address and resources, and the ``CUDA_VISIBLE_DEVICES``/``SLURM_JOB_ID`` the task's
process saw.
"""

from __future__ import annotations

import json
import os

from distributed import WorkerPlugin


class TaskProbe(WorkerPlugin):
    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key if isinstance(key, str) else str(key)
        # Executed here: a result fetched from another worker also ends in "memory".
        if (start, finish) != ("executing", "memory") or not name.startswith("extract-features"):
            return
        record = {
            "key": name,
            "worker": self.worker.address,
            "resources": dict(self.worker.state.total_resources),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        with open(os.environ["MEDSYN_TASK_LOG"], "a") as f:
            f.write(json.dumps(record) + "\n")


async def dask_setup(worker) -> None:
    await worker.plugin_add(plugin=TaskProbe(), name="medsyn-task-probe")
