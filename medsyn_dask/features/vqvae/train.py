"""Training the VQ-VAE-2 feature extractor on a user's real images (``train_vqvae``).

:func:`train_vqvae` checks the settings and lists the images where it is called, then trains
in one piece of work: in this process without a Dask client, or as one Dask task on the
cluster (holding the resource ``GPU=1`` when some worker advertises it, so it lands on a GPU
worker; on any worker otherwise). The task writes the checkpoint files itself, so ``output``
must be reachable from the workers (a shared disk or an object store), as the feature store
is; its progress lines reach the caller through Dask's event topics.

Files (:mod:`.train_files`): ``CKPT`` (the plain state dict, original parameter names),
``CKPT.train.pt`` (resume state), ``CKPT.json`` (record); ``training.png`` and
``reconstructions.png`` in ``plots`` (default: the checkpoint's folder). Rerunning the same
command resumes from the last saved step.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import checks
from ...errors import SettingsError
from ...progress import stage
from ...sources import Dataset, list_images
from .train_run import TrainResult, run_training

#: Bottom-encoder stride of each reference model size (``size // 64``).
MODEL_SIZES = (256, 512, 1024)


@dataclass(frozen=True)
class TrainSettings:
    """What :func:`train_vqvae` is asked to do; validated on creation (SettingsError).

    ``model_size`` is the reference's ``size`` (bottom stride ``size // 64``: 4, 8, 16; the
    original package builds 512). ``resolution`` must be a multiple of twice that stride (the
    top code map's stride). The architecture fields default to the reference's values.
    ``restart_below``: a code whose EMA count falls below it is moved onto an encoder output
    (:meth:`.model.Quantize.restart_dead_codes`; 0 trains the codebook as the reference).
    """

    real: str
    output: str
    resolution: int = 256
    num_channels: int = 1
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-4
    class_names: tuple[str, ...] | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    model_size: int = 512
    channels: int = 128
    res_blocks: int = 2
    res_channels: int = 32
    embed_dim: int = 64
    codebook_size: int = 512
    save_every: int = 500
    seed: int = 0
    min_usage: float = 0.1
    restart_below: float = 1.0
    plots: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("real", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingsError(f"{name} must be a path or URL, got {getattr(self, name)!r}")
        checks.check_resolution(self.resolution)
        checks.check_choice(self.num_channels, "num_channels", checks.NUM_CHANNELS)
        checks.check_choice(self.model_size, "model_size", MODEL_SIZES)
        top_stride = 2 * self.stride
        if self.resolution % top_stride:
            raise SettingsError(
                f"resolution must be a multiple of {top_stride} for model size "
                f"{self.model_size} (bottom stride {self.stride}, top stride {top_stride}), "
                f"got {self.resolution}"
            )
        if self.epochs is not None and self.steps is not None:
            raise SettingsError("give epochs or steps, not both")
        for name in ("epochs", "steps"):
            if getattr(self, name) is not None:
                checks.check_int(getattr(self, name), name)
        for name in ("batch_size", "channels", "res_blocks", "res_channels", "embed_dim"):
            checks.check_int(getattr(self, name), name)
        checks.check_int(self.codebook_size, "codebook_size", minimum=2, maximum=2**31 - 1)
        checks.check_int(self.save_every, "save_every")
        checks.check_int(self.seed, "seed", minimum=0)
        if checks.check_number(self.lr, "lr") <= 0:
            raise SettingsError(f"lr must be > 0, got {self.lr}")
        checks.check_number(self.restart_below, "restart_below")
        if checks.check_number(self.min_usage, "min_usage") > 1:
            raise SettingsError(f"min_usage is a share of codes in [0, 1], got {self.min_usage}")
        _check_local_output(self.output)

    @property
    def stride(self) -> int:
        """Bottom-encoder stride (pixels per bottom code along a side)."""
        return self.model_size // 64

    def architecture(self) -> dict[str, int]:
        """Keyword arguments of :class:`.model.VQVAE`."""
        return {
            "in_channel": self.num_channels,
            "channel": self.channels,
            "n_res_block": self.res_blocks,
            "n_res_channel": self.res_channels,
            "embed_dim": self.embed_dim,
            "n_embed": self.codebook_size,
            "size": self.model_size,
        }

    def plots_folder(self) -> str:
        return self.plots or (self.output.rpartition("/")[0] or ".")


def train_vqvae(
    real: str,
    output: str,
    *,
    client: Any = None,
    progress: bool = True,
    class_names: Sequence[str] | None = None,
    **settings: Any,
) -> TrainResult:
    """Train the reference VQ-VAE-2 on the images under ``real/CLASS/`` and write ``output``.

    ``settings`` are the fields of :class:`TrainSettings` (``resolution``, ``epochs`` or
    ``steps`` (default 100 epochs), ``batch_size``, ``lr``, ``model_size``...). With
    ``client`` (a ``distributed.Client``) training runs as one task on its cluster, else in
    this process. An existing ``output`` with its training state is resumed; one without it
    is an error unless ``overwrite=True``. Raises :class:`~medsyn_dask.errors.SettingsError`
    for a bad setting and :class:`~medsyn_dask.errors.InputError` for missing, unreadable or
    mixed gray/colour images, before any training step.
    """
    classes = tuple(class_names) if class_names else None
    config = TrainSettings(real=real, output=output, class_names=classes, **settings)
    if config.epochs is None and config.steps is None:
        config = dataclasses.replace(config, epochs=100)
    dataset = list_images(config.real, config.class_names, config.storage_options)
    stage(
        f"train-vqvae: {len(dataset)} {'volumes' if dataset.volumes else 'images'} in "
        f"{len(dataset.class_names)} classes under {config.real}",
        enabled=progress,
    )
    if client is None:
        return run_training(config, dataset, lambda m: stage(m, enabled=progress))
    return _run_on_cluster(client, config, dataset, progress)


def _run_on_cluster(client: Any, config: TrainSettings, dataset: Dataset, progress: bool):
    from ...cluster import GPU_RESOURCE

    workers = client.scheduler_info().get("workers", {}).values()
    has_gpu = any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers)
    topic = f"medsyn-train-vqvae-{uuid.uuid4().hex}"
    client.subscribe_topic(topic, lambda event: stage(event[1], enabled=progress))
    stage(
        f"train-vqvae: training as one task on a {'GPU' if has_gpu else 'CPU'} worker",
        enabled=progress,
    )
    try:
        future = client.submit(
            _train_task,
            config,
            dataset,
            topic,
            key=f"train-vqvae-{uuid.uuid4().hex[:8]}",
            resources={GPU_RESOURCE: 1} if has_gpu else None,
            pure=False,
        )
        result = future.result()
        time.sleep(0.2)  # let the last progress events arrive before the caller prints
        return result
    finally:
        client.unsubscribe_topic(topic)


def _train_task(config: TrainSettings, dataset: Dataset, topic: str) -> TrainResult:
    """Worker side of :func:`_run_on_cluster`: progress lines go to the event ``topic``."""
    import torch
    from distributed import get_worker

    worker = get_worker()
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        # Dask starts workers with OMP_NUM_THREADS=1; training is the worker's only work.
        torch.set_num_threads(max(1, worker.state.nthreads))
    try:
        return run_training(config, dataset, lambda message: worker.log_event(topic, message))
    finally:
        torch.set_num_threads(threads)


def _check_local_output(output: str) -> None:
    """SettingsError before any training where a local checkpoint path cannot be written: a
    folder itself, or under a file (found only when the first checkpoint was saved)."""
    if "://" in output:
        return
    path = Path(output)
    if path.is_dir():
        raise SettingsError(f"output {output} is a folder: give the checkpoint's file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SettingsError(f"output {output}: {parent} is a file, not a folder")
