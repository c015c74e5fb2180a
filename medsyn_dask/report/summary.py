"""The console summary of a run, from ``metrics.json``: table, MM scores, legend; summary.txt.

:func:`summary_text` is what ``analyze`` and ``report`` print and save as ``OUT/summary.txt``:
one row per synthetic group, MM-FID/MM-STD when several models or resolutions were run, the
skipped files, and a short legend saying what each column means and which way is better.
"""

from __future__ import annotations

from typing import Any

from .legend import COLUMNS, MULTISCALE_BRIEF
from .tables import SUMMARY_FILE, write_atomic

_WIDTHS = {
    "fidelity": 9,
    "privacy": 9,
    "precision_privacy": 10,
    "variety": 9,
    "std": 8,
    "fid": 10,
    "copy": 6,
    "real": 6,
    "non-real": 9,
    "mode_collapse": 10,
}


def summary_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the headline scores, one row per synthetic group, then the
    holdout reference row when the run has one."""
    rows_of = _rows(metrics)
    name_width = max(12, *(len(g) + 2 for g in rows_of))
    header = f"{'group':<{name_width}}" + "".join(f"{c.short:>{_WIDTHS[c.key]}}" for c in COLUMNS)
    rows = [header, "-" * len(header)]
    for name, group in rows_of.items():
        cells = "".join(f"{_cell(group, c.key):>{_WIDTHS[c.key]}}" for c in COLUMNS)
        rows.append(f"{name:<{name_width}}{cells}")
    return "\n".join(rows)


def _rows(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The groups' entries, then the reference row's as ``holdout (ref)``."""
    rows = dict(metrics["groups"])
    reference = metrics.get("reference")
    if reference:
        rows[f"{reference['name']} (ref)"] = reference
    return rows


def patient_lines(metrics: dict[str, Any]) -> list[str]:
    """Patient mode's scores per group (and the holdout row), or nothing outside patient mode."""
    rows = {k: v for k, v in _rows(metrics).items() if "patient_privacy" in v}
    if not rows:
        return []
    first = next(iter(rows.values()))
    lines = [
        f"patient mode: {first['patients']} real patients; a synthetic image closer to a scan "
        "than any other patient's scan is a copy of that patient (per_patient/GROUP.csv)",
        f"  {'group':<16}{'copied':>8}{'patient privacy':>17}{'copy share':>12}",
    ]
    for name, row in rows.items():
        lines.append(
            f"  {name:<16}{row['patients_copied']:>8}{row['patient_privacy']:>17.3f}"
            f"{row['patient_copy_share']:>12.3f}"
        )
    return lines


def holdout_lines(metrics: dict[str, Any]) -> list[str]:
    """Each group against the holdout row, or nothing without one."""
    reference = metrics.get("reference")
    if not reference:
        return []
    test = next(iter(metrics["groups"].values())).get("copy_test", "")
    lines = [
        f"vs holdout ({reference['n_images']} held-out real images, {reference['source']}): "
        "group minus holdout; p: copies more often than held-out reals",
        f"  ({test})",
        f"  {'group':<16}{'fidelity':>10}{'privacy':>10}{'p':>11}",
    ]
    for name, group in metrics["groups"].items():
        lines.append(
            f"  {name:<16}{group['fidelity_vs_holdout']:>+10.3f}"
            f"{group['privacy_vs_holdout']:>+10.3f}{group['copy_test_p_value']:>11.2g}"
        )
    return lines


def summary_text(metrics: dict[str, Any]) -> str:
    """The whole console summary: table, notes, MM-FID/MM-STD, skipped files and legend."""
    parts = [summary_table(metrics), *_notes(metrics)]
    for extra in (holdout_lines(metrics), patient_lines(metrics)):
        if extra:
            parts += ["", *extra]
    multiscale = multiscale_lines(metrics)
    if multiscale:
        parts += ["", *multiscale]
    parts += ["", *legend_lines(multiscale=bool(multiscale))]
    return "\n".join(parts)


def write_summary(output: str, metrics: dict[str, Any], storage_options: dict | None = None) -> str:
    """Write :func:`summary_text` to ``output/summary.txt``; returns the text."""
    text = summary_text(metrics)
    write_atomic(output, SUMMARY_FILE, text + "\n", storage_options)
    return text


def multiscale_lines(metrics: dict[str, Any]) -> list[str]:
    """MM-FID and MM-STD per group (mean +/- std), or nothing when a single pair was run."""
    multiscale = metrics.get("multiscale")
    if not multiscale:
        return []
    pairs = metrics.get("per_model_resolution", [])
    models = sorted({p["model"] for p in pairs})
    resolutions = sorted({p["resolution"] for p in pairs})
    lines = [
        f"MM-FID (lower is better) and MM-STD (higher is better) over {len(models)} model(s) "
        f"x {len(resolutions)} resolution(s) ({', '.join(models)}; "
        f"{', '.join(f'{r} px' for r in resolutions)}):",
        f"  {'group':<14}{'MM-FID':>18}{'MM-STD':>18}",
    ]
    for group in metrics["groups"]:
        cells = [_mm(multiscale.get(f"mm_{k}", {}).get(group)) for k in ("fid", "std")]
        lines.append(f"  {group:<14}{cells[0]:>18}{cells[1]:>18}")
    return lines


def legend_lines(*, multiscale: bool = False) -> list[str]:
    """The legend in short: each column, which way is better, what it counts."""
    lines = ["legend:"]
    for c in COLUMNS:
        better = f"{c.better} better" if c.better else ""
        lines.append(f"  {c.short:<12}{better:<15}{c.brief}")
    if multiscale:
        lines.append(f"  {'MM-FID/STD':<12}{'see above':<15}{MULTISCALE_BRIEF}")
    return lines


def _notes(metrics: dict[str, Any]) -> list[str]:
    notes = []
    pairs = metrics.get("per_model_resolution", [])
    if len(pairs) > 1:
        first = pairs[0]
        notes.append(
            f"fid, std and the sets come from {first['model']} at {first['resolution']} px, "
            f"the first of {len(pairs)} model/resolution pairs"
        )
    reason = metrics.get("variety", {}).get("variety_undefined_reason")
    if reason:
        notes.append(f"variety: {reason}")
    for name, group in metrics["groups"].items():
        if group.get("fid") is None and group.get("fid_reason"):
            notes.append(f"fid of {name}: {group['fid_reason']}")
            break
    skipped = {k: n for k, n in metrics.get("bad_images", {}).items() if n}
    if skipped:
        counts = ", ".join(f"{k} {n}" for k, n in skipped.items())
        notes.append(f"skipped bad images: {counts} (listed in report.html)")
    return notes


def _cell(group: dict[str, Any], key: str) -> str:
    if key in ("copy", "real", "non-real"):
        return str(group["sets"][key])
    if key == "mode_collapse":
        return f"yes+{group['copy_margin']:g}" if group["mode_collapse"] else "no"
    value = group.get(key)
    if value is None:
        return "n/a"
    return f"{value:.2f}" if key == "fid" else f"{value:.3f}"


def _mm(score: dict[str, Any] | None) -> str:
    return "n/a" if score is None else f"{score['mean']:.3f} +/- {score['std']:.3f}"
