"""The whole job, stage by stage: medsyn-dask on a LocalCluster against the original package's way.

One run writes phantom images (``medsyn_dask.phantoms.write_demo_dataset``: 256 x 256 8-bit
PNG, two classes; default 2 500 real and 3 synthetic groups x 2 500 images) and measures, on
the very same files:

(a) medsyn-dask on ``_common.local_cluster(workers=2)`` (``medsyn_dask.cluster.connect``: a
    LocalCluster of 2 single-thread worker processes, started cold for each pass):

    - stage by stage: the job's public stage functions called one by one, as
      ``medsyn_dask.job.analyze`` calls them, for ``models=("pixels",)``,
      ``resolutions=(256,)``: ``check_settings`` + ``prepare_output`` (listing), ``extract_all``
      (a fresh Zarr store; per set; the tasks also sum the images for the mean images, as in
      ``analyze``), ``score_groups`` (the real radii, then real x each group,
      FID included), ``measure_variety`` (mean images), then ``report.write_outputs``. The
      stages inside ``extract_all`` and ``score_groups`` are split where the job announces
      them (its ``medsyn_dask.progress`` messages, ``_common.Stages.at_progress``);
    - end to end: one ``analyze(settings, datasets=...)`` + ``write_outputs`` call on a second
      cold cluster, with a fresh output folder and feature store (nothing reused).

    Peak memory: the summed RSS of the driver (which hosts the scheduler) and all nanny/worker
    processes, sampled every 0.2 s with psutil (``_common.TreeMemory``), per stage.

(b) the original package's way (``baseline_job.py``), in one spawned process: DataLoader
    features, whole-matrix scikit-learn, FID by ``sqrtm``, NumPy mean images, timed per stage.
    It runs twice by default (``--baseline-threads default,1``): with the process's own
    threading and limited to 1 thread (torch and BLAS). On a 2-core machine that is busy with
    anything else, the 2-thread run can be many times slower (OpenMP threads spinning on
    contended cores): compare the two, and the "others" figures.

Printed: seconds and peak GB per stage for both, the ratio baseline / medsyn-dask per stage and in
total, and a check that both give the same fidelity, privacy, precision_privacy, set counts and
copy margin per group, and the same mean images (FID: relative difference). "others" is the CPU
(in cores) that processes outside the benchmark used meanwhile: the machine may be shared.

Run:  .venv/bin/python benchmarks/bench_job.py                       # 2 500 real, 3 x 2 500
      .venv/bin/python benchmarks/bench_job.py --quick               # 200 + 3 x 200: checks it runs
      .venv/bin/python benchmarks/bench_job.py --n-real 5000 --n-synthetic 5000
Images are written once under ``--data`` (default /tmp/medsyn-bench-job/data-R-S) and reused
by later runs with the same sizes. Results: printed, and benchmarks/results/job.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    QUICK_NOTE,
    OtherLoad,
    Stages,
    TreeMemory,
    jsonable,
    local_cluster,
    quick_note,
    timed,
)
from baseline_job import BATCH, MODEL, NEAREST_K, RESOLUTION, THRESHOLD, run_baseline  # noqa: E402
from job_report import compare, print_report, table_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "job.json"


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


def settings_for(data: Path, groups: list[str], output: Path):
    """The settings of one pass, writing to ``output`` (emptied first)."""
    from medsyn_dask.settings import AnalyzeSettings

    shutil.rmtree(output, ignore_errors=True)

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


def _set_name(message: str) -> str | None:
    """``features: real (pixels, 256 px)`` -> ``real``: the set ``extract_all`` moves on to."""
    if not message.startswith("features: "):
        return None  # a message inside a set's extraction
    return message.removeprefix("features: ").split(" (")[0]


def _score_stage(message: str) -> str | None:
    """``neighbourhoods: real radii (...)`` -> ``radii``; ``neighbourhoods: real x g`` -> itself."""
    if not message.startswith("neighbourhoods: "):
        return None
    text = message.removeprefix("neighbourhoods: ")
    return "radii" if text.startswith("real radii") else text


def medsyn_stages(data: Path, groups: list[str], scratch: Path, workers: int) -> dict:
    """The job's stage functions one by one, as ``analyze`` calls them; then ``write_outputs``."""
    from medsyn_dask.job import (
        assemble_result,
        extract_all,
        mean_image_target,
        measure_variety,
        model_resolution_pairs,
        score_groups,
    )
    from medsyn_dask.report import prepare_output, write_outputs
    from medsyn_dask.settings import REAL, check_settings

    s = settings_for(data, groups, scratch / "stages")
    stages, per_set = Stages(), Stages(memory=False)
    with cold_cluster(workers) as cluster:
        with stages("listing"):
            real_set, synthetic_sets = check_settings(s)
            prepare_output(s.output)
        (pair,) = model_resolution_pairs(s)
        with stages("extraction"), per_set.at_progress(_set_name):
            # As analyze: the extraction also sums the images for the mean images.
            target, summed = mean_image_target(s, synthetic_sets), {}
            features = extract_all(s, pair, list(real_set.class_names), progress=False,
                                   mean_image=target, summed=summed)
        synthetic = {g: features[g] for g in groups}
        with stages.at_progress(_score_stage):
            scores = score_groups(s, features[REAL], synthetic, progress=False)
        with stages("variety"):
            variety = measure_variety(s, synthetic_sets, real_set=real_set, progress=False,
                                      mean_image=target, summed=summed)
        result = assemble_result(s, {pair: features}, scores, variety)
        with stages("writing outputs"):
            write_outputs(result, s.output)
    expected = {"radii", *(f"real x {g}" for g in groups)}
    if not expected <= stages.rows.keys() or per_set.rows.keys() != {REAL, *groups}:
        raise SystemExit(f"the job announced stages {sorted(stages.rows)} and sets"
                         f" {sorted(per_set.rows)}, expected {sorted(expected)} and real and"
                         f" {groups}: update _set_name/_score_stage to its progress messages")
    stages.rows["extraction"]["per_set_s"] = {n: r["seconds"] for n, r in per_set.rows.items()}
    return {"stages": stages.rows, **cluster, "scores": summarise(result),
            "mean_images": {g: variety.all_classes[g] for g in groups},
            "class_means": variety.class_means, "n_images": n_images(result)}


def medsyn_end_to_end(data: Path, groups: list[str], scratch: Path, workers: int) -> dict:
    """``check_settings``, ``prepare_output``, then ``analyze`` + ``write_outputs`` (as the CLI)."""
    from medsyn_dask.job import analyze
    from medsyn_dask.report import prepare_output, write_outputs
    from medsyn_dask.settings import check_settings

    s = settings_for(data, groups, scratch / "end-to-end")
    datasets = check_settings(s)
    prepare_output(s.output)
    with cold_cluster(workers) as cluster, TreeMemory() as job:
        result, analyze_s = timed(analyze, s, progress=False, datasets=datasets)
        _, write_s = timed(write_outputs, result, s.output)
    return {"analyze_s": analyze_s, "write_s": write_s, "seconds": analyze_s + write_s,
            "peak_rss": job.peak, "peak_rss_with_cluster_start": cluster["peak_rss"],
            "cluster_start_s": cluster["cluster_start_s"], "other_load": cluster["other_load"],
            "scores": summarise(result)}


@contextlib.contextmanager
def cold_cluster(workers: int) -> Iterator[dict]:
    """A new LocalCluster with medsyn-dask imported on its workers, for one pass.

    The dict yielded gets ``cluster_start_s`` (start + imports) at once, and on exit
    ``peak_rss`` (the tree's, start-up included) and ``other_load`` (cores) of the whole pass.
    """
    info: dict = {}
    with TreeMemory() as whole, OtherLoad() as load:
        start = time.perf_counter()
        with local_cluster(workers) as client:
            warm_imports(client)
            info["cluster_start_s"] = time.perf_counter() - start
            yield info
    info.update(peak_rss=whole.peak, other_load=load.cores)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-real", type=int, default=2500, help="real images (both classes)")
    ap.add_argument("--n-synthetic", type=int, default=2500, help="images per synthetic group")
    ap.add_argument("--groups", default="memorizer,faithful,collapsed",
                    help="synthetic groups analysed (of memorizer, faithful, collapsed, poor)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="200 real, 200 per group: checks that the benchmark runs")
    ap.add_argument("--data", type=Path, help="image folder (written unless already there)")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/medsyn-bench-job"),
                    help="outputs and feature stores (removed at the end)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-threads", default="default,1",
                    help="baseline runs, comma-separated: 'default' (the process's own threading:"
                         " all cores) and/or a thread count for torch and BLAS")
    args = ap.parse_args()
    quick_note(args.quick)
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
    if args.quick:
        print(QUICK_NOTE)
    shutil.rmtree(runs, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(sys.argv),
        "quick": args.quick,
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
