"""Scale (issue 9): 100 000 real x 100 000 synthetic features through the engine, and a projection.

1. The engine: ``medsyn_dask.evaluate_features`` (Euclidean, k=5, FID included) on N = M =
   100 000 features of D = 512 (``_features.euclidean_block``: clustered, planted copies),
   generated block by block on the workers as Dask arrays (the driver never holds them), on
   ``_common.local_cluster(2)``: 2 single-thread worker processes. Wall time, the peak of the
   summed RSS of driver (+ scheduler) and workers (``_common.TreeMemory``), and the workers'
   seconds by task prefix.
2. One block: a real x synthetic block of ``block`` x ``block`` rows scored as a
   ``compare-real-synthetic`` task does (``block_bounds``: the float32 GEMM and its bounds;
   ``compare_block``: the reductions), 1 BLAS thread, median of 5; this machine's 1-thread
   float32 GEMM rate beside it.
3. A projection to N = M = 1 000 000 on GPU workers from those measurements (:func:`project`);
   the assumptions (GPU GEMM rate, PCIe, workers and their CPU threads, block size, scheduler
   rate, network) are flags, printed with the result (the README quotes it).

Run:  .venv/bin/python benchmarks/bench_scale.py [--quick] [--gpu-workers 8] [--gpu-tflops 50]
``--quick``: N = M = 8 192 (checks that the benchmark runs; the projection then rests on a
small run). ``--reproject``: the projection again from the measurements in the results file,
under other assumptions, without running anything. Results are printed and written to
benchmarks/results/scale.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OtherLoad, TreeMemory, jsonable, local_cluster, quick_note, repeat, timed  # noqa: E402
from _features import euclidean_block, feature_pair  # noqa: E402
from baselines import gemm_rate  # noqa: E402
from bench_neighbours import task_breakdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
SEED = 20260909
NEAREST_K = 5
GB = 1e9
FULL = {"n": 100_000, "m": 100_000, "dim": 512, "block": 2048}
QUICK = {"n": 8_192, "m": 8_192, "dim": 512, "block": 2048}
TARGET = 1_000_000
#: Task prefixes whose count and work grow with N x M (one block pair each).
BLOCK_TASKS = ("real-radii-candidates", "compare-real-synthetic")
#: Task prefix of the features' generation (the benchmark's input, not the engine's work).
INPUT_TASKS = "euclidean_block"


def block_pairs(n: int, m: int, block: int) -> int:
    """Block pairs the engine scores: real x real (I <= J, by symmetry) and real x synthetic."""
    nb, mb = -(-n // block), -(-m // block)
    return nb * (nb + 1) // 2 + nb * mb


def run_engine(cfg: dict) -> dict:
    """evaluate_features on lazily generated features; wall, tree peak RSS, worker seconds."""
    from distributed import get_task_stream

    import medsyn_dask

    with local_cluster(2) as client:
        real, synthetic = feature_pair("euclidean", cfg, SEED, as_dask=True)
        with OtherLoad() as load, TreeMemory() as memory, get_task_stream(client) as stream:
            result, seconds = timed(
                medsyn_dask.evaluate_features,
                real,
                synthetic,
                nearest_k=NEAREST_K,
                block_size=cfg["block"],
            )
    by_prefix = task_breakdown(stream.data)
    return {
        "seconds": seconds,
        "peak_rss": memory.peak,
        "start_rss": memory.start_rss,
        "peak_driver": memory.peak_driver,
        "peak_worker": memory.peak_child,
        "other_load": load.cores,
        "worker_seconds": by_prefix,
        "fidelity": result.fidelity,
        "privacy": result.privacy,
        "fid": result.fid,
        "sets": result.set_counts,
        "radius_k": result.radius_k[: cfg["block"]],
        "copy_threshold": result.radius_1[: cfg["block"]] + result.copy_margin,
    }


def one_block(cfg: dict, radius_k: np.ndarray, copy_threshold: np.ndarray) -> dict:
    """Seconds of one real x synthetic block task's two parts (1 BLAS thread, median of 5)."""
    from threadpoolctl import threadpool_limits

    from medsyn_dask.neighbours import euclidean
    from medsyn_dask.neighbours.reductions import compare_block

    b, d = cfg["block"], cfg["dim"]
    x = euclidean_block(SEED, 0, 0, b, d)
    y = euclidean_block(SEED, 1, 0, b, d)
    centre = x.astype(np.float64).mean(axis=0)
    with threadpool_limits(limits=1, user_api="blas"):
        block, bounds = repeat(
            euclidean.block_bounds, 5, x, y, centre, backend="numpy", warmup=True
        )
        _, reduce = repeat(compare_block, 5, block, radius_k, copy_threshold, 0, warmup=True)
        gemm = gemm_rate(4096, 1)["best"] * 1e9
    return {
        "bounds_s": bounds.median,
        "reduce_s": reduce.median,
        "seconds": bounds.median + reduce.median,
        "flops": 2.0 * b * b * d,
        "gemm_flops_per_s": gemm,
    }


def project(cfg: dict, engine: dict, block: dict, gpu: argparse.Namespace) -> dict:
    """Seconds of N = M = TARGET on ``gpu.workers`` GPU workers, from the measurements.

    On a GPU worker the engine runs each block's float32 GEMM on the GPU and copies the scores
    back; their bounds and reductions run in NumPy on the worker's CPU (``euclidean._gemm_f32``).
    Per pair of ``cfg`` blocks, then:

    - the GPU: the GEMM at ``gpu.tflops``, the scores (block^2 float32) and the two input
      blocks over PCIe at ``gpu.pcie_gbs``; one GPU per worker, so these add up per worker;
    - the CPU: the measured single block less its GEMM part (its flops at the measured 1-thread
      GEMM rate), times the ratio of the engine's measured block-task seconds per pair to the
      single block (real x real pairs, Dask's per-task cost), on ``gpu.cores`` threads;
    - a worker goes at the pace of the slower of the two (they overlap across its threads).

    Besides: the other tasks (candidate merging, exact float64 distances, FID moments) on the
    CPUs, their work growing with N + M (the measured seconds times TARGET / N); the scheduler,
    one task per block pair and candidate pass at ``gpu.block`` rows, at ``gpu.scheduler_rate``;
    the features, every real block to every worker once per pass, at ``gpu.network_gbs``.
    """
    worker_s = engine["worker_seconds"]
    block_s = sum(s for name, s in worker_s.items() if name in BLOCK_TASKS)
    other_s = sum(
        s
        for name, s in worker_s.items()
        if name not in BLOCK_TASKS and not name.startswith(INPUT_TASKS)
    )
    b, d = cfg["block"], cfg["dim"]
    pairs = block_pairs(cfg["n"], cfg["m"], b)
    task_factor = block_s / pairs / block["seconds"]
    gemm_cpu = block["flops"] / block["gemm_flops_per_s"]
    cpu_pair = max(block["seconds"] - gemm_cpu, 0.0) * task_factor
    gpu_pair = block["flops"] / (gpu.tflops * 1e12) + (b * b + 2 * b * d) * 4 / (gpu.pcie_gbs * 1e9)
    target_pairs = block_pairs(TARGET, TARGET, b)
    per_worker = target_pairs / gpu.workers
    gpu_s, cpu_s = per_worker * gpu_pair, per_worker * cpu_pair / gpu.cores
    other = other_s * TARGET / cfg["n"] / (gpu.workers * gpu.cores)
    nb = -(-TARGET // gpu.block)
    tasks = 2 * (nb * (nb + 1) // 2 + nb * nb) + 6 * nb
    scheduler = tasks / gpu.scheduler_rate
    transfer = 2 * 2 * TARGET * d * 4 / (gpu.network_gbs * 1e9)
    pairs_s = max(gpu_s, cpu_s)
    return {
        "pairs_measured": pairs,
        "block_task_seconds": block_s,
        "other_task_seconds": other_s,
        "task_factor": task_factor,
        "gemm_share_cpu": gemm_cpu / block["seconds"],
        "gpu_per_pair_s": gpu_pair,
        "cpu_per_pair_s": cpu_pair,
        "target_pairs": target_pairs,
        "gpu_s": gpu_s,
        "cpu_s": cpu_s,
        "pairs_s": pairs_s,
        "bound_by": "GPU" if gpu_s >= cpu_s else "CPU",
        "other_s": other,
        "tasks": tasks,
        "scheduler_s": scheduler,
        "transfer_s": transfer,
        "total_s": pairs_s + other + scheduler + transfer,
    }


def report(cfg: dict, engine: dict, block: dict, proj: dict, gpu: argparse.Namespace) -> str:
    n, m, d, b = cfg["n"], cfg["m"], cfg["dim"], cfg["block"]
    features = (n + m) * d * 4
    top = sorted(engine["worker_seconds"].items(), key=lambda kv: -kv[1])[:6]
    return "\n".join(
        [
            f"engine: N={n:,} x M={m:,}, D={d}, block {b}, 2 workers x 1 thread (this machine)",
            f"  wall {engine['seconds']:.1f} s; peak RSS driver+scheduler+workers "
            f"{engine['peak_rss'] / GB:.2f} GB (before {engine['start_rss'] / GB:.2f} GB; "
            f"driver {engine['peak_driver'] / GB:.2f}, largest worker "
            f"{engine['peak_worker'] / GB:.2f})",
            f"  for scale: the features {features / GB:.2f} GB, one float64 N x M matrix "
            f"{n * m * 8 / GB:.0f} GB, one block's float32 scores {b * b * 4 / 1e6:.0f} MB",
            f"  fidelity {engine['fidelity']:.3f}, privacy {engine['privacy']:.3f}, FID "
            f"{engine['fid']:.2f}; other programs' CPU meanwhile {engine['other_load']:.2f} cores",
            "  worker seconds by task: " + ", ".join(f"{k} {v:.1f}" for k, v in top),
            f"one block {b} x {b} x {d} (1 thread): {block['seconds'] * 1e3:.0f} ms = bounds "
            f"{block['bounds_s'] * 1e3:.0f} ms (GEMM {block['flops'] / 1e9:.1f} GFLOP) + "
            f"reductions {block['reduce_s'] * 1e3:.0f} ms; CPU GEMM "
            f"{block['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s (1 thread)",
            f"  GEMM share of a block on the CPU {proj['gemm_share_cpu']:.0%}; the engine's "
            f"block tasks took {proj['task_factor']:.2f} x the single block per pair",
            "",
            f"projection: N = M = {TARGET:,}, D = {d}, {gpu.workers} GPU workers, "
            f"{gpu.cores} CPU threads each",
            f"  assumed: GPU float32 GEMM {gpu.tflops:g} TFLOP/s (H100, TF32 off), PCIe "
            f"{gpu.pcie_gbs:g} GB/s, these CPUs' per-core speed, block {gpu.block} rows for the "
            f"task count, scheduler {gpu.scheduler_rate:g} tasks/s, network "
            f"{gpu.network_gbs:g} GB/s per worker",
            f"  {proj['target_pairs']:,} block pairs of {b} rows: per pair GPU "
            f"{proj['gpu_per_pair_s'] * 1e3:.2f} ms (GEMM + scores to the host), CPU "
            f"{proj['cpu_per_pair_s'] * 1e3:.1f} ms (bounds, reductions); per worker GPU "
            f"{proj['gpu_s']:.0f} s, CPU {proj['cpu_s']:.0f} s: {proj['bound_by']}-bound, "
            f"{proj['pairs_s']:.0f} s",
            f"  candidate merging, exact distances, FID on the CPUs: {proj['other_s']:.0f} s "
            f"(measured {proj['other_task_seconds']:.0f} s at N={n:,}, x N growth)",
            f"  scheduler: {proj['tasks']:,} tasks, {proj['scheduler_s']:.0f} s; features over "
            f"the network: {proj['transfer_s']:.1f} s",
            f"  total about {proj['total_s'] / 60:.1f} min (the parts added: none overlapped)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"N = M = {QUICK['n']:,}")
    parser.add_argument("--n", type=int, help="N = M of the engine run (default 100 000)")
    parser.add_argument("--gpu-workers", dest="workers", type=int, default=8)
    parser.add_argument("--gpu-tflops", dest="tflops", type=float, default=50.0)
    parser.add_argument("--gpu-cores", dest="cores", type=int, default=8, help="CPU threads")
    parser.add_argument("--pcie-gbs", dest="pcie_gbs", type=float, default=25.0)
    parser.add_argument("--gpu-block", dest="block", type=int, default=16384)
    parser.add_argument("--scheduler-rate", dest="scheduler_rate", type=float, default=2000.0)
    parser.add_argument("--network-gbs", dest="network_gbs", type=float, default=12.5)
    parser.add_argument(
        "--reproject", action="store_true", help="the projection only, from the results file"
    )
    args = parser.parse_args(argv)
    if args.reproject:
        saved = json.loads(RESULTS.read_text())
        cfg, engine, block = saved["config"], saved["engine"], saved["block"]
    else:
        quick_note(args.quick)
        cfg = dict(QUICK if args.quick else FULL)
        if args.n:
            cfg.update(n=args.n, m=args.n)
        print(f"engine on N = M = {cfg['n']:,} ...", flush=True)
        started = time.perf_counter()
        engine = run_engine(cfg)
        print(f"engine done in {time.perf_counter() - started:.0f} s; one block ...", flush=True)
        block = one_block(cfg, engine.pop("radius_k"), engine.pop("copy_threshold"))
    proj = project(cfg, engine, block, args)
    print(report(cfg, engine, block, proj, args))
    if args.reproject:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {"config": cfg, "quick": args.quick, "gpu": vars(args), "engine": engine}
    out.update(block=block, projection=proj)
    RESULTS.write_text(json.dumps(jsonable(out), indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
