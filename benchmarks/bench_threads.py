"""How many threads the in-process runner should use: the engine pinned to 1, 2, 4 ... cores
against faiss-cpu on every core, in one run.

For each (N = M, D) of the grid (isotropic Gaussian features, the hard family) and each thread
count T, a fresh process pinned to T cores (``os.sched_setaffinity``: the runner takes one
thread per core it may use) runs :func:`medsyn_dask.evaluate_features` (``compute_fid=False``,
NumPy features, the in-process runner) once untimed and ``--repeats`` times timed; a ``free``
cell runs it on every core with the runner choosing its own thread count
(:func:`medsyn_dask.neighbours.layout.useful_threads`) and an ``every-core`` cell with that
choice switched off (one thread per logical CPU, the runner's way before it). faiss-cpu
``IndexFlatL2`` (k+1-NN of reals + 1-NN of synthetics) runs on every core in this process.
Each cell prints median [min-max] seconds; the ratios are faiss / engine and every-core / free.

With ``--backends numpy,auto`` the cells run with each backend (``auto``: the GEMMs on a GPU
where there is one). Answers are checked equal across all cells of a size.

Run:  python benchmarks/bench_threads.py [--quick] [--threads 1,2,4,8,16] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import QUICK_NOTE, jsonable, quick_note, repeat  # noqa: E402
from _engine import NEAREST_K, gaussian_features, timed_engine  # noqa: E402
from baselines import _faiss_search  # noqa: E402

GRID = [(2000, 512), (2000, 2048), (5000, 512), (5000, 2048), (10000, 512), (20000, 512)]
QUICK_GRID = [(600, 64), (1500, 128)]


def engine_cell(n: int, dim: int, cores: int | None, choose: bool, backend: str, repeats: int):
    """(Spread of seconds, answer digest, threads used) of the engine in this process,
    pinned to the first ``cores`` cores (None: all); ``choose=False`` makes the runner use
    one thread per core whatever the size."""
    if cores is not None:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    from medsyn_dask.neighbours import local

    if not choose:  # one thread per logical CPU, whatever the size (the runner's earlier way)
        local.useful_threads = lambda work, n_threads: n_threads
        local.threads = lambda: len(os.sched_getaffinity(0))
    used = []
    runner_init = local.Runner.__init__

    def init(self, *args, **kwargs):
        runner_init(self, *args, **kwargs)
        used.append(self.n_threads)

    local.Runner.__init__ = init
    result, seconds = timed_engine(*gaussian_features(n, dim), backend, repeats)
    return seconds.to_dict(), digest(result), used[-1]


def digest(result) -> str:
    """A hash of the answer: radii, per-image tables and scores to the last bit."""
    import hashlib

    h = hashlib.sha256()
    for a in (result.radius_k, result.radius_1):
        h.update(np.ascontiguousarray(a).tobytes())
    for table in (result.per_synthetic, result.per_real):
        h.update(table.to_csv().encode())
    h.update(repr((result.fidelity, result.privacy)).encode())
    return h.hexdigest()[:16]


def _child(conn, args) -> None:
    conn.send(engine_cell(*args))


def in_process(*args):
    """:func:`engine_cell` in a fresh spawned process (its own affinity and imports)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, args))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def size_row(n: int, dim: int, counts: list[int], backends: list[str], repeats: int) -> dict:
    real, synth = gaussian_features(n, dim)
    _, faiss_s = repeat(_faiss_search, repeats, real, synth, NEAREST_K, 0.05, warmup=True)
    row: dict = {"n": n, "dim": dim, "faiss": faiss_s.to_dict(), "cells": {}}
    digests = set()
    for backend in backends:
        cells = [(f"free-{backend}", None, True), (f"every-core-{backend}", None, False)]
        cells += [(f"{t}-{backend}", t, True) for t in counts]
        for name, cores, choose in cells:
            spread, answer, used = in_process(n, dim, cores, choose, backend, repeats)
            row["cells"][name] = {**spread, "threads": used}
            digests.add(answer)
    row["identical"] = len(digests) == 1
    f = row["faiss"]["median"]
    parts = [
        f"{k} ({v['threads']}t) {v['median']:.3f} [{v['min']:.3f}-{v['max']:.3f}] s "
        f"faiss/engine {f / v['median']:.2f}x"
        for k, v in row["cells"].items()
    ]
    print(
        f"threads N = M = {n}, D = {dim}: faiss ({os.cpu_count()} cores) {f:.3f} s; "
        + "; ".join(parts)
        + f"; identical answers: {row['identical']}",
        flush=True,
    )
    for backend in backends:
        free = row["cells"][f"free-{backend}"]["median"]
        every = row["cells"][f"every-core-{backend}"]["median"]
        print(f"  {backend}: every-core / free {every / free:.2f}x", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    parser.add_argument("--threads", default=None, help="thread counts, e.g. 1,2,4,8,16")
    parser.add_argument("--backends", default="numpy", help="e.g. numpy,auto")
    parser.add_argument("--sizes", default=None, help="N:D pairs, e.g. 2000:512,5000:2048")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    counts = (
        [int(t) for t in args.threads.split(",")]
        if args.threads
        else [t for t in (1, 2, 4, 8, 16, 32, 64) if t < cores]
    )
    grid = QUICK_GRID if args.quick else GRID
    if args.sizes:
        grid = [tuple(int(v) for v in s.split(":")) for s in args.sizes.split(",")]
    repeats = 2 if args.quick else args.repeats
    quick_note(args.quick)
    rows = [size_row(n, d, counts, args.backends.split(","), repeats) for n, d in grid]
    if args.quick:
        print(QUICK_NOTE)
    if args.json:
        Path(args.json).write_text(json.dumps(jsonable(rows), indent=1))


if __name__ == "__main__":
    main()
