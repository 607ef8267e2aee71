"""Know when not to answer: how unlike the training images an image is.

A model's figures hold for images like those it was trained on. At the end of training, the
penultimate layer's embeddings of the training images are summarised (a PCA basis, class means
and a shared, shrunk covariance: the Mahalanobis distance of Lee et al., 2018, plus the distance
off the PCA subspace), with two cheap image statistics the embedding may miss: the sharpness
(mean absolute Laplacian, which drops when small images are blown up to the input size) and the
chroma (which drops for grayscale or faded images), each flagged only below the training
images' range. An image whose shorter side is under half
the smallest training image's shows a field at another scale (the size part of the score is 0
down to the smallest training side and 1 at half of it).

Each part gets a threshold chosen on the **selection set** (a high quantile of its images'
distances), never on the test set; the record keeps the number of images and patients it came
from. An image's ``domain_score`` is its largest distance divided by that distance's threshold:
above 1, the image is flagged (``in_distribution`` false) and ``domain_reason`` says which part
flagged it. The reference lives in the model record and travels with every export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError

__all__ = [
    "DOMAIN_COLUMNS",
    "DOMAIN_QUANTILE",
    "DOMAIN_WARNING_FRACTION",
    "DomainReference",
    "DomainScores",
    "domain_cells",
    "fit_domain_reference",
    "flagged_line",
    "image_statistics",
    "statistics_stride",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DOMAIN_QUANTILE = 0.99
"""The quantile of the selection set's distances that each threshold is set at."""
DOMAIN_WARNING_FRACTION = 0.2
"""Above this fraction of flagged images, reports say first that their figures do not apply."""
_COMPONENTS = 32
# An image statistic this many interquartile ranges beyond the training range is flagged even
# when the selection set never strays that far (a selection set lies inside it, usually).
_MIN_IMAGE_THRESHOLD = 0.5
_STATISTICS = ("sharpness", "chroma")
_REASONS = ("features", *_STATISTICS, "image size")


DOMAIN_COLUMNS = ("domain_score", "in_distribution", "domain_reason")
"""The columns of the domain-shift score in the CSVs breastcls writes."""


def domain_cells(
    score: FloatArray | None,
    in_distribution: BoolArray | None,
    reason: Sequence[str] | None,
    row: int,
) -> tuple[str, str, str]:
    """Row ``row``'s :data:`DOMAIN_COLUMNS` cells (empty when there are no scores)."""
    if score is None or in_distribution is None or reason is None:
        return ("", "", "")
    return (repr(float(score[row])), "yes" if in_distribution[row] else "no", reason[row])


def flagged_line(n_flagged: int, n: int, *, unit: str = "images") -> tuple[str, bool]:
    """How many of ``n`` images (or tiles) are unlike the training images, in words, and
    whether the others are enough for figures or predictions on them to apply (at most
    :data:`DOMAIN_WARNING_FRACTION` flagged)."""
    share = n_flagged / n if n else 0.0
    line = (
        f"{n_flagged} of {n} {unit} ({share:.0%}) are unlike the training images "
        "(domain-shift score above the selection set's threshold)"
    )
    return line, share <= DOMAIN_WARNING_FRACTION


def statistics_stride(image_size: int) -> int:
    """The pixel step of :func:`image_statistics` for images of ``image_size``: 1 up to 223 px,
    then about ``image_size / 112``."""
    return max(1, image_size // 112)


def image_statistics(images: Any) -> Any:
    """``(n, 2)`` log sharpness and log chroma of a batch of 0-255 images (TensorFlow ops).

    Sharpness is the mean absolute 4-neighbour Laplacian of the gray image; chroma the mean
    difference between a pixel's largest and smallest channel. Both are taken on every
    :data:`statistics_stride`-th pixel of images over 112 px: a quarter of the arithmetic at
    224 px, and the undecimated grid keeps the fine detail a blown-up image lacks.
    """
    import tensorflow as tf

    stride = statistics_stride(int(images.shape[1]))
    if stride > 1:
        images = images[:, ::stride, ::stride, :]
    gray = tf.reduce_mean(images, axis=-1)
    laplacian = (
        4.0 * gray[:, 1:-1, 1:-1]
        - gray[:, :-2, 1:-1]
        - gray[:, 2:, 1:-1]
        - gray[:, 1:-1, :-2]
        - gray[:, 1:-1, 2:]
    )
    sharpness = tf.reduce_mean(tf.abs(laplacian), axis=[1, 2])
    chroma = tf.reduce_mean(tf.reduce_max(images, -1) - tf.reduce_min(images, -1), axis=[1, 2])
    return tf.math.log(tf.stack([sharpness, chroma], axis=1) + 1e-3)


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainScores:
    """How unlike the training images each image of a batch is.

    Attributes:
        score: Each image's largest distance over its threshold (above 1: flagged).
        in_distribution: Whether the image is like the training images (``score <= 1``).
        reason: What flagged each image (``features``, ``sharpness``, ``chroma``,
            ``image size``), empty when it is not flagged.
    """

    score: FloatArray
    in_distribution: BoolArray
    reason: tuple[str, ...]

    @classmethod
    def join(cls, parts: Sequence[DomainScores]) -> DomainScores:
        """The scores of consecutive batches as one."""
        return cls(
            score=np.concatenate([p.score for p in parts]) if parts else np.zeros(0),
            in_distribution=(
                np.concatenate([p.in_distribution for p in parts])
                if parts
                else np.zeros(0, dtype=bool)
            ),
            reason=tuple(r for p in parts for r in p.reason),
        )


def _matrix(values: Any, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds values that are not finite")
    return array


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DomainReference:
    """The training distribution and the thresholds of the domain-shift score (the ``domain``
    entry of the model record).

    Attributes:
        mean: The training embeddings' mean, ``(d,)``.
        components: The PCA basis of the centred training embeddings, ``(k, d)``.
        class_means: Each class's mean in the PCA space, ``(n_classes, k)``.
        precision: The inverse of the shared within-class covariance (Ledoit-Wolf shrunk),
            ``(k, k)``.
        residual_scale: The root-mean-square distance of the training embeddings off the PCA
            subspace.
        image_low: Each image statistic's 1st percentile on the training images (an image
            below it, by more than the threshold, is flagged).
        image_spread: Each image statistic's interquartile range on the training images.
        smallest_side: The 1st percentile of the training images' shorter sides, in pixels
            (``None`` when unknown).
        feature_threshold: The embedding distance threshold, chosen on the selection set.
        image_threshold: The image-statistic distance threshold, chosen on the selection set.
        quantile: The quantile of the selection set's distances the thresholds are set at.
        n_training_images: Training images the reference was fitted on.
        n_selection_images: Selection images the thresholds were chosen on.
        n_selection_patients: The patients of those images, when known.
    """

    mean: FloatArray
    components: FloatArray
    class_means: FloatArray
    precision: FloatArray
    residual_scale: float
    image_low: FloatArray
    image_spread: FloatArray
    smallest_side: float | None = None
    feature_threshold: float = float("inf")
    image_threshold: float = float("inf")
    quantile: float = DOMAIN_QUANTILE
    n_training_images: int = 0
    n_selection_images: int = 0
    n_selection_patients: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def embedding_size(self) -> int:
        """The length of the embeddings it scores."""
        return int(self.mean.shape[0])

    def feature_distance(self, embeddings: FloatArray) -> FloatArray:
        """Each embedding's distance to the training embeddings: the Mahalanobis distance to
        the nearest class mean in the PCA space, with the distance off that space added in
        quadrature (in units of the training images' own)."""
        centred = np.asarray(embeddings, dtype=np.float64) - self.mean
        projected = centred @ self.components.T
        squared = np.min(
            [
                np.einsum("ij,jk,ik->i", projected - m, self.precision, projected - m)
                for m in self.class_means
            ],
            axis=0,
        )
        residual = np.linalg.norm(centred - projected @ self.components, axis=1)
        distance = np.sqrt(np.maximum(squared, 0.0) + (residual / self.residual_scale) ** 2)
        return np.asarray(distance, dtype=np.float64)

    def _parts(self, features: FloatArray, sides: Sequence[float] | None) -> FloatArray:
        """``(n, 4)`` distances over thresholds: features, sharpness, chroma, image size."""
        features = np.asarray(features, dtype=np.float64)
        embedding, statistics = features[:, :-2], features[:, -2:]
        if embedding.shape[1] != self.embedding_size:
            raise ConfigError(
                f"The model gives embeddings of {embedding.shape[1]} values but its domain "
                f"reference was fitted on {self.embedding_size}: the record belongs to another "
                "model."
            )
        # One-sided: an image sharper or more colourful than the training images is not a
        # sign of another scale or a missing stain (and sharper images are what a better
        # scanner gives); the embedding judges those.
        per_statistic = np.maximum(0.0, self.image_low - statistics) / self.image_spread
        size = np.zeros(len(features))
        if sides is not None and self.smallest_side is not None:
            # 0 down to the smallest training side, 1 at half of it.
            shortfall = self.smallest_side - np.asarray(sides, dtype=np.float64)
            size = np.maximum(0.0, 2.0 * shortfall / self.smallest_side)
        return np.column_stack(
            [
                self.feature_distance(embedding) / self.feature_threshold,
                per_statistic / self.image_threshold,
                size,
            ]
        )

    def score(self, features: FloatArray, sides: Sequence[float] | None = None) -> DomainScores:
        """The domain-shift scores of a batch's features (:func:`image_statistics` after the
        embedding), with the images' shorter sides before resizing when known."""
        parts = self._parts(features, sides)
        score = parts.max(axis=1)
        flagged = score > 1.0
        reason = tuple(
            _REASONS[int(np.argmax(row))] if out else ""
            for row, out in zip(parts, flagged, strict=True)
        )
        return DomainScores(score=score, in_distribution=~flagged, reason=reason)

    def describe(self) -> str:
        """Where the thresholds come from, in one sentence for reports."""
        patients = (
            f", {self.n_selection_patients} patients" if self.n_selection_patients else ""
        )
        return (
            f"Domain-shift score: fitted on {self.n_training_images} training images; "
            f"thresholds at the {self.quantile:.0%} quantile of the selection set "
            f"({self.n_selection_images} images{patients}); an image scoring above 1 is unlike "
            "the training images."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the model record (floats written exactly)."""
        return {
            "method": (
                "Mahalanobis distance of the penultimate-layer embedding (PCA, shared "
                "Ledoit-Wolf covariance) with the distance off the PCA subspace; sharpness and "
                "chroma below the training range; shorter side at least half the training "
                "images'"
            ),
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "class_means": self.class_means.tolist(),
            "precision": self.precision.tolist(),
            "residual_scale": self.residual_scale,
            "image_statistics": list(_STATISTICS),
            "image_low": self.image_low.tolist(),
            "image_spread": self.image_spread.tolist(),
            "smallest_side": self.smallest_side,
            "feature_threshold": self.feature_threshold,
            "image_threshold": self.image_threshold,
            "quantile": self.quantile,
            "fitted_on": "train",
            "thresholds_chosen_on": "selection",
            "n_training_images": self.n_training_images,
            "n_selection_images": self.n_selection_images,
            "n_selection_patients": self.n_selection_patients,
            "notes": list(self.notes),
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DomainReference:
        """Read :meth:`to_dict` back.

        Raises:
            ValueError, KeyError, TypeError: It is malformed.
        """
        side = raw.get("smallest_side")
        patients = raw.get("n_selection_patients")
        reference = cls(
            mean=_matrix(raw["mean"], "mean"),
            components=_matrix(raw["components"], "components"),
            class_means=_matrix(raw["class_means"], "class_means"),
            precision=_matrix(raw["precision"], "precision"),
            residual_scale=float(raw["residual_scale"]),
            image_low=_matrix(raw["image_low"], "image_low"),
            image_spread=_matrix(raw["image_spread"], "image_spread"),
            smallest_side=None if side is None else float(side),
            feature_threshold=float(raw["feature_threshold"]),
            image_threshold=float(raw["image_threshold"]),
            quantile=float(raw.get("quantile", DOMAIN_QUANTILE)),
            n_training_images=int(raw.get("n_training_images", 0)),
            n_selection_images=int(raw.get("n_selection_images", 0)),
            n_selection_patients=None if patients is None else int(patients),
            notes=tuple(str(n) for n in raw.get("notes", ())),
        )
        k, d = reference.components.shape
        if reference.mean.shape != (d,) or reference.precision.shape != (k, k):
            raise ValueError(
                f"the shapes of mean {reference.mean.shape} and precision "
                f"{reference.precision.shape} do not fit components {(k, d)}"
            )
        return reference


def fit_domain_reference(
    training: FloatArray,
    training_labels: npt.NDArray[np.int64],
    training_sides: Sequence[float] | None,
    selection: FloatArray,
    selection_sides: Sequence[float] | None,
    *,
    n_classes: int,
    n_selection_patients: int | None = None,
    quantile: float = DOMAIN_QUANTILE,
) -> DomainReference:
    """Fit the reference on the training images' features and choose its thresholds on the
    selection images' (features as :class:`~breastcls.inference.runtime.RuntimeOutput` gives
    them: the embedding, then the image statistics).

    Raises:
        ValueError: Fewer than 4 training images, or an empty selection set.
    """
    from sklearn.covariance import LedoitWolf

    training = np.asarray(training, dtype=np.float64)
    if len(training) < 4 or len(selection) == 0:
        raise ValueError(
            f"A domain reference needs 4 or more training images and a selection set "
            f"({len(training)} and {len(selection)} given)."
        )
    embedding, statistics = training[:, :-2], training[:, -2:]
    mean = embedding.mean(axis=0)
    centred = embedding - mean
    k = max(1, min(_COMPONENTS, len(training) - 1, embedding.shape[1]))
    components = np.linalg.svd(centred, full_matrices=False)[2][:k]
    projected = centred @ components.T
    present = [c for c in range(n_classes) if np.any(training_labels == c)]
    class_means = np.stack([projected[training_labels == c].mean(axis=0) for c in present])
    within = np.concatenate(
        [projected[training_labels == c] - m for c, m in zip(present, class_means, strict=True)]
    )
    residual = np.linalg.norm(centred - projected @ components, axis=1)
    low = np.quantile(statistics, 0.01, axis=0)
    spread = np.subtract(*np.quantile(statistics, [0.75, 0.25], axis=0))
    unfitted = DomainReference(
        mean=mean,
        components=components,
        class_means=class_means,
        precision=LedoitWolf().fit(within).precision_,
        residual_scale=float(np.sqrt(np.mean(residual**2))) or 1.0,
        image_low=low,
        image_spread=np.maximum(spread, 1e-3),
        smallest_side=(
            float(np.quantile(training_sides, 0.01)) if training_sides is not None else None
        ),
        feature_threshold=1.0,
        image_threshold=1.0,
    )
    parts = unfitted._parts(np.asarray(selection, dtype=np.float64), selection_sides)
    chosen = parts[:, 1:3].max(axis=1)
    return dataclasses.replace(
        unfitted,
        feature_threshold=float(np.quantile(parts[:, 0], quantile)),
        image_threshold=max(float(np.quantile(chosen, quantile)), _MIN_IMAGE_THRESHOLD),
        quantile=quantile,
        n_training_images=len(training),
        n_selection_images=len(selection),
        n_selection_patients=n_selection_patients,
    )
