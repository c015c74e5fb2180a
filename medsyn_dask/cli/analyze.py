"""``medsyn-dask analyze``: the whole job, from image folders to scores, tables and mean images.

Settings come from flags and/or a YAML file (``--config``); flags override the file. The YAML
keys are the long flag names (``real``, ``synthetic``: a mapping NAME: ROOT, ``models``,
``resolutions``, ``weights``: a mapping MODEL: PATH, ``num_channels``, ``nearest_k``, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checks import CODECS
from ..errors import SettingsError
from .cluster_options import CLUSTER_KEYS, add_cluster_arguments, cluster_spec
from .storage_options import add_storage_option_argument, parse_storage_options

if TYPE_CHECKING:
    from ..cluster import ClusterSpec
    from ..settings import AnalyzeSettings

# The job's modules (torch, dask.array, matplotlib) are imported when a command runs, not
# when the parser is built: `medsyn-dask --help` stays instant.


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "analyze", help="audit synthetic image groups against a real set (the full job)"
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", help="real image root (ROOT/CLASS/files), local path or URL")
    p.add_argument(
        "--synthetic",
        action="append",
        metavar="NAME=ROOT",
        help="a synthetic group; repeat for several",
    )
    p.add_argument("--output", help="output folder, local path or URL")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="feature extractor (default pixels); repeat for MM-FID/MM-STD",
    )
    p.add_argument(
        "--resolution",
        action="append",
        dest="resolutions",
        type=int,
        metavar="PX",
        help="image side for extraction (default 256); repeatable",
    )
    p.add_argument(
        "--weights",
        action="append",
        metavar="[MODEL=]PATH",
        help="weights file of a model (MODEL=PATH, or PATH for a single model)",
    )
    p.add_argument("--num-channels", type=int, choices=(1, 3), help="1 (default) or 3")
    p.add_argument("--nearest-k", type=int, help="k of the k-th-neighbour radius (default 5)")
    p.add_argument("--class-names", help="comma-separated classes to analyse (default: all)")
    p.add_argument("--features-store", help="Zarr feature store (default OUT/features.zarr)")
    p.add_argument("--codec", choices=CODECS, help="lossless codec of mean images (default png)")
    p.add_argument("--on-bad-image", choices=("error", "skip"), help="default error")
    p.add_argument("--block-size", type=int, help="rows per distance block (default 2048)")
    p.add_argument(
        "--verify-content",
        action="store_true",
        help="before reusing stored features, compare each file's sha256 too (reads every "
        "file; by default size + modification time, or the object store's ETag)",
    )
    p.add_argument(
        "--anonymize-paths",
        action="store_true",
        help="replace file paths and dataset roots in every output by salted hashes "
        "(CLASS/<hash>.png; salt: $MEDSYN_DASK_PATH_SALT, else one kept per user)",
    )
    p.add_argument(
        "--gallery",
        type=int,
        metavar="N",
        help="show the N closest synthetic/real pairs as thumbnails in report.html "
        "(off by default: these are patient images)",
    )
    p.add_argument(
        "--patients",
        metavar="CSV|dicom",
        help="patient mode: a path,patient CSV (paths relative to the real root, CLASS/file), "
        "or 'dicom' for the files' PatientID (kept in memory as a salted hash only)",
    )
    p.add_argument(
        "--holdout",
        metavar="ROOT",
        help="held-out real images (not used to train the generator), scored as the reference row",
    )
    p.add_argument(
        "--holdout-fraction",
        type=float,
        metavar="F",
        help="hold out a seeded random fraction of the real set instead (stratified by class, "
        "and by patient in patient mode)",
    )
    p.add_argument("--holdout-seed", type=int, help="seed of --holdout-fraction (default 0)")
    add_storage_option_argument(p, "the roots, the feature store and the output")
    p.add_argument("--config", type=Path, help="YAML file with the same settings")
    add_cluster_arguments(p)


def settings_from_args(args: argparse.Namespace) -> AnalyzeSettings:
    """Merge the YAML config (if any) and the flags (which win) into validated settings."""
    from ..settings import settings_from_mapping

    config = _read_config(args.config) if args.config else {}
    for key in CLUSTER_KEYS:  # read by the cluster options, not settings
        config.pop(key, None)
    flags = {
        "real": args.real,
        "synthetic": _pairs(args.synthetic, "--synthetic") if args.synthetic else None,
        "output": args.output,
        "models": args.models,
        "resolutions": args.resolutions,
        "weights": _weights(args.weights, args.models or config.get("models")),
        "num_channels": args.num_channels,
        "nearest_k": args.nearest_k,
        "class_names": args.class_names.split(",") if args.class_names else None,
        "features_store": args.features_store,
        "codec": args.codec,
        "on_bad_image": args.on_bad_image,
        "block_size": args.block_size,
        "gallery": args.gallery,
        "verify_content": True if args.verify_content else None,
        "patients": args.patients,
        "holdout": args.holdout,
        "holdout_fraction": args.holdout_fraction,
        "holdout_seed": args.holdout_seed,
        "anonymize_paths": True if args.anonymize_paths else None,
    }
    merged = {**config, **{k: v for k, v in flags.items() if v is not None}}
    if args.storage_option:
        merged["storage_options"] = parse_storage_options(args.storage_option)
    source = f"--config {args.config}" if args.config else "the command line"
    return settings_from_mapping(merged, source)


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(path.read_text(), Loader=_unique_keys_loader(yaml)) or {}
    except FileNotFoundError:
        raise SettingsError(f"--config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"--config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path} must hold a mapping of settings")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _unique_keys_loader(yaml: Any) -> type:
    """yaml's SafeLoader refusing a key given twice in one mapping (it keeps the last
    silently: a second ``synthetic:`` group of the same name would replace the first, where
    the command line refuses ``--synthetic a=...`` twice)."""

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            twice = sorted({str(k) for k in keys if keys.count(k) > 1})
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {twice[0]!r} given twice", node.start_mark
                )
            return super().construct_mapping(node, deep=deep)

    return UniqueKeys


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SettingsError(f"{flag} wants NAME=VALUE, got {item!r}")
        if name in out:
            raise SettingsError(f"{flag} {name} given twice")
        out[name] = value
    return out


def _weights(items: list[str] | None, models: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        if not models or len(models) != 1:
            raise SettingsError("--weights PATH needs exactly one --model; use MODEL=PATH")
        return {models[0]: items[0]}
    return _pairs(items, "--weights")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = _read_config(args.config) if args.config else {}
    run_job(settings, cluster_spec(args, {k: config[k] for k in CLUSTER_KEYS if k in config}))
    return 0


def run_job(
    settings: AnalyzeSettings,
    cluster: ClusterSpec,
    *,
    keep_open: bool = False,
    report_hint: bool = True,
) -> dict[str, Any]:
    """Check, prepare the output, run on Dask, write the outputs and print the summary.

    With ``keep_open``, the cluster (and its dashboard) stays up after the run until Ctrl-C.
    With ``report_hint``, Ctrl-C while the report renders says that the results are complete
    and ``medsyn-dask report OUT`` writes it (a caller with more to write after the job, such
    as the original's command line, passes False). Returns the content of ``metrics.json``.
    """
    from ..cluster import start_cluster
    from ..sources.anonymise import redact, secrets_hidden_in_logs

    settings.validate()  # every setting, before a cluster starts or anything is written
    options = dict(settings.storage_options)
    # The job's modules are imported and the roots listed while the cluster starts: the
    # cluster mostly waits for its worker processes.
    with ThreadPoolExecutor(1) as pool, contextlib.ExitStack() as stack:
        stack.enter_context(secrets_hidden_in_logs(options))  # libraries log keys at DEBUG
        listing = pool.submit(_import_and_list, settings)
        client = stack.enter_context(start_cluster(cluster))
        datasets = listing.result()
        # The report's plotting library (half a second) loads while the workers extract.
        pool.submit(import_module, "medsyn_dask.report.plots")
        from ..job import analyze
        from ..report import prepare_output, write_outputs, write_report, write_summary

        prepare_output(settings.output, options)
        result = analyze(settings, datasets=datasets)
        metrics = write_outputs(result, settings.output, options)
        try:
            report = write_report(settings.output, options, gallery=settings.gallery)
            summary = write_summary(settings.output, metrics, options)
        except KeyboardInterrupt:  # the results are written: say so, and how to render them
            if not report_hint:
                raise
            shown = redact(settings.output)  # a URL may carry a password: never in a message
            raise KeyboardInterrupt(
                f"metrics.json and the tables are complete; `medsyn-dask report {shown}` "
                "writes the report"
            ) from None
        print("\n" + summary)
        print(f"\nreport: {report}\noutputs: {settings.output}")
        if keep_open:
            _wait_for_ctrl_c(client)
    return metrics


def _import_and_list(settings: AnalyzeSettings) -> Any:
    """:func:`~medsyn_dask.settings.check_settings` (the listing), after importing the job."""
    import_module("medsyn_dask.job")
    import_module("medsyn_dask.report")
    from ..settings import check_settings

    return check_settings(settings)


def _wait_for_ctrl_c(client: Any) -> None:
    print(f"dashboard kept open at {client.dashboard_link}; press Ctrl-C to close", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("closing the cluster", flush=True)
