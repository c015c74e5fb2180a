"""``medsyn-dask demo``: the neighbourhood engine on generated features with a known answer.

Four synthetic groups against one real set, drawn from a Gaussian mixture: a memorising
generator (real features plus faint noise), a faithful one (fresh samples), a collapsed one
(all near one point) and a poor one (the wrong distribution). The real radii are computed once
and reused for every group, on an embedded LocalCluster (or ``--scheduler-address``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..cluster import connect
from ..evaluate import evaluate_features, real_neighbourhood


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the engine on generated features (no data needed)")
    p.add_argument("--n-real", type=int, default=4000, help="real feature vectors (default 4000)")
    p.add_argument("--n-synthetic", type=int, default=2000, help="per synthetic group")
    p.add_argument("--dim", type=int, default=256, help="feature dimension (default 256)")
    p.add_argument("--metric", choices=("euclidean", "hamming"), default="euclidean")
    p.add_argument("--nearest-k", type=int, default=5)
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers")
    p.add_argument("--scheduler-address", default=None, help="attach to a running scheduler")
    p.add_argument("--output", type=Path, default=None, help="write metrics.json here")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def demo_features(n_real: int, n_synth: int, dim: int, metric: str, seed: int) -> tuple:
    """Real features and four synthetic groups whose ranking is known."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(8, dim))

    def sample(n: int, scale: float = 1.0) -> np.ndarray:
        return centres[rng.integers(0, 8, n)] + scale * rng.normal(size=(n, dim))

    real = sample(n_real)
    groups = {
        "memorizer": real[rng.integers(0, n_real, n_synth)]
        + 1e-3 * rng.normal(size=(n_synth, dim)),
        "faithful": sample(n_synth),
        "collapsed": centres[0] + 0.01 * rng.normal(size=(n_synth, dim)),
        "poor": 2.5 * rng.normal(size=(n_synth, dim)) + 4.0,
    }
    if metric == "hamming":  # quantise to a 64-entry codebook, as a VQ-VAE would
        edges = np.linspace(-8, 8, 63)
        return np.digitize(real, edges), {g: np.digitize(f, edges) for g, f in groups.items()}
    return real.astype(np.float32), {g: f.astype(np.float32) for g, f in groups.items()}


def run(args: argparse.Namespace) -> int:
    real, groups = demo_features(args.n_real, args.n_synthetic, args.dim, args.metric, args.seed)
    print(
        f"demo: {len(real)} real, {len(groups)} synthetic groups of {args.n_synthetic}, "
        f"D={args.dim}, metric={args.metric}"
    )
    results = {}
    with connect(args.scheduler_address, workers=args.workers):
        start = time.perf_counter()
        reference = real_neighbourhood(
            real,
            metric=args.metric,
            nearest_k=args.nearest_k,
            block_size=args.block_size,
            progress=True,
        )
        for name, synth in groups.items():
            print(f"\n{name}:")
            results[name] = evaluate_features(
                real,
                synth,
                metric=args.metric,
                nearest_k=args.nearest_k,
                block_size=args.block_size,
                reference=reference,
                progress=True,
            ).to_dict()
        elapsed = time.perf_counter() - start
    print("\n" + format_table(results))
    print(f"\n{elapsed:.1f} s on Dask")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return 0


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of the headline scores, one row per group."""
    header = f"{'group':<11}{'fidelity':>9}{'privacy':>9}{'prec.priv':>10}{'std':>8}{'fid':>10}"
    header += f"{'copy':>7}{'real':>6}{'non-real':>9}"
    rows = [header, "-" * len(header)]
    for name, r in results.items():
        fid = "n/a" if r["fid"] is None else f"{r['fid']:.1f}"
        sets = r["sets"]
        rows.append(
            f"{name:<11}{r['fidelity']:>9.3f}{r['privacy']:>9.3f}{r['precision_privacy']:>10.3f}"
            f"{r['std']:>8.3f}{fid:>10}{sets['copy']:>7}{sets['real']:>6}{sets['non-real']:>9}"
        )
    return "\n".join(rows)
