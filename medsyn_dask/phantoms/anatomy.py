"""Rendering of the phantoms: random anatomies (head slices, torso volumes) and boxes.

Coordinates are a grid over [-1, 1] per axis; intensities in [0, 1] until
:func:`to_file_values` maps them to 8-bit (2D) or Hounsfield-like int16 (3D) values.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

GRAIN = 0.1  # std of the tissue grain inside the body, fixed per subject ([0, 1] intensity)
NOISE = 0.015  # std of the acquisition noise, fresh in every image
#: The intensity mapping [0, 1] -> Hounsfield-like units of 3D phantoms.
HU_OFFSET, HU_SCALE = -1000.0, 2000.0

# A shape is (offset, semi-axes, angle, value): offset and axes in units of the body's
# semi-axes, angle in radians in the plane of the first two axes, value an intensity in [0, 1].
Shape = tuple[np.ndarray, np.ndarray, float, float]




def make_grid(size: int, dims: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1], shape ``(dims,) + (size,) * dims``, float32."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.stack(np.meshgrid(*([axis] * dims), indexing="ij"))


def _paint(image: np.ndarray, grid: np.ndarray, shapes: list[Shape], frame: Shape) -> None:
    """Paint ellipses (ellipsoids) in order, later ones over earlier ones, in a body frame.

    ``frame`` places the body: its offset is the body centre, its axes scale every shape, its
    angle rotates every shape in the plane of the first two axes.
    """
    centre, scale, turn, _ = frame
    cos, sin = math.cos(turn), math.sin(turn)
    for offset, axes, angle, value in shapes:
        o = offset * scale
        c = centre.copy()
        c[0] += cos * o[0] - sin * o[1]
        c[1] += sin * o[0] + cos * o[1]
        c[2:] += o[2:]
        image[_inside(grid, c, axes * scale, angle + turn)] = value


def _inside(grid: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    d0, d1 = grid[0] - centre[0], grid[1] - centre[1]
    cos, sin = math.cos(angle), math.sin(angle)
    r = ((cos * d0 + sin * d1) / axes[0]) ** 2 + ((-sin * d0 + cos * d1) / axes[1]) ** 2
    for j in range(2, len(axes)):
        r += ((grid[j] - centre[j]) / axes[j]) ** 2
    return r <= 1.0


def random_anatomy(rng: np.random.Generator, dims: int, lesions: int) -> dict:
    """One random subject: body frame, shapes, shading and grain (intensities in [0, 1])."""
    shapes = _head(rng, lesions) if dims == 2 else _torso(rng, lesions)
    frame = (
        rng.normal(0.0, 0.03, dims).astype(np.float32),
        np.asarray(
            [rng.uniform(0.82, 0.9), rng.uniform(0.64, 0.74)]
            if dims == 2
            else [rng.uniform(0.8, 0.9), rng.uniform(0.55, 0.65), 1.0],
            dtype=np.float32,
        ),
        float(rng.normal(0.0, 0.08)),
        0.0,
    )
    # Smooth multiplicative shading: a coarse random field, linearly upsampled.
    shading = rng.normal(0.0, 1.0, (6,) * dims if dims == 2 else (4,) * dims)
    # Pixel-fine tissue grain, fixed per subject (drawn at render time from this seed): what a
    # mean image averages away when subjects vary and keeps when they do not. Without it, one
    # piecewise-constant phantom compresses better than the noisy mean of many, and the
    # collapsed group would look the most varied.
    grain = int(rng.integers(2**63))
    return {"shapes": shapes, "frame": frame, "shading": shading.astype(np.float32), "grain": grain}


def _shape(offset, axes, angle: float, value: float) -> Shape:
    return (
        np.asarray(offset, dtype=np.float32),
        np.asarray(axes, dtype=np.float32),
        float(angle),
        float(value),
    )


def _head(rng: np.random.Generator, lesions: int) -> list[Shape]:
    skull, brain = rng.uniform(0.85, 0.97), rng.uniform(0.3, 0.42)
    csf = brain - rng.uniform(0.15, 0.22)
    v = rng.uniform(0.7, 1.3, 2)  # ventricle sizes
    shapes = [
        _shape([0, 0], [1, 1], 0, skull),
        _shape([0, 0], [0.91, 0.9], 0, brain),
        _shape([-0.05, -0.22], [0.32 * v[0], 0.13 * v[0]], 0.3, csf),
        _shape([-0.05, 0.22], [0.32 * v[1], 0.13 * v[1]], -0.3, csf),
    ]
    for offset in ([0.35, -0.15], [0.35, 0.15], [-0.5, 0.0]):
        jitter = rng.normal(0.0, 0.04, 2)
        shapes.append(
            _shape(np.add(offset, jitter), [rng.uniform(0.06, 0.09)] * 2, 0, brain + 0.12)
        )
    for _ in range(lesions):
        r, phi = rng.uniform(0.2, 0.55), rng.uniform(0, 2 * np.pi)
        axes = rng.uniform(0.09, 0.16, 2)
        where = [r * math.cos(phi), r * math.sin(phi)]
        shapes.append(_shape(where, axes * 1.5, rng.uniform(0, np.pi), brain - 0.08))  # oedema
        shapes.append(_shape(where, axes, rng.uniform(0, np.pi), rng.uniform(0.75, 0.9)))
    return shapes


def _torso(rng: np.random.Generator, lesions: int) -> list[Shape]:
    lung = rng.uniform(0.8, 1.2, 2)
    heart, liver = rng.uniform(0.85, 1.15, 2)
    shapes = [
        _shape([0, 0, 0], [1, 1, 2], 0, 0.52),  # soft tissue, about +40 HU
        _shape([0.38, -0.05, 0.2], [0.3 * lung[0], 0.5 * lung[0], 0.7], 0.1, 0.1),  # lungs
        _shape([-0.38, -0.05, 0.2], [0.3 * lung[1], 0.5 * lung[1], 0.7], -0.1, 0.1),
        _shape([0.08, -0.15, 0.1], np.multiply([0.22, 0.25, 0.25], heart), 0, 0.54),
        _shape([-0.3, 0.0, -0.6], np.multiply([0.45, 0.5, 0.35], liver), 0, 0.53),
        _shape([0, 0.75, 0], [0.12, 0.14, 2], 0, 0.85),  # spine, about +700 HU
    ]
    for _ in range(lesions):
        side = rng.choice([-1.0, 1.0])
        where = [side * 0.38 + rng.normal(0, 0.06), rng.normal(-0.05, 0.12), rng.uniform(0, 0.5)]
        shapes.append(_shape(where, [rng.uniform(0.08, 0.14)] * 3, 0, rng.uniform(0.6, 0.7)))
    return shapes


def render(anatomy: dict, grid: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Anatomy -> float32 image in [0, 1]: shapes, shading and grain in the body, white noise."""
    image = np.zeros(grid.shape[1:], dtype=np.float32)
    _paint(image, grid, anatomy["shapes"], anatomy["frame"])
    body = image > 0
    shading = anatomy["shading"]
    field_ = ndimage.zoom(shading, np.divide(image.shape, shading.shape), order=1)
    image *= 1.0 + 0.06 * field_[tuple(slice(0, n) for n in image.shape)]
    grain = np.random.default_rng(anatomy["grain"]).standard_normal(image.shape, np.float32)
    image += GRAIN * grain * body
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The poor generator: random boxes over stripes and strong noise, no anatomy."""
    n = shape[0]
    axis = np.arange(n, dtype=np.float32) / n
    image = np.full(shape, rng.uniform(0.0, 0.3), dtype=np.float32)
    image += 0.2 * np.sin(2 * np.pi * rng.uniform(2, 8) * axis + rng.uniform(0, 2 * np.pi))
    for _ in range(int(rng.integers(3, 7))):
        lo = rng.integers(0, n - 2, len(shape))
        hi = lo + rng.integers(2, max(3, n // 2), len(shape))
        image[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.uniform(0.2, 1.0)
    image += rng.normal(0.0, 0.04, shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Real and synthetic images, in file pixel values (uint8 for 2D, int16 HU for 3D)
# --------------------------------------------------------------------------------------------


def to_file_values(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.rint(image * 255.0).astype(np.uint8)
    return np.rint(image * HU_SCALE + HU_OFFSET).astype(np.int16)


def real_like(rng: np.random.Generator, grid: np.ndarray, cls: int) -> np.ndarray:
    return to_file_values(render(random_anatomy(rng, grid.shape[0], cls), grid, rng, noise=NOISE))


def synthetic_like(
    group: str,
    rng: np.random.Generator,
    grid: np.ndarray,
    cls: int,
    source: np.ndarray,
    template: dict,
) -> np.ndarray:
    if group == "memorizer":
        # Faint noise: about 2 gray levels (2D) or 4 HU (3D), far below real-to-real distances.
        sigma = 2.0 if source.ndim == 2 else 4.0
        noisy = source.astype(np.float32) + rng.normal(0.0, sigma, source.shape)
        info = np.iinfo(source.dtype)
        return np.clip(np.rint(noisy), info.min, info.max).astype(source.dtype)
    if group == "faithful":
        return real_like(rng, grid, cls)
    if group == "collapsed":
        centre, scale, turn, value = template["frame"]
        jitter = (centre + rng.normal(0.0, 0.003, centre.shape).astype(np.float32), scale)
        anatomy = {**template, "frame": (*jitter, turn, value)}
        return to_file_values(render(anatomy, grid, rng, noise=NOISE))
    if group == "poor":
        return to_file_values(boxes(rng, grid.shape[1:]))
    raise ValueError(f"unknown synthetic group {group!r}")
