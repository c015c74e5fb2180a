"""``medsyn-dask report OUT``: render report.html and summary.txt again from an output folder.

Nothing is recomputed: the page and the summary come from the files the run wrote
(``metrics.json``, the per-image tables, the mean images), e.g. after an upgrade, or with
``--gallery N`` to add the copy gallery (which reads the input images the tables name).
"""

from __future__ import annotations

import argparse
from typing import Any

from .storage_options import add_storage_option_argument, parse_storage_options


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="render report.html and summary.txt again from an output folder"
    )
    p.add_argument("output", metavar="OUT", help="output folder of analyze (local path or URL)")
    p.add_argument(
        "--gallery",
        type=int,
        metavar="N",
        help="show the N closest synthetic/real pairs per group as thumbnails (patient images; "
        "default: the run's own --gallery, off unless it was given)",
    )
    add_storage_option_argument(p, "the output folder and the input images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report, write_summary
    from ..report.folder import read_metrics

    options = parse_storage_options(args.storage_option)
    path = write_report(args.output, options, gallery=args.gallery)
    metrics = read_metrics(args.output, options)
    print(write_summary(args.output, metrics, options))
    print(f"\nreport: {path}")
    return 0
