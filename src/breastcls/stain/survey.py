"""The stain survey of ``breastcls data check``: how far apart the roles' stain lies, against how
far apart the classes' does.

Per role and per class, on a seeded subsample of images, the mean optical density of the tissue
and the haematoxylin and eosin vectors estimated with Macenko's method
(:func:`~breastcls.stain.optics.estimate_stain`). Roles whose stain differs more than the
classes' does show a batch effect (another laboratory, scanner or staining batch in one role):
a model could tell the roles apart by their stain. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.data.images import decode_image
from breastcls.errors import DataError
from breastcls.interfaces import Sample
from breastcls.stain.optics import ANGLE_PERCENTILE, TISSUE_OD, estimate_stain, optical_density

__all__ = ["StainReport", "StainStatistics", "survey_stain"]

# Stain statistics (Macenko et al., "A method for normalizing histology slides for quantitative
# analysis", ISBI 2009): optical density, the tissue threshold and the vectors' estimate are
# breastcls.stain.optics', which normalisation shares.
_STAIN_PIXELS = 4000  # pixels drawn from each subsampled image
_MIN_STAIN_IMAGES = 10  # fewer images of a class in a role: too noisy to compare (left out)


@dataclass(frozen=True, slots=True, kw_only=True)
class StainStatistics:
    """The stain of a group of images (a role or a class).

    Attributes:
        images: Images sampled.
        tissue_fraction: Share of their sampled pixels that are tissue (OD at least 0.15 in
            every channel).
        mean_od: Mean optical density of the tissue pixels in R, G, B.
        haematoxylin: Unit OD vector of haematoxylin (Macenko), ``None`` with too little tissue.
        eosin: Unit OD vector of eosin.
    """

    images: int
    tissue_fraction: float
    mean_od: tuple[float, float, float] | None
    haematoxylin: tuple[float, float, float] | None
    eosin: tuple[float, float, float] | None

    def distance(self, other: StainStatistics) -> float | None:
        """The stain distance: the Euclidean distance between the two groups' mean OD, H vector
        and E vector, stacked (``None`` when either lacks tissue)."""
        mine, theirs = self._descriptor(), other._descriptor()
        if mine is None or theirs is None:
            return None
        return float(np.linalg.norm(mine - theirs))

    def _descriptor(self) -> npt.NDArray[np.float64] | None:
        if self.mean_od is None or self.haematoxylin is None or self.eosin is None:
            return None
        return np.array([*self.mean_od, *self.haematoxylin, *self.eosin], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary (numbers rounded to 4 places)."""

        def rounded(values: tuple[float, ...] | None) -> list[float] | None:
            return None if values is None else [round(v, 4) for v in values]

        return {
            "images": self.images,
            "tissue_fraction": round(self.tissue_fraction, 4),
            "mean_od": rounded(self.mean_od),
            "haematoxylin": rounded(self.haematoxylin),
            "eosin": rounded(self.eosin),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StainReport:
    """Stain statistics per role and per class, and how far apart they are.

    Attributes:
        per_role: Each role's statistics (its classes pooled).
        per_class: Each class's statistics (its roles pooled).
        role_distance: How far the roles' stain lies apart: the stain distance between two
            roles' images of one class, averaged over the classes and the pairs of roles
            (``None`` with one role).
        roles_apart: The two roles furthest apart (averaged over the classes).
        class_distance: How far the classes' stain lies apart: the stain distance between two
            classes' images of one role, averaged over the roles and the pairs of classes.
            Comparing within a class (and within a role) keeps the classes' own difference out
            of the roles' distance, and a role's batch effect out of the classes'. A class with
            fewer than 10 images in a role is left out of both (too noisy to compare).
        images_per_group: The most images sampled from one group (a role, a class, or the
            images of one class in one role).
        seed: Seed of the subsample.
    """

    per_role: dict[str, StainStatistics]
    per_class: dict[str, StainStatistics]
    role_distance: float | None
    roles_apart: tuple[str, ...]
    class_distance: float | None
    images_per_group: int
    seed: int

    @property
    def batch_effect(self) -> bool:
        """Whether two roles' stain differs more than the classes' does."""
        return (
            self.role_distance is not None
            and self.class_distance is not None
            and self.role_distance > self.class_distance
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "method": (
                f"Macenko: OD = -ln((I + 1) / 256), background OD < {TISSUE_OD} removed, "
                f"SVD plane, angles at percentiles {ANGLE_PERCENTILE:g}/"
                f"{100 - ANGLE_PERCENTILE:g}; up to {self.images_per_group} images per group "
                f"and {_STAIN_PIXELS} pixels per image, seed {self.seed}"
            ),
            "per_role": {role: stats.to_dict() for role, stats in self.per_role.items()},
            "per_class": {label: stats.to_dict() for label, stats in self.per_class.items()},
            "role_distance": rounded(self.role_distance),
            "roles_apart": list(self.roles_apart),
            "class_distance": rounded(self.class_distance),
            "batch_effect": self.batch_effect,
        }


def _stain_of(samples: Sequence[Sample], rng: np.random.Generator, limit: int) -> StainStatistics:
    """Sample up to ``limit`` images and ``_STAIN_PIXELS`` pixels of each; measure their stain."""
    chosen = sorted(samples, key=lambda s: str(s.path))
    if len(chosen) > limit:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), limit, replace=False))]
    densities = []
    for sample in chosen:
        try:
            pixels = decode_image(sample.path).reshape(-1, 3)
        except DataError:
            continue
        drawn = pixels[rng.choice(len(pixels), min(_STAIN_PIXELS, len(pixels)), replace=False)]
        densities.append(optical_density(drawn))
    od = np.concatenate(densities) if densities else np.zeros((0, 3))
    tissue = od[(od >= TISSUE_OD).all(axis=1)]
    vectors = estimate_stain(tissue)
    mean = tissue.mean(axis=0) if len(tissue) else None
    return StainStatistics(
        images=len(densities),
        tissue_fraction=float(len(tissue) / len(od)) if len(od) else 0.0,
        mean_od=(float(mean[0]), float(mean[1]), float(mean[2])) if mean is not None else None,
        haematoxylin=vectors[0] if vectors else None,
        eosin=vectors[1] if vectors else None,
    )


def _mean_distance(
    pairs: Sequence[tuple[StainStatistics, StainStatistics]],
) -> float | None:
    distances = [
        d
        for a, b in pairs
        if min(a.images, b.images) >= _MIN_STAIN_IMAGES and (d := a.distance(b)) is not None
    ]
    return float(np.mean(distances)) if distances else None


def survey_stain(
    samples: Sequence[Sample],
    role_of: Mapping[Path, str],
    roles: Sequence[str],
    class_names: Sequence[str],
    *,
    images_per_group: int,
    seed: int,
) -> StainReport:
    """Measure the stain of each role, each class, and each class within each role.

    Args:
        samples: The readable images.
        role_of: Each image's role (an image whose role is not in ``roles`` counts for its
            class only).
        roles: The roles compared, in the order reports list them.
        class_names: Class names in label order (classes without images are left out).
        images_per_group: The most images sampled from one group.
        seed: Seed of the subsample.
    """
    rng = np.random.default_rng(seed)
    labels = [label for label in class_names if any(s.label == label for s in samples)]

    def measured(role: str | None, label: str | None) -> StainStatistics:
        members = [
            s
            for s in samples
            if (role is None or role_of[s.path] == role) and (label is None or s.label == label)
        ]
        return _stain_of(members, rng, images_per_group)

    per_role = {role: measured(role, None) for role in roles}
    per_class = {label: measured(None, label) for label in labels}
    cells = {
        (role, label): measured(role, label)
        for role in roles
        for label in labels
        if any(role_of[s.path] == role and s.label == label for s in samples)
    }
    role_pairs = [
        (cells[first, label], cells[second, label])
        for first, second in itertools.combinations(roles, 2)
        for label in labels
        if (first, label) in cells and (second, label) in cells
    ]
    class_pairs = [
        (cells[role, first], cells[role, second])
        for role in roles
        for first, second in itertools.combinations(labels, 2)
        if (role, first) in cells and (role, second) in cells
    ]
    return StainReport(
        per_role=per_role,
        per_class=per_class,
        role_distance=_mean_distance(role_pairs),
        roles_apart=_furthest_roles(cells, roles, labels),
        class_distance=_mean_distance(class_pairs),
        images_per_group=images_per_group,
        seed=seed,
    )


def _furthest_roles(
    cells: Mapping[tuple[str, str], StainStatistics], roles: Sequence[str], labels: Sequence[str]
) -> tuple[str, ...]:
    """The two roles whose images of one class lie furthest apart, averaged over the classes
    (empty when no two roles could be compared)."""
    by_role_pair = {
        (first, second): _mean_distance(
            [
                (cells[first, label], cells[second, label])
                for label in labels
                if (first, label) in cells and (second, label) in cells
            ]
        )
        for first, second in itertools.combinations(roles, 2)
    }
    measured_pairs = {pair: d for pair, d in by_role_pair.items() if d is not None}
    if not measured_pairs:
        return ()
    return max(measured_pairs, key=measured_pairs.__getitem__)
