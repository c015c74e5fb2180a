"""The console summary of a run: one row per synthetic group, from ``metrics.json``."""

from __future__ import annotations

from typing import Any


def summary_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the headline scores, one row per synthetic group."""
    header = (
        f"{'group':<12}{'fidelity':>9}{'privacy':>9}{'prec.priv':>10}{'variety':>9}"
        f"{'std':>8}{'fid':>10}{'copy':>6}{'real':>6}{'non-real':>9}"
    )
    rows = [header, "-" * len(header)]
    for name, g in metrics["groups"].items():
        fid = "n/a" if g["fid"] is None else f"{g['fid']:.2f}"
        variety = "n/a" if g["variety"] is None else f"{g['variety']:.3f}"
        sets = g["sets"]
        rows.append(
            f"{name:<12}{g['fidelity']:>9.3f}{g['privacy']:>9.3f}{g['precision_privacy']:>10.3f}"
            f"{variety:>9}{g['std']:>8.3f}{fid:>10}{sets['copy']:>6}{sets['real']:>6}"
            f"{sets['non-real']:>9}"
        )
    reason = metrics["variety"].get("variety_undefined_reason")
    if reason:
        rows.append(f"variety: {reason}")
    return "\n".join(rows)
