"""The report's charts as PNG bytes (matplotlib, Agg backend): fidelity vs privacy, copy ratios.

Figures are drawn on their own Agg canvas without pyplot, so drawing a report changes no
global matplotlib state (a notebook's inline backend stays as it was) and is safe in threads.
Every figure has a fixed size in pixels (:data:`CHART_PIXELS`, :data:`HISTOGRAM_PIXELS`), so a
page can lay them out before they load and a test can check what it decoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100
#: (width, height) in pixels of the fidelity-vs-privacy chart and of each histogram.
CHART_PIXELS = (860, 500)
HISTOGRAM_PIXELS = (480, 300)
#: The histogram's legend, top to bottom (filled outlines list themselves last first).
_LEGEND_ORDER = ("copy (< 1)", "not a copy", "copy threshold (1)")
#: The histogram's axes in its figure: room for the title, the axis labels and 4-digit counts.
_HISTOGRAM_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.16, "top": 0.91}
_COPY = "#c0392b"
_REAL = "#2e86c1"
#: Group colours: tab10 without its green and red, which read as "good" and "bad" here.
_GROUP_COLOURS = tuple(colormaps["tab10"](i) for i in (0, 1, 4, 5, 6, 7, 8, 9))


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of a matplotlib figure, at its exact pixel size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _figure(pixels: tuple[int, int], margins: dict[str, float] | None = None) -> tuple[Figure, Any]:
    """A figure of ``pixels`` and its axes; ``margins`` (``subplots_adjust``'s fractions) fix
    the axes' place instead of the constrained layout, which costs a tenth of a second a figure
    to solve."""
    layout = None if margins else "constrained"
    fig = Figure(figsize=(pixels[0] / DPI, pixels[1] / DPI), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # Agg, whatever backend the session uses
    if margins:
        fig.subplots_adjust(**margins)
    return fig, fig.add_subplot()


def fidelity_privacy_chart(groups: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Each group placed by privacy (x) and fidelity (y), its marker sized by variety.

    ``groups`` is ``metrics.json``'s ``groups``. Each group has its own colour, named in the
    legend with its variety; a group without a variety score (a single group, or equal
    mean-image sizes) gets a hollow marker. The top-right corner (both 1) is the goal, shaded.
    """
    fig, ax = _figure(CHART_PIXELS)
    ax.add_patch(Rectangle((0.8, 0.8), 0.25, 0.25, color="#27ae60", alpha=0.12, lw=0))
    ax.annotate(
        "goal",
        (1.0, 1.0),
        xytext=(-30, -16),
        textcoords="offset points",
        color="#1e8449",
        fontsize=9,
    )
    placed: list[tuple[float, float]] = []
    for i, (name, g) in enumerate(groups.items()):
        variety = g.get("variety")
        x, y = g["privacy"], g["fidelity"]
        colour = _GROUP_COLOURS[i % len(_GROUP_COLOURS)]
        if variety is None:
            ax.scatter(
                x,
                y,
                s=200,
                facecolors="none",
                edgecolors=colour,
                linewidths=2.5,
                zorder=3,
                label=f"{name} (variety n/a)",
            )
        else:
            ax.scatter(
                x,
                y,
                s=60 + 440 * variety,
                color=colour,
                edgecolors="black",
                alpha=0.85,
                zorder=3,
                label=f"{name} (variety {variety:.2f})",
            )
        # Labels of groups at nearly the same place are stacked instead of overprinted.
        shift = 14 * sum(abs(x - px) < 0.12 and abs(y - py) < 0.06 for px, py in placed)
        placed.append((x, y))
        ax.annotate(
            name,
            (x, y),
            xytext=(10, 4 - shift),
            textcoords="offset points",
            fontsize=10,
            zorder=4,
            color=colour,
        )
    ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
    ax.set_xlabel("privacy (1 - share of copies)  →  more private")
    ax.set_ylabel("fidelity (share realistic)  →  more realistic")
    ax.set_title("Fidelity against privacy; marker size: variety")
    ax.grid(alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=9,
        frameon=False,
        markerscale=0.6,
        labelspacing=1.2,
    )
    return figure_png(fig)


def ratio_axis_end(ratios: Iterable[np.ndarray]) -> float:
    """A common right end for the copy-ratio histograms: past every finite ratio, at least 2."""
    ends = [float(np.max(r[np.isfinite(r)], initial=0.0)) for r in map(np.asarray, ratios)]
    return max(2.0, 1.05 * max(ends, default=0.0))


def copy_ratio_histogram(
    group: str, ratios: np.ndarray, copies: int, *, end: float | None = None
) -> bytes:
    """Histogram of one group's copy ratios with the copy threshold (1) drawn.

    ``ratios`` is the ``(M,)`` ``copy_ratio`` column (distance to the closest real image over
    that image's copy radius); below 1 is a copy (``copies`` of them, from ``metrics.json``).
    ``end`` is the axis' right end (the same for every group: :func:`ratio_axis_end`).
    Infinite ratios (a radius of 0) are left out and counted in the title.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    finite = ratios[np.isfinite(ratios)]
    fig, ax = _figure(HISTOGRAM_PIXELS, _HISTOGRAM_MARGINS)
    end = ratio_axis_end([finite]) if end is None else end
    bins = np.linspace(0.0, end, 41)
    below, above = finite[finite < 1.0], finite[finite >= 1.0]
    ax.hist(  # two filled outlines, not 80 bar patches (drawn 3x faster, the same picture)
        [below, above],
        bins=bins,
        stacked=True,
        histtype="stepfilled",
        color=[_COPY, _REAL],
        label=["copy (< 1)", "not a copy"],
    )
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.5, label="copy threshold (1)")
    ax.set_xlim(0.0, end)
    title = f"{group}: {copies} of {len(ratios)} images are copies"
    if finite.size < ratios.size:
        title += f" ({ratios.size - finite.size} infinite ratios not drawn)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("copy ratio: distance to closest real / its copy radius")
    ax.set_ylabel("synthetic images")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: _LEGEND_ORDER.index(labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=9, loc="best")
    return figure_png(fig)
