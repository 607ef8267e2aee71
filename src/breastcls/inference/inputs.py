"""What a model accepts at its door: one image or many, as files, arrays or PIL images.

A model record states the value range its model takes (0-255 RGB). Images are checked against
it here, before any model runs: one clear line for a wrong shape, a wrong number of channels or
values outside 0-255, and for floats in [0, 1], which would otherwise be scored as near-black
0-255 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from breastcls.data.images import expand_image_files
from breastcls.errors import DataError

__all__ = ["ImageInputs", "InputImages", "image_inputs"]

ImageInputs: TypeAlias = "str | Path | npt.NDArray[Any] | Any | Sequence[Any]"
"""One image file, folder, ``(h, w, 3)`` array or PIL image; an ``(n, h, w, 3)`` array; or a
sequence of files and folders, or of arrays and PIL images."""

_VALUE_RANGE = "0-255 RGB values (as the model record states)"


@dataclass(frozen=True, slots=True, kw_only=True)
class InputImages:
    """Images to predict, as :func:`image_inputs` sorted them: files, or in-memory arrays.

    Attributes:
        files: Image files (folders expanded), in order.
        arrays: ``(h, w, 3)`` arrays of 0-255 RGB values, in order.
    """

    files: tuple[Path, ...] = ()
    arrays: tuple[npt.NDArray[Any], ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.files) or len(self.arrays)

    @property
    def in_memory(self) -> bool:
        """Whether the images are arrays (no files)."""
        return not self.files


def _is_pil(image: Any) -> bool:
    return hasattr(image, "convert") and hasattr(image, "mode") and hasattr(image, "size")


def image_inputs(images: ImageInputs, *, expand_folders: bool = True) -> InputImages:
    """Sort ``images`` into files or checked RGB arrays.

    Args:
        images: One image (a file, an ``(h, w, 3)`` array, a PIL image), an ``(n, h, w, 3)``
            array, or a sequence of files and folders, or of arrays and PIL images.
        expand_folders: Search folders recursively for images (else a folder is refused).

    Raises:
        DataError: A file or folder does not exist, files are mixed with in-memory images, an
            array is not ``(h, w, 3)`` or ``(n, h, w, 3)``, or its values are not 0-255 (floats
            in [0, 1] included).
    """
    if isinstance(images, (str, Path)):
        return InputImages(files=tuple(_files([images], expand_folders)))
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return InputImages(arrays=tuple(_rgb(a, i) for i, a in enumerate(images)))
        return InputImages(arrays=(_rgb(images, 0),))
    if _is_pil(images):
        return InputImages(arrays=(_rgb(images, 0),))
    items = list(images)
    paths = [isinstance(item, (str, Path)) for item in items]
    if items and all(paths):
        return InputImages(files=tuple(_files(items, expand_folders)))
    if any(paths):
        raise DataError(
            "The images mix files with in-memory images: pass either file paths or arrays and "
            "PIL images, not both."
        )
    return InputImages(arrays=tuple(_rgb(item, index) for index, item in enumerate(items)))


def _files(items: Sequence[str | Path], expand_folders: bool) -> list[Path]:
    if not expand_folders:
        folders = [str(p) for p in items if Path(p).is_dir()]
        if folders:
            raise DataError(f"{folders[0]!r} is a folder: pass image files.")
    return expand_image_files(items)


def _rgb(image: Any, index: int) -> npt.NDArray[Any]:
    """An in-memory image as an ``(h, w, 3)`` array of 0-255 values, checked."""
    array = np.asarray(image.convert("RGB")) if _is_pil(image) else np.asarray(image)
    what = f"Image {index}"
    if array.ndim != 3 or array.shape[-1] != 3:
        channels = (
            "one channel (grayscale)" if array.ndim == 2
            else f"{array.shape[-1]} channel(s), not 3" if array.ndim == 3
            else f"{array.ndim} dimensions"
        )  # fmt: skip
        raise DataError(
            f"{what} has shape {array.shape}: {channels}. Pass (height, width, 3) RGB arrays of "
            "0-255 values (an (n, height, width, 3) batch), PIL images or image files."
        )
    if min(array.shape[:2]) < 1:
        raise DataError(f"{what} has shape {array.shape}: it holds no pixel.")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{what} holds {array.dtype} values: pass {_VALUE_RANGE}.")
    _check_values(array, what)
    return array


def _check_values(array: npt.NDArray[Any], what: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(f"{what} holds NaN or infinite values: pass {_VALUE_RANGE}.")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{what} holds values from {low:g} to {high:g}: the model takes {_VALUE_RANGE}; "
            "undo any normalisation first."
        )
    if np.issubdtype(array.dtype, np.floating) and 0 < high <= 1.0:
        raise DataError(
            f"{what} holds floats in [0, 1] (max {high:g}): the model takes {_VALUE_RANGE}. "
            "Pass (image * 255) or the uint8 image."
        )
