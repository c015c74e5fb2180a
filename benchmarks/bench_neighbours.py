"""Benchmark of the neighbourhood engine against full-matrix baselines, in one run.

What is measured (all on the same generated features, see ``_common.py`` for how they are made):

1. Euclidean, N=M=20 000, D=2048 float32 (clustered low-rank post-ReLU features with planted
   exact/near duplicates):
   (a) ``medsyn_dask.evaluate_features`` on ``LocalCluster(n_workers=2, threads_per_worker=1,
       processes=True)``, features generated and persisted on the workers first;
   (b) the original package's way: scikit-learn ``pairwise_distances`` on whole matrices (R x R,
       k+1-th smallest by ``np.partition``, then R x S against the radii);
   (c) faiss-cpu ``IndexFlatL2``: reals searched against reals for k+1 neighbours, synthetics
       against reals for 1 (faiss decides "real"/"copy" by the nearest real only, so only its
       agreement is reported);
   (d) this machine's float32 GEMM rate (4096x2048 @ 2048x4096, 1 and 2 BLAS threads).
2. Hamming, N=M=5 000, 64x64 code maps (4096 positions, codes 0..511, a black border of ~50 %
   of positions is code 0 in every image): the engine vs ``pairwise_distances(metric="hamming")``.
3. Memory: the engine at N=M=100 000, D=512 float32 (the full-matrix way would need 80 GB per
   float64 matrix: printed, not run).

"Useful GFLOP/s" is the work of a full brute force, ``2*N*N*D + 2*N*M*D``, over the wall time:
the same numerator for every method, so ratios of rates are ratios of speed. Baselines run in a
spawned subprocess and report their RSS high-water mark; the engine's peak is the summed RSS of
driver (which hosts the scheduler) and all worker processes, sampled every 0.2 s. FID is not
requested from the engine (``compute_fid=False``): the baselines do not compute it either.

Run:  .venv/bin/python benchmarks/bench_neighbours.py [--quick] [--skip-memory]
Results are printed as a table and written to benchmarks/results/neighbours.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    OtherLoad,
    TreeMemory,
    dask_features,
    euclidean_block,
    hamming_block,
    numpy_features,
    run_isolated,
    timed,
)

RESULTS = Path(__file__).resolve().parent / "results" / "neighbours.json"
SEED = 20260101
NEAREST_K = 5
THRESHOLD = 0.05
GB = 1e9
MB = 1e6

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


# --- Features ------------------------------------------------------------------------------------


def euclidean_arrays(cfg: dict, as_dask: bool):
    dim, block = cfg["dim"], cfg["block"]
    if as_dask:
        return tuple(
            dask_features(euclidean_block, cfg[s], block, dim, np.float32, SEED, kind, dim)
            for kind, s in ((0, "n"), (1, "m"))
        )
    return tuple(
        numpy_features(euclidean_block, cfg[s], block, SEED, kind, dim)
        for kind, s in ((0, "n"), (1, "m"))
    )


def hamming_arrays(cfg: dict, as_dask: bool):
    side, codes, block = cfg["side"], cfg["codes"], cfg["block"]
    args = (side, codes)
    if as_dask:
        return tuple(
            dask_features(hamming_block, cfg[s], block, side * side, np.int16, SEED, kind, *args)
            for kind, s in ((0, "n"), (1, "m"))
        )
    return tuple(
        numpy_features(hamming_block, cfg[s], block, SEED, kind, *args)
        for kind, s in ((0, "n"), (1, "m"))
    )


def make_arrays(case: str, cfg: dict, as_dask: bool):
    return hamming_arrays(cfg, as_dask) if case == "hamming" else euclidean_arrays(cfg, as_dask)


# --- GEMM rate -----------------------------------------------------------------------------------


def gemm_rate(size: int, threads: int, repeats: int = 3) -> float:
    """Best float32 GFLOP/s of a (size x size/2) @ (size/2 x size) matmul with ``threads``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size // 2), dtype=np.float32)
    b = rng.standard_normal((size // 2, size), dtype=np.float32)
    best = np.inf
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b  # warm-up
        for _ in range(repeats):
            best = min(best, timed(np.matmul, a, b)[1])
    return 2.0 * size * size * (size // 2) / best / GB


# --- Baselines (run in a spawned subprocess) -----------------------------------------------------


def _decide(dist_rs: np.ndarray, radius_k: np.ndarray, copy_threshold: np.ndarray):
    is_real = (dist_rs < radius_k[:, None]).any(axis=0)
    is_copy = (dist_rs < copy_threshold[:, None]).any(axis=0)
    return is_real, is_copy


def sklearn_baseline(case: str, cfg: dict) -> dict:
    """The original package's full-matrix computation with scikit-learn."""
    from sklearn.metrics import pairwise_distances

    real, synth = make_arrays(case, cfg, as_dask=False)
    metric = "hamming" if case == "hamming" else "euclidean"
    start = time.perf_counter()
    margin = 0.0 if synth.std(axis=0).mean() > THRESHOLD else THRESHOLD
    dist = pairwise_distances(real, real, metric=metric)
    part = np.partition(dist, [1, NEAREST_K], axis=1)
    radius_k, radius_1 = part[:, NEAREST_K].astype(np.float64), part[:, 1].astype(np.float64)
    del dist, part
    dist = pairwise_distances(real, synth, metric=metric)
    is_real, is_copy = _decide(dist, radius_k, radius_1 + margin)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "is_real": is_real, "is_copy": is_copy, "radius_k": radius_k}


def faiss_baseline(cfg: dict) -> dict:
    """faiss IndexFlatL2: k+1 nearest reals of each real, nearest real of each synthetic."""
    import faiss

    real, synth = euclidean_arrays(cfg, as_dask=False)
    start = time.perf_counter()
    margin = 0.0 if synth.std(axis=0).mean() > THRESHOLD else THRESHOLD
    index = faiss.IndexFlatL2(real.shape[1])
    index.add(real)
    dist_rr, _ = index.search(real, NEAREST_K + 1)  # squared L2, float32
    dist_sr, nearest = index.search(synth, 1)
    radius_k = np.sqrt(dist_rr[:, NEAREST_K].astype(np.float64))
    radius_1 = np.sqrt(dist_rr[:, 1].astype(np.float64))
    nearest, dist_sr = nearest[:, 0], np.sqrt(dist_sr[:, 0].astype(np.float64))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "radius_k": radius_k,
        "nearest_real": nearest,
        # Nearest-real rule: the only decision a 1-NN search supports.
        "is_real": dist_sr < radius_k[nearest],
        "is_copy": dist_sr < radius_1[nearest] + margin,
        "threads": faiss.omp_get_max_threads(),
    }


# --- The engine on a LocalCluster ----------------------------------------------------------------


def start_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return cluster, Client(cluster)


def worker_blas_threads(client) -> list[int]:
    def blas_threads() -> int:
        from threadpoolctl import threadpool_info

        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    return sorted(client.run(blas_threads).values())


def run_engine(client, case: str, cfg: dict) -> dict:
    """evaluate_features on features persisted on the workers; wall time and tree peak RSS."""
    from distributed import get_task_stream, wait

    import medsyn_dask

    real, synth = client.persist(list(make_arrays(case, cfg, as_dask=True)))
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


# --- Rows of the table ---------------------------------------------------------------------------


def row(case: str, method: str, cfg: dict, run: dict, flops: float, **extra) -> dict:
    dim = cfg.get("dim", cfg.get("side", 0) ** 2)
    return {
        "other_load": run.get("other_load", float("nan")),
        "case": case,
        "method": method,
        "n": cfg["n"],
        "m": cfg["m"],
        "dim": dim,
        "seconds": run["seconds"],
        "peak_gb": run.get("peak_rss", float("nan")) / GB,
        "gflops": flops / run["seconds"] / GB,
        **extra,
    }


def agreement(engine: dict, other: dict) -> dict:
    out = {
        "fidelity": float(np.mean(other["is_real"])),
        "is_real_agree": float(np.mean(engine["is_real"] == other["is_real"])),
        "is_copy_agree": float(np.mean(engine["is_copy"] == other["is_copy"])),
        "radius_k_max_rel_err": float(
            np.max(
                np.abs(other["radius_k"] - engine["radius_k"])
                / np.maximum(engine["radius_k"], 1e-300)
            )
        ),
    }
    out["fidelity_equal"] = out["fidelity"] == engine["fidelity"]
    if "nearest_real" in other:
        out["nearest_agree"] = float(np.mean(other["nearest_real"] == engine["nearest_real"]))
    return out


def scale_baseline(run: dict, small: int, full: int) -> dict:
    """Time scaled by (full/small)**2 from a smaller run; results no longer comparable."""
    factor = (full / small) ** 2
    return {**run, "seconds": run["seconds"] * factor, "scaled_from": small, "scale": factor}


# --- Cases ---------------------------------------------------------------------------------------


def euclidean_case(client, cfg: dict, sklearn_n: int) -> list[dict]:
    flops = brute_force_flops(cfg["n"], cfg["m"], cfg["dim"])
    print(f"[euclidean] engine N=M={cfg['n']} D={cfg['dim']} ...", flush=True)
    engine = run_engine(client, "euclidean", cfg)
    print(f"[euclidean] engine {engine['seconds']:.1f} s; faiss ...", flush=True)
    faiss_run = run_isolated(faiss_baseline, cfg)
    print(f"[euclidean] faiss {faiss_run['seconds']:.1f} s; scikit-learn ...", flush=True)
    small = min(sklearn_n, cfg["n"])
    sk_cfg = {**cfg, "n": small, "m": small * cfg["m"] // cfg["n"]}
    sk_run = run_isolated(sklearn_baseline, "euclidean", sk_cfg)
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
    sk_run = run_isolated(sklearn_baseline, "hamming", cfg)
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


# --- Output --------------------------------------------------------------------------------------


def ratios(rows: list[dict]) -> None:
    """Add speed ratios of each method vs the others of its case (>1: the engine is faster)."""
    for case in {r["case"] for r in rows}:
        group = [r for r in rows if r["case"] == case]
        engine = next(r for r in group if r["method"].startswith("engine"))
        for r in group:
            r["engine_speedup"] = r["seconds"] / engine["seconds"]


def print_table(rows: list[dict], gemm: dict) -> None:
    print()
    print(
        f"float32 GEMM rate (numpy matmul {gemm['size']}x{gemm['size'] // 2} @ "
        f"{gemm['size'] // 2}x{gemm['size']}): 1 thread {gemm['1']:.1f} GFLOP/s, "
        f"2 threads {gemm['2']:.1f} GFLOP/s"
    )
    head = f"{'case':<10}{'method':<32}{'N=M':>8}{'D':>6}{'wall s':>9}{'peak GB':>9}"
    head += f"{'GFLOP/s':>9}{'%GEMM2':>8}{'engine x':>10}{'others':>8}  check"
    print(head)
    print("-" * (len(head) + 30))
    for r in rows:
        line = f"{r['case']:<10}{r['method']:<32}{r['n']:>8}{r['dim']:>6}{r['seconds']:>9.1f}"
        line += f"{r['peak_gb']:>9.2f}{r['gflops']:>9.1f}{100 * r['gflops'] / gemm['2']:>7.0f}%"
        line += f"{r['engine_speedup']:>9.2f}x{r['other_load']:>8.2f}  {_check(r)}"
        print(line)
    print("'engine x' = this method's wall time / the engine's (>1: the engine is faster).")
    print("GFLOP/s = (2*N*N*D + 2*N*M*D) / wall time, the same numerator for every method.")
    print("others = CPU cores used by processes outside this benchmark meanwhile (shared machine).")
    for r in rows:
        if "worker_seconds" in r:
            print(breakdown_line(r))


def breakdown_line(r: dict) -> str:
    """Where the engine's worker time went, as a share of wall time x workers."""
    capacity = r["seconds"] * r["n_workers"]
    busy = sum(r["worker_seconds"].values())
    top = ", ".join(f"{name} {sec:.1f}s" for name, sec in list(r["worker_seconds"].items())[:5])
    return (
        f"  engine {r['case']}: RSS before {r['start_gb']:.2f} GB, peak of the driver+scheduler "
        f"{r['peak_driver_gb']:.2f} GB, of the largest worker {r['peak_worker_gb']:.2f} GB; "
        f"workers busy {busy:.1f} s of {capacity:.1f} s "
        f"({100 * busy / capacity:.0f}%): {top}"
    )


def _check(r: dict) -> str:
    if "note" in r:
        return r["note"]
    if "fidelity_equal" in r:
        text = (
            f"fidelity {r['fidelity']:.4f} equal={r['fidelity_equal']}, "
            f"is_real agree {100 * r['is_real_agree']:.2f}%, "
            f"is_copy agree {100 * r['is_copy_agree']:.2f}%, "
            f"radius_k max rel err {r['radius_k_max_rel_err']:.1e}"
        )
        if "nearest_agree" in r:
            text += f", nearest real agree {100 * r['nearest_agree']:.2f}%"
        return text
    text = f"fidelity {r['fidelity']:.4f}, sets {r['sets']}"
    if "full_matrix_gb" in r:
        text += f"; full-matrix way: {r['full_matrix_gb']:.0f} GB per matrix (not run)"
    return text


def targets(rows: list[dict]) -> list[str]:
    def find(case, prefix):
        return next((r for r in rows if r["case"] == case and r["method"].startswith(prefix)), None)

    lines = []
    faiss_row = find("euclidean", "faiss")
    if faiss_row:
        lines.append(
            f"engine vs faiss-cpu (Euclidean): {faiss_row['engine_speedup']:.2f}x "
            "(target > 1, 1.2x within reach)"
        )
    ham = find("hamming", "sklearn")
    if ham:
        lines.append(f"engine vs original (Hamming): {ham['engine_speedup']:.2f}x (target >= 10x)")
    mem = find("memory", "engine")
    if mem:
        lines.append(
            f"peak memory at N=M={mem['n']} D={mem['dim']}: {mem['peak_gb']:.2f} GB (target < 2 GB)"
        )
    return lines


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


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
        help="comma-separated cases to run (default: all)",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    cases = set(args.only.split(","))

    gemm = {"size": cfg["gemm"], "1": gemm_rate(cfg["gemm"], 1), "2": gemm_rate(cfg["gemm"], 2)}
    print(f"GEMM float32: 1 thread {gemm['1']:.1f}, 2 threads {gemm['2']:.1f} GFLOP/s", flush=True)
    version = engine_version()
    print(f"engine version {version}", flush=True)
    cluster, client = start_cluster()
    try:
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
    finally:
        client.close()
        cluster.close()
    ratios(rows)
    print_table(rows, gemm)
    print()
    for line in targets(rows):
        print(line)
    save(rows, gemm, blas, args, version)


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
        "targets": targets(rows),
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
