"""``medsyn-dask demo``: the whole job on generated phantom images whose answer is known.

Writes a real set and four synthetic groups (:mod:`medsyn_dask.phantoms`): a memorising
generator, a faithful one, a collapsed one and a poor one, in two classes, then runs
``analyze`` on them with the embedded LocalCluster (or ``--scheduler-address``). The known
answer: the memoriser has the lowest privacy, the poor generator the lowest fidelity and the
collapsed one the lowest variety; the demo checks it and says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .analyze import run_job
from .cluster_options import add_cluster_arguments, cluster_spec


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole job on generated phantoms (no data)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="folder for the phantoms and the results (default demo-output)",
    )
    p.add_argument("--dims", type=int, choices=(2, 3), default=2, help="2D images or 3D volumes")
    p.add_argument(
        "--n-real", type=int, default=200, help="real images PER CLASS (default 200; 2 classes)"
    )
    p.add_argument(
        "--n-synthetic", type=int, default=100, help="images per group and class (default 100)"
    )
    p.add_argument("--size", type=int, default=None, help="image side (default 128 / 48 in 3D)")
    p.add_argument("--resolution", type=int, default=64, help="extraction side (default 64)")
    add_cluster_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep-open",
        action="store_true",
        help="keep the embedded cluster and its dashboard up after the run, until Ctrl-C",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..phantoms import write_demo_dataset
    from ..settings import AnalyzeSettings

    data = write_demo_dataset(
        args.output / "data",
        n_real=args.n_real,
        n_synthetic=args.n_synthetic,
        size=args.size,
        dims=args.dims,
        seed=args.seed,
    )
    n_classes = len(data.classes)
    print(
        f"demo: {args.n_real * n_classes} real and {len(data.synthetic)} x "
        f"{args.n_synthetic * n_classes} synthetic {args.dims}D phantoms ({n_classes} classes: "
        f"{args.n_real} real and {args.n_synthetic} per group in each) in {data.root}"
    )
    settings = AnalyzeSettings(
        real=str(data.real),
        synthetic={name: str(root) for name, root in data.synthetic.items()},
        output=str(args.output / "results"),
        resolutions=(args.resolution,),
    )
    metrics = run_job(settings, cluster_spec(args, {}), keep_open=args.keep_open)
    return _check_truth(metrics, data.truth)


def _check_truth(metrics: dict, truth: dict[str, str]) -> int:
    """Print whether the group made to be worst on each score is alone at the lowest value.

    A tie at the lowest value (e.g. two groups at privacy 0.000) is said as a tie, and passes
    only when the expected group is among the tied ones.
    """
    groups = metrics["groups"]
    ok = True
    for score, expected in truth.items():
        values = {g: v[score] for g, v in groups.items() if v[score] is not None}
        lowest = min(values.values()) if values else None
        tied = sorted(g for g, v in values.items() if v == lowest)
        ok &= expected in tied
        if len(tied) > 1:
            names = ", ".join(tied)
            print(f"lowest {score}: tie at {lowest:.3f} between {names} (expected {expected})")
        else:
            print(f"lowest {score}: {tied[0] if tied else None} (expected {expected})")
    print("known answer recovered" if ok else "KNOWN ANSWER NOT RECOVERED")
    return 0 if ok else 1
