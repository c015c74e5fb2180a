"""Run ``medsyn-dask analyze`` on a SLURM cluster through dask-jobqueue (the ``hpc`` extra).

    pip install 'medsyn-dask[hpc]'
    python deploy/slurm_analyze.py --jobs 4 --partition gpu --gpus-per-job 1 -- \\
        --real /data/real --synthetic ganA=/data/ganA --output /scratch/results

Each SLURM job runs one Dask worker; with ``--gpus-per-job`` the workers advertise the Dask
resource ``GPU=N`` so extraction tasks land on them. Everything after ``--`` is passed to
``medsyn-dask analyze``, which attaches to this cluster's scheduler.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="SLURM jobs (one worker each)")
    parser.add_argument("--partition", default=None, help="SLURM partition (queue)")
    parser.add_argument("--cores", type=int, default=8, help="cores per job")
    parser.add_argument("--memory", default="32GB", help="memory per job")
    parser.add_argument("--walltime", default="04:00:00")
    parser.add_argument("--gpus-per-job", type=int, default=0)
    args, analyze_args = parser.parse_known_args(argv)
    analyze_args = [a for a in analyze_args if a != "--"]

    from dask_jobqueue import SLURMCluster

    from medsyn_dask.cli import main as medsyn_main
    from medsyn_dask.cluster import GPU_RESOURCE

    extra = [f"--resources {GPU_RESOURCE}={args.gpus_per_job}"] if args.gpus_per_job else []
    directives = [f"--gres=gpu:{args.gpus_per_job}"] if args.gpus_per_job else []
    with SLURMCluster(
        queue=args.partition,
        cores=args.cores,
        processes=1,
        memory=args.memory,
        walltime=args.walltime,
        worker_extra_args=extra,
        job_extra_directives=directives,
    ) as cluster:
        cluster.scale(jobs=args.jobs)
        print(f"SLURM cluster: {cluster.dashboard_link}", flush=True)
        return medsyn_main(
            ["analyze", *analyze_args, "--scheduler-address", cluster.scheduler_address]
        )


if __name__ == "__main__":
    sys.exit(main())
