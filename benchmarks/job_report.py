"""The comparison and printed table of ``bench_job.py``: stage rows, ratios, same-results checks."""

from __future__ import annotations

import numpy as np

GB = 1e9


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
