"""Shifted sets built from development images, to check a domain-shift score without another
lab's data.

Each function takes real images (``(h, w, 3)`` uint8 arrays) and returns them as another lab or
another scanner might give them: small fields at another scale, other stains, grayscale, heavy
JPEG compression, blur; :func:`non_tissue` makes images that are no tissue at all. Everything is
seeded, so a figure measured on them can be measured again.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

__all__ = [
    "blurred",
    "grayscale",
    "hed_shifted",
    "jpeg",
    "non_tissue",
    "shifted_sets",
    "small_crops",
]

UInt8Image = npt.NDArray[np.uint8]


def small_crops(
    images: Sequence[UInt8Image], *, side: int = 50, resize_to: int | None = None, seed: int = 0
) -> list[UInt8Image]:
    """A ``side`` x ``side`` crop at a random place of each image: a field far narrower than the
    training images' (another scale), kept small or resized up to ``resize_to`` pixels."""
    rng = np.random.default_rng(seed)
    crops = []
    for image in images:
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        crop = image[top : top + side, left : left + side]
        if resize_to is not None:
            crop = np.asarray(
                Image.fromarray(crop).resize((resize_to, resize_to), Image.Resampling.BILINEAR)
            )
        crops.append(np.ascontiguousarray(crop))
    return crops


def grayscale(images: Sequence[UInt8Image]) -> list[UInt8Image]:
    """Each image in gray, as three equal channels."""
    return [
        np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
        for image in images
    ]


def jpeg(images: Sequence[UInt8Image], *, quality: int = 10) -> list[UInt8Image]:
    """Each image saved as a JPEG of ``quality`` and decoded again."""
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return out


def blurred(images: Sequence[UInt8Image], *, radius: float = 3.0) -> list[UInt8Image]:
    """Each image out of focus (a Gaussian blur of ``radius`` pixels)."""
    return [
        np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
        for image in images
    ]


def hed_shifted(
    images: Sequence[UInt8Image], *, scale: tuple[float, float, float]
) -> list[UInt8Image]:
    """Each image with its haematoxylin, eosin and DAB amounts scaled by ``scale`` (another
    lab's staining: :func:`breastcls.layers.adjust_hed`)."""
    from breastcls.layers import adjust_hed

    out = []
    for image in images:
        batch = image[None].astype(np.float32)
        shifted = adjust_hed(batch, np.array([scale], np.float32), np.zeros((1, 3), np.float32))
        out.append(np.asarray(shifted)[0].round().astype(np.uint8))
    return out


def non_tissue(count: int, *, size: int = 224, seed: int = 0) -> list[UInt8Image]:
    """``count`` images that are no tissue: solid colours, colour noise, and natural-image-like
    patterns (stripes, gradients, checkerboards), in turn."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    out = []
    for index in range(count):
        colour = rng.integers(0, 256, 3).astype(np.float64)
        kind = index % 5
        if kind == 0:
            image = np.ones((size, size, 1)) * colour
        elif kind == 1:
            image = rng.integers(0, 256, (size, size, 3)).astype(np.float64)
        elif kind == 2:
            period = rng.uniform(4, 24)
            image = (0.5 + 0.5 * np.sin(np.arange(size) / period))[None, :, None] * colour
            image = np.broadcast_to(image, (size, size, 3))
        elif kind == 3:
            image = ramp[:, None, None] * colour + ramp[None, :, None] * (255 - colour)
        else:
            cells = (np.arange(size)[:, None] // 16 + np.arange(size)[None, :] // 16) % 2
            image = cells[..., None] * colour + (1 - cells[..., None]) * (255 - colour)
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def shifted_sets(images: Sequence[UInt8Image], *, seed: int = 0) -> dict[str, list[UInt8Image]]:
    """Every shifted set of ``images``, by name; ``non-tissue`` has as many images."""
    return {
        "small crops (50 px)": small_crops(images, seed=seed),
        "small crops resized up (50 -> 224 px)": small_crops(images, resize_to=224, seed=seed),
        "HED: haematoxylin x0.4, eosin x1.8": hed_shifted(images, scale=(0.4, 1.8, 1.0)),
        "HED: haematoxylin x1.8, eosin x0.4": hed_shifted(images, scale=(1.8, 0.4, 1.0)),
        "grayscale": grayscale(images),
        "JPEG quality 10": jpeg(images),
        "blur (3 px)": blurred(images),
        "non-tissue": non_tissue(len(images), seed=seed),
    }
