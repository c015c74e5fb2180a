"""One VQ-VAE training run, where it executes (this process or a Dask worker): resume or
start, load the images, train, save, draw.

Resuming needs the same architecture, resolution, channels and file list as the saved run;
the number of steps, the learning rate and the other settings may change between runs.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import SettingsError
from ...sources import Dataset
from .model import VQVAE
from .train_data import file_list_sha256, load_training_images
from .train_files import (
    exists,
    load_training,
    remove_stale_temporaries,
    save_training,
    write_atomic,
)
from .train_loop import Curve, Trainer, reconstruct, steps_per_epoch
from .train_plots import reconstructions_png, training_png

if TYPE_CHECKING:
    from .train import TrainSettings

#: Identifies the record format of ``CKPT.json``.
RECORD_FORMAT = "medsyn-dask train-vqvae 1"
#: Images in the reconstruction grid.
GRID_IMAGES = 8
#: Progress lines per run (about).
REPORTS = 20
#: Keys of the record that must match for a resume.
_MATCH = ("architecture", "resolution", "num_channels", "file_list_sha256")


@dataclass(frozen=True)
class TrainResult:
    """What a training run left: the checkpoint, where it stopped and how well it did.

    ``loss`` is the last recorded mean training loss; ``usage_top`` / ``usage_bottom`` the
    share of codes used in the last batches; ``reconstruction_mse`` the eval-mode MSE (on
    the [-1, 1] scale) over at most 256 training images; ``resumed_from`` the step the run
    started at (0 for a fresh run); ``seconds`` the time this run trained for.
    """

    checkpoint: str
    step: int
    total_steps: int
    n_images: int
    loss: float
    reconstruction_mse: float
    usage_top: float
    usage_bottom: float
    resumed_from: int
    seconds: float
    device: str
    plots: tuple[str, ...]
    warnings: tuple[str, ...]


def run_training(
    config: TrainSettings, dataset: Dataset, emit: Callable[[str], None]
) -> TrainResult:
    """Train as ``config`` says on ``dataset`` (listed by the caller); ``emit`` shows a line."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = {
        "root": config.real,
        "n_files": len(dataset),
        "classes": dict(Counter(dataset.classes)),
        "file_list_sha256": file_list_sha256(dataset),
    }
    saved = _saved_state(config, data)
    remove_stale_temporaries(config.output, config.storage_options)
    images = load_training_images(
        dataset, config.resolution, config.num_channels, config.storage_options
    )
    per_epoch = steps_per_epoch(len(images), config.batch_size)
    total = config.steps if config.steps is not None else config.epochs * per_epoch
    torch.manual_seed(config.seed)
    model = VQVAE(**config.architecture()).to(device)
    for quantiser in (model.quantize_t, model.quantize_b):
        quantiser.restart_below = config.restart_below
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    trainer = Trainer(
        model, optimizer, images, config.batch_size, config.seed, config.min_usage, emit
    )
    start = 0
    if saved is not None:
        model.load_state_dict(saved["model"], strict=True)
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        start = int(saved["record"]["step"])
        trainer.curve = Curve.from_dict(saved["record"]["curve"])
        trainer.warnings = list(saved["record"].get("warnings", []))
        emit(f"train-vqvae: resuming from step {start} of {config.output}")
        if start > total:
            raise SettingsError(f"{total} steps asked, but {config.output} is at step {start}")
    emit(
        f"train-vqvae: {len(images)} images of {config.resolution} px, {per_epoch} steps per "
        f"epoch of batch {config.batch_size}; steps {start}..{total} on {device.type}"
    )
    began = time.perf_counter()

    def save(step: int) -> None:
        record = _record(config, data, trainer, step, total, len(images), device)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_training(
            config.output,
            state,
            optimizer.state_dict(),
            torch.get_rng_state(),
            record,
            config.storage_options,
        )

    if start < total:
        every = max(1, (total - start) // REPORTS)
        warmup = min(100, total // 2)
        trainer.run(
            start,
            total,
            save_every=config.save_every,
            save=save,
            report_every=every,
            warmup=warmup,
        )
    seconds = time.perf_counter() - began
    sample = images[np.linspace(0, len(images) - 1, min(256, len(images))).astype(int)]
    recon = reconstruct(model, sample)
    plots = _write_plots(config, trainer.curve, sample, recon)
    c = trainer.curve
    return TrainResult(
        checkpoint=config.output,
        step=max(start, total),
        total_steps=total,
        n_images=len(images),
        loss=c.loss[-1] if c.loss else float("nan"),
        reconstruction_mse=float(np.mean((recon - sample) ** 2)),
        usage_top=c.usage_top[-1] if c.usage_top else 0.0,
        usage_bottom=c.usage_bottom[-1] if c.usage_bottom else 0.0,
        resumed_from=start,
        seconds=seconds,
        device=device.type,
        plots=plots,
        warnings=tuple(trainer.warnings),
    )


def _saved_state(config: TrainSettings, data: dict[str, Any]) -> dict[str, Any] | None:
    """The resume state to continue from, or ``None`` to start afresh; refuses to overwrite a
    checkpoint it did not make, or to resume a run made with other data or architecture."""
    if config.overwrite:
        return None
    saved = load_training(config.output, config.storage_options)
    if saved is None:
        if exists(config.output, config.storage_options):
            raise SettingsError(
                f"{config.output} exists and has no training state beside it: choose another "
                "output, or overwrite it (--overwrite)"
            )
        return None
    record = saved["record"]
    mine = {
        "architecture": config.architecture(),
        "resolution": config.resolution,
        "num_channels": config.num_channels,
        **data,
    }
    for key in _MATCH:
        if record.get(key) != mine[key]:
            what = "file list" if key == "file_list_sha256" else key.replace("_", " ")
            raise SettingsError(
                f"cannot resume {config.output}: its {what} was {record.get(key)!r}, now "
                f"{mine[key]!r}; start afresh with --overwrite or choose another output"
            )
    return saved


def _record(
    config: TrainSettings,
    data: dict[str, Any],
    trainer: Trainer,
    step: int,
    total: int,
    n_images: int,
    device: torch.device,
) -> dict[str, Any]:
    """The JSON-able record of the run at ``step`` (see :mod:`.train_files`)."""
    from ... import __version__

    settings = {k: v for k, v in asdict(config).items() if k not in ("storage_options",)}
    settings["class_names"] = list(config.class_names) if config.class_names else None
    c = trainer.curve
    return {
        "format": RECORD_FORMAT,
        "package_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "device": device.type,
        "step": step,
        "total_steps": total,
        "complete": step >= total,
        "epochs_done": step / steps_per_epoch(n_images, config.batch_size),
        "architecture": config.architecture(),
        "resolution": config.resolution,
        "num_channels": config.num_channels,
        **data,
        "n_images": n_images,
        "settings": settings,
        "codebook_usage": {
            "top": c.usage_top[-1] if c.usage_top else None,
            "bottom": c.usage_bottom[-1] if c.usage_bottom else None,
        },
        "curve": c.to_dict(),
        "warnings": list(trainer.warnings),
    }


def _write_plots(
    config: TrainSettings, curve: Curve, sample: np.ndarray, recon: np.ndarray
) -> tuple[str, str]:
    folder = config.plots_folder().rstrip("/")
    training = f"{folder}/training.png"
    grid = f"{folder}/reconstructions.png"
    pick = np.linspace(0, len(sample) - 1, min(GRID_IMAGES, len(sample))).astype(int)
    write_atomic(training, training_png(curve, config.min_usage), config.storage_options)
    write_atomic(grid, reconstructions_png(sample[pick], recon[pick]), config.storage_options)
    return training, grid
