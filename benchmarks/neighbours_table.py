"""The rows, checks and printed table of ``bench_neighbours.py`` (see its docstring)."""

from __future__ import annotations

import numpy as np
from _common import QUICK_NOTE

GB = 1e9


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
        f"{gemm['size'] // 2}x{gemm['size']}, best [median, worst] of 3): "
        + ", ".join(
            f"{t} thread{'s' * (t != '1')} {r['best']:.1f} [{r['median']:.1f}, {r['worst']:.1f}]"
            for t, r in gemm["spread"].items()
        )
        + " GFLOP/s"
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


def targets(rows: list[dict], quick: bool) -> list[str]:
    """The figures the engine is judged by; with ``quick``, without the targets' verdicts."""

    def find(case, prefix):
        return next((r for r in rows if r["case"] == case and r["method"].startswith(prefix)), None)

    def line(text: str, target: str) -> str:
        return text if quick else f"{text} ({target})"

    lines = []
    faiss_row = find("euclidean", "faiss")
    if faiss_row:
        text = f"engine vs faiss-cpu (Euclidean): {faiss_row['engine_speedup']:.2f}x"
        lines.append(line(text, "target > 1, 1.2x within reach"))
    ham = find("hamming", "sklearn")
    if ham:
        text = f"engine vs original (Hamming): {ham['engine_speedup']:.2f}x"
        lines.append(line(text, "target >= 10x"))
    mem = find("memory", "engine")
    if mem:
        text = f"peak memory at N=M={mem['n']} D={mem['dim']}: {mem['peak_gb']:.2f} GB"
        lines.append(line(text, "target < 2 GB"))
    return [*lines, QUICK_NOTE] if quick else lines
