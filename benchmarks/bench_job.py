"""The whole job, stage by stage: medsyn-dask on a LocalCluster against the original package's way.

One run writes phantom images (``medsyn_dask.phantoms.write_demo_dataset``: 256 x 256 8-bit
PNG, two classes; default 2 500 real and 3 synthetic groups x 2 500 images) and measures, on
the very same files:

(a) medsyn-dask on ``medsyn_dask.cluster.connect(workers=2)`` (a LocalCluster of 2 single-thread
    worker processes, started cold for each pass):

    - stage by stage: the public functions called one by one, in the order and with the
      arguments ``medsyn_dask.analyze.analyze`` uses for ``models=("pixels",)``,
      ``resolutions=(256,)``: ``check_settings`` + ``prepare_output`` (listing),
      ``extract_features`` + ``load_features`` for the real set and every group (a fresh Zarr
      store), ``real_neighbourhood``, ``evaluate_features`` per group (``reference=`` the
      radii; FID included, as in ``analyze``), ``group_variety`` (mean images), then
      ``report.write_outputs``;
    - end to end: one ``analyze(settings)`` + ``write_outputs`` call on a second cold cluster,
      with a fresh output folder and feature store (nothing reused).

    Peak memory: the summed RSS of the driver (which hosts the scheduler) and all nanny/worker
    processes, sampled every 0.2 s with psutil (``_common.TreeMemory``), per stage.

(b) the original package's way, in one spawned process (``_common.run_isolated``): a plain
    ``torch.utils.data.DataLoader`` loop (batch 32, ``num_workers=0``, every image kept) over
    each set (PIL open, ``convert("L")``, bilinear resize to 256, ``ToTensor`` + ``Normalize(0.5,
    0.5)`` arithmetic, ``adaptive_avg_pool2d`` to 32 x 32 = the ``pixels`` features); then
    scikit-learn ``pairwise_distances`` on whole matrices: R x R with ``np.partition`` for the
    k+1 smallest (radii), and per group R x S compared with the radii, plus the feature STD,
    the copy margin and FID (``np.cov`` + ``scipy.linalg.sqrtm``, as pytorch-fid, which the
    reference used: ``evaluate_features`` computes FID too); then the mean image per group and
    class in NumPy (PIL as uint8 RGB, float64 sum, ``/ n``, ``astype(uint8)``; cv2 is not
    installed) and its PNG size; then the outputs (mean PNGs, per-image CSV, JSON). Its time per
    stage and its RSS high-water mark (``ru_maxrss``) after each stage. It runs twice by default
    (``--baseline-threads default,1``): with the process's own threading (torch and BLAS on all
    cores, as a user would run it; distributed's ``OMP_NUM_THREADS=1`` for its workers is
    undone first) and limited to 1 thread (torch and BLAS). On a 2-core machine that is busy
    with anything else, the 2-thread run can be many times slower (OpenMP threads spinning on
    contended cores): compare the two, and the "others" figures.

Printed: seconds and peak GB per stage for both, the ratio baseline / medsyn-dask per stage and in
total, and a check that both give the same fidelity, privacy, precision_privacy, set counts and
copy margin per group, and the same mean images (FID: relative difference). "others" is the CPU
(in cores) that processes outside the benchmark used meanwhile: the machine may be shared.

Run:  .venv/bin/python benchmarks/bench_job.py                       # 2 500 real, 3 x 2 500
      .venv/bin/python benchmarks/bench_job.py --quick               # 200 + 3 x 200, smoke test
      .venv/bin/python benchmarks/bench_job.py --n-real 5000 --n-synthetic 5000
Images are written once under ``--data`` (default /tmp/medsyn-bench-job/data-R-S) and reused
by later runs with the same sizes. Results: printed, and benchmarks/results/job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OtherLoad, TreeMemory, run_isolated, timed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "job.json"
MODEL, RESOLUTION, NEAREST_K, THRESHOLD, BATCH = "pixels", 256, 5, 0.05, 32
GB = 1e9
#: Thread limits that distributed writes into this process's environment (OMP_NUM_THREADS=1 and
#: friends, for its workers) and that a spawned baseline would inherit: restored before it runs.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
START_ENV = {k: os.environ.get(k) for k in THREAD_VARS}


# --- Data ----------------------------------------------------------------------------------------


def per_class(n: int) -> int:
    """Images per class (2 classes) for a total of ``n``."""
    return max(1, -(-n // 2))


def make_data(root: Path, n_real: int, n_synthetic: int) -> tuple[dict, float]:
    """Write (or reuse) the phantom set; returns its description and the seconds spent."""
    from medsyn_dask.phantoms import write_demo_dataset

    params = {"n_real": per_class(n_real), "n_synthetic": per_class(n_synthetic),
              "size": RESOLUTION, "dims": 2, "seed": 0}
    marker = root / ".bench-job.json"
    if marker.exists():
        if json.loads(marker.read_text()) == params:
            return params, 0.0
        shutil.rmtree(root)  # a set this benchmark wrote, of another size
    elif root.exists() and any(root.iterdir()):
        raise SystemExit(f"--data {root} exists and was not written by this benchmark")
    start = time.perf_counter()
    write_demo_dataset(root, **params)
    marker.write_text(json.dumps(params))
    return params, time.perf_counter() - start


# --- (a) medsyn-dask -----------------------------------------------------------------------------


class Stages:
    """Seconds and peak tree RSS of named stages (``with stages("name"): ...``)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def __call__(self, name: str):
        return _Stage(self, name)


class _Stage:
    def __init__(self, owner: Stages, name: str) -> None:
        self.owner, self.name = owner, name

    def __enter__(self):
        self.mem = TreeMemory().__enter__()
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self.start
        self.mem.__exit__(*exc)
        self.owner.rows[self.name] = {"seconds": seconds, "peak_rss": self.mem.peak}


def settings_for(data: Path, groups: list[str], output: Path):
    from medsyn_dask.settings import AnalyzeSettings

    return AnalyzeSettings(
        real=str(data / "real"),
        synthetic={g: str(data / "synthetic" / g) for g in groups},
        output=str(output),
        models=(MODEL,),
        resolutions=(RESOLUTION,),
        nearest_k=NEAREST_K,
        mode_collapse_threshold=THRESHOLD,
        batch_size=BATCH,
    )


def medsyn_stages(data: Path, groups: list[str], scratch: Path, workers: int) -> dict:
    """The public functions one by one, as ``analyze`` calls them; then ``write_outputs``."""
    import functools

    from medsyn_dask.cluster import connect
    from medsyn_dask.evaluate import evaluate_features, real_neighbourhood
    from medsyn_dask.features import extract_features, load_features
    from medsyn_dask.job import AnalysisResult, metric_for
    from medsyn_dask.metrics.variety import group_variety
    from medsyn_dask.report import prepare_output, write_outputs
    from medsyn_dask.settings import check_settings
    from medsyn_dask.sources import read_image

    out = scratch / "stages"
    shutil.rmtree(out, ignore_errors=True)
    s = settings_for(data, groups, out)
    stages = Stages()
    with TreeMemory() as whole, OtherLoad() as load:
        start = time.perf_counter()
        with connect(workers=workers, quiet=True) as client:
            warm_imports(client)
            cluster_s = time.perf_counter() - start
            with stages("listing"):
                real_set, synthetic_sets = check_settings(s)
                prepare_output(s.output)
            classes = list(real_set.class_names)
            features, per_set = {}, {}
            with stages("extraction"):
                for name, root in {"real": s.real, **s.synthetic}.items():
                    t0 = time.perf_counter()
                    group = name if name == "real" else f"synthetic-{name}"
                    done = extract_features(
                        root, s.store, group, MODEL, weights=None, resolution=RESOLUTION,
                        num_channels=s.num_channels, class_names=classes, storage_options={},
                        batch_size=s.batch_size, on_bad_image=s.on_bad_image, progress=False,
                    )
                    features[name] = load_features(s.store, group, name=done.name,
                                                   storage_options={})
                    per_set[name] = time.perf_counter() - t0
            stages.rows["extraction"]["per_set_s"] = per_set
            real = features["real"]
            metric = metric_for(real)
            with stages("radii"):
                reference = real_neighbourhood(real.features, metric=metric,
                                               nearest_k=s.nearest_k, block_size=s.block_size,
                                               progress=False)
            scores = {}
            for g in groups:
                with stages(f"real x {g}"):
                    scores[g] = evaluate_features(
                        real.features, features[g].features, metric=metric,
                        nearest_k=s.nearest_k, mode_collapse_threshold=s.mode_collapse_threshold,
                        block_size=s.block_size, reference=reference, progress=False,
                    )
            with stages("variety"):
                read = functools.partial(read_image, storage_options={})
                paths = {
                    g: {c: [p for p, k in zip(d.paths, d.classes, strict=True) if k == c]
                        for c in d.class_names}
                    for g, d in synthetic_sets.items()
                }
                variety = group_variety(paths, read, codec=s.codec)
            result = AnalysisResult(
                settings=s, real=real, synthetic={g: features[g] for g in groups},
                scores=scores, variety=variety,
                statistics={(MODEL, RESOLUTION): {g: {"fid": v.fid, "std": v.std}
                                                  for g, v in scores.items()}},
                multiscale=None,
                bad_images={n: list(f.provenance.get("bad_images", []))
                            for n, f in features.items()},
            )
            with stages("writing outputs"):
                write_outputs(result, s.output)
    return {"stages": stages.rows, "cluster_start_s": cluster_s, "peak_rss": whole.peak,
            "other_load": load.cores, "scores": summarise(result),
            "mean_images": {g: variety.all_classes[g] for g in groups},
            "class_means": variety.class_means, "n_images": n_images(result)}


def medsyn_end_to_end(data: Path, groups: list[str], scratch: Path, workers: int) -> dict:
    """``check_settings``, ``prepare_output``, then ``analyze`` + ``write_outputs`` (as the CLI)."""
    from medsyn_dask.cluster import connect
    from medsyn_dask.job import analyze
    from medsyn_dask.report import prepare_output, write_outputs
    from medsyn_dask.settings import check_settings

    out = scratch / "end-to-end"
    shutil.rmtree(out, ignore_errors=True)
    s = settings_for(data, groups, out)
    check_settings(s)
    prepare_output(s.output)
    with TreeMemory() as whole, OtherLoad() as load:
        start = time.perf_counter()
        with connect(workers=workers, quiet=True) as client:
            warm_imports(client)
            cluster_s = time.perf_counter() - start
            with TreeMemory() as job:
                result, analyze_s = timed(analyze, s, progress=False)
                _, write_s = timed(write_outputs, result, s.output)
    return {"analyze_s": analyze_s, "write_s": write_s, "seconds": analyze_s + write_s,
            "peak_rss": job.peak, "peak_rss_with_cluster_start": whole.peak,
            "cluster_start_s": cluster_s, "other_load": load.cores, "scores": summarise(result)}


def _import_modules() -> None:
    import medsyn_dask.evaluate  # noqa: F401
    import medsyn_dask.features  # noqa: F401  (torch)
    import medsyn_dask.metrics.variety  # noqa: F401


def warm_imports(client) -> None:
    """Import medsyn-dask and torch on every worker, as the baseline does before its stages:
    both sides' imports count as start-up, not as their first stage."""
    client.run(_import_modules)


def summarise(result) -> dict:
    out = {}
    for g, sc in result.scores.items():
        out[g] = {"fidelity": sc.fidelity, "privacy": sc.privacy,
                  "precision_privacy": sc.precision_privacy, "copy_margin": sc.copy_margin,
                  "std": sc.std, "fid": sc.fid, "sets": sc.set_counts,
                  "mean_image_bytes": result.variety.sizes[g]}
    return out


def n_images(result) -> dict:
    synthetic = {g: len(f.paths) for g, f in result.synthetic.items()}
    return {"real": len(result.real.paths), **synthetic}


# --- (b) the original package's way, in a spawned process ----------------------------------------


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


def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]


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


# --- Comparison and report ----------------------------------------------------------------------


def compare(a: dict, b: dict, groups: list[str]) -> dict:
    """Per group: equality of the decisions and of the mean images; FID relative difference."""
    out = {}
    for g in groups:
        sa, sb = a["scores"][g], b["scores"][g]
        same = {k: sa[k] == sb[k] for k in ("fidelity", "privacy", "precision_privacy",
                                            "copy_margin", "sets")}
        fid_rel = (abs(sa["fid"] - sb["fid"]) / max(abs(sb["fid"]), 1e-12)
                   if sa["fid"] is not None and sb["fid"] is not None else None)
        images = np.array_equal(a["mean_images"][g], b["mean_images"][g]) and all(
            np.array_equal(a["class_means"][g][c], b["class_means"][g][c])
            for c in b["class_means"][g])
        out[g] = {"equal": same, "all_equal": all(same.values()), "mean_images_equal": images,
                  "fid_relative_difference": fid_rel}
    return out


def table_rows(a: dict, e2e: dict, bases: dict, groups: list[str], counts: dict) -> list[dict]:
    """One row per stage and the totals: medsyn-dask, then each baseline with its ratio."""
    n_syn = sum(counts[g] for g in groups)
    labels = {"listing": "listing + checks",
              "extraction": f"extraction ({counts['real'] + n_syn} images)",
              "radii": f"real radii (R={counts['real']})",
              **{f"real x {g}": f"real x {g} (S={counts[g]})" for g in groups},
              "variety": f"variety ({n_syn} images)", "writing outputs": "writing outputs"}
    rows = [{"stage": label, "medsyn": cell(a["stages"][key]),
             **{n: cell(b["stages"][key]) for n, b in bases.items()}}
            for key, label in labels.items()]
    total = {n: sum(st["seconds"] for st in b["stages"].values()) for n, b in bases.items()}
    rows.append({"stage": "sum of stages",
                 "medsyn": cell({"seconds": sum(st["seconds"] for st in a["stages"].values()),
                                 "peak_rss": max(st["peak_rss"] for st in a["stages"].values())}),
                 **{n: cell({"seconds": total[n], "peak_rss": b["peak_rss"]})
                    for n, b in bases.items()}})
    rows.append({"stage": "TOTAL: analyze + write_outputs",
                 "medsyn": cell({"seconds": e2e["seconds"], "peak_rss": e2e["peak_rss"]}),
                 **{n: cell({"seconds": total[n], "peak_rss": b["peak_rss"]})
                    for n, b in bases.items()}})
    rows.append({"stage": "start-up (cluster/spawn + imports)",
                 "medsyn": cell({"seconds": e2e["cluster_start_s"]}),
                 **{n: cell({"seconds": b["wall_s"] - total[n]}) for n, b in bases.items()}})
    rows.append({"stage": "TOTAL incl. start-up",
                 "medsyn": cell({"seconds": e2e["cluster_start_s"] + e2e["seconds"],
                                 "peak_rss": e2e["peak_rss_with_cluster_start"]}),
                 **{n: cell({"seconds": b["wall_s"], "peak_rss": b["peak_rss"]})
                    for n, b in bases.items()}})
    for r in rows:
        for n in bases:
            r[n]["ratio"] = r[n]["seconds"] / r["medsyn"]["seconds"] if r["medsyn"][
                "seconds"] > 0 else None
    return rows


def cell(stage: dict) -> dict:
    return {"seconds": stage["seconds"], "peak_rss": stage.get("peak_rss")}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def same_scores(x: dict, y: dict) -> bool:
    """Identical decisions; FID and STD (float sums whose order may vary) within 1e-6."""
    close = all(x[k] == y[k] or (x[k] is not None and y[k] is not None
                                 and abs(x[k] - y[k]) <= 1e-6 * max(abs(y[k]), 1e-12))
                for k in ("fid", "std"))
    return close and all(x[k] == y[k] for k in x if k not in ("fid", "std"))


def gb(value: int | None) -> str:
    return fmt(value and value / GB, ".2f")


def print_report(rows, a, e2e, bases, checks, groups, args) -> None:
    head = f"{'stage':36} {'medsyn-dask s':>13} {'GB':>5}"
    for n in bases:
        head += f" | {'baseline ' + n + ' s':>20} {'GB':>5} {'x':>6}"
    width = len(head)
    print("\n" + head + "\n" + "-" * width)
    for r in rows:
        if r["stage"].startswith("sum") or r["stage"].startswith("TOTAL: "):
            print("-" * width)
        m = r["medsyn"]
        line = f"{r['stage']:36} {m['seconds']:13.2f} {gb(m['peak_rss']):>5}"
        for n in bases:
            c = r[n]
            line += f" | {c['seconds']:20.2f} {gb(c['peak_rss']):>5} {fmt(c['ratio'], '.2f'):>6}"
        print(line)
    print("\nx = baseline s / medsyn-dask s (> 1: medsyn-dask faster). GB = peak RSS.")
    print(f"medsyn-dask: LocalCluster({args.workers} workers x 1 thread), started cold for each"
          f" pass (start-up = cluster start + imports on the workers); GB = driver+scheduler"
          f"+workers RSS sampled every 0.2 s. Stage pass: start-up"
          f" {a['cluster_start_s']:.1f} s, others {a['other_load']:.2f} cores; end to end:"
          f" analyze {e2e['analyze_s']:.1f} s + write_outputs {e2e['write_s']:.1f} s,"
          f" others {e2e['other_load']:.2f} cores.")
    sets = {n: f"{t:.1f}" for n, t in a["stages"]["extraction"]["per_set_s"].items()}
    print(f"medsyn-dask extraction per set (s): {sets}")
    for n, b in bases.items():
        print(f"baseline {n}: one spawned process, torch {b['torch_threads']} threads, BLAS "
              f"{b['blas_threads']} threads; GB = ru_maxrss so far; imports {b['imports_s']:.1f} s;"
              f" FID (sqrtm) inside the 'real x' rows: {sum(b['fid_s'].values()):.1f} s in all;"
              f" others {b['other_load']:.2f} cores.")
    for n, b in bases.items():
        print(f"\nsame results, medsyn-dask (m) vs baseline {n} (b):")
        print(f"{'group':10} {'fidelity m/b':>17} {'privacy m/b':>17} {'prec_priv m/b':>17} "
              f"{'copy/real/non-real':>19} {'equal':>5} {'means':>6} {'FID rel':>8} "
              f"{'PNG B m/b':>13}")
        for g in groups:
            sa, sb, c = a["scores"][g], b["scores"][g], checks[n][g]
            sets = "/".join(str(sa["sets"][k]) for k in ("copy", "real", "non-real"))
            print(f"{g:10} {sa['fidelity']:8.4f}/{sb['fidelity']:.4f} "
                  f"{sa['privacy']:8.4f}/{sb['privacy']:.4f} "
                  f"{sa['precision_privacy']:8.4f}/{sb['precision_privacy']:.4f} {sets:>19} "
                  f"{'yes' if c['all_equal'] else 'NO':>5} "
                  f"{'yes' if c['mean_images_equal'] else 'NO':>6} "
                  f"{fmt(c['fid_relative_difference'], '.1e'):>8} "
                  f"{sa['mean_image_bytes']:>6}/{sb['mean_image_bytes']}")
            if not c["all_equal"]:
                print(f"  differs: {[k for k, v in c['equal'].items() if not v]}; baseline sets "
                      f"{sb['sets']}")
    same_e2e = all(same_scores(e2e["scores"][g], a["scores"][g]) for g in groups)
    print("end-to-end analyze gives the same scores as the stage-by-stage pass (decisions"
          f" identical, FID and STD within 1e-6 relative): {same_e2e}")
    print("(equal: fidelity, privacy, precision_privacy, copy margin and set counts identical;"
          " means: per-class and all-classes mean images identical; PNG B: medsyn-dask's encoder"
          " vs Pillow's defaults.)")


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return None
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-real", type=int, default=2500, help="real images (both classes)")
    ap.add_argument("--n-synthetic", type=int, default=2500, help="images per synthetic group")
    ap.add_argument("--groups", default="memorizer,faithful,collapsed",
                    help="synthetic groups analysed (of memorizer, faithful, collapsed, poor)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="200 real, 200 per group: smoke test")
    ap.add_argument("--data", type=Path, help="image folder (written unless already there)")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/medsyn-bench-job"),
                    help="outputs and feature stores (removed at the end)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-threads", default="default,1",
                    help="baseline runs, comma-separated: 'default' (the process's own threading:"
                         " all cores) and/or a thread count for torch and BLAS")
    args = ap.parse_args()
    if args.quick:
        args.n_real, args.n_synthetic = 200, 200
    groups = [g for g in args.groups.split(",") if g]
    data = args.data or args.scratch / f"data-{args.n_real}-{args.n_synthetic}"
    runs = args.scratch / "runs"

    params, gen_s = make_data(data, args.n_real, args.n_synthetic)
    print(f"data: {data} ({params['n_real']} real and {params['n_synthetic']} per group and class,"
          f" 2 classes, {RESOLUTION} px PNG; written in {gen_s:.1f} s"
          f"{'' if gen_s else ', reused'})", flush=True)
    print("medsyn-dask, stage by stage ...", flush=True)
    a = medsyn_stages(data, groups, runs, args.workers)
    print("medsyn-dask, end to end ...", flush=True)
    e2e = medsyn_end_to_end(data, groups, runs, args.workers)
    if args.skip_baseline:
        print(json.dumps(jsonable({"stages": a["stages"], "end_to_end": e2e}), indent=1))
        return
    bases = {}
    for spec in args.baseline_threads.split(","):
        threads = None if spec == "default" else int(spec)
        name = "default" if threads is None else f"{threads}t"
        print(f"baseline {name} (spawned process) ...", flush=True)
        bases[name] = run_baseline(data, groups, runs, threads)
    checks = {n: compare(a, b, groups) for n, b in bases.items()}
    rows = table_rows(a, e2e, bases, groups, a["n_images"])
    print_report(rows, a, e2e, bases, checks, groups, args)
    shutil.rmtree(runs, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "data": {"root": str(data), **params, "groups": groups, "n_images": a["n_images"],
                 "generation_s": gen_s},
        "table": rows,
        "medsyn_stages": {k: v for k, v in a.items() if k not in ("mean_images", "class_means")},
        "medsyn_end_to_end": e2e,
        "baselines": {n: {k: v for k, v in b.items() if k not in ("mean_images", "class_means")}
                      for n, b in bases.items()},
        "checks": checks,
    }
    RESULTS.write_text(json.dumps(jsonable(payload), indent=2))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
