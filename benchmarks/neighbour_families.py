"""The exact engine against faiss-cpu on every input family and size (``bench_neighbours.py
--only families``), and the engine on in-memory Hamming codes against scikit-learn.

For each family of ``_features.FAMILIES`` (isotropic Gaussian, clustered low-rank post-ReLU,
many exact and near duplicates, far from the origin), N = M and D of the grid:

- the engine: ``medsyn_dask.evaluate_features(real, synthetic, compute_fid=False)`` on NumPy
  arrays in this process with no Client (the in-process runner, ``neighbours/local.py``), one
  untimed call, then ``repeats`` timed calls;
- faiss-cpu ``IndexFlatL2``: k+1-NN of reals + 1-NN of synthetics, in a spawned process on the
  very same arrays (built from the seed).

One untimed run of each, then ``repeats`` rounds of one engine run followed by one faiss run:
alternating, both meet the same load of the shared machine (a burst of other work lands on
both rather than on whichever ran all its repeats at that moment).

Each row prints min/median/max of both and two ratios: faiss median / engine median, and the
worst case faiss min / engine max (what a noisy machine can make of it). The machine is shared:
``other_load`` is the CPU that other processes used meanwhile, in cores.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp

import numpy as np
from _common import OtherLoad, Spread, repeat, run_isolated, timed
from _features import feature_pair
from baselines import faiss_server, sklearn_baseline


def engine_in_process(
    case: str, cfg: dict, seed: int, nearest_k: int, threshold: float, repeats: int
):
    """(result, Spread of seconds, other load) of evaluate_features on NumPy features here."""
    import medsyn_dask

    real, synth = feature_pair(case, cfg, seed, as_dask=False)
    metric = "hamming" if case == "hamming" else "euclidean"
    with OtherLoad() as load:
        result, seconds = repeat(
            medsyn_dask.evaluate_features,
            repeats,
            real,
            synth,
            metric=metric,
            nearest_k=nearest_k,
            mode_collapse_threshold=threshold,
            compute_fid=False,
            warmup=True,
        )
    return result, seconds, load.cores


def engine_and_faiss(cfg: dict, seed: int, nearest_k: int, threshold: float, repeats: int):
    """(engine result, engine Spread, faiss result, faiss Spread, other load): one untimed run
    of each, then ``repeats`` rounds of one timed engine run followed by one timed faiss run
    (faiss in its own process, :func:`baselines.faiss_server`)."""
    import medsyn_dask

    real, synth = feature_pair("euclidean", cfg, seed, as_dask=False)
    options = {"nearest_k": nearest_k, "mode_collapse_threshold": threshold, "compute_fid": False}
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=faiss_server, args=(child_conn, cfg, seed, nearest_k, threshold))
    proc.start()
    try:
        conn.recv()  # features built
        engine, faiss = [], []
        with OtherLoad() as load:
            for round_ in range(repeats + 1):  # round 0: untimed warm-up of both
                result, seconds = timed(medsyn_dask.evaluate_features, real, synth, **options)
                conn.send("run")
                faiss_seconds = conn.recv()
                if round_:
                    engine.append(seconds)
                    faiss.append(faiss_seconds)
        conn.send("result")
        faiss_result = conn.recv()
        conn.send("stop")
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.terminate()
    return result, Spread(tuple(engine)), faiss_result, Spread(tuple(faiss)), load.cores


def family_rows(grid: dict, seed: int, nearest_k: int, threshold: float, repeats: int) -> list:
    """One row per (family, N, D) of ``grid`` (``families``, ``sizes``, ``dims``)."""
    from medsyn_dask.neighbours.backend import int8_scores

    rows = []
    for family, n, dim in itertools.product(grid["families"], grid["sizes"], grid["dims"]):
        cfg = {"n": n, "m": n, "dim": dim, "block": 2048, "family": family}
        result, engine, faiss_run, faiss, load = engine_and_faiss(
            cfg, seed, nearest_k, threshold, repeats
        )
        row = {
            "family": family,
            "n": n,
            "dim": dim,
            "engine": engine.to_dict(),
            "faiss": faiss.to_dict(),
            "ratio_median": faiss.median / engine.median,
            "ratio_worst": faiss.min / engine.max,
            "radius_k_rel_diff": float(
                np.max(
                    np.abs(result.radius_k - faiss_run["radius_k"])
                    / np.maximum(result.radius_k, 1e-30)
                )
            ),
            "other_load": load,
            "scores": "int8" if int8_scores("auto", dim) else "float32",
        }
        print(
            f"[families] {family:>10} N=M={n:>6} D={dim:>5} ({row['scores']} scores): "
            f"engine {engine.format('.3f')} s, "
            f"faiss {faiss.format('.3f')} s, faiss/engine {row['ratio_median']:.2f}x "
            f"(worst {row['ratio_worst']:.2f}x), other load {row['other_load']:.1f} cores",
            flush=True,
        )
        rows.append(row)
    return rows


def hamming_in_process(
    cfg: dict, seed: int, nearest_k: int, threshold: float, repeats: int
) -> dict:
    """The engine on in-memory codes here against the original's scikit-learn full matrices."""
    result, engine, load = engine_in_process("hamming", cfg, seed, nearest_k, threshold, repeats)
    sk = run_isolated(sklearn_baseline, "hamming", cfg, seed, nearest_k, threshold)
    sets = result.per_synthetic["set"].to_numpy()
    same = bool(
        np.array_equal(result.radius_k, sk["radius_k"])
        and np.array_equal(sets != "non-real", sk["is_real"])
        and np.array_equal(sets == "copy", sk["is_copy"])
    )
    row = {
        "n": cfg["n"],
        "dim": cfg["side"] ** 2,
        "engine": engine.to_dict(),
        "sklearn_seconds": sk["seconds"],
        "ratio_median": sk["seconds"] / engine.median,
        "ratio_worst": sk["seconds"] / engine.max,
        "same_answer": same,
        "other_load": max(load, sk["other_load"]),
    }
    print(
        f"[hamming here] N=M={cfg['n']} D={row['dim']}: engine {engine.format('.2f')} s, "
        f"scikit-learn {sk['seconds']:.2f} s, {row['ratio_median']:.1f}x "
        f"(worst {row['ratio_worst']:.1f}x), same answer: {same}",
        flush=True,
    )
    return row


def verdicts(rows: list, hamming: dict | None, quick: bool) -> list[str]:
    """The issue's goals, checked on the rows (none in quick mode)."""
    if quick:
        return []
    out = []
    slow = [r for r in rows if r["ratio_median"] < 1.0]
    out.append(
        f"engine >= faiss on every family and size: {'MET' if not slow else 'NOT MET'} "
        f"({len(rows) - len(slow)}/{len(rows)} rows; lowest median ratio "
        f"{min((r['ratio_median'] for r in rows), default=float('nan')):.2f}x)"
    )
    if hamming is not None:
        met = hamming["ratio_median"] >= 10 and hamming["same_answer"]
        out.append(
            f"Hamming >= 10x scikit-learn, same answer: {'MET' if met else 'NOT MET'} "
            f"({hamming['ratio_median']:.1f}x)"
        )
    return out
