"""``OUT/report.html``: one self-contained page rendered from the output folder (Jinja2 template).

:func:`write_report` reads only what the run wrote (:mod:`.folder`), draws the charts
(:mod:`.plots`), embeds every image as a data URI and renders ``templates/report.html.j2``:
no script, style, font or image is fetched from anywhere, so the page reads offline and can be
attached to an e-mail or a supplement. The copy gallery shows patient images and is off unless
asked for (``gallery`` pairs per group).
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from ..checks import ALL_CLASSES, check_int
from ..sources.anonymise import check_anonymize_paths
from .folder import RunOutputs, read_outputs
from .gallery import VIEW_TITLES, closest_pairs, data_uri, gallery_entries, mean_image_views
from .legend import COLUMNS, MULTISCALE_READING, SCORES
from .summary import holdout_lines, patient_lines, summary_table
from .tables import REPORT_FILE, write_atomic


def write_report(
    output: str, storage_options: dict | None = None, gallery: int | None = None
) -> str:
    """Render ``output/report.html`` from the files of a finished run; returns its path.

    ``gallery`` is the number of closest synthetic/real pairs shown per group; ``None`` takes
    the run's own setting (``metrics.json`` settings, 0 when absent). Raises
    :class:`~medsyn_dask.errors.InputError` for a folder without a finished run.
    """
    outputs = read_outputs(output, storage_options)
    if gallery is None:
        gallery = outputs.metrics.get("settings", {}).get("gallery") or 0
    gallery = check_int(gallery, "gallery", minimum=0)
    # A run with hidden paths has none the gallery could read its images from.
    check_anonymize_paths(bool(outputs.metrics.get("settings", {}).get("anonymize_paths")), gallery)
    page = render_report(outputs, gallery=gallery, storage_options=storage_options)
    return write_atomic(output, REPORT_FILE, page, storage_options)


def render_report(
    outputs: RunOutputs, *, gallery: int = 0, storage_options: dict | None = None
) -> str:
    """The HTML text of the report (see the module docstring)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medsyn_dask.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(
        **report_context(outputs, gallery=gallery, storage_options=storage_options)
    )


def report_context(
    outputs: RunOutputs, *, gallery: int = 0, storage_options: dict | None = None
) -> dict[str, Any]:
    """Everything the template shows, as plain values and data URIs."""
    from . import plots  # matplotlib loads when a report is drawn, not with the CLI

    metrics, groups = outputs.metrics, outputs.metrics["groups"]
    pairs = metrics.get("per_model_resolution") or [{}]
    classes = outputs.classes
    return {
        "output": outputs.output,
        "n_real": metrics["real"]["n_images"],
        "groups": list(groups),
        "classes": classes,
        "first_pair": pairs[0],
        "n_pairs": len(pairs),
        "headlines": headlines(groups),
        "columns": COLUMNS,
        "rows": [_row(name, g) for name, g in groups.items()],
        # The held-out real images' row: the reference every score is read against.
        "reference_row": (
            _row(f"{metrics['reference']['name']} (reference)", metrics["reference"])
            if metrics.get("reference")
            else None
        ),
        "holdout_text": "\n".join(holdout_lines(metrics)),
        "patient_text": "\n".join(patient_lines(metrics)),
        "variety_reason": metrics.get("variety", {}).get("variety_undefined_reason"),
        "chart": _plot(plots.fidelity_privacy_chart(groups), plots.CHART_PIXELS),
        "multiscale": _multiscale(metrics),
        "multiscale_reading": MULTISCALE_READING,
        "histograms": _histograms(outputs),
        "per_class": _per_class(groups) if len(classes) > 1 else None,
        "mean_columns": [*classes, ALL_CLASSES],
        "volumes": len(metrics.get("variety", {}).get("shape", ())) == 3,
        "view_titles": VIEW_TITLES,
        "mean_images": _mean_images(outputs),
        "bad_images": [
            {"set": name, **bad}
            for name, items in metrics.get("bad_image_list", {}).items()
            for bad in items
        ],
        "bad_counts": {k: n for k, n in metrics.get("bad_images", {}).items() if n},
        "gallery": gallery,
        "gallery_entries": (
            gallery_entries(closest_pairs(outputs.per_image, gallery), storage_options)
            if gallery
            else {}
        ),
        "settings": _flat(metrics.get("settings", {})),
        "versions": metrics.get("versions", {}),
        "summary": summary_table(metrics),
    }


def headlines(groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per group: its headline numbers and what stands out, from metrics.json.

    With several groups, the lowest fidelity, privacy and variety and the best
    ``precision_privacy`` are named; a flagged mode collapse always is.
    """
    ranked = {}
    if len(groups) > 1:
        for key, word in (
            ("privacy", "least private"),
            ("fidelity", "least realistic"),
            ("variety", "least varied"),
        ):
            values = {n: g[key] for n, g in groups.items() if g.get(key) is not None}
            if values and len(set(values.values())) > 1:
                ranked.setdefault(min(values, key=values.get), []).append(word)
        best = max(groups, key=lambda n: groups[n]["precision_privacy"])
        ranked.setdefault(best, []).append("best realistic-and-private share")
    out = []
    for name, g in groups.items():
        tags = list(ranked.get(name, []))
        if g.get("mode_collapse"):
            tags.append("mode collapse flagged")
        out.append(
            {
                "group": name,
                "copies": g["sets"]["copy"],
                "n": g["n_images"],
                "realistic": g["sets"]["copy"] + g["sets"]["real"],
                "fidelity": g["fidelity"],
                "privacy": g["privacy"],
                "precision_privacy": g["precision_privacy"],
                "shade": _shade(g["precision_privacy"], lightness=45),
                "tags": tags,
            }
        )
    return out


def _row(name: str, group: dict[str, Any]) -> dict[str, Any]:
    cells = []
    for c in COLUMNS:
        if c.key in ("copy", "real", "non-real"):
            value, text = group["sets"][c.key], str(group["sets"][c.key])
        elif c.key == "mode_collapse":
            value = group["mode_collapse"]
            text = f"yes (margin {group['copy_margin']:g})" if value else "no"
        else:
            value = group.get(c.key)
            text = "n/a" if value is None else f"{value:.2f}" if c.key == "fid" else f"{value:.3f}"
        shade = _shade(value) if c.key in SCORES and value is not None else None
        cells.append({"text": text, "shade": shade})
    return {"group": name, "cells": cells, "fid_reason": group.get("fid_reason")}


def _shade(value: float, lightness: int = 82) -> str:
    """A colour from red (0) through yellow to green (1) for a score in [0, 1]."""
    return f"hsl({round(120 * min(max(value, 0.0), 1.0))}, 65%, {lightness}%)"


def _plot(png: bytes, pixels: tuple[int, int]) -> dict[str, Any]:
    return {"src": data_uri(png), "width": pixels[0], "height": pixels[1]}


def _histograms(outputs: RunOutputs) -> dict[str, dict[str, Any]]:
    """Per group the copy-ratio histogram, all on one x axis so they compare at a glance."""
    from . import plots

    ratios = {g: t["copy_ratio"].to_numpy(dtype=float) for g, t in outputs.per_image.items()}
    end = plots.ratio_axis_end(ratios.values())
    return {
        name: _plot(
            plots.copy_ratio_histogram(name, ratios[name], g["sets"]["copy"], end=end),
            plots.HISTOGRAM_PIXELS,
        )
        for name, g in outputs.metrics["groups"].items()
    }


def _multiscale(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per score (MM-FID, MM-STD) and group: mean, std and the models x resolutions matrix."""
    multiscale = metrics.get("multiscale")
    if not multiscale:
        return None
    out = []
    for key, label, better in (("mm_fid", "MM-FID", "lower"), ("mm_std", "MM-STD", "higher")):
        scores = multiscale.get(key) or {}
        out.append({"label": label, "better": better, "groups": scores})
    return out


def _per_class(groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, g in groups.items():
        for cls, s in g.get("per_class", {}).items():
            rows.append(
                {
                    "group": name,
                    "class": cls,
                    **s,
                    "shades": {
                        k: _shade(s[k]) for k in ("fidelity", "privacy", "precision_privacy")
                    },
                }
            )
    return rows


def _mean_images(outputs: RunOutputs) -> list[dict[str, Any]]:
    """Per set (real first), per column: the views as data URIs and the compressed size."""
    sizes = outputs.metrics.get("variety", {}).get("mean_images", {})
    rows = []
    for set_name, images in outputs.mean_images.items():
        cells = {}
        for name, (file_name, data) in images.items():
            cells[name] = {
                "views": [data_uri(v) for v in mean_image_views(file_name, data)],
                "bytes": sizes.get(set_name, {}).get(name),
                "file": f"mean_images/{set_name}/{file_name}",
            }
        rows.append({"set": set_name, "cells": cells})
    return rows


def _flat(settings: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in settings.items()]
