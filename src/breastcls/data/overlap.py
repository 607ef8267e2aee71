"""What a model has seen: images and patients of evaluation data that trained or selected it.

A figure measured on images (or patients) the model trained on, or that chose its checkpoint,
is not an estimate of performance on new patients. Images are compared by the hash of their
decoded pixels (so a copy under another name or in another format is found) and by their
difference hash (:mod:`breastcls.data.perceptual`: a JPEG re-save, a resized or slightly
cropped copy is a near copy), patients by their group key (accession number, patient id or
``group_by`` column).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from breastcls.data.images import ImageInfo
from breastcls.data.perceptual import HASH_BITS, NEAR_COPY_BITS, near_copy_pairs
from breastcls.data.split import group_key
from breastcls.interfaces import DataRole, Sample

__all__ = ["Overlap", "SeenImage", "find_overlap"]

_LISTED = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenImage:
    """One image of a run's ``split.csv``.

    Attributes:
        path: Where it was.
        role: The role it played.
        group: Its group key (``None`` when unknown).
        pixel_sha1: Hash of its decoded pixels (empty when not recorded).
        dhash: Its difference hash (empty when not recorded: a ``split.csv`` written before
            near copies were looked for).
    """

    path: str
    role: DataRole
    group: str | None
    pixel_sha1: str
    dhash: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Overlap:
    """Evaluation images that the model has seen, directly or through their patient.

    Attributes:
        same_image: ``(evaluation image, the run's image, its role)`` for identical pixels.
        near_image: ``(evaluation image, the run's image, its role, distance)`` for near
            copies (difference hashes at most :data:`NEAR_COPY_BITS` bits apart) that are not
            identical.
        same_group: ``(evaluation image, group, role)`` for images of a patient (group) that
            trained or selected the model.
    """

    same_image: tuple[tuple[Path, str, DataRole], ...] = ()
    near_image: tuple[tuple[Path, str, DataRole, int], ...] = ()
    same_group: tuple[tuple[Path, str, DataRole], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.same_image or self.near_image or self.same_group)

    def describe(self) -> str:
        """One sentence per kind of overlap, listing the first few images."""
        parts = []
        if self.same_image:
            listed = "; ".join(
                f"{path} = {seen} ({role.label})" for path, seen, role in self.same_image[:_LISTED]
            )
            parts.append(
                f"{len(self.same_image)} image(s) are identical to images that trained or "
                f"selected the model: {listed}"
                + (" ..." if len(self.same_image) > _LISTED else "")
            )
        if self.near_image:
            listed = "; ".join(
                f"{path} ~ {seen} ({role.label}, {distance} of {HASH_BITS} bits)"
                for path, seen, role, distance in self.near_image[:_LISTED]
            )
            parts.append(
                f"{len(self.near_image)} image(s) are near copies (a re-saved, re-compressed, "
                f"resized or slightly cropped copy: difference hashes at most {NEAR_COPY_BITS} "
                f"bits apart) of images that trained or selected the model: {listed}"
                + (" ..." if len(self.near_image) > _LISTED else "")
            )
        if self.same_group:
            groups = sorted({group for _, group, _ in self.same_group})
            parts.append(
                f"{len(self.same_group)} image(s) belong to {len(groups)} patient(s) the model "
                f"trained or selected on: {', '.join(groups[:_LISTED])}"
                + (" ..." if len(groups) > _LISTED else "")
            )
        return ". ".join(parts) + "." if parts else "No overlap."


def find_overlap(
    seen: Sequence[SeenImage],
    candidates: Sequence[Sample],
    image_info: Mapping[Path, ImageInfo],
    *,
    group_by: str | None = None,
) -> Overlap:
    """Return the ``candidates`` that the training or selection images of ``seen`` cover.

    Args:
        seen: A run's images with their roles (test images do not count as seen).
        candidates: The images to evaluate.
        image_info: The candidates' decoded-image information (for their pixel hashes).
        group_by: The run's group column (``None``: accession number / patient id).
    """
    used = [image for image in seen if image.role is not DataRole.TEST]
    by_pixels = {image.pixel_sha1: image for image in used if image.pixel_sha1}
    by_group = {image.group: image.role for image in used if image.group}
    same_image: list[tuple[Path, str, DataRole]] = []
    same_group: list[tuple[Path, str, DataRole]] = []
    for sample in candidates:
        info = image_info.get(sample.path)
        match = by_pixels.get(info.pixel_sha1) if info is not None and info.pixel_sha1 else None
        if match is not None:
            same_image.append((sample.path, match.path, match.role))
        group = group_key(sample, group_by)
        if group is not None and group in by_group:
            same_group.append((sample.path, group, by_group[group]))
    exact = {path for path, _, _ in same_image}
    return Overlap(
        same_image=tuple(same_image),
        near_image=_near_images([s for s in candidates if s.path not in exact], used, image_info),
        same_group=tuple(same_group),
    )


def _near_images(
    candidates: Sequence[Sample], used: Sequence[SeenImage], image_info: Mapping[Path, ImageInfo]
) -> tuple[tuple[Path, str, DataRole, int], ...]:
    """Each candidate's nearest seen image, when it is a near copy."""
    hashes = [info.dhash if (info := image_info.get(s.path)) else "" for s in candidates]
    nearest: dict[int, tuple[int, int]] = {}
    for i, j, distance in near_copy_pairs(hashes, [image.dhash for image in used]):
        if i not in nearest or distance < nearest[i][1]:
            nearest[i] = (j, distance)
    return tuple(
        (candidates[i].path, used[j].path, used[j].role, distance)
        for i, (j, distance) in sorted(nearest.items())
    )
