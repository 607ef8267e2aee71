"""A small, seeded, synthetic two-class set of histology-like images (for the demo run).

These images are **synthetic**: pink (eosin) stroma with purple (haematoxylin) nuclei. "benign"
images have few, small, round, evenly sized nuclei arranged around gland-like lumens;
"malignant" images have many large, irregular nuclei of varied size, crowded together. They only
let the pipeline be tried end to end on a machine without data; they say nothing about pathology.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from breastcls.io import atomic_path, atomic_write_text

__all__ = ["DEMO_CLASSES", "make_demo_dataset", "synthetic_tissue"]

DEMO_CLASSES = ("benign", "malignant")


def synthetic_tissue(
    rng: np.random.Generator, *, malignant: bool, size: int
) -> npt.NDArray[np.uint8]:
    """Draw one synthetic H&E-like RGB tile of ``size`` x ``size`` pixels."""
    import cv2

    stroma = np.array([236, 178, 205], dtype=np.float64) + rng.normal(0, 6, 3)
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = stroma
    fibres = rng.normal(0, 1, (size // 8, size // 8))
    fibres = np.asarray(
        cv2.resize(fibres, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.float64
    )
    image += fibres[..., None] * np.array([6.0, 10.0, 6.0])
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    nucleus = tuple(int(v) for v in np.clip(np.array([92, 52, 140]) + rng.normal(0, 8, 3), 0, 255))
    scale = size / 128.0
    if malignant:
        for _ in range(int(rng.integers(45, 70) * scale * scale)):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.uniform(4, 9) * scale), int(rng.uniform(3, 7) * scale))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, nucleus, -1)
    else:
        for _ in range(int(rng.integers(2, 4) * scale)):
            cx, cy = rng.uniform(0.2, 0.8, 2) * size
            radius = rng.uniform(14, 22) * scale
            cv2.circle(canvas, (int(cx), int(cy)), int(radius * 0.7), (250, 238, 244), -1)
            for angle in np.linspace(0, 2 * np.pi, int(rng.integers(9, 13)), endpoint=False):
                point = (int(cx + radius * np.cos(angle)), int(cy + radius * np.sin(angle)))
                cv2.circle(canvas, point, max(1, int(2.5 * scale)), nucleus, -1)
    noise = rng.normal(0, 4, canvas.shape)
    blurred = cv2.GaussianBlur(canvas.astype(np.float64) + noise, (3, 3), 0)
    return np.clip(blurred, 0, 255).astype(np.uint8)


def make_demo_dataset(root: Path, *, per_class: int = 60, size: int = 128, seed: int = 11) -> Path:
    """Write ``per_class`` synthetic PNGs for each of ``benign``/``malignant`` under ``root``.

    Reuses the folder when it already holds the same set (same count, size and seed).

    Returns:
        ``root``.
    """
    from PIL import Image

    marker = root / ".demo-set"
    signature = f"per_class={per_class} size={size} seed={seed}\n"
    if marker.is_file() and marker.read_text(encoding="utf-8") == signature:
        return root
    rng = np.random.default_rng(seed)
    for label in DEMO_CLASSES:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            tile = synthetic_tissue(rng, malignant=label == "malignant", size=size)
            with atomic_path(folder / f"demo_{label}_{index:03d}.png") as temporary:
                Image.fromarray(tile).save(temporary, format="PNG")
    atomic_write_text(marker, signature)
    return root
