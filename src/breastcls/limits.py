"""Limits: batch and image sizes bounded by the machine's memory, and size limits that an
environment variable may raise.

A batch size or image size far beyond what memory holds would otherwise end in an allocation
traceback, an out-of-memory kill or a hang after minutes of work; these checks refuse it up
front, with the estimate.
"""

from __future__ import annotations

import os

from breastcls.errors import ConfigError

__all__ = ["check_batch_memory", "check_inference_batch", "env_limit", "machine_memory_bytes"]

_FLOAT32_BYTES = 4


def env_limit(variable: str, default: int) -> int:
    """The positive whole number in the environment variable ``variable``, else ``default``.

    Raises:
        ConfigError: The variable is set to something else.
    """
    raw = os.environ.get(variable)
    if raw is None:
        return default
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ConfigError(
            f"{variable}={raw!r} is not a positive whole number: set it to e.g. {default * 2}, "
            "or unset it."
        )
    return int(raw)


def machine_memory_bytes() -> int:
    """The machine's physical memory in bytes (``MemTotal``)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_memory(
    *,
    batch_size: int,
    image_size: int,
    floats_per_image: int,
    fixed_bytes: int = 0,
    what: str,
) -> None:
    """Refuse a batch whose estimated memory exceeds the machine's physical memory.

    Args:
        batch_size: Images per step.
        image_size: Their side in pixels (named in the message).
        floats_per_image: float32 values each image of the batch needs at once (its pixels
            and, for training, every activation kept for the backward pass).
        fixed_bytes: Memory needed whatever the batch (weights, gradients, optimizer state).
        what: What runs the batch, for the message (``training smallcnn``, ``predict``).

    Raises:
        ConfigError: The estimate exceeds physical memory; the message gives the estimate and
            the largest batch size that fits.
    """
    per_image = floats_per_image * _FLOAT32_BYTES
    needed = fixed_bytes + batch_size * per_image
    available = machine_memory_bytes()
    if needed <= available:
        return
    largest = (available - fixed_bytes) // per_image
    advice = (
        f"use --batch-size {largest} or less"
        if largest >= 1
        else "use a smaller --image-size (not even one image fits)"
    )
    raise ConfigError(
        f"{what}: --batch-size {batch_size} at --image-size {image_size} needs about "
        f"{needed / 1e9:,.1f} GB ({per_image / 1e6:,.1f} MB per image), more than this machine's "
        f"{available / 1e9:,.1f} GB of memory: {advice}."
    )


def check_inference_batch(batch_size: int, image_size: int, *, what: str) -> None:
    """:func:`check_batch_memory` for a model call: the batch's pixels as float32 (a lower
    bound of what inference needs).

    Raises:
        ConfigError: The batch alone exceeds the machine's memory.
    """
    check_batch_memory(
        batch_size=batch_size,
        image_size=image_size,
        floats_per_image=image_size * image_size * 3,
        what=what,
    )
