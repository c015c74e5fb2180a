"""The VQ-VAE training loop: the reference's loss and optimiser, loss curve, codebook usage.

One step (rosinality's ``train_vqvae.py``, which the original builds on): Adam, loss =
MSE(reconstruction, image) + 0.25 x latent loss (the commitment losses of both levels), the
codebooks following the EMA of their assigned vectors (:meth:`.model.Quantize.quantise`).
Batches are drawn without replacement: epoch ``e`` visits the images in the order of a
permutation seeded by ``(seed, e)``, in ``N // batch_size`` full batches, so the batches of a
step depend on the step alone and a resumed run sees exactly the batches an uninterrupted one
would have seen.

Codebook usage is the share of a level's codes chosen at least once in the last
:data:`USAGE_WINDOW` batches. A codebook used at a few percent maps most images to the same
few codes, and Hamming distances between such code maps say little.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import SettingsError
from .model import VQVAE

#: Weight of the latent (commitment) loss, as in the reference.
LATENT_LOSS_WEIGHT = 0.25
#: Batches over which codebook usage is counted.
USAGE_WINDOW = 20
#: Steps between two points of the recorded loss curve (each the mean over those steps).
RECORD_EVERY = 10
#: Remedies named when usage collapses.
REMEDIES = (
    "a lower --lr, a larger --batch-size, more images, a smaller --codebook-size, or "
    "initialising the codebook from encoder outputs (k-means) / re-initialising unused codes"
)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (at least 1: a set smaller than a batch is one batch)."""
    return max(1, n_images // batch_size)


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the images of ``step`` (0-based): a slice of epoch ``step // spe``'s
    permutation (see the module docstring)."""
    per_epoch = steps_per_epoch(n_images, batch_size)
    epoch, b = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return np.sort(order[b * batch_size : (b + 1) * batch_size])


class UsageWindow:
    """Share of ``n_embed`` codes chosen at least once in the last ``window`` batches."""

    def __init__(self, n_embed: int, window: int = USAGE_WINDOW) -> None:
        self.n_embed = n_embed
        self.recent: deque[torch.Tensor] = deque(maxlen=window)

    def add(self, codes: torch.Tensor) -> None:
        """Count the code indices of one batch (any shape)."""
        self.recent.append(torch.bincount(codes.reshape(-1), minlength=self.n_embed).cpu() > 0)

    def share(self) -> float:
        if not self.recent:
            return 0.0
        return float(torch.stack(list(self.recent)).any(0).float().mean())


@dataclass
class Curve:
    """The recorded loss curve: one point per :data:`RECORD_EVERY` steps (means over them)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    reconstruction_mse: list[float] = field(default_factory=list)
    latent_loss: list[float] = field(default_factory=list)
    usage_top: list[float] = field(default_factory=list)
    usage_bottom: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Curve:
        return cls(**{k: list(data.get(k, [])) for k in cls().__dict__})


@dataclass
class Trainer:
    """Runs steps of ``model`` on ``images`` (float32 ``(N, C, R, R)`` in [-1, 1], on the CPU)
    and keeps the curve, the usage windows and the usage warnings."""

    model: VQVAE
    optimizer: torch.optim.Optimizer
    images: np.ndarray
    batch_size: int
    seed: int
    min_usage: float
    emit: Callable[[str], None]
    curve: Curve = field(default_factory=Curve)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        n_embed = self.model.quantize_t.n_embed
        self.usage = {"top": UsageWindow(n_embed), "bottom": UsageWindow(n_embed)}
        self._collapsed: set[str] = set()
        self._sums = np.zeros(3)

    def step(self, step: int) -> None:
        """One optimiser step on the batch of ``step``."""
        idx = batch_indices(len(self.images), self.batch_size, self.seed, step)
        x = torch.from_numpy(self.images[idx]).to(self.device)
        self.model.train()
        out, latent, (id_t, id_b) = self.model(x)
        recon = torch.nn.functional.mse_loss(out, x)
        loss = recon + LATENT_LOSS_WEIGHT * latent
        if not torch.isfinite(loss):
            # before the optimiser step: the weights saved last stay usable
            raise SettingsError(
                f"the training loss became {loss.item()} at step {step + 1}: training diverged; "
                f"lower --lr (now {self.optimizer.param_groups[0]['lr']:g}) and rerun"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.usage["top"].add(id_t)
        self.usage["bottom"].add(id_b)
        self._sums += [loss.item(), recon.item(), latent.item()]

    def run(
        self,
        start: int,
        stop: int,
        *,
        save_every: int,
        save: Callable[[int], None],
        report_every: int,
        warmup: int,
    ) -> None:
        """Steps ``start..stop-1``; after step ``s`` (1-based count ``s + 1``) a curve point
        every :data:`RECORD_EVERY`, a progress line every ``report_every``, ``save(count)``
        every ``save_every`` steps and at the end."""
        n = 0
        for s in range(start, stop):
            self.step(s)
            n += 1
            done = s + 1
            if done % RECORD_EVERY == 0 or done == stop:
                self._record(done, n)
                n = 0
                if done >= warmup:
                    self._check_usage(done)
            if done % report_every == 0 or done == stop:
                self.emit(self.progress_line(done, stop))
            if done % save_every == 0 or done == stop:
                save(done)

    def _record(self, done: int, n: int) -> None:
        loss, recon, latent = self._sums / max(n, 1)
        self._sums[:] = 0
        c = self.curve
        c.step.append(done)
        c.loss.append(float(loss))
        c.reconstruction_mse.append(float(recon))
        c.latent_loss.append(float(latent))
        c.usage_top.append(self.usage["top"].share())
        c.usage_bottom.append(self.usage["bottom"].share())

    def _check_usage(self, done: int) -> None:
        """Warn once when a level's usage falls below ``min_usage`` (again after a recovery)."""
        for level, window in self.usage.items():
            share = window.share()
            if share >= self.min_usage:
                self._collapsed.discard(level)
            elif level not in self._collapsed:
                self._collapsed.add(level)
                n_embed = window.n_embed
                message = (
                    f"warning: codebook usage collapsed at step {done}: the {level} level used "
                    f"{share:.1%} of its {n_embed} codes in the last {len(window.recent)} "
                    f"batches (below {self.min_usage:.0%}); its code maps make poor features. "
                    f"Remedies: {REMEDIES}"
                )
                self.warnings.append(message)
                self.emit(message)

    def progress_line(self, done: int, total: int) -> str:
        c = self.curve
        if not c.step:
            return f"train-vqvae: step {done}/{total}"
        return (
            f"train-vqvae: step {done}/{total}, loss {c.loss[-1]:.4f} (reconstruction "
            f"{c.reconstruction_mse[-1]:.4f}, latent {c.latent_loss[-1]:.4f}), codebook usage "
            f"top {c.usage_top[-1]:.0%}, bottom {c.usage_bottom[-1]:.0%}"
        )


@torch.no_grad()
def reconstruct(model: VQVAE, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Reconstructions (same shape as ``images``, float32) by ``model`` in eval mode (the
    codebooks are not updated)."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(torch.from_numpy(images[i : i + batch_size]).to(device))[0].cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)
