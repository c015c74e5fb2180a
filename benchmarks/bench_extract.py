"""Images per second of feature extraction: the Dask path against a plain DataLoader loop.

One run writes N PNG images (default 2000, 256 x 256, smooth phantoms with noise) and times,
for the ``pixels`` extractor and for a small CNN (a TorchScript file written here):

- ``dataloader``: the original package's way, a single-process ``torch.utils.data.DataLoader``
  (``num_workers=0``, batch 32) over the same read + preprocess + model code, features gathered
  in memory; torch limited to 1 thread, as a Dask worker is (its nanny sets OMP_NUM_THREADS=1);
- ``tuned``: the same loop in a fresh process whose allocator is set up as the workers' is
  (torch's large buffers advised for huge pages, glibc's trim and mmap thresholds relaxed:
  ``medsyn_dask.cluster.local.WORKER_ENVIRON``, ``relax_malloc_trim``). The ``dataloader`` loop
  runs in this process, whose allocator state depends on what ran before (a small CNN's loop
  measured 1.8 ms of CPU an image after the ``pixels`` cells, 3.3 in a fresh process: page
  faults); ``tuned`` is the loop under the workers' own conditions;
- ``pair``: two ``tuned`` loops at once in two processes, each over half the images: what the
  machine's two cores give the bare loop (they share memory bandwidth and caches), so the
  ceiling of the Dask path's 2-worker scaling on this machine;
- ``dask-1w`` / ``dask-2w``: :func:`medsyn_dask.features.extract_features` on a LocalCluster
  with 1 and 2 single-thread worker processes, writing a fresh Zarr store each time (listing,
  model loading, Zarr writes and completion markers included; cluster start-up excluded).

Ratios: Dask overhead = 1 - rate(dask-1w) / rate(dataloader) (target < 10%); scaling =
rate(dask-2w) / rate(dask-1w) (target >= 1.8), next to the bare loop's rate(pair) /
rate(tuned). Wall-clock rates need an otherwise idle machine with at least 3 cores (driver
+ scheduler beside 2 workers); the CPU milliseconds per image, summed over all processes,
also show the Dask overhead on a busy machine; ``others`` is how many cores the machine's
other processes used meanwhile (median [min-max] over the cells): a shared machine's load
shows there. With ``--repeats R`` the cells are run R times, interleaved; the table shows
medians and a line per model the spread (min-max) of the rates.
Run: ``python benchmarks/bench_extract.py [--repeats 3]``; ``--quick`` (200 images, the
``pixels`` model) checks that the benchmark runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    QUICK_NOTE,
    OtherLoad,
    Spread,
    local_cluster,
    quick_note,
    run_isolated,
)


def write_images(root: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` grayscale PNGs in two class folders: blurred blobs plus noise (compressible)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
        img = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)) * 200
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(cls / f"{i:05d}.png")


class SmallCNN(nn.Module):
    """Four strided 3x3 convolutions and a global average: 64 features per image."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [1, 16, 32, 64, 64]
        for cin, cout in zip(channels, channels[1:], strict=False):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class Cell:
    """One timed run: images per second of wall time, and CPU milliseconds per image summed
    over every process involved (driver with its in-process scheduler, and the workers);
    ``other``: cores that other processes of the machine used meanwhile (:class:`OtherLoad`);
    ``images``: how many it read (the loop's cells)."""

    rate: float
    cpu_ms: float
    other: float = 0.0
    images: int = 0


def dataloader_cell(
    root: str, model: str, resolution: int, batch_size: int, part: tuple[int, int] = (0, 1)
) -> Cell:
    """The loop over the images of ``root`` (``part`` = (i, parts): every parts-th image from
    the i-th, one process's share when several run at once)."""
    from medsyn_dask.features import create_extractor
    from medsyn_dask.sources import list_images, preprocess, read_image

    class Images(torch.utils.data.Dataset):
        def __init__(self, paths: tuple[str, ...]) -> None:
            self.paths = paths

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(preprocess(read_image(self.paths[i]), resolution, 1))

    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    paths = list_images(root).paths[part[0] :: part[1]]
    extractor = create_extractor(model)
    loader = torch.utils.data.DataLoader(Images(paths), batch_size=batch_size, num_workers=0)
    feats = np.concatenate([extractor(batch) for batch in loader])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(feats) == len(paths)
    return Cell(len(paths) / elapsed, 1000 * cpu / len(paths), images=len(paths))


@contextmanager
def worker_environment() -> Iterator[None]:
    """The workers' allocator environment, inherited by the processes spawned meanwhile."""
    from medsyn_dask.cluster.local import WORKER_ENVIRON

    # MALLOC_TRIM_THRESHOLD_ as a nanny sets it: relax_malloc_trim then tunes it as on a worker.
    environ = {**WORKER_ENVIRON, "MALLOC_TRIM_THRESHOLD_": "65536"}
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tuned_cell(root: str, model: str, resolution: int, batch_size: int) -> Cell:
    """:func:`dataloader_cell` in a fresh process with the workers' allocator set-up."""
    with worker_environment():
        out = run_isolated(_tuned_loop, root, model, resolution, batch_size)
    if "error" in out:
        raise RuntimeError(out["error"])
    return Cell(out["rate"], out["cpu_ms"])


def _tuned_loop(
    root: str, model: str, resolution: int, batch_size: int, part=(0, 1), barrier=None
) -> dict:
    from medsyn_dask.cluster import relax_malloc_trim

    relax_malloc_trim()
    if barrier is not None:  # the processes of a pair start their loops together
        _import_torch()
        barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes
    cell = dataloader_cell(root, model, resolution, batch_size, part)
    end = time.perf_counter()
    return {**asdict(cell), "start": start, "end": end}


def pair_cell(root: str, model: str, resolution: int, batch_size: int) -> Cell:
    """Two :func:`tuned_cell` loops at once in two fresh processes, each over half the images:
    what two cores of this machine give the bare loop (memory bandwidth and caches are shared),
    the ceiling of the Dask path's 2-worker scaling. Rate: all images over the time from the
    first start to the last end."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    args = (root, model, resolution, batch_size)
    procs = [ctx.Process(target=_pair_child, args=(queue, args, (i, 2), barrier)) for i in range(2)]
    with worker_environment():
        for proc in procs:
            proc.start()
    outs = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    images = sum(o["images"] for o in outs)
    cpu_ms = sum(o["cpu_ms"] * o["images"] for o in outs) / images
    return Cell(images / wall, cpu_ms)


def _pair_child(queue, args: tuple, part: tuple[int, int], barrier) -> None:
    queue.put(_tuned_loop(*args, part, barrier))


def dask_cell(
    root: str,
    model: str,
    resolution: int,
    batch_size: int,
    workers: int,
    scratch: Path,
    partition_size: int | None = None,
) -> Cell:
    from medsyn_dask.features import extract_features

    store = scratch / f"bench-{workers}w.zarr"
    shutil.rmtree(store, ignore_errors=True)
    with local_cluster(workers) as client:
        client.run(_import_torch)  # the imports the baseline's process has made before timing
        worker_cpu = sum(client.run(time.process_time).values())
        start, cpu = time.perf_counter(), time.process_time()
        result = extract_features(
            root,
            str(store),
            "bench",
            model,
            resolution=resolution,
            batch_size=batch_size,
            partition_size=partition_size,
            client=client,
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        cpu += sum(client.run(time.process_time).values()) - worker_cpu
    assert result.n_images > 0 and result.n_bad == 0
    return Cell(result.n_images / elapsed, 1000 * cpu / result.n_images)


def _import_torch() -> None:
    """Import torch and the extraction tasks (a worker imports them at its first extraction
    task; the cluster start-up, with its imports, is not timed)."""
    import torch  # noqa: F401

    import medsyn_dask.features.tasks  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="image side (pixels)")
    parser.add_argument("--resolution", type=int, default=256, help="preprocessing resolution")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--partition-size", type=int, help="images per task (default: auto)")
    parser.add_argument("--models", default="pixels,small-cnn", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="median of R runs per cell")
    parser.add_argument(
        "--quick", action="store_true", help="200 images, pixels only: checks that it runs"
    )
    args = parser.parse_args()
    quick_note(args.quick)
    if args.quick:
        args.n_images, args.models = 200, "pixels"

    scratch = Path(tempfile.mkdtemp(prefix="medsyn-bench-"))
    try:
        root = scratch / "images"
        write_images(root, args.n_images, args.size)
        cnn = scratch / "small_cnn.pt"
        torch.jit.save(torch.jit.script(SmallCNN().eval()), str(cnn))
        models = {"pixels": "pixels", "small-cnn": f"torchscript:{cnn}"}
        print(
            f"{args.n_images} PNGs of {args.size}x{args.size}, resolution {args.resolution}, "
            f"batch {args.batch_size}, {os.cpu_count()} CPUs; median of {args.repeats}"
        )
        print(
            f"{'model':<10} {'dataloader':>10} {'dask-1w':>8} {'dask-2w':>8} {'overhead':>8} "
            f"{'2w/1w':>6} | {'CPU ms/image: dl':>16} {'1w':>6} {'2w':>6} {'CPU overhead':>12}"
            "  others (cores)"
        )
        for label in args.models.split(","):
            model = models[label]
            cells: dict[str, list[Cell]] = {"dl": [], "tuned": [], "pair": [], "1w": [], "2w": []}
            for _ in range(args.repeats):  # interleaved, so that slow spells hit all three
                r = (str(root), model, args.resolution, args.batch_size)
                for key, run in (
                    ("dl", partial(dataloader_cell, *r)),
                    ("tuned", partial(tuned_cell, *r)),
                    ("pair", partial(pair_cell, *r)),
                    ("1w", partial(dask_cell, *r, 1, scratch, args.partition_size)),
                    ("2w", partial(dask_cell, *r, 2, scratch, args.partition_size)),
                ):
                    with OtherLoad() as load:
                        cell = run()
                    cells[key].append(replace(cell, other=load.cores))
            rates = {k: Spread(tuple(c.rate for c in v)) for k, v in cells.items()}
            rate = {k: r.median for k, r in rates.items()}
            cpu = {k: Spread(tuple(c.cpu_ms for c in v)).median for k, v in cells.items()}
            others = Spread(tuple(c.other for v in cells.values() for c in v))
            print(
                f"{label:<10} {rate['dl']:>10.1f} {rate['1w']:>8.1f} {rate['2w']:>8.1f} "
                f"{1 - rate['1w'] / rate['dl']:>8.1%} {rate['2w'] / rate['1w']:>6.2f} | "
                f"{cpu['dl']:>16.2f} {cpu['1w']:>6.2f} {cpu['2w']:>6.2f} "
                f"{cpu['1w'] / cpu['dl'] - 1:>12.1%}  {others.format('.1f')}",
                flush=True,
            )
            print(
                f"{'':<10} loop tuned as the workers: {rate['tuned']:.1f} img/s, "
                f"{cpu['tuned']:.2f} CPU ms/image; Dask 1 worker's overhead against it "
                f"{1 - rate['1w'] / rate['tuned']:.1%}",
                flush=True,
            )
            print(
                f"{'':<10} two tuned loops at once (half the images each): {rate['pair']:.1f} "
                f"img/s, {rate['pair'] / rate['tuned']:.2f}x one loop: the machine's 2-core "
                f"ceiling for dask-2w / dask-1w ({rate['2w'] / rate['1w']:.2f}x)",
                flush=True,
            )
            if args.repeats > 1:
                spread = ", ".join(f"{k} {r.format('.1f')}" for k, r in rates.items())
                print(f"{'':<10} images/s median [min-max]: {spread}", flush=True)
        if args.quick:
            print(QUICK_NOTE)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
