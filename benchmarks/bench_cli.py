"""The whole job from process start: ``medsyn-dask analyze`` against the original's way.

Each side runs as a fresh process on the same phantom images (``bench_job.make_data``: 256 x 256
8-bit PNG, two classes), timed from spawn to exit, so imports, the cluster's start and close,
and every output written count:

- medsyn-dask: ``medsyn-dask analyze --model pixels --resolution 256 --workers W`` into a fresh
  output folder and feature store (nothing reused), report.html and summary.txt included;
- the original's way: ``baseline_job.baseline_job`` (DataLoader features, whole-matrix
  scikit-learn, FID by ``sqrtm``, NumPy mean images, CSV/JSON outputs) in
  ``python -c ...``, with the process's own threading (``--baseline-threads``: 1 limits torch
  and BLAS to one thread).

The two run alternately, ``--repeats`` times each; printed: median [min-max] seconds and the
ratio of medians (baseline / medsyn-dask: above 1 means medsyn-dask is faster).

Run:  .venv/bin/python benchmarks/bench_cli.py --n-real 2000 --n-synthetic 2000   # the large run
      .venv/bin/python benchmarks/bench_cli.py --n-real 100 --n-synthetic 100     # 400 images
      .venv/bin/python benchmarks/bench_cli.py --quick                            # checks it runs
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import QUICK_NOTE, Spread, quick_note
from bench_job import make_data

HERE = Path(__file__).resolve().parent
MEDSYN = Path(sys.executable).with_name("medsyn-dask")


def medsyn_command(data: Path, groups: list[str], out: Path, workers: int) -> list[str]:
    cmd = [str(MEDSYN), "analyze", "--real", str(data / "real"), "--output", str(out),
           "--model", "pixels", "--resolution", "256", "--workers", str(workers)]
    for g in groups:
        cmd += ["--synthetic", f"{g}={data / 'synthetic' / g}"]
    return cmd


def baseline_command(data: Path, groups: list[str], out: Path, threads: int | None) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from baseline_job import baseline_job;"
            f" baseline_job({str(data)!r}, {groups!r}, {str(out)!r}, {threads!r})")
    return [sys.executable, "-c", code]


def timed_run(cmd: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-real", type=int, default=2000, help="real images (both classes)")
    ap.add_argument("--n-synthetic", type=int, default=2000, help="images per synthetic group")
    ap.add_argument("--groups", default="memorizer,faithful,collapsed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-threads", type=int, default=None)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/medsyn-bench-cli"))
    ap.add_argument("--quick", action="store_true", help="100 + 3 x 100 images, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        quick_note(True)
        args.n_real, args.n_synthetic, args.repeats = 100, 100, 1
    groups = args.groups.split(",")
    data = args.scratch / f"data-{args.n_real}-{args.n_synthetic}"
    make_data(data, args.n_real, args.n_synthetic)
    out = args.scratch / "out"
    times: dict[str, list[float]] = {"medsyn-dask": [], "baseline": []}
    for _ in range(args.repeats):
        times["medsyn-dask"].append(
            timed_run(medsyn_command(data, groups, out, args.workers), out))
        times["baseline"].append(
            timed_run(baseline_command(data, groups, out, args.baseline_threads), out))
    n = args.n_real + len(groups) * args.n_synthetic
    print(f"whole job from process start, {n} images ({args.n_real} real + {len(groups)} x "
          f"{args.n_synthetic}), 256 px pixels, {args.repeats} repeats:")
    spreads = {k: Spread(tuple(v)) for k, v in times.items()}
    for name, s in spreads.items():
        print(f"  {name:<12} {s.median:7.2f} s  [{s.min:.2f}-{s.max:.2f}]")
    ratio = spreads["baseline"].median / spreads["medsyn-dask"].median
    print(f"  medsyn-dask faster by {ratio:.2f}x (baseline median / medsyn-dask median)")
    if args.quick:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
