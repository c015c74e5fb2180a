"""Benchmark of the neighbourhood engine against full-matrix baselines, in one run.

What is measured (all on the same generated features, see ``_features.py`` for how they are made):

1. Euclidean, N=M=20 000, D=2048 float32 (clustered low-rank post-ReLU features with planted
   exact/near duplicates):
   (a) ``medsyn_dask.evaluate_features`` on a LocalCluster of 2 single-thread worker processes
       (``_common.local_cluster``), features generated and persisted on the workers first;
   (b) the original package's way: scikit-learn ``pairwise_distances`` on whole matrices (R x R,
       k+1-th smallest by ``np.partition``, then R x S against the radii);
   (c) faiss-cpu ``IndexFlatL2``: reals searched against reals for k+1 neighbours, synthetics
       against reals for 1 (faiss decides "real"/"copy" by the nearest real only, so only its
       agreement is reported);
   (d) this machine's float32 GEMM rate (4096x2048 @ 2048x4096, 1 and 2 BLAS threads; best,
       median and worst of 3). The baselines live in ``baselines.py``.
2. Hamming, N=M=5 000, 64x64 code maps (4096 positions, codes 0..511, a black border of ~50 %
   of positions is code 0 in every image): the engine vs ``pairwise_distances(metric="hamming")``.
3. Memory: the engine at N=M=100 000, D=512 float32 (the full-matrix way would need 80 GB per
   float64 matrix: printed, not run).
4. ``families`` (``neighbour_families.py``): the engine on NumPy features in this process (the
   in-process runner, no Client) against faiss-cpu on every input family (isotropic Gaussian,
   clustered low-rank post-ReLU, many exact/near duplicates, far from the origin), N = M in
   {2 000, 5 000, 20 000}, D in {512, 2 048}, min/median/max of ``--repeats`` runs each; and the
   engine on in-memory Hamming codes (N = M = 5 000) against scikit-learn's full matrices.
5. ``hamming-here``: that last Hamming row alone (the codes of case 2, the engine in this
   process, ``--repeats`` timed runs after one untimed, against one scikit-learn run).

"Useful GFLOP/s" is the work of a full brute force, ``2*N*N*D + 2*N*M*D``, over the wall time:
the same numerator for every method, so ratios of rates are ratios of speed. Baselines run in a
spawned subprocess and report their RSS high-water mark; the engine's peak is the summed RSS of
driver (which hosts the scheduler) and all worker processes, sampled every 0.2 s. FID is not
requested from the engine (``compute_fid=False``): the baselines do not compute it either.

Run:  .venv/bin/python benchmarks/bench_neighbours.py [--quick] [--skip-memory]
      .venv/bin/python benchmarks/bench_neighbours.py --only families [--sizes 2000,5000]
      .venv/bin/python benchmarks/bench_neighbours.py --only hamming-here
``--quick`` runs small sizes to check that the benchmark runs; it prints the ratios without the
targets' verdicts (the sizes are too small to reach them).
Results are printed as a table and written to benchmarks/results/neighbours.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    OtherLoad,
    TreeMemory,
    jsonable,
    local_cluster,
    quick_note,
    run_isolated,
    timed,
    worker_blas_threads,
)
from _features import FAMILIES, feature_pair  # noqa: E402
from baselines import faiss_baseline, gemm_rate, sklearn_baseline  # noqa: E402
from neighbour_families import family_rows, hamming_in_process, verdicts  # noqa: E402
from neighbours_table import agreement, print_table, ratios, row, scale_baseline, targets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "neighbours.json"
SEED = 20260101
NEAREST_K = 5
THRESHOLD = 0.05
GB = 1e9

FAMILIES_FULL = {"families": FAMILIES, "sizes": (2_000, 5_000, 20_000), "dims": (512, 2048)}
FAMILIES_QUICK = {"families": FAMILIES, "sizes": (1_000,), "dims": (128,)}

FULL = {
    "euclidean": {"n": 20_000, "m": 20_000, "dim": 2048, "block": 2048},
    "hamming": {"n": 5_000, "m": 5_000, "side": 64, "codes": 512, "block": 2048},
    "memory": {"n": 100_000, "m": 100_000, "dim": 512, "block": 2048},
    "gemm": 4096,
}
QUICK = {
    "euclidean": {"n": 3_000, "m": 3_000, "dim": 256, "block": 1024},
    "hamming": {"n": 1_000, "m": 1_000, "side": 32, "codes": 512, "block": 512},
    "memory": {"n": 10_000, "m": 10_000, "dim": 64, "block": 2048},
    "gemm": 1024,
}


def brute_force_flops(n: int, m: int, dim: int) -> float:
    """Distance work of a full brute force: R x R and R x S, 2 flops per product term."""
    return 2.0 * n * n * dim + 2.0 * n * m * dim


# --- The engine on a LocalCluster ----------------------------------------------------------------


def run_engine(client, case: str, cfg: dict) -> dict:
    """evaluate_features on features persisted on the workers; wall time and tree peak RSS."""
    from distributed import get_task_stream, wait

    import medsyn_dask

    real, synth = client.persist(list(feature_pair(case, cfg, SEED, as_dask=True)))
    wait([real, synth])
    metric = "hamming" if case == "hamming" else "euclidean"
    with OtherLoad() as load, TreeMemory() as memory, get_task_stream(client) as stream:
        result, seconds = timed(
            medsyn_dask.evaluate_features,
            real,
            synth,
            metric=metric,
            nearest_k=NEAREST_K,
            mode_collapse_threshold=THRESHOLD,
            block_size=cfg["block"],
            compute_fid=False,
        )
    features_bytes = real.nbytes + synth.nbytes
    del real, synth
    sets = result.per_synthetic["set"].to_numpy()
    return {
        "seconds": seconds,
        "peak_rss": memory.peak,
        "other_load": load.cores,
        "worker_seconds": task_breakdown(stream.data),
        "n_workers": len(client.scheduler_info()["workers"]),
        "start_rss": memory.start_rss,
        "peak_driver": memory.peak_driver,
        "peak_worker": memory.peak_child,
        "features_bytes": features_bytes,
        "fidelity": result.fidelity,
        "privacy": result.privacy,
        "sets": result.set_counts,
        "is_real": sets != "non-real",
        "is_copy": sets == "copy",
        "radius_k": result.radius_k,
        "nearest_real": result.per_synthetic["nearest_real"].to_numpy(),
    }


def task_breakdown(records: list[dict]) -> dict[str, float]:
    """Worker seconds by task prefix (compute) and by other activity (transfer, ...)."""
    from dask.utils import key_split

    totals: dict[str, float] = {}
    for rec in records:
        for part in rec["startstops"]:
            name = key_split(rec["key"]) if part["action"] == "compute" else part["action"]
            totals[name] = totals.get(name, 0.0) + part["stop"] - part["start"]
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


# --- Cases ---------------------------------------------------------------------------------------


def euclidean_case(client, cfg: dict, sklearn_n: int) -> list[dict]:
    flops = brute_force_flops(cfg["n"], cfg["m"], cfg["dim"])
    print(f"[euclidean] engine N=M={cfg['n']} D={cfg['dim']} ...", flush=True)
    engine = run_engine(client, "euclidean", cfg)
    print(f"[euclidean] engine {engine['seconds']:.1f} s; faiss ...", flush=True)
    faiss_run = run_isolated(faiss_baseline, cfg, SEED, NEAREST_K, THRESHOLD)
    print(f"[euclidean] faiss {faiss_run['seconds']:.1f} s; scikit-learn ...", flush=True)
    small = min(sklearn_n, cfg["n"])
    sk_cfg = {**cfg, "n": small, "m": small * cfg["m"] // cfg["n"]}
    sk_run = run_isolated(sklearn_baseline, "euclidean", sk_cfg, SEED, NEAREST_K, THRESHOLD)
    print(f"[euclidean] scikit-learn {sk_run['seconds']:.1f} s (N={small})", flush=True)
    sk_note = {}
    if small < cfg["n"]:
        sk_run = scale_baseline(sk_run, small, cfg["n"])
        sk_note = {"note": f"time scaled by N^2 from N={small}; agreement not checked"}
    else:
        sk_note = agreement(engine, sk_run)
    return [
        row(
            "euclidean",
            "engine (2 workers x 1 thread)",
            cfg,
            engine,
            flops,
            **_engine_extra(engine),
        ),
        row(
            "euclidean",
            "faiss IndexFlatL2",
            cfg,
            faiss_run,
            flops,
            threads=faiss_run["threads"],
            **agreement(engine, faiss_run),
        ),
        row("euclidean", "sklearn pairwise_distances", cfg, sk_run, flops, **sk_note),
    ]


def _engine_extra(engine: dict) -> dict:
    return {
        "fidelity": engine["fidelity"],
        "privacy": engine["privacy"],
        "sets": engine["sets"],
        "start_gb": engine["start_rss"] / GB,
        "peak_driver_gb": engine["peak_driver"] / GB,
        "peak_worker_gb": engine["peak_worker"] / GB,
        "worker_seconds": engine["worker_seconds"],
        "n_workers": engine["n_workers"],
        "features_gb": engine["features_bytes"] / GB,
    }


def hamming_case(client, cfg: dict) -> list[dict]:
    dim = cfg["side"] ** 2
    flops = brute_force_flops(cfg["n"], cfg["m"], dim)
    print(f"[hamming] engine N=M={cfg['n']} D={dim} ...", flush=True)
    engine = run_engine(client, "hamming", cfg)
    print(f"[hamming] engine {engine['seconds']:.1f} s; scikit-learn ...", flush=True)
    sk_run = run_isolated(sklearn_baseline, "hamming", cfg, SEED, NEAREST_K, THRESHOLD)
    print(f"[hamming] scikit-learn {sk_run['seconds']:.1f} s", flush=True)
    return [
        row(
            "hamming",
            "engine (2 workers x 1 thread)",
            {**cfg, "dim": dim},
            engine,
            flops,
            **_engine_extra(engine),
        ),
        row(
            "hamming",
            "sklearn pairwise_distances",
            {**cfg, "dim": dim},
            sk_run,
            flops,
            **agreement(engine, sk_run),
        ),
    ]


def memory_case(client, cfg: dict) -> list[dict]:
    flops = brute_force_flops(cfg["n"], cfg["m"], cfg["dim"])
    full_matrix = cfg["n"] * cfg["m"] * 8
    print(
        f"[memory] engine N=M={cfg['n']} D={cfg['dim']} (a full float64 matrix would be "
        f"{full_matrix / GB:.0f} GB) ...",
        flush=True,
    )
    engine = run_engine(client, "memory", cfg)
    print(f"[memory] engine {engine['seconds']:.1f} s, peak {engine['peak_rss'] / GB:.2f} GB")
    return [
        row(
            "memory",
            "engine (2 workers x 1 thread)",
            cfg,
            engine,
            flops,
            full_matrix_gb=full_matrix / GB,
            **_engine_extra(engine),
        ),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--skip-memory", action="store_true", help="skip the N=M=100k case")
    parser.add_argument("--memory-n", type=int, default=None, help="N=M of the memory case")
    parser.add_argument(
        "--sklearn-n",
        type=int,
        default=None,
        help="run the Euclidean scikit-learn baseline at this N, scale by N^2",
    )
    parser.add_argument(
        "--only",
        default="euclidean,hamming,memory",
        help="comma-separated cases: euclidean, hamming, memory, families, hamming-here "
        "(default: all but the last two)",
    )
    parser.add_argument("--sizes", default=None, help="N=M of the families case, e.g. 2000,5000")
    parser.add_argument("--dims", default=None, help="D of the families case, e.g. 512,2048")
    parser.add_argument("--families", default=None, help="families to run, e.g. gaussian,far")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per families row")
    parser.add_argument(
        "--torch",
        action="store_true",
        help="load torch first, as a job's workers or a notebook that extracted features with "
        "torch have it: the engine's 'auto' then takes the int8 scores for wide features on a "
        "CPU with AMX (neighbours/quantized.py)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    cases = set(args.only.split(","))

    quick_note(args.quick)
    for name, run in (("families", run_families), ("hamming-here", run_hamming_here)):
        if name in cases:
            run(args)
            cases.discard(name)
    if not cases:
        return

    spread = {t: gemm_rate(cfg["gemm"], int(t)) for t in ("1", "2")}
    gemm = {"size": cfg["gemm"], **{t: r["best"] for t, r in spread.items()}, "spread": spread}
    print(f"GEMM float32: 1 thread {gemm['1']:.1f}, 2 threads {gemm['2']:.1f} GFLOP/s", flush=True)
    version = engine_version()
    print(f"engine version {version}", flush=True)
    with local_cluster(workers=2) as client:
        blas = worker_blas_threads(client)
        rows = []
        if "euclidean" in cases:
            n = args.sklearn_n or cfg["euclidean"]["n"]
            rows += euclidean_case(client, cfg["euclidean"], n)
        if "hamming" in cases:
            rows += hamming_case(client, cfg["hamming"])
        if "memory" in cases and not args.skip_memory:
            memory_cfg = cfg["memory"]
            if args.memory_n:
                memory_cfg = {**memory_cfg, "n": args.memory_n, "m": args.memory_n}
            rows += memory_case(client, memory_cfg)
    ratios(rows)
    print_table(rows, gemm)
    print()
    for line in targets(rows, args.quick):
        print(line)
    save(rows, gemm, blas, args, version)


def run_families(args) -> None:
    """The families case (engine in process vs faiss) and in-memory Hamming vs scikit-learn."""
    if args.torch:
        import torch  # noqa: F401 (loaded: see --torch)
    grid = dict(FAMILIES_QUICK if args.quick else FAMILIES_FULL)
    for key in ("sizes", "dims"):
        if getattr(args, key):
            grid[key] = tuple(int(v) for v in getattr(args, key).split(","))
    if args.families:
        grid["families"] = tuple(args.families.split(","))
    repeats = 2 if args.quick else args.repeats
    rows = family_rows(grid, SEED, NEAREST_K, THRESHOLD, repeats)
    ham_cfg = {**(QUICK if args.quick else FULL)["hamming"]}
    hamming = hamming_in_process(ham_cfg, SEED, NEAREST_K, THRESHOLD, repeats)
    lines = verdicts(rows, hamming, args.quick)
    for line in lines:
        print(line)
    write_results("neighbour_families.json", args, rows=rows, hamming=hamming, targets=lines)


def run_hamming_here(args) -> None:
    """The in-memory Hamming row of the families case alone: engine here vs scikit-learn."""
    ham_cfg = {**(QUICK if args.quick else FULL)["hamming"]}
    hamming = hamming_in_process(ham_cfg, SEED, NEAREST_K, THRESHOLD, args.repeats)
    lines = [line for line in verdicts([], hamming, args.quick) if line.startswith("Hamming")]
    for line in lines:
        print(line)
    write_results("hamming_here.json", args, hamming=hamming, targets=lines)


def write_results(name: str, args, **parts) -> None:
    """benchmarks/results/``name``: the command, the machine, the engine version and ``parts``."""
    path = RESULTS.with_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(sys.argv),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "engine_version": engine_version(),
        **parts,
    }
    path.write_text(json.dumps(jsonable(payload), indent=2))
    print(f"written {path}")


def engine_version() -> str:
    """The git commit of the engine, with '+dirty' when medsyn_dask/ has local changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "medsyn_dask/neighbours",
                "medsyn_dask/evaluate.py",
            ],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def save(rows: list[dict], gemm: dict, blas: list[int], args, version: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(sys.argv),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "worker_blas_threads": blas,
        },
        "engine_version": version,
        "gemm_gflops": gemm,
        "rows": [jsonable(r) for r in rows],
        "targets": targets(rows, args.quick),
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
