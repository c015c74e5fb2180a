"""Runs the original package (``synthetic-image-analyzer`` 1.0.0) for ``compat_original.py``.

Executed by the Python of the original's own environment (torch 2.14.1, torchvision, timm,
OpenCV), never imported by medsyn-dask. Two work-arounds are patched in at run time, in this
process only, because the original crashes on the CPU path it offers:

- ``compute_feature`` calls ``.cuda()`` on every batch whatever ``--gpu_ids`` says:
  ``torch.Tensor.cuda`` returns the tensor itself here (``--gpu_ids -1`` puts the model on the
  CPU, as the original meant).
- ``ComputeAllMetrics.fid`` returns a local ``fid`` that it never set for discrete features
  (``UnboundLocalError``): here it records the original's own message for them and returns
  ``None``; continuous features go through the original method unchanged.

Modes (each writes one JSON file, ``--out``):

``codes ROOT CKPT OUT --resolutions 64 256``
    the original's ``compute_feature`` (batches of 16, its DataLoader) for ``vqvae_top`` and
    ``vqvae_bottom`` at each resolution: codes by file name; and, on the very tensors of the
    original's dataset, medsyn-dask's ``VQVAE.encode`` (``model.py`` loaded by path) against the
    original's ``VQVAE.encode`` in this same torch build: counts of differing codes.
``analyze OUT -- ORIGINAL FLAGS``
    the original's command line (``SyntheticImageAnalyzer``), then each synthetic image's set
    label from its saved features, with the original's own distance functions.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
MODEL_PY = REPO / "medsyn_dask" / "features" / "vqvae" / "model.py"
DISCRETE_FID = "FID on discrete values has no meanings"  # the original's own text


def patch_original() -> None:
    """The two run-time work-arounds of the module docstring."""
    from synthetic_image_analyzer import quality_evaluator

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    original_fid = quality_evaluator.ComputeAllMetrics.fid

    def fid(self):
        if self.feature_type == "numeric":
            return original_fid(self)
        self.metrics["fid"] = DISCRETE_FID
        return None

    quality_evaluator.ComputeAllMetrics.fid = fid


def read_codes(csv_path: str) -> dict[str, list[int]]:
    """File name -> codes from a features CSV the original wrote (index, columns, filename)."""
    table = pd.read_csv(csv_path, index_col=0)
    names = table.pop("filename").tolist()
    return {name: row.tolist() for name, row in zip(names, table.to_numpy(np.int64), strict=True)}


def codes(root: str, ckpt: str, resolutions: list[int]) -> dict:
    from synthetic_image_analyzer.extract_features import compute_feature
    from synthetic_image_analyzer.image_dataset import image_dataset
    from synthetic_image_analyzer.vqvae import VQVAE as OriginalVQVAE

    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "codes": {}}
    state = torch.load(ckpt, map_location="cpu")
    original = OriginalVQVAE(in_channel=1)
    original.load_state_dict(state)
    original.eval()
    ours = _medsyn_model(state)
    with tempfile.TemporaryDirectory() as tmp:
        for res in resolutions:
            for model in ("vqvae_top", "vqvae_bottom"):
                torch.manual_seed(0)  # the DataLoader shuffles
                with contextlib.redirect_stdout(io.StringIO()):
                    compute_feature(
                        root,
                        None,
                        res,
                        1,
                        tmp,
                        model,
                        ckpt,
                        batch_size=16,
                        gpu_ids=-1,
                        save_features=True,
                        save_name="codes",
                    )
                out["codes"][f"{model}_{res}"] = read_codes(f"{tmp}/Features/codes.csv")
            data = image_dataset(filepath=root, resolution=res, num_channels=1)
            batch = torch.stack([data[i]["image"] for i in range(len(data))])
            with torch.no_grad():
                _, _, _, ot, ob = original.encode(batch)
                mt, mb = ours.encode(batch)
            out[f"same_build_{res}"] = {
                "positions_top": int(ot.numel()),
                "positions_bottom": int(ob.numel()),
                "differing_top": int((ot != mt).sum()),
                "differing_bottom": int((ob != mb).sum()),
            }
    return out


def _medsyn_model(state: dict) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("medsyn_vqvae_model", MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses/annotations look the module up by name
    spec.loader.exec_module(module)
    return module.vqvae_from_state_dict(state)


def analyze(flags: list[str]) -> dict:
    from synthetic_image_analyzer.main import SyntheticImageAnalyzer
    from synthetic_image_analyzer.utils import (
        compute_nearest_neighbour_distances,
        compute_pairwise_distance,
        feature_metrics,
    )

    sys.argv = ["synthetic_image_analyzer", *flags]
    torch.manual_seed(0)
    analyzer = SyntheticImageAnalyzer()
    opt = analyzer.opt
    real, fake = analyzer.feature_extractor()
    metrics = analyzer.compute_qualities(real, fake)
    # Set labels with the original's distance functions, as compute_fidelity_privacy uses them.
    kind = "discrete" if "vqvae" in opt.select_model else "numeric"
    fake_csv = Path(opt.output_dir, "Features", f"{Path(opt.data_dir).name}_{opt.select_model}.csv")
    names = pd.read_csv(fake_csv, index_col=0)["filename"].tolist()
    radii = compute_nearest_neighbour_distances(real, opt.nearest_k, kind)
    dmins = compute_nearest_neighbour_distances(real, 1, kind)
    dist = compute_pairwise_distance(real, fake, distance_type=feature_metrics[kind])
    margin = 0.0 if np.mean(np.std(fake, axis=0)) > 0.05 else 0.05
    realistic = (dist < radii[:, None]).any(axis=0)
    copy = (dist < dmins[:, None] + margin).any(axis=0)
    labels = np.where(copy, "copy", np.where(realistic, "real", "non-real"))
    return {
        "metrics": {k: (v if isinstance(v, str) else float(v)) for k, v in metrics.items()},
        "labels": dict(zip(names, labels.tolist(), strict=True)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("codes")
    c.add_argument("root")
    c.add_argument("checkpoint")
    c.add_argument("out")
    c.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    a = sub.add_parser("analyze")
    a.add_argument("out")
    a.add_argument("flags", nargs=argparse.REMAINDER)
    args = p.parse_args()
    patch_original()
    if args.mode == "codes":
        result = codes(args.root, args.checkpoint, args.resolutions)
    else:
        result = analyze([f for f in args.flags if f != "--"])
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
