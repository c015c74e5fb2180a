"""The exact engine's two Euclidean score paths against each other and against faiss-cpu, in
one run: the float32 GEMM (``backend="numpy"``) and the int8 GEMMs of
``neighbours/quantized.py`` (``backend="int8"``, torch's int8 matmul: AMX tiles on recent
Xeons), ``evaluate_features(compute_fid=False)`` on NumPy features in this process (the
in-process runner), and faiss-cpu ``IndexFlatL2`` (k+1-NN of reals + 1-NN of synthetics) in
its own process on the same arrays.

Per (family, N = M, D): one untimed round, then ``--repeats`` rounds of float32, int8, faiss
one after the other (a burst of other work on the shared machine lands on all three). Prints
median [min-max] seconds, float32/int8 and faiss/int8, and checks that both paths give the
same answer on every image. Whether ``backend="auto"`` takes int8 here (AMX, torch loaded,
D >= INT8_MIN_DIM) is printed per row.

    .venv/bin/python benchmarks/bench_int8.py --sizes 2000,5000 --dims 512,1024,2048
    .venv/bin/python benchmarks/bench_int8.py --quick      # a smoke test, under a minute

``--gram``: instead, ``quantized.gram`` (a diagonal block's int8 scores, in strips of
GRAM_STRIP rows each multiplied with the rows up to its last) against the same block
multiplied whole, on one thread, per block size of ``--sizes``: warm, and after 400 MB of
other memory traffic (cold caches, as in the engine beside other work); the lower triangles
are checked equal.

    .venv/bin/python benchmarks/bench_int8.py --gram --sizes 500,1000,2000 --dims 512

``--routes``: the two int8 products of a comparison block (N / 2 real rows by N synthetic
rows, the engine's ``torch._int_mm``: oneDNN's GEMM API) against oneDNN's AMX matmul reached
through ``torch.ops.onednn.qlinear_pointwise`` (its float32 output already ``128 P1 + P2``),
that route's weight prepack timed apart; one block alone and one on each of two pool threads
at once; the float32 output is checked against the exact int32 sums.

    .venv/bin/python benchmarks/bench_int8.py --routes --sizes 2000 --dims 512,1024
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OtherLoad, Spread, timed  # noqa: E402
from _features import FAMILIES, feature_pair  # noqa: E402
from baselines import faiss_server  # noqa: E402

SEED, NEAREST_K, THRESHOLD = 20260101, 5, 0.05
PATHS = ("numpy", "int8")


def cell(cfg: dict, repeats: int) -> dict:
    """Seconds of both paths and of faiss on one (family, N, D); whether the answers agree."""
    import torch  # the int8 path's GEMMs; "auto" takes it only where torch is loaded

    import medsyn_dask
    from medsyn_dask.neighbours.backend import int8_scores

    del torch
    real, synth = feature_pair("euclidean", cfg, SEED, as_dask=False)
    options = {"nearest_k": NEAREST_K, "mode_collapse_threshold": THRESHOLD, "compute_fid": False}
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=faiss_server, args=(child, cfg, SEED, NEAREST_K, THRESHOLD))
    proc.start()
    seconds: dict[str, list[float]] = {name: [] for name in (*PATHS, "faiss")}
    results = {}
    try:
        conn.recv()  # features built
        with OtherLoad() as load:
            for round_ in range(repeats + 1):  # round 0: untimed warm-up
                for name in PATHS:
                    results[name], took = timed(
                        medsyn_dask.evaluate_features, real, synth, backend=name, **options
                    )
                    if round_:
                        seconds[name].append(took)
                conn.send("run")
                took = conn.recv()
                if round_:
                    seconds["faiss"].append(took)
        conn.send("stop")
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.terminate()
    spreads = {name: Spread(tuple(v)) for name, v in seconds.items()}
    same = _same(results["numpy"], results["int8"])
    auto = int8_scores("auto", cfg["dim"])
    return {"spreads": spreads, "same": same, "auto": auto, "load": load}


def _same(a, b) -> bool:
    """Both paths' answers equal on every image, distances to the last bit."""
    import numpy as np

    return (
        a.per_synthetic.equals(b.per_synthetic)
        and a.per_real.equals(b.per_real)
        and np.array_equal(a.radius_k, b.radius_k)
        and np.array_equal(a.radius_1, b.radius_1)
    )


def gram_cell(n: int, dim: int, repeats: int) -> dict:
    """{(way, caches): Spread of milliseconds} of a diagonal block's int8 Gram matrix, in strips
    and whole (one thread); whether their lower triangles are equal."""
    import numpy as np
    import torch

    from medsyn_dask.neighbours import quantized

    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    block = quantized.quantize(rng.standard_normal((n, dim)).astype(np.float32), np.zeros(dim))
    other = np.ones(400 * 2**20 // 8)  # touched before each cold run: evicts the caches
    ways = {"strips": lambda: quantized.gram(block)[0], "whole": lambda: _whole_gram(block)}
    lower = np.tril_indices(n)
    same = np.array_equal(ways["strips"]()[lower], ways["whole"]()[lower])
    found = {}
    for caches, (name, way) in itertools.product(("warm", "cold"), ways.items()):
        seconds = []  # milliseconds
        for _ in range(repeats):
            if caches == "cold":
                other += 1.0
            seconds.append(1e3 * timed(way)[1])
        found[name, caches] = Spread(seconds)
    return {"spreads": found, "same": same}


def _whole_gram(block):
    """The lower triangle of ``block``'s Gram matrix from one product of the whole block with
    itself (the way before the strips), through the same conversion kernel."""
    import numpy as np

    from medsyn_dask.neighbours import quantized

    n = len(block)
    out = np.empty((n, n), np.float32)
    step = np.ascontiguousarray(block.stats[:, quantized.STEP])
    with quantized.products(block, block) as (high, mixed):
        quantized._gram_kernel()(high, mixed, step, 0, out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = M = 1 000, D = 1 024, 2 rounds")
    parser.add_argument("--sizes", default="2000,5000", help="N = M, e.g. 2000,5000")
    parser.add_argument("--dims", default="512,1024,2048", help="D, e.g. 512,2048")
    parser.add_argument("--families", default="gaussian", help=f"of {','.join(FAMILIES)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per cell")
    parser.add_argument("--gram", action="store_true", help="the Gram strips against whole")
    parser.add_argument("--routes", action="store_true", help="oneDNN's two int8 routes")
    args = parser.parse_args(argv)
    sizes, dims = (1000,), (1024,)
    if not args.quick:
        sizes = tuple(int(v) for v in args.sizes.split(","))
        dims = tuple(int(v) for v in args.dims.split(","))
    repeats = 2 if args.quick else args.repeats
    if args.gram:
        return gram_main(sizes, dims, max(repeats, 3))
    if args.routes:
        return routes_main(sizes, dims, max(repeats, 9))
    disagree = 0
    for family, n, dim in itertools.product(args.families.split(","), sizes, dims):
        cfg = {"n": n, "m": n, "dim": dim, "block": 2048, "family": family}
        found = cell(cfg, repeats)
        s = found["spreads"]
        disagree += not found["same"]
        print(
            f"{family:>10} N=M={n:>6} D={dim:>5}: float32 {s['numpy'].format('.3f')} s, "
            f"int8 {s['int8'].format('.3f')} s, faiss {s['faiss'].format('.3f')} s; "
            f"float32/int8 {s['numpy'].median / s['int8'].median:.2f}x, "
            f"faiss/int8 {s['faiss'].median / s['int8'].median:.2f}x, "
            f"faiss/float32 {s['faiss'].median / s['numpy'].median:.2f}x; "
            f"same answer: {found['same']}; auto takes int8 here: {found['auto']}; "
            f"other load {found['load'].cores:.1f} cores",
            flush=True,
        )
    print(f"both paths agree on every cell: {'yes' if not disagree else f'NO ({disagree})'}")


def gram_main(sizes: tuple, dims: tuple, repeats: int) -> None:
    for n, dim in itertools.product(sizes, dims):
        found = gram_cell(n, dim, repeats)
        s = found["spreads"]
        parts = [
            f"{caches} strips {s['strips', caches].format('.2f')} ms, "
            f"whole {s['whole', caches].format('.2f')} ms, "
            f"whole/strips {s['whole', caches].median / s['strips', caches].median:.2f}x"
            for caches in ("warm", "cold")
        ]
        print(f"gram n={n:>5} D={dim:>5}: " + "; ".join(parts) + f"; same: {found['same']}")


def routes_cell(n: int, dim: int, repeats: int) -> dict:
    """{(route, threads): Spread of milliseconds} of one comparison block's int8 products, the
    prepack's Spread, and the largest error of the matmul route's float32 output in units of
    its float32 spacing."""
    import numpy as np
    import torch

    from medsyn_dask.neighbours import quantized
    from medsyn_dask.neighbours.threads import one_torch_thread, pool

    rng = np.random.default_rng(SEED)
    rows = [rng.standard_normal((n // 2, dim)).astype(np.float32) for _ in range(2)]
    x = [quantized.quantize(r, np.zeros(dim)) for r in rows]
    y = quantized.quantize(rng.standard_normal((n, dim)).astype(np.float32), np.zeros(dim))
    onednn, ones, zeros = torch.ops.onednn, torch.ones(n), torch.zeros(n, dtype=torch.int32)

    def prepack():
        return (
            onednn.qlinear_prepack(y.lh[:, dim:].contiguous(), (n // 2, dim)),
            onednn.qlinear_prepack(y.lh, (n // 2, 2 * dim)),
        )

    packed = prepack()

    def matmul(k: int) -> torch.Tensor:  # 128 P1, then P2 added by the matmul's sum post-op
        high = onednn.qlinear_pointwise(
            x[k].hl[:, :dim], 1.0, 0, packed[0], ones * 128, zeros, None, 1.0, 0,
            torch.float32, "none", [], "",
        )  # fmt: skip
        return onednn.qlinear_pointwise.binary(
            x[k].hl, 1.0, 0, packed[1], ones, zeros, high, None, 1.0, 0, torch.float32,
            1.0, 0, "sum", 1.0, "none", [], "",
        )  # fmt: skip

    def int_mm(k: int) -> None:
        with quantized.products(x[k], y):
            pass

    def on_pool(route, ks):
        def one(k):
            with one_torch_thread(torch):
                route(k)

        return lambda: list(pool(2).map(one, ks))

    with quantized.products(x[0], y) as (p1, p2):
        exact = 128.0 * p1.astype(np.float64) + p2
    with one_torch_thread(torch):
        got = matmul(0).numpy().astype(np.float64)
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32))
    found = {"prepack": Spread([1e3 * timed(prepack)[1] for _ in range(repeats)])}
    for (name, route), ks in itertools.product(
        {"int_mm": int_mm, "matmul": matmul}.items(), ((0,), (0, 1))
    ):
        run = on_pool(route, ks)
        run()
        found[name, len(ks)] = Spread([1e3 * timed(run)[1] for _ in range(repeats)])
    return {"spreads": found, "ulps": float(ulps.max())}


def routes_main(sizes: tuple, dims: tuple, repeats: int) -> None:
    for n, dim in itertools.product(sizes, dims):
        found = routes_cell(n, dim, repeats)
        s = found["spreads"]
        print(
            f"routes {n // 2} x {n} x D={dim}: torch._int_mm (GEMM API) alone "
            f"{s['int_mm', 1].format('.2f')} ms, two threads at once {s['int_mm', 2].format('.2f')}"
            f" ms; matmul (AMX brgemm, float32 out) alone {s['matmul', 1].format('.2f')} ms, two "
            f"at once {s['matmul', 2].format('.2f')} ms, its weight prepack "
            f"{s['prepack'].format('.2f')} ms a block; float32 out within {found['ulps']:.1f} "
            "spacing of the exact sums",
            flush=True,
        )


if __name__ == "__main__":
    main()
