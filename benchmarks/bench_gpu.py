"""The GPU paths on a CUDA machine, each against its CPU baseline on the same machine, in one run.

1. ``engine``: :func:`medsyn_dask.evaluate_features` (``compute_fid=False``, NumPy features in
   this process) with ``backend="auto"`` (the GEMMs on the GPU, the bounds and selections on
   the CPU threads) against the same call with ``backend="numpy"`` (all on the CPU) and
   faiss-cpu ``IndexFlatL2`` on every core (k+1-NN of reals + 1-NN of synthetics), isotropic
   Gaussian features (the hard family), N = M and D as the grid says. The GPU's answer must
   equal the CPU engine's to the last bit (radii, every label, nearest distances): checked.
2. ``fid``: FID's linear algebra at D = 2 048 (the real side's ``eigh``, then the group's) on
   the GPU (cuSOLVER, float64: the singular-value route) against the CPU's eigenvalue route
   (LAPACK through SciPy) and pytorch-fid's ``sqrtm`` way; each value against the
   singular-value formula in SciPy (see :func:`medsyn_dask.metrics.fid_linalg.trace_sqrt_product`).
3. ``extract``: :func:`medsyn_dask.features.extract_features` of a CNN (a ResNet-50 with one
   input channel from torchvision when it imports, else a small CNN; TorchScript, random
   weights) on the embedded LocalCluster (its default worker count, each worker's model on the
   GPU) against a bare torch loop: a ``DataLoader`` with as many decoding processes feeding one
   model on the GPU, the same reads, preprocessing and batch size.

Every cell runs ``--repeats`` times after one untimed run; the table shows median [min-max].
Without a GPU the engine's torch path and the extraction run on torch's CPU kernels: the
benchmark then only checks that it runs (``--quick``).

4. ``scores`` (not in the default parts): the GPU engine with its score blocks left on the
   device (the selections there, :mod:`medsyn_dask.neighbours.device_scores`, and the
   runner's larger blocks on fewer threads) against the same engine with the scores copied
   to the host and the CPU's block layout (its earlier way), beside the CPU engine and
   faiss-cpu, on the engine's grid, in one process; answers checked identical.
5. ``device-layouts`` (not in the default parts): the GPU engine with its scores on the device
   under several block sizes and thread counts (DEVICE_LAYOUTS), against the scores copied to
   the host, on the engine's grid, in one process; answers checked identical.
6. ``layout`` (not in the default parts): the in-process runner's block layout against a block
   per thread (its earlier layout), on the CPU and the GPU, beside faiss-cpu, in one process.

Run:  python benchmarks/bench_gpu.py [--quick] [--grid N:D,...] [--json PATH]
      [--parts engine,fid,extract,scores,device-layouts,layout]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    QUICK_NOTE,
    Spread,
    jsonable,
    local_cluster,
    quick_note,
    repeat,
    timed,
)
from _engine import NEAREST_K, SEED, gaussian_features, timed_engine  # noqa: E402
from baselines import _faiss_search  # noqa: E402
from bench_extract import SmallCNN, write_images  # noqa: E402

from medsyn_dask.cluster import default_worker_count  # noqa: E402
from medsyn_dask.metrics import fid_linalg  # noqa: E402
from medsyn_dask.neighbours import euclidean, layout, local  # noqa: E402


def device_line() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = "no CUDA device (torch's CPU kernels)"
    return f"{name}; torch {torch.__version__}; {os.cpu_count()} CPUs"


def engine_gpu_backend() -> str:
    """The engine's backend for the GPU cells: "auto" (a GPU's torch) where CUDA is present,
    else "torch" on the CPU (the runs then only check that the path works)."""
    return "auto" if torch.cuda.is_available() else "torch"


def engine_rows(grid: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Seconds of the engine on the GPU and on the CPU and of faiss-cpu per (N, D)."""
    import faiss

    gpu_backend = engine_gpu_backend()
    rows = []
    for n, dim in grid:
        real, synth = gaussian_features(n, dim)
        run = {b: timed_engine(real, synth, b, repeats) for b in (gpu_backend, "numpy")}
        (gpu, gpu_s), (cpu, cpu_s) = run[gpu_backend], run["numpy"]
        _, faiss_s = repeat(_faiss_search, repeats, real, synth, NEAREST_K, 0.05, warmup=True)
        row = {
            "n": n,
            "dim": dim,
            "gpu": gpu_s.to_dict(),
            "cpu": cpu_s.to_dict(),
            "faiss": faiss_s.to_dict(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "identical": same_answer(gpu, cpu),
        }
        print(
            f"engine N = M = {n}, D = {dim}: GPU {gpu_s.format('.3f')} s, CPU engine "
            f"{cpu_s.format('.3f')} s, faiss-cpu {faiss_s.format('.3f')} s; faiss/GPU "
            f"{faiss_s.median / gpu_s.median:.2f}x, CPU/GPU {cpu_s.median / gpu_s.median:.2f}x; "
            f"GPU answer identical to the CPU engine's: {row['identical']}",
            flush=True,
        )
        rows.append(row)
    return rows


def scores_rows(grid: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Seconds of the GPU engine with its scores left on the device (the selections there)
    and copied to the host (the selections on the CPU threads), of the CPU engine and of
    faiss-cpu, in this process; every answer compared with the CPU engine's."""
    gpu_backend = engine_gpu_backend()
    rows = []
    for n, dim in grid:
        real, synth = gaussian_features(n, dim)
        _, faiss_s = repeat(_faiss_search, repeats, real, synth, NEAREST_K, 0.05, warmup=True)
        cpu, cpu_s = timed_engine(real, synth, "numpy", repeats)
        device, device_s = timed_engine(real, synth, gpu_backend, repeats)
        with host_scores():  # the earlier GPU path
            host, host_s = timed_engine(real, synth, gpu_backend, repeats)
        row = {
            "n": n,
            "dim": dim,
            "faiss": faiss_s.to_dict(),
            "cpu": cpu_s.to_dict(),
            "gpu_device_scores": device_s.to_dict(),
            "gpu_host_scores": host_s.to_dict(),
            "identical": same_answer(device, cpu) and same_answer(host, cpu),
        }
        print(
            f"scores N = M = {n}, D = {dim}: GPU, scores on the device {device_s.format('.3f')} s"
            f", copied to the host {host_s.format('.3f')} s; CPU engine {cpu_s.format('.3f')} s"
            f"; faiss-cpu {faiss_s.format('.3f')} s; host/device "
            f"{host_s.median / device_s.median:.2f}x, faiss/device "
            f"{faiss_s.median / device_s.median:.2f}x, CPU/device "
            f"{cpu_s.median / device_s.median:.2f}x; identical answers: {row['identical']}",
            flush=True,
        )
        rows.append(row)
    return rows


def host_scores():
    """The GPU engine's earlier way while in force: scores copied to the host, the CPU's block
    layout (:func:`medsyn_dask.neighbours.euclidean.scores_on_device` false)."""
    return mock.patch.object(euclidean, "_scores_stay", lambda device: False)


#: (rows per block at most, threads) of the runner with its scores on the GPU, as
#: ``device-layouts`` compares them (:func:`medsyn_dask.neighbours.layout.device_layout`).
DEVICE_LAYOUTS = [(2048, 16), (4096, 8), (8192, 8), (8192, 4), (10240, 4)]


def device_layout_rows(grid: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Seconds of the GPU engine with its scores on the device under each of DEVICE_LAYOUTS,
    and with the scores copied to the host (the CPU's layout), in this process; answers
    compared with the first."""
    gpu_backend = engine_gpu_backend()
    rows = []
    for n, dim in grid:
        real, synth = gaussian_features(n, dim)
        with host_scores():
            first, host_s = timed_engine(real, synth, gpu_backend, repeats)
        row, same = {"n": n, "dim": dim, "host": host_s.to_dict()}, True
        for size, threads in DEVICE_LAYOUTS:

            def fixed(block_size: int, cores: int, size=size, threads=threads):
                return size, min(threads, cores)

            with mock.patch.object(local, "device_layout", fixed):
                result, spread = timed_engine(real, synth, gpu_backend, repeats)
            row[f"{size} rows, {threads} threads"] = spread.to_dict()
            same = same and same_answer(result, first)
        row["identical"] = same
        print(
            f"device layouts N = M = {n}, D = {dim}: scores copied to the host "
            f"{host_s.format('.3f')} s; on the device: "
            + ", ".join(f"{k} {v['median']:.3f} s" for k, v in row.items() if "rows" in k)
            + f"; identical answers: {same}",
            flush=True,
        )
        rows.append(row)
    return rows


def one_block_per_thread(n: int, block_size: int, n_threads: int) -> list[int]:
    """The runner's earlier layout (a block per thread), the baseline of ``layout_rows``."""
    rows = min(block_size, layout.LOCAL_BLOCK, max(layout.MIN_LOCAL_BLOCK, -(-n // n_threads)))
    return layout._equal_starts(n, rows, lambda count: count % n_threads == 0)


def layout_rows(grid: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Seconds of the engine (CPU and GPU) with the runner's layout and with a block per
    thread, in this process, and of faiss-cpu; every answer compared with the first."""
    backends = ["numpy", engine_gpu_backend()]
    rows = []
    for n, dim in grid:
        real, synth = gaussian_features(n, dim)
        _, faiss_s = repeat(_faiss_search, repeats, real, synth, NEAREST_K, 0.05, warmup=True)
        row, answers = {"n": n, "dim": dim, "faiss": faiss_s.to_dict()}, []
        for name, starts in (("per-thread", one_block_per_thread), ("pairs", local.block_starts)):
            with mock.patch.object(local, "block_starts", starts):
                for backend in backends:
                    result, spread = timed_engine(real, synth, backend, repeats)
                    row[f"{name}-{backend}"] = spread.to_dict()
                    answers.append(result)
        row["identical"] = all(same_answer(a, answers[0]) for a in answers)
        print(
            f"layout N = M = {n}, D = {dim} on {local.threads()} threads: "
            + ", ".join(f"{k} {v['median']:.3f} s" for k, v in row.items() if isinstance(v, dict))
            + f"; identical answers: {row['identical']}",
            flush=True,
        )
        rows.append(row)
    return rows


def same_answer(a, b) -> bool:
    """The two results to the last bit: radii, per-image tables, scores."""
    return (
        np.array_equal(a.radius_k, b.radius_k)
        and np.array_equal(a.radius_1, b.radius_1)
        and a.per_synthetic.equals(b.per_synthetic)
        and a.per_real.equals(b.per_real)
        and (a.fidelity, a.privacy) == (b.fidelity, b.privacy)
    )


def fid_row(dim: int, n: int, repeats: int) -> dict:
    """Seconds of the eigenvalue route on the GPU and on the CPU, and of ``sqrtm``."""
    rng = np.random.default_rng(SEED)
    real, synth = (
        rng.standard_normal((n, dim)) @ rng.uniform(0.5, 1.5, (dim, dim)) / np.sqrt(dim) + shift
        for shift in (0.0, 0.05)
    )
    fits = [fid_linalg.GaussianFit(x.mean(axis=0), np.cov(x, rowvar=False)) for x in (real, synth)]

    def route(backend: str) -> float:
        factor = fid_linalg.sqrt_factor(fits[0].cov, backend=backend)
        tr = fid_linalg.trace_sqrt_product(factor, fits[1].cov, backend=backend)
        diff = fits[0].mean - fits[1].mean
        return float(diff @ diff + np.trace(fits[0].cov) + np.trace(fits[1].cov) - 2 * tr)

    gpu_backend = engine_gpu_backend()
    gpu, gpu_s = repeat(route, repeats, gpu_backend, warmup=True)
    cpu, cpu_s = repeat(route, repeats, "numpy", warmup=True)
    ref, ref_s = timed(fid_linalg.frechet_distance_sqrtm, *fits)
    exact = singular_value_fid(*fits)
    off = {k: abs(v - exact) / abs(exact) for k, v in (("gpu", gpu), ("cpu", cpu), ("sqrtm", ref))}
    print(
        f"FID D = {dim}: GPU route {gpu_s.format('.3f')} s, CPU route {cpu_s.format('.3f')} s, "
        f"pytorch-fid's sqrtm {ref_s:.3f} s; sqrtm/GPU {ref_s / gpu_s.median:.1f}x, CPU/GPU "
        f"{cpu_s.median / gpu_s.median:.1f}x; relative difference from the singular-value "
        f"reference (SciPy, CPU): GPU {off['gpu']:.1e}, CPU {off['cpu']:.1e}, "
        f"sqrtm {off['sqrtm']:.1e}; GPU-sqrtm {abs(gpu - ref) / abs(ref):.1e}",
        flush=True,
    )
    return {
        "dim": dim,
        "gpu": gpu_s.to_dict(),
        "cpu": cpu_s.to_dict(),
        "sqrtm_seconds": ref_s,
        "values": {"gpu": gpu, "cpu": cpu, "sqrtm": ref, "singular_values": exact},
    }


def singular_value_fid(real: fid_linalg.GaussianFit, synth: fid_linalg.GaussianFit) -> float:
    """FID with ``Tr sqrt(C_r C_s)`` as the sum of the singular values of ``L_s^T L_r`` in
    SciPy (the GPU route's formula on the CPU): the reference of the comparison."""
    from scipy import linalg

    factors = [fid_linalg.sqrt_factor(f.cov, backend="numpy") for f in (real, synth)]
    tr = linalg.svd(factors[1].T @ factors[0], compute_uv=False).sum()
    diff = real.mean - synth.mean
    return float(diff @ diff + np.trace(real.cov) + np.trace(synth.cov) - 2 * tr)


def cnn_file(folder: Path) -> tuple[Path, str]:
    """A TorchScript CNN with one input channel: torchvision's ResNet-50 when it imports."""
    torch.manual_seed(0)
    try:
        from torchvision.models import resnet50

        model, name = resnet50(weights=None), "ResNet-50 (1 channel)"
        model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        model.fc = torch.nn.Identity()
    except ImportError:
        model, name = SmallCNN(), "small CNN"
    path = folder / "cnn.pt"
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path, name


def bare_loop(root: str, model_path: Path, resolution: int, batch: int, workers: int) -> int:
    """The images of ``root`` through the model in one process: ``workers`` DataLoader
    processes read and preprocess, the model runs on the GPU (or the CPU); features kept."""
    from medsyn_dask.sources import list_images, preprocess, read_image

    class Images(torch.utils.data.Dataset):
        def __init__(self, paths) -> None:
            self.paths = paths

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(preprocess(read_image(self.paths[i]), resolution, 1))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.jit.load(str(model_path), map_location=device).eval()
    paths = list_images(root).paths
    loader = torch.utils.data.DataLoader(
        Images(paths), batch_size=batch, num_workers=workers, pin_memory=device == "cuda"
    )
    out = []
    with torch.inference_mode():
        for x in loader:
            out.append(model(x.to(device, non_blocking=True)).flatten(1).cpu().numpy())
    return len(np.concatenate(out))


def extract_row(n_images: int, repeats: int, resolution: int = 256, batch: int = 32) -> dict:
    from medsyn_dask.features import extract_features

    scratch = Path(tempfile.mkdtemp(prefix="medsyn-bench-gpu-"))
    try:
        root = scratch / "images"
        write_images(root, n_images, 256)
        model_path, name = cnn_file(scratch)
        workers = default_worker_count()
        loop_n, loop_s = repeat(
            bare_loop, repeats, str(root), model_path, resolution, batch, workers, warmup=True
        )
        with local_cluster(workers) as client:

            def dask_run() -> int:
                store = scratch / "features.zarr"
                shutil.rmtree(store, ignore_errors=True)
                result = extract_features(
                    str(root),
                    str(store),
                    "bench",
                    f"torchscript:{model_path}",
                    resolution=resolution,
                    batch_size=batch,
                    client=client,
                )
                return result.n_images

            dask_n, dask_s = repeat(dask_run, repeats, warmup=True)
            devices = set(client.run(_worker_device).values())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert loop_n == dask_n == n_images
    loop_rate = Spread(tuple(n_images / s for s in loop_s.values))
    dask_rate = Spread(tuple(n_images / s for s in dask_s.values))
    print(
        f"extraction, {name}, {n_images} PNGs at {resolution} px, batch {batch}: medsyn-dask "
        f"({workers} workers, model on {sorted(devices)}) {dask_rate.format('.0f')} img/s, bare "
        f"loop ({workers} loader processes, one model) {loop_rate.format('.0f')} img/s; "
        f"ratio {dask_rate.median / loop_rate.median:.2f}",
        flush=True,
    )
    return {
        "model": name,
        "images": n_images,
        "workers": workers,
        "worker_devices": sorted(devices),
        "dask_rate": dask_rate.to_dict(),
        "loop_rate": loop_rate.to_dict(),
    }


def _worker_device() -> str:
    """ "cuda" where this worker has used the GPU (a CUDA context made), else "cpu"."""
    module = sys.modules.get("torch")
    return "cuda" if module is not None and module.cuda.is_initialized() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    parser.add_argument("--parts", default="engine,fid,extract")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--grid",
        help="the engine's cells N:D,N:D,... (default: 5000 and 20000 x 512 and 2048)",
    )
    args = parser.parse_args()
    quick_note(args.quick)
    print(device_line(), flush=True)
    grid = [(1000, 128)] if args.quick else [(5000, 512), (5000, 2048), (20000, 512), (20000, 2048)]
    if args.grid:
        grid = [tuple(int(v) for v in cell.split(":")) for cell in args.grid.split(",")]
    parts = args.parts.split(",")
    out: dict = {"device": device_line()}
    if "engine" in parts:
        out["engine"] = engine_rows(grid, 1 if args.quick else args.repeats)
    if "scores" in parts:
        out["scores"] = scores_rows(grid, 1 if args.quick else args.repeats)
    if "device-layouts" in parts:
        out["device_layouts"] = device_layout_rows(grid, 1 if args.quick else args.repeats)
    if "layout" in parts:
        small = (
            [(1000, 128)] if args.quick else [(2000, 512), (5000, 512), (5000, 2048), (20000, 512)]
        )
        out["layout"] = layout_rows(small, 1 if args.quick else args.repeats)
    if "fid" in parts:
        out["fid"] = fid_row(256 if args.quick else 2048, 600 if args.quick else 5000, args.repeats)
    if "extract" in parts:
        out["extract"] = extract_row(200 if args.quick else 4000, 1 if args.quick else args.repeats)
    if args.json:
        args.json.write_text(json.dumps(jsonable(out), indent=1))
    if args.quick:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
