"""Outputs of a run: the files (:mod:`.tables`) and the console summary (:mod:`.summary`).

Everything is written through fsspec, so ``OUT`` may be a local folder or an ``s3://`` prefix.
``metrics.json`` is removed when a run starts and written last, so an interrupted run never
leaves one that looks complete; every other output derives from the same numbers.
"""

from .summary import summary_table
from .tables import METRICS_FILE, metrics_dict, prepare_output, write_outputs

__all__ = ["METRICS_FILE", "metrics_dict", "prepare_output", "summary_table", "write_outputs"]
