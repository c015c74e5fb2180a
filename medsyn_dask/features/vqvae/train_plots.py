"""Pictures of a VQ-VAE training run: the loss curve with codebook usage, and reconstructions.

Both are PNG bytes drawn with matplotlib's Agg backend (no display needed); the caller writes
them (``training.png``, ``reconstructions.png``).
"""

from __future__ import annotations

import io

import numpy as np

from .train_loop import Curve


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure

    # A Figure without pyplot: no global state, no GUI backend, safe in a worker thread.
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, cols, squeeze=False)


def training_png(curve: Curve, min_usage: float) -> bytes:
    """Loss (total, reconstruction MSE, latent; log scale) against step, beside the codebook
    usage of both levels (share of codes used in recent batches) with the warning floor."""
    fig, axes = _figure(10, 3.6, 1, 2)
    loss_ax, usage_ax = axes[0]
    for values, label in (
        (curve.loss, "loss"),
        (curve.reconstruction_mse, "reconstruction MSE"),
        (curve.latent_loss, "latent loss"),
    ):
        loss_ax.plot(curve.step, values, label=label)
    if curve.step and min(curve.loss + curve.reconstruction_mse + curve.latent_loss) > 0:
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="step", ylabel="loss", title="training loss")
    loss_ax.legend()
    usage_ax.plot(curve.step, curve.usage_top, label="top codes")
    usage_ax.plot(curve.step, curve.usage_bottom, label="bottom codes")
    usage_ax.axhline(min_usage, color="grey", linestyle="--", label="warning floor")
    usage_ax.set(xlabel="step", ylabel="share of codes used", title="codebook usage")
    usage_ax.set_ylim(0, 1.02)
    usage_ax.legend()
    return _png(fig)


def reconstructions_png(originals: np.ndarray, reconstructions: np.ndarray) -> bytes:
    """A grid: originals (top row) over their reconstructions (bottom row); images
    ``(n, C, R, R)`` in [-1, 1], C = 1 (gray) or 3 (RGB)."""
    n = len(originals)
    fig, axes = _figure(1.6 * n, 3.6, 2, n)
    for row, (images, label) in enumerate(
        ((originals, "original"), (reconstructions, "reconstruction"))
    ):
        for i in range(n):
            ax = axes[row][i]
            img = np.clip((images[i] + 1) / 2, 0, 1).transpose(1, 2, 0)
            if img.shape[2] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(label)
    return _png(fig)
