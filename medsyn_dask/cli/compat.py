"""``synthetic_image_analyzer``: the original package's command line, run as medsyn-dask's job.

The flags, defaults and printed options are the original's (``synthetic-image-analyzer``
1.0.0), so existing scripts keep working; ``docs/coming-from-the-original.md`` has the table.
``--data_dir`` is one synthetic group (``DATA/CLASS/files``), or a folder of groups
(``DATA/GROUP/CLASS/files``) when its sub-folders are not the real set's classes. The
original's files (``Features/``, ``Avgs/``: :mod:`medsyn_dask.report.original_layout`) are
written beside the native outputs. ``--select_model`` takes the original's ``vqvae_top`` /
``vqvae_bottom`` (default), a timm model name (``inception_v3``...: ``timm:NAME``, weights from
``--pretrained_model_path`` or the user's timm/Hugging Face cache; never downloaded) or any
medsyn-dask extractor name.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

import fsspec

from ..checks import plain_name
from ..errors import SettingsError
from ..metrics.variety import CODECS
from ..report.original_layout import OriginalFolder, folder_label, write_original_layout
from ..settings import REAL, AnalyzeSettings
from ..sources import list_images
from . import run_command
from .cluster_options import add_cluster_arguments, cluster_spec
from .timm_cache import cached_timm_weights

PROG = "synthetic_image_analyzer"
#: The original's ``--select_model`` VQ-VAE names and their extractor names here.
MODELS = {"vqvae_top": "vqvae-top", "vqvae_bottom": "vqvae-bottom"}
#: The original's flags, in the order of its options dump (sorted, as it printed them).
ORIGINAL_FLAGS = (
    "class_names", "data_dir", "gpu_ids", "nearest_k", "num_channels", "output_dir",
    "pretrained_model_path", "ref_dir", "resolution", "select_model",
)  # fmt: skip
#: The original's FID text for discrete features (printed as it printed it).
DISCRETE_FID = "FID on discrete values has no meanings"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="MedSynAnalyzer's command line (synthetic-image-analyzer 1.0.0), run as "
        "medsyn-dask's distributed job",
    )
    p.add_argument(
        "-d",
        "--data_dir",
        required=True,
        help="synthetic images: DATA/CLASS/files, or a folder of groups",
    )
    p.add_argument("-r", "--ref_dir", required=True, help="real images: REF/CLASS/files")
    p.add_argument(
        "-o",
        "--output_dir",
        required=True,
        help="outputs: medsyn-dask's, plus the original's Features/ and Avgs/",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=512,
        help="image side for extraction (default 512, the original's)",
    )
    p.add_argument(
        "--num_channels", type=int, default=1, choices=(1, 3), help="1 (gray, default) or 3 (RGB)"
    )
    p.add_argument(
        "--select_model",
        default="vqvae_bottom",
        help="vqvae_top, vqvae_bottom (default), a timm model name such as "
        "inception_v3, or any medsyn-dask extractor name",
    )
    p.add_argument(
        "--pretrained_model_path",
        default=None,
        help="the model's weights (VQ-VAE checkpoint; for timm models, default: "
        "the timm/Hugging Face cache)",
    )
    p.add_argument(
        "--class_names", default=None, help="comma-separated classes to analyse (default: all)"
    )
    p.add_argument(
        "--gpu_ids",
        default=None,
        help="GPUs the workers may use, e.g. 0 or 0,1; -1: none (CPU only)",
    )
    p.add_argument("--nearest_k", type=int, default=5, help="k of the k-NN radius (default 5)")
    p.add_argument(
        "--codec",
        choices=CODECS,
        default="png-opencv",
        help="lossless codec of the mean images for variety (default png-opencv: "
        "the original's OpenCV PNG, so filesize matches; png is medsyn-dask's)",
    )
    # medsyn-dask's extensions, off by default (the original had neither).
    p.add_argument(
        "--patients",
        default=None,
        help="patient mode: a CSV with path,patient columns (paths relative to --ref_dir), or "
        "'dicom' for the DICOM PatientID (kept in memory as a salted hash only)",
    )
    p.add_argument("--holdout", default=None, help="held-out real images: the reference row")
    p.add_argument(
        "--holdout_fraction",
        type=float,
        default=None,
        help="hold out this share of the real images instead (seeded, stratified split)",
    )
    p.add_argument("--holdout_seed", type=int, default=0, help="seed of --holdout_fraction")
    add_cluster_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))


def options_dump(args: argparse.Namespace) -> str:
    """The original's options dump: its flags, sorted, with any password in a URL masked."""
    lines = ["------------ Options -------------"]
    for key in ORIGINAL_FLAGS:
        lines.append(f"{key}: {_masked(getattr(args, key))}")
    lines.append("-------------- End ----------------")
    return "\n".join(lines)


def _masked(value: Any) -> str:
    return re.sub(r"(://[^/:@]+):[^/@]+@", r"\1:***@", str(value))


def model_and_weights(select_model: str, weights: str | None) -> tuple[str, str | None]:
    """The extractor name and weights path of the original's ``--select_model``.

    Raises :class:`SettingsError` for a VQ-VAE without ``--pretrained_model_path`` and for a
    timm model whose weights are neither given nor in the cache.
    """
    from ..features.registry import available_extractors

    if select_model in MODELS:
        if not weights:
            raise SettingsError(
                f"--select_model {select_model} needs --pretrained_model_path: the VQ-VAE-2 "
                "checkpoint (.pt) to take the codes from"
            )
        return MODELS[select_model], weights
    if select_model.partition(":")[0] in available_extractors():
        return select_model, weights
    if not weights:
        weights = cached_timm_weights(select_model)
    return f"timm:{select_model}", weights


def synthetic_groups(data_dir: str, real_classes: tuple[str, ...]) -> dict[str, str]:
    """Groups under ``data_dir``: itself if its sub-folders hold the real classes, else its
    sub-folders (each a group named after it)."""
    fs, root = fsspec.core.url_to_fs(data_dir)
    if not fs.isdir(root):
        raise FileNotFoundError(f"--data_dir not found: {data_dir}")
    subdirs = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root) if fs.isdir(p))
    if set(real_classes) <= set(subdirs):
        return {_group_name(folder_label(data_dir) or "synthetic", set()): data_dir}
    groups: dict[str, str] = {}
    for name in subdirs:
        groups[_group_name(name, set(groups))] = f"{data_dir.rstrip('/')}/{name}"
    return groups


def _group_name(folder: str, taken: set[str]) -> str:
    """A group name (a plain name: it names output files and store groups) for a folder the
    original took whatever its name: ``my synth`` -> ``my_synth``, made unique."""
    base = plain_name(folder, "synthetic")
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _run(args: argparse.Namespace) -> int:
    from .analyze import run_job

    print(options_dump(args))
    model, weights = model_and_weights(args.select_model, args.pretrained_model_path)
    if args.gpu_ids is not None:
        gpus = str(args.gpu_ids).strip()
        os.environ["CUDA_VISIBLE_DEVICES"] = "" if gpus.startswith("-") else gpus
    classes = tuple(c.strip() for c in args.class_names.split(",")) if args.class_names else None
    real_classes = list_images(args.ref_dir, classes).class_names
    groups = synthetic_groups(args.data_dir, real_classes)
    settings = AnalyzeSettings(
        real=args.ref_dir,
        synthetic=groups,
        output=args.output_dir,
        models=(model,),
        resolutions=(args.resolution,),
        weights={model: weights} if weights else {},
        num_channels=args.num_channels,
        nearest_k=args.nearest_k,
        class_names=classes,
        codec=args.codec,
        patients=args.patients,
        holdout=args.holdout,
        holdout_fraction=args.holdout_fraction,
        holdout_seed=args.holdout_seed,
    )
    # Ctrl-C while the report renders: rerun this command (the original's files follow).
    metrics = run_job(settings, cluster_spec(args, {}), report_hint=False)
    folders = [OriginalFolder(REAL, args.ref_dir, synthetic=False)]
    folders += [OriginalFolder(name, root, synthetic=True) for name, root in groups.items()]
    written = write_original_layout(
        settings.output,
        settings.store,
        folders,
        model=model,
        model_label=args.select_model,
        resolution=args.resolution,
        num_channels=args.num_channels,
    )
    print(f"the original's files: {', '.join(written)}")
    print(original_metrics(metrics))
    return 0


def original_metrics(metrics: dict[str, Any]) -> str:
    """Each group's scores as the original printed them (``key: value``, sorted keys):
    ``precision`` is fidelity, ``filesize`` the all-classes mean image in whole kB."""
    blocks = []
    for name, group in metrics["groups"].items():
        fid = group.get("fid")
        values = {
            "fid": DISCRETE_FID if fid is None and "hamming" in str(group.get("metric")) else fid,
            "filesize": f"{int(group['mean_image_bytes'] / 1024)} kB",
            "precision": group["fidelity"],
            "precision_privacy": group["precision_privacy"],
            "privacy": group["privacy"],
            "std": group["std"],
        }
        lines = [f"{k}: {v}" for k, v in sorted(values.items())]
        lines += [f"{k}: {group[k]}" for k in EXTENSION_KEYS if group.get(k) is not None]
        blocks.append(f"[{name}]\n" + "\n".join(lines))
    reference = metrics.get("reference")
    if reference:
        lines = [f"{k}: {reference[k]}" for k in ("fidelity", "privacy", "precision_privacy")]
        blocks.insert(0, "[holdout] (reference: held-out real images)\n" + "\n".join(lines))
    return "\n".join(blocks)


#: medsyn-dask's additions to a group's printed scores, shown when computed (holdout baseline,
#: patient mode), after the original's keys so that scripts reading those keep working.
EXTENSION_KEYS = (
    "fidelity_vs_holdout",
    "privacy_vs_holdout",
    "copy_test",
    "copy_test_p_value",
    "patients_copied",
    "patient_privacy",
    "patient_copy_share",
)


if __name__ == "__main__":
    sys.exit(main())
