"""The whole job the original package's way, for ``bench_job.py``: one process, whole matrices.

In one spawned process (``_common.run_isolated``): a plain ``torch.utils.data.DataLoader`` loop
(batch 32, ``num_workers=0``, every image kept) over each set (PIL open, ``convert("L")``,
bilinear resize to 256, ``ToTensor`` + ``Normalize(0.5, 0.5)`` arithmetic,
``adaptive_avg_pool2d`` to 32 x 32 = the ``pixels`` features); then scikit-learn
``pairwise_distances`` on whole matrices: R x R with ``np.partition`` for the k+1 smallest
(radii), and per group R x S compared with the radii, plus the feature STD, the copy margin and
FID (``np.cov`` + ``scipy.linalg.sqrtm``, as pytorch-fid, which the reference used); then the
mean image per group and class in NumPy (PIL as uint8 RGB, float64 sum, ``/ n``,
``astype(uint8)``; cv2 is not installed) and its PNG size; then the outputs (mean PNGs,
per-image CSV, JSON). Its time per stage and its RSS high-water mark (``ru_maxrss``) after each
stage.

``threads`` None runs it with the process's own threading (torch and BLAS on all cores, as a
user would run it; distributed's ``OMP_NUM_THREADS=1`` for its workers is undone first), a
number limits torch and BLAS to that many threads.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from _common import blas_threads, run_isolated

#: The settings both sides of ``bench_job.py`` run with.
MODEL, RESOLUTION, NEAREST_K, THRESHOLD, BATCH = "pixels", 256, 5, 0.05, 32
#: Thread limits that distributed writes into this process's environment (OMP_NUM_THREADS=1 and
#: friends, for its workers) and that a spawned baseline would inherit: restored before it runs.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
START_ENV = {k: os.environ.get(k) for k in THREAD_VARS}


def baseline_job(data: str, groups: list[str], out: str, threads: int | None) -> dict:
    """DataLoader + whole-matrix scikit-learn + NumPy mean images, timed per stage."""
    start = time.perf_counter()
    import pandas as pd
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from scipy import linalg
    from sklearn.metrics import pairwise_distances

    imports_s = time.perf_counter() - start
    if threads:
        torch.set_num_threads(threads)
    stages: dict[str, dict] = {}

    def done(name: str, t0: float) -> None:
        stages[name] = {"seconds": time.perf_counter() - t0,
                        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}

    class Images(torch.utils.data.Dataset):
        def __init__(self, paths: list[str]) -> None:
            self.paths = paths

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with Image.open(self.paths[i]) as img:
                img = img.convert("L").resize((RESOLUTION, RESOLUTION), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.array(img, copy=True))[None].float().div(255)  # ToTensor
            return x.sub_(0.5).div_(0.5)  # Normalize(mean=0.5, std=0.5)

    t0 = time.perf_counter()
    roots = {"real": Path(data) / "real", **{g: Path(data) / "synthetic" / g for g in groups}}
    paths = {n: sorted(str(p) for p in r.glob("*/*.png")) for n, r in roots.items()}
    done("listing", t0)

    t0 = time.perf_counter()
    feats, per_set = {}, {}
    with torch.no_grad():
        for name, p in paths.items():
            t1 = time.perf_counter()
            loader = torch.utils.data.DataLoader(Images(p), batch_size=BATCH, num_workers=0)
            feats[name] = np.concatenate(
                [F.adaptive_avg_pool2d(b, 32).flatten(1).numpy() for b in loader])
            per_set[name] = time.perf_counter() - t1
    done("extraction", t0)
    stages["extraction"]["per_set_s"] = per_set

    t0 = time.perf_counter()
    real = feats["real"]
    d_rr = pairwise_distances(real, real)
    part = np.partition(d_rr, [1, NEAREST_K], axis=1)
    radius_1, radius_k = part[:, 1], part[:, NEAREST_K]
    del d_rr, part
    done("radii", t0)

    scores, fid_s = {}, {}
    mu_r = cov_r = None
    for g in groups:
        t0 = time.perf_counter()
        synth = feats[g]
        std = float(synth.astype(np.float64).std(axis=0, ddof=0).mean())
        margin = 0.0 if std > THRESHOLD else THRESHOLD
        d_rs = pairwise_distances(real, synth)
        is_real = (d_rs < radius_k[:, None]).any(axis=0)
        is_copy = (d_rs < (radius_1 + margin)[:, None]).any(axis=0)
        nearest = d_rs.argmin(axis=0)
        del d_rs
        t1 = time.perf_counter()
        if mu_r is None:
            mu_r, cov_r = real.mean(axis=0, dtype=np.float64), np.cov(real, rowvar=False)
        fid = frechet(mu_r, cov_r, synth.mean(axis=0, dtype=np.float64),
                      np.cov(synth, rowvar=False), linalg)
        fid_s[g] = time.perf_counter() - t1
        sets = np.where(is_copy, "copy", np.where(is_real, "real", "non-real"))
        scores[g] = {"fidelity": float(np.mean(is_real)), "privacy": 1.0 - float(np.mean(is_copy)),
                     "precision_privacy": float(np.mean(is_real & ~is_copy)),
                     "copy_margin": margin, "std": std, "fid": fid,
                     "sets": {k: int((sets == k).sum()) for k in ("copy", "real", "non-real")},
                     "_sets": sets, "_nearest": nearest}
        done(f"real x {g}", t0)

    t0 = time.perf_counter()
    means, sizes = {}, {}
    for g in groups:
        per_cls = {}
        for cls in sorted({Path(p).parent.name for p in paths[g]}):
            total, n = None, 0
            for p in paths[g]:
                if Path(p).parent.name != cls:
                    continue
                with Image.open(p) as img:
                    a = np.asarray(img.convert("RGB"), dtype=np.uint8)
                total = a.astype(np.float64) if total is None else total + a
                n += 1
            per_cls[cls] = (total / n).astype(np.uint8)
        per_cls["all_classes"] = np.mean(
            np.stack(list(per_cls.values())).astype(np.float64), axis=0).astype(np.uint8)
        means[g] = per_cls
        sizes[g] = len(png_bytes(per_cls["all_classes"], Image))
    done("variety", t0)

    t0 = time.perf_counter()
    root = Path(out)
    for g in groups:
        (root / "mean_images" / g).mkdir(parents=True, exist_ok=True)
        for name, img in means[g].items():
            (root / "mean_images" / g / f"{name}.png").write_bytes(png_bytes(img, Image))
        sc = scores[g]
        sets = sc.pop("_sets")
        pd.DataFrame({"path": paths[g], "set": sets,
                      "nearest_real": np.asarray(paths["real"])[sc.pop("_nearest")],
                      "privacy": np.where(sets == "copy", 0, 1)}).to_csv(
            root / f"per_image_{g}.csv", index=False)
    (root / "metrics.json").write_text(json.dumps({"groups": scores, "mean_image_bytes": sizes}))
    done("writing outputs", t0)

    for g in groups:
        scores[g]["mean_image_bytes"] = sizes[g]
    return {"stages": stages, "imports_s": imports_s, "fid_s": fid_s, "scores": scores,
            "mean_images": {g: means[g]["all_classes"] for g in groups},
            "class_means": {g: {c: m for c, m in means[g].items() if c != "all_classes"}
                            for g in groups},
            "torch_threads": torch.get_num_threads(), "blas_threads": blas_threads(),
            "n_images": {n: len(p) for n, p in paths.items()}}


def frechet(mu1, sigma1, mu2, sigma2, linalg, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance``."""
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def png_bytes(image: np.ndarray, pil_image) -> bytes:
    import io

    buf = io.BytesIO()
    pil_image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def run_baseline(data: Path, groups: list[str], scratch: Path, threads: int | None) -> dict:
    """The baseline in a spawned process: ``threads`` None = the process default (all cores for
    torch and BLAS, unless the shell limits them), else torch and BLAS limited to ``threads``."""
    out = scratch / f"baseline-{threads or 'default'}"
    shutil.rmtree(out, ignore_errors=True)
    for key, value in START_ENV.items():
        if threads:
            os.environ[key] = str(threads)
        elif value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    start = time.perf_counter()
    result = run_isolated(baseline_job, str(data), groups, str(out), threads)
    if "error" in result:
        raise RuntimeError(f"baseline failed: {result['error']}")
    result["wall_s"] = time.perf_counter() - start
    return result
