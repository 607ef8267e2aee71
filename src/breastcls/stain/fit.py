"""Fitting a stain normaliser to its reference, and what a run records of the fit.

The reference is one image, a folder of images, or by default the run's **training** images:
never the selection or test set, whose stain would then leak into the model
(:func:`fit_stain_normaliser` refuses them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from breastcls.data.images import ImageInfo, inspect_image
from breastcls.errors import ConfigError, DataError
from breastcls.interfaces import DataRole

if TYPE_CHECKING:
    from breastcls.config import ModelConfig
    from breastcls.interfaces import Sample
    from breastcls.plugins.host import PluginHost

__all__ = [
    "MAX_REFERENCE_IMAGES",
    "PIXELS_PER_IMAGE",
    "StainFit",
    "fit_run_stain",
    "fit_stain_normaliser",
    "reference_images",
]

MAX_REFERENCE_IMAGES = 200
"""The most reference images decoded (a seeded subsample of a larger set)."""

PIXELS_PER_IMAGE = 20_000
"""The pixels drawn (seeded) from each reference image."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StainFit:
    """A fitted stain normaliser, as a run records it (``stain_normalisation.json``).

    Attributes:
        normaliser: The normaliser's id.
        parameters: Its fitted parameters (also inside the model's normalisation layer).
        reference: What it was fitted to (the training set, or a file or folder).
        role: ``train`` when fitted to the training set, ``None`` for a reference outside
            the run's data.
        images: The reference images used.
    """

    normaliser: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    role: DataRole | None = None
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        return {
            "normaliser": self.normaliser,
            "reference": self.reference,
            "role": self.role.value if self.role else None,
            "images": self.images,
            "parameters": dict(self.parameters),
        }


def reference_images(path: Path) -> list[Path]:
    """The images of a reference: the file itself, or every image under a folder.

    Raises:
        DataError: Nothing is at ``path``, or the folder holds no image.
    """
    from breastcls.data.images import expand_image_files

    return expand_image_files([Path(path)])


def fit_stain_normaliser(
    name: str,
    images: Sequence[Path],
    *,
    role: DataRole | None,
    reference: str,
    host: PluginHost | None = None,
    seed: int = 0,
) -> StainFit:
    """Fit the stain normaliser ``name`` to ``images``.

    Up to :data:`MAX_REFERENCE_IMAGES` images (a seeded subsample) are decoded and
    :data:`PIXELS_PER_IMAGE` pixels drawn from each; the normaliser leaves the background out.

    Args:
        name: A registered stain normaliser id.
        images: The reference images.
        role: ``DataRole.TRAIN`` for the run's training images, ``None`` for a reference outside
            the run's data.
        reference: How the reference is named in the run folder and in errors.
        host: Plugin host (the default host when ``None``).
        seed: Seed of the subsample.

    Raises:
        ValueError: ``role`` is the selection or test set.
        UnknownComponentError: ``name`` is not registered.
        DataError: A reference image is unreadable, or the reference holds too little tissue
            (the message names the reference and its files).
    """
    from breastcls.data.images import decode_image
    from breastcls.plugins.host import ensure_host

    if role not in (None, DataRole.TRAIN):
        raise ValueError(
            f"A stain normaliser is fitted on the training set only, not on the {role} set."
        )
    normaliser = ensure_host(host).stain_normalisers.get(name)
    rng = np.random.default_rng(seed)
    chosen = sorted(images, key=str)
    if len(chosen) > MAX_REFERENCE_IMAGES:
        picks = sorted(rng.choice(len(chosen), MAX_REFERENCE_IMAGES, replace=False))
        chosen = [chosen[i] for i in picks]
    drawn = []
    for path in chosen:
        pixels = decode_image(path).reshape(-1, 3)
        count = min(PIXELS_PER_IMAGE, len(pixels))
        drawn.append(pixels[rng.choice(len(pixels), count, replace=False)])
    if not drawn:
        raise DataError(f"Stain reference {reference}: it holds no image to fit {name} to.")
    try:
        parameters = normaliser.fit(np.concatenate(drawn))
    except DataError as error:
        shown = ", ".join(str(p) for p in chosen[:3]) + (", ..." if len(chosen) > 3 else "")
        raise DataError(
            f"Stain reference {reference} ({len(chosen)} image(s): {shown}): {error}. Pass "
            "--stain-reference with an image or folder of stained tissue, or "
            "--stain-normalisation none."
        ) from error
    return StainFit(
        normaliser=name,
        parameters=parameters,
        reference=reference,
        role=role,
        images=len(chosen),
    )


def fit_run_stain(
    config: ModelConfig,
    training: Sequence[Sample],
    *,
    host: PluginHost | None = None,
    held_out: Sequence[tuple[DataRole, Sample]] = (),
    image_info: Mapping[Path, ImageInfo] | None = None,
) -> StainFit | None:
    """Fit a run's stain normaliser: to ``config.stain_reference`` when set, else to the
    training images; ``None`` when the run normalises nothing.

    Args:
        config: The model configuration (normaliser and reference).
        training: The training images.
        host: The plugin host.
        held_out: The selection and test images, with their roles: a reference may not be one
            of them (by path, or by identical pixels under another name).
        image_info: What a scan of the data found (pixel hashes), by path.

    Raises:
        ConfigError: ``stain_reference`` does not exist, holds no image, or holds a selection
            or test image.
        DataError: As :func:`fit_stain_normaliser`.
    """
    if config.stain_normalisation == "none":
        return None
    if config.stain_reference is None:
        return fit_stain_normaliser(
            config.stain_normalisation,
            [sample.path for sample in training],
            role=DataRole.TRAIN,
            reference=f"training set ({len(training)} images)",
            host=host,
        )
    try:
        images = reference_images(Path(config.stain_reference).expanduser())
    except DataError as error:
        raise ConfigError(
            f"--stain-reference {config.stain_reference!r}: {error} Pass an image or a folder "
            "of images."
        ) from error
    _refuse_held_out(images, held_out, image_info or {}, str(config.stain_reference))
    return fit_stain_normaliser(
        config.stain_normalisation,
        images,
        role=None,
        reference=str(config.stain_reference),
        host=host,
    )


def _refuse_held_out(
    images: Sequence[Path],
    held_out: Sequence[tuple[DataRole, Sample]],
    image_info: Mapping[Path, ImageInfo],
    reference: str,
) -> None:
    """Refuse a reference image that is a selection or test image (the same file, or its
    pixels under another name): a normaliser fitted to it would carry those images' stain
    into the model, and their figures would no longer be held out."""
    if not held_out:
        return
    role_of = {sample.path.resolve(): role for role, sample in held_out}
    pixels_of = {
        info.pixel_sha1: role
        for role, sample in held_out
        if (info := image_info.get(sample.path)) is not None and info.pixel_sha1
    }
    for image in images:
        role = role_of.get(Path(image).resolve())
        if role is None and pixels_of:
            role = pixels_of.get(inspect_image(Path(image)).pixel_sha1)
        if role is not None:
            raise ConfigError(
                f"--stain-reference {reference!r}: {image} is an image of the {role.label}, so "
                "the normaliser would be fitted on held-out images: pass a reference outside "
                "the selection and test sets, or leave --stain-reference out to fit it to the "
                "training images."
            )
