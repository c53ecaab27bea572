"""The team's data: coloured shapes on noisy backgrounds, generated here (nothing is downloaded).

Six classes - disc, square, triangle, cross, ring, diamond - each drawn at a random place, size and bright colour on
a darker background of random colour with a gradient and pixel noise, as uint8 NHWC images. A loader for real data has the
same shape: read your files and return the splits (see ``load``). As an edgebench plug-in file
(``plugins: [shapes.py]``) it registers the dataset ``shapes``; ``train.py`` imports it directly.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("disc", "square", "triangle", "cross", "ring", "diamond")


def _mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Pixels inside shape ``kind`` of radius ``r`` around the origin of offsets ``u`` (across), ``v`` (down)."""
    if kind == "disc":
        return u**2 + v**2 <= r**2
    if kind == "square":
        return np.maximum(abs(u), abs(v)) <= r * 0.8
    if kind == "triangle":
        return (v <= r * 0.7) & (v >= -r) & (abs(u) <= (v + r) * 0.6)
    if kind == "cross":
        return ((abs(u) <= r * 0.25) | (abs(v) <= r * 0.25)) & (np.maximum(abs(u), abs(v)) <= r)
    if kind == "ring":
        return (u**2 + v**2 <= r**2) & (u**2 + v**2 >= (0.55 * r) ** 2)
    return abs(u) + abs(v) <= r  # diamond


def make_shapes(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8, N x size x size x 3) and their labels, balanced over the classes, from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    grid = np.arange(size, dtype=np.float32)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        background = rng.uniform(0, 110, 3)
        foreground = rng.uniform(150, 255, 3)  # brighter than the background in every channel
        slope = rng.uniform(-0.4, 0.4, 2)
        image = background + (slope[0] * (grid[None, :] - size / 2) + slope[1] * (grid[:, None] - size / 2))[..., None]
        r = rng.uniform(0.18, 0.35) * size
        cx, cy = rng.uniform(r, size - r, 2)
        inside = _mask(CLASSES[label], grid[None, :] - cx, grid[:, None] - cy, r)
        image[inside] = foreground
        image += rng.normal(0, 8, image.shape)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def load(n_train: int = 1200, n_val: int = 200, n_test: int = 400, size: int = 64) -> dict:
    """The splits as edgebench takes them from a team's loader: ``{"train": (x, y), "val": ..., "test": ...}``,
    each drawn with its own seed so no image is in two splits."""
    return {"train": make_shapes(n_train, size, seed=1), "val": make_shapes(n_val, size, seed=2),
            "test": make_shapes(n_test, size, seed=3)}


try:  # registered when edgebench imports this file as a plug-in; train.py needs no edgebench
    from edgebench.data.registry import DATASETS
except ImportError:
    pass
else:
    load.reads_files = False  # type: ignore[attr-defined]  # its data is made from its options: nothing on disk
    DATASETS.register("shapes")(load)
