"""What each reported number means, in one place: the report's and the console's legends.

Every column of the metrics table has a label, a one-line reading (METHOD.md's definition in
plain words) and the direction that is better, so the HTML report and ``summary.txt`` say the
same thing in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of the metrics table.

    ``key`` is its name in ``metrics.json``'s group entry, ``short`` the console heading,
    ``reading`` the report's one line, ``brief`` the console legend's few words, ``better``
    ``"higher"``, ``"lower"`` or ``""`` (a count or flag with no better direction).
    """

    key: str
    short: str
    reading: str
    brief: str
    better: str

    @property
    def direction(self) -> str:
        """``"higher is better"`` (or lower), empty for counts and flags."""
        return f"{self.better} is better" if self.better else ""


COLUMNS: tuple[Column, ...] = (
    Column(
        "fidelity",
        "fidelity",
        "share of synthetic images inside some real image's k-NN radius (copies included); "
        "higher is more realistic",
        "share inside some real image's k-NN radius (realism)",
        "higher",
    ),
    Column(
        "privacy",
        "privacy",
        "1 - share of synthetic images that are copies (closer to a real image than its nearest "
        "real neighbour); higher is more private",
        "1 - share of copies of a real image",
        "higher",
    ),
    Column(
        "precision_privacy",
        "prec.priv",
        "share of synthetic images that are realistic and not copies: both goals at once",
        "share realistic and not a copy",
        "higher",
    ),
    Column(
        "variety",
        "variety",
        "from the compressed size of the group's mean image, scaled 0..1 across the groups "
        "(a sharp, detailed mean means similar images); higher is more varied",
        "mean-image compressed size, scaled across groups",
        "higher",
    ),
    Column(
        "std",
        "std",
        "mean per-dimension spread (std) of the synthetic features; higher is more varied, "
        "at or below the mode-collapse threshold the group is flagged as collapsed",
        "feature spread of the group",
        "higher",
    ),
    Column(
        "fid",
        "fid",
        "Fréchet distance between Gaussians fitted to real and synthetic features (first "
        "model and resolution); lower is closer to the real set",
        "Frechet distance to the real set (first model/resolution)",
        "lower",
    ),
    Column(
        "copy",
        "copy",
        "synthetic images that are copies of a real image",
        "images copying a real image (privacy risk)",
        "",
    ),
    Column(
        "real",
        "real",
        "synthetic images that are realistic and not copies",
        "images realistic and not a copy",
        "",
    ),
    Column(
        "non-real",
        "non-real",
        "synthetic images outside every real image's k-NN radius",
        "images outside every real k-NN radius",
        "",
    ),
    Column(
        "mode_collapse",
        "collapse",
        "feature std at or below the threshold: the copy margin (shown) is added to every real "
        "image's copy radius",
        "std <= threshold: copy margin added",
        "",
    ),
)

#: Columns whose values lie in [0, 1] with a better direction: the report shades them.
SCORES = tuple(c.key for c in COLUMNS if c.better == "higher" and c.key != "std")

MULTISCALE_BRIEF = "mean row-normalised FID/STD over models x resolutions"
MULTISCALE_READING = (
    "mean of the row-wise L2-normalised FID (STD) over every model x resolution run, "
    "+/- their standard deviation (Xing et al., TMI 2023); MM-FID lower, MM-STD higher is better"
)


def column(key: str) -> Column:
    """The column called ``key`` (KeyError for an unknown one)."""
    for c in COLUMNS:
        if c.key == key:
            return c
    raise KeyError(key)
