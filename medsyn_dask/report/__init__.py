"""Outputs of a run: files (:mod:`.tables`), console summary (:mod:`.summary`), report.html.

Everything is written through fsspec, so ``OUT`` may be a local folder or an ``s3://`` prefix.
``metrics.json`` is removed when a run starts and written last, so an interrupted run never
leaves one that looks complete; ``summary.txt`` and ``report.html`` (:mod:`.html`, with charts
from :mod:`.plots` and thumbnails from :mod:`.gallery`) are rendered from the written files
only, by the job and by ``medsyn-dask report OUT``. :mod:`.legend` holds the one-line
reading of every column; :mod:`.folder` reads an output folder back; :mod:`.original_layout`
writes the original package's ``Features/`` and ``Avgs/`` files.
"""

from .html import REPORT_FILE, write_report
from .summary import SUMMARY_FILE, summary_table, summary_text, write_summary
from .tables import METRICS_FILE, metrics_dict, prepare_output, write_outputs

__all__ = [
    "METRICS_FILE",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "metrics_dict",
    "prepare_output",
    "summary_table",
    "summary_text",
    "write_outputs",
    "write_report",
    "write_summary",
]
