"""``breastcls data check``: what a dataset holds, and everything wrong or suspicious in it.

The check decodes every image once (:func:`~breastcls.data.images.scan_samples`), hashes every
file's bytes and every image's decoded pixels, and reports:

- counts per class, patient, magnification and role (``train``, ``selection``, ``test``), and
  image size/mode/format statistics;
- both patient counts of BreakHis data: slides (distinct patient ids) and accessions (distinct
  accession numbers, :func:`~breastcls.data.breakhis.accession_number`), and the suffix siblings:
  the slide ids that share one accession (``14-18842`` and ``14-18842D``);
- unreadable files (zero bytes, truncated, not an image, too large, unreadable) - errors;
- files left out by the dataset format (hidden, operating-system, non-image files) - warnings;
- exact duplicate files and identical-pixel images: errors when a group spans roles (the
  same image would be trained on and tested on) or carries different labels, else warnings;
- near copies (a JPEG re-save, a resized or slightly cropped copy: difference hashes close,
  :mod:`breastcls.data.perceptual`): errors when the two are in different roles, else warnings;
- patients present in more than one role - errors (leakage);
- slides of one accession (suffix siblings) in different roles - errors (leakage): a slide
  that sits in one role while a sibling has images in another (a slide that itself spans
  roles is already reported as a patient in several roles);
- suspicious images: extension that does not match the content, multi-page files (only the
  first page is used), images under 32 pixels a side - warnings;
- stain: per role and per class, on a seeded subsample of images, the mean optical density of
  the tissue and the haematoxylin and eosin vectors estimated with Macenko's method
  (:func:`estimate_stain`); a warning when two roles' stain differs more than the classes' does
  (a batch effect: another laboratory, scanner or staining batch in one role).

The split checked is the one :func:`breastcls.train` would make with the same configuration:
the roles the data fixes (split folders or a manifest ``split`` column; a ``validation/``
folder is the test set unless a ``test/`` folder is there too, see
:mod:`breastcls.data.split`) or, when it fixes none, the split computed from the fractions.
Every image is labelled with its role. When no split can be made (a ``split`` error), data that
fixes its split is labelled by folder (``train/`` as ``train``, ``validation/`` and ``test/``
as above); other images, and unreadable images of unsplit data, are ``(unsplit)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from breastcls.config import DataConfig
from breastcls.data.breakhis import accession_number
from breastcls.data.images import ImageInfo, scan_samples
from breastcls.data.loading import load_dataset
from breastcls.data.perceptual import HASH_BITS, near_copy_pairs
from breastcls.data.split import Split, split_for_config
from breastcls.errors import DataError
from breastcls.interfaces import DataRole, Dataset, Sample, SkippedFile
from breastcls.plugins.host import PluginHost
from breastcls.stain.normalisers import ANGLE_PERCENTILE, TISSUE_OD, estimate_stain

__all__ = [
    "DataIssue",
    "DataReport",
    "DuplicateGroup",
    "Severity",
    "StainReport",
    "StainStatistics",
    "check_data",
    "check_dataset",
    "estimate_stain",
    "format_report",
]

Severity = Literal["error", "warning"]
_SMALLEST_SIDE = 32
_EXTENSION_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
_UNSPLIT = "(unsplit)"
_ROLE_ORDER = {role.value: index for index, role in enumerate(DataRole)}


def _in_role_order(roles: set[str]) -> tuple[str, ...]:
    """``roles`` in the order train, selection, test (then ``(unsplit)``)."""
    return tuple(sorted(roles, key=lambda role: (_ROLE_ORDER.get(role, len(_ROLE_ORDER)), role)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DataIssue:
    """One problem found in a dataset.

    Attributes:
        severity: ``error`` (the data should not be trained on as is) or ``warning``.
        kind: ``unreadable``, ``skipped-file``, ``duplicate-file``, ``identical-pixels``,
            ``near-copy``,
            ``patient-in-several-splits`` (a patient id in several roles),
            ``accession-in-several-roles`` (slides of one accession in different roles),
            ``suspicious``, ``split`` or ``stain-batch-effect`` (two roles' stain differs more
            than the classes' does).
        message: One line: what, where, and what to do.
        paths: The files concerned.
    """

    severity: Severity
    kind: str
    message: str
    paths: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateGroup:
    """Files that hold the same image.

    Attributes:
        kind: ``file`` (identical bytes) or ``pixels`` (identical decoded pixels, different
            files, e.g. one PNG and one TIFF of the same image).
        paths: The files, sorted.
        splits: The distinct roles they are in (``train``, ``selection``, ``test``, in that
            order; ``(unsplit)`` when no split could be made).
        labels: The distinct labels they carry.
    """

    kind: Literal["file", "pixels"]
    paths: tuple[Path, ...]
    splits: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def crosses_splits(self) -> bool:
        """Whether the group spans more than one role (leakage)."""
        return len([split for split in self.splits if split != _UNSPLIT]) > 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReport:
    """What :func:`check_data` found.

    Attributes:
        root: The folder or manifest checked.
        class_names: Class names in label order.
        n_images: Images listed by the dataset (readable or not).
        split_source: ``data`` (fixed by the data), ``computed`` (the split training would make)
            or ``none`` (no split could be made; see the ``split`` issue).
        split_method: The split's method (``folders``, ``patient``, ``image``...) or ``none``.
        per_class: Images per class.
        per_patient: Images per patient id (empty when unknown).
        suffix_siblings: Accession number to its slide ids, for accessions with two or more
            slides (``14-18842``: ``14-18842``, ``14-18842D``); see :attr:`n_accessions`.
        per_magnification: Images per magnification (``unknown`` when not known).
        per_split: Images per role (``train``, ``selection``, ``test``; ``(unsplit)`` for
            images outside the split), then per class.
        sizes: Images per ``WIDTHxHEIGHT``.
        modes: Images per Pillow mode (``RGB``, ``L``, ``I;16``...).
        formats: Images per file format (``PNG``, ``JPEG``...).
        size_stats: ``width`` and ``height``: ``min``, ``median``, ``max``.
        duplicates: Duplicate-file and identical-pixel groups.
        patients_in_several_splits: Patient id to the roles it appears in.
        accessions_in_several_roles: Accession number to each of its slides' roles, for
            accessions whose slides sit in different roles (see the module documentation).
        unreadable: Files that cannot be decoded, with reasons.
        skipped: Files the dataset format left out, with reasons.
        issues: Every problem, errors first.
        stain: The stain statistics per role and per class (``None`` when not measured).
        image_info: What decoding found for each readable image (not part of :meth:`to_dict`).
        split: The split checked, when one could be made (not part of :meth:`to_dict`).
    """

    root: Path
    class_names: tuple[str, ...]
    n_images: int
    split_source: Literal["data", "computed", "none"]
    split_method: str
    per_class: dict[str, int]
    per_patient: dict[str, int]
    suffix_siblings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    per_magnification: dict[str, int]
    per_split: dict[str, dict[str, int]]
    sizes: dict[str, int]
    modes: dict[str, int]
    formats: dict[str, int]
    size_stats: dict[str, dict[str, float]]
    duplicates: tuple[DuplicateGroup, ...]
    patients_in_several_splits: dict[str, tuple[str, ...]]
    accessions_in_several_roles: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    unreadable: tuple[SkippedFile, ...]
    skipped: tuple[SkippedFile, ...]
    issues: tuple[DataIssue, ...]
    stain: StainReport | None = None
    image_info: Mapping[Path, ImageInfo] = field(default_factory=dict, repr=False)
    split: Split | None = field(default=None, repr=False)

    @property
    def errors(self) -> tuple[DataIssue, ...]:
        """The issues of severity ``error``."""
        return tuple(issue for issue in self.issues if issue.severity == "error")

    @property
    def warnings(self) -> tuple[DataIssue, ...]:
        """The issues of severity ``warning``."""
        return tuple(issue for issue in self.issues if issue.severity == "warning")

    @property
    def n_slides(self) -> int:
        """Distinct patient ids (BreakHis slides); 0 when patients are unknown."""
        return len(self.per_patient)

    @property
    def n_accessions(self) -> int:
        """Distinct accession numbers of the patient ids (equals :attr:`n_slides` when no two
        ids are slides of one accession, e.g. for ids that do not follow the BreakHis scheme)."""
        return len({accession_number(patient) for patient in self.per_patient})

    @property
    def ok(self) -> bool:
        """Whether the check found no error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary (paths as strings)."""
        return {
            "root": str(self.root),
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "class_names": list(self.class_names),
            "n_images": self.n_images,
            "split_source": self.split_source,
            "split_method": self.split_method,
            "per_class": self.per_class,
            "per_patient": self.per_patient,
            "n_slides": self.n_slides,
            "n_accessions": self.n_accessions,
            "suffix_siblings": {
                accession: list(slides) for accession, slides in self.suffix_siblings.items()
            },
            "per_magnification": self.per_magnification,
            "per_split": self.per_split,
            "sizes": self.sizes,
            "modes": self.modes,
            "formats": self.formats,
            "size_stats": self.size_stats,
            "duplicates": [
                {
                    "kind": group.kind,
                    "crosses_splits": group.crosses_splits,
                    "splits": list(group.splits),
                    "labels": list(group.labels),
                    "paths": [str(path) for path in group.paths],
                }
                for group in self.duplicates
            ],
            "patients_in_several_splits": {
                patient: list(splits) for patient, splits in self.patients_in_several_splits.items()
            },
            "accessions_in_several_roles": {
                accession: {slide: list(roles) for slide, roles in slides.items()}
                for accession, slides in self.accessions_in_several_roles.items()
            },
            "unreadable": [{"path": str(f.path), "reason": f.reason} for f in self.unreadable],
            "skipped": [{"path": str(f.path), "reason": f.reason} for f in self.skipped],
            "issues": [
                {
                    "severity": issue.severity,
                    "kind": issue.kind,
                    "message": issue.message,
                    "paths": [str(path) for path in issue.paths],
                }
                for issue in self.issues
            ],
            "stain": self.stain.to_dict() if self.stain is not None else None,
        }


# Stain statistics (Macenko et al., "A method for normalizing histology slides for quantitative
# analysis", ISBI 2009): optical density as breastcls.layers defines it, -ln((I + 1) / 256); the
# tissue threshold and the vectors' estimate are breastcls.stain's, which normalisation shares.
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
    from breastcls.data.images import decode_image

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
        densities.append(-np.log((drawn.astype(np.float64) + 1.0) / 256.0))
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


def _stain_report(
    samples: Sequence[Sample],
    split_of: Mapping[Path, str],
    class_names: Sequence[str],
    *,
    images_per_group: int,
    seed: int,
) -> StainReport:
    import itertools

    rng = np.random.default_rng(seed)
    roles = _in_role_order({split_of[s.path] for s in samples} - {_UNSPLIT})
    labels = [label for label in class_names if any(s.label == label for s in samples)]

    def measured(role: str | None, label: str | None) -> StainStatistics:
        members = [
            s
            for s in samples
            if (role is None or split_of[s.path] == role) and (label is None or s.label == label)
        ]
        return _stain_of(members, rng, images_per_group)

    per_role = {role: measured(role, None) for role in roles}
    per_class = {label: measured(None, label) for label in labels}
    cells = {
        (role, label): measured(role, label)
        for role in roles
        for label in labels
        if any(split_of[s.path] == role and s.label == label for s in samples)
    }
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
    apart = max(measured_pairs, key=lambda pair: measured_pairs[pair]) if measured_pairs else ()
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
        roles_apart=tuple(apart),
        class_distance=_mean_distance(class_pairs),
        images_per_group=images_per_group,
        seed=seed,
    )


def _stain_issue(stain: StainReport) -> DataIssue:
    first, second = stain.roles_apart[:2]
    a, b = stain.per_role[first], stain.per_role[second]

    def od(stats: StainStatistics) -> str:
        return "/".join(f"{v:.2f}" for v in stats.mean_od or ())

    return DataIssue(
        severity="warning",
        kind="stain-batch-effect",
        message=(
            f"The {first} and {second} images differ in stain more than the classes do (stain "
            f"distance {stain.role_distance:.3f} against {stain.class_distance:.3f}; mean tissue "
            f"OD R/G/B {od(a)} against {od(b)}): a model can tell the roles apart by their "
            "stain. Check whether they come from different laboratories, scanners or staining "
            "batches; spread each source over every role, or train with --augmentation "
            "pathology and read the evaluation's stain-shift robustness section."
        ),
    )


def _file_sha1(path: Path) -> str | None:
    digest = hashlib.sha1()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _suffix_siblings(patients: Sequence[str]) -> dict[str, tuple[str, ...]]:
    slides: dict[str, set[str]] = defaultdict(set)
    for patient in patients:
        slides[accession_number(patient)].add(patient)
    return {
        accession: tuple(sorted(ids)) for accession, ids in sorted(slides.items()) if len(ids) > 1
    }


def _accessions_in_several_roles(
    slide_roles: Mapping[str, set[str]],
) -> dict[str, dict[str, tuple[str, ...]]]:
    """Accessions with a slide that sits in one role while a sibling slide has images in
    another; each with every slide's roles. Slides that each span roles are left to the
    patient check."""
    by_accession: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for slide, roles in slide_roles.items():
        by_accession[accession_number(slide)][slide] = roles
    leaks: dict[str, dict[str, tuple[str, ...]]] = {}
    for accession, slides in sorted(by_accession.items()):
        leaking = any(
            len(roles) == 1 and any(other - roles for other in slides.values())
            for roles in slides.values()
        )
        if leaking:
            leaks[accession] = {slide: _in_role_order(slides[slide]) for slide in sorted(slides)}
    return leaks


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)


def _duplicate_groups(
    samples: Sequence[Sample],
    split_of: Mapping[Path, str],
    file_hash: Mapping[Path, str],
    image_info: Mapping[Path, ImageInfo],
) -> list[DuplicateGroup]:
    by_file: dict[str, list[Sample]] = defaultdict(list)
    by_pixels: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        if sample.path in file_hash:
            by_file[file_hash[sample.path]].append(sample)
        info = image_info.get(sample.path)
        if info is not None and info.pixel_sha1:
            by_pixels[info.pixel_sha1].append(sample)

    def group(kind: Literal["file", "pixels"], members: list[Sample]) -> DuplicateGroup:
        return DuplicateGroup(
            kind=kind,
            paths=tuple(sorted(s.path for s in members)),
            splits=_in_role_order({split_of[s.path] for s in members}),
            labels=tuple(sorted({s.label for s in members})),
        )

    groups = [group("file", members) for members in by_file.values() if len(members) > 1]
    for members in by_pixels.values():
        distinct_files = {file_hash.get(s.path, str(s.path)) for s in members}
        if len(distinct_files) > 1:
            groups.append(group("pixels", members))
    return sorted(groups, key=lambda g: (g.kind, g.paths))


def _duplicate_issue(group: DuplicateGroup) -> DataIssue:
    what = "identical files" if group.kind == "file" else "identical pixels in different files"
    kind = "duplicate-file" if group.kind == "file" else "identical-pixels"
    listing = ", ".join(str(path) for path in group.paths[:4])
    more = f" (+{len(group.paths) - 4} more)" if len(group.paths) > 4 else ""
    conflict = (
        f" They carry different labels ({', '.join(group.labels)}): keep the copy with the "
        "right label."
        if len(group.labels) > 1
        else ""
    )
    if group.crosses_splits:
        message = (
            f"LEAK: {what} in several roles {'/'.join(group.splits)}: {listing}{more}. The "
            f"same image is in the {' and '.join(group.splits)} sets; keep one copy.{conflict}"
        )
    elif conflict:
        message = f"{what} with different labels: {listing}{more}.{conflict}"
    else:
        return DataIssue(
            severity="warning",
            kind=kind,
            message=f"{what} in one role: {listing}{more}. The image counts more than once.",
            paths=group.paths,
        )
    return DataIssue(severity="error", kind=kind, message=message, paths=group.paths)


def _near_copy_issues(
    samples: Sequence[Sample], split_of: Mapping[Path, str], image_info: Mapping[Path, ImageInfo]
) -> list[DataIssue]:
    """Near copies that are not identical (identical pixels are duplicate groups already)."""
    known = [s for s in samples if s.path in image_info]
    infos = [image_info[s.path] for s in known]
    issues = []
    for i, j, distance in near_copy_pairs([info.dhash for info in infos]):
        if infos[i].pixel_sha1 == infos[j].pixel_sha1:
            continue
        paths = (known[i].path, known[j].path)
        roles = _in_role_order({split_of[path] for path in paths})
        what = (
            f"near copies ({distance} of {HASH_BITS} bits apart: a re-saved, resized or slightly "
            f"cropped copy): {paths[0]}, {paths[1]}"
        )
        leak = len([role for role in roles if role != _UNSPLIT]) > 1
        issues.append(
            DataIssue(
                severity="error" if leak else "warning",
                kind="near-copy",
                message=f"LEAK: {what}, in the {' and '.join(roles)} sets; keep one copy."
                if leak
                else f"{what}, in one role: the image counts more than once.",
                paths=paths,
            )
        )
    return issues


def _suspicious(info: ImageInfo) -> list[str]:
    reasons: list[str] = []
    expected = _EXTENSION_FORMATS.get(info.path.suffix.lower())
    if expected is not None and info.format != expected:
        reasons.append(f"extension {info.path.suffix} but the content is {info.format}")
    if info.frames > 1:
        reasons.append(f"{info.frames} pages or frames; only the first is used")
    if min(info.width, info.height) < _SMALLEST_SIDE:
        reasons.append(f"only {info.width}x{info.height} pixels")
    return reasons


def _folder_roles(samples: Sequence[Sample]) -> dict[Path, str]:
    """The role of each image by the split the data fixes, for when no split can be made.

    As :mod:`breastcls.data.split` reads folders: ``validation/`` is the test set, or the
    selection set when a ``test/`` folder is there too; ``train/`` is labelled ``train``
    (the selection set it would supply could not be carved).
    """
    names = {s.split for s in samples}
    validation = DataRole.SELECTION if {"validation", "test"} <= names else DataRole.TEST
    role_of = {"train": DataRole.TRAIN, "validation": validation, "test": DataRole.TEST}
    return {s.path: role_of[s.split].value if s.split in role_of else _UNSPLIT for s in samples}


def _split_of(
    samples: Sequence[Sample], config: DataConfig
) -> tuple[dict[Path, str], Split | None, Literal["data", "computed", "none"], DataIssue | None]:
    fixed = any(s.split for s in samples)
    try:
        # A data check reports a fixed split's leaks (as errors) rather than stopping at them.
        split = split_for_config(
            samples,
            dataclasses.replace(config, allow_leaky_split=config.allow_leaky_split or fixed),
        )
    except DataError as error:
        issue = DataIssue(severity="error", kind="split", message=f"No usable split: {error}")
        return _folder_roles(samples), None, "data" if fixed else "none", issue
    # Roles, also for data that fixes its split: the blog's validation/ folder is the test set.
    split_of = {s.path: role.value for role, part in split.parts() for s in part}
    return split_of, split, "data" if fixed else "computed", None


def _unreadable_issues(bad: Sequence[SkippedFile]) -> list[DataIssue]:
    return [
        DataIssue(
            severity="error",
            kind="unreadable",
            message=f"{item.path}: {item.reason} Fix or remove it (or train with "
            "--skip-bad-images).",
            paths=(item.path,),
        )
        for item in bad
    ]


def _leak_issues(
    readable: Sequence[Sample],
    in_several: Mapping[str, tuple[str, ...]],
    accessions: Mapping[str, Mapping[str, tuple[str, ...]]],
) -> list[DataIssue]:
    """A patient, or the slides of one accession, in several roles: errors."""
    issues: list[DataIssue] = []
    for patient, splits in in_several.items():
        patient_paths = tuple(s.path for s in readable if s.patient_id == patient)
        issues.append(
            DataIssue(
                severity="error",
                kind="patient-in-several-splits",
                message=(
                    f"LEAK: patient {patient} has images in several roles {'/'.join(splits)} "
                    f"({len(patient_paths)} images): keep all of them in one role (move them "
                    "into one split folder, or give them one split in the manifest)."
                ),
                paths=patient_paths,
            )
        )
    for accession, slides in accessions.items():
        slide_paths = tuple(s.path for s in readable if s.patient_id in slides)
        where = ", ".join(f"{slide} in {'/'.join(roles)}" for slide, roles in slides.items())
        issues.append(
            DataIssue(
                severity="error",
                kind="accession-in-several-roles",
                message=(
                    f"LEAK: slides of accession {accession} (one biopsy) are in different "
                    f"roles: {where} ({len(slide_paths)} images). Keep every slide of an "
                    "accession in one role (move them into one split folder, or give them "
                    "one split in the manifest)."
                ),
                paths=slide_paths,
            )
        )
    return issues


def _file_issues(
    image_info: Mapping[Path, ImageInfo], skipped: Sequence[SkippedFile]
) -> list[DataIssue]:
    """Suspicious images and files the dataset format left out: warnings."""
    issues: list[DataIssue] = []
    for info in sorted(image_info.values(), key=lambda i: i.path):
        reasons = _suspicious(info)
        if reasons:
            issues.append(
                DataIssue(
                    severity="warning",
                    kind="suspicious",
                    message=f"{info.path}: {'; '.join(reasons)}.",
                    paths=(info.path,),
                )
            )
    issues.extend(
        DataIssue(
            severity="warning",
            kind="skipped-file",
            message=f"{item.path}: left out ({item.reason}).",
            paths=(item.path,),
        )
        for item in skipped
    )
    return issues


def _per_role(samples: Sequence[Sample], split_of: Mapping[Path, str]) -> dict[str, dict[str, int]]:
    """Images per class in each role, roles in the order train, selection, test."""
    per_role: dict[str, dict[str, int]] = {}
    for sample in samples:
        row = per_role.setdefault(split_of[sample.path], {})
        row[sample.label] = row.get(sample.label, 0) + 1
    return {key: dict(sorted(per_role[key].items())) for key in _in_role_order(set(per_role))}


def _size_stats(infos: Sequence[ImageInfo]) -> dict[str, dict[str, float]]:
    widths = np.array([i.width for i in infos]) if infos else np.zeros(1)
    heights = np.array([i.height for i in infos]) if infos else np.zeros(1)
    return {
        name: {
            "min": float(values.min()),
            "median": float(np.median(values)),
            "max": float(values.max()),
        }
        for name, values in (("width", widths), ("height", heights))
    }


def check_dataset(
    dataset: Dataset,
    config: DataConfig,
    *,
    image_info: Mapping[Path, ImageInfo] | None = None,
    unreadable: Sequence[SkippedFile] | None = None,
    workers: int = 4,
    stain_images: int = 32,
    seed: int = 0,
) -> DataReport:
    """Check a loaded dataset (see the module documentation for what is checked).

    Args:
        dataset: The dataset, as :func:`~breastcls.load_dataset` returns it.
        config: The data configuration (its split settings give the split checked when the
            data fixes none).
        image_info: Results of an earlier :func:`~breastcls.data.images.scan_samples`, with
            ``unreadable``; the images are decoded here when ``None``.
        unreadable: The unreadable files of that scan.
        workers: Threads that decode and hash files.
        stain_images: Images sampled from each role and each class for the stain statistics
            (0: none measured).
        seed: Seed of that subsample.

    Returns:
        The report; it never raises for problems in the data, it lists them.
    """
    samples = dataset.samples
    if image_info is None or unreadable is None:
        image_info, bad = scan_samples(samples, workers=workers)
    else:
        bad = list(unreadable)
    bad_paths = {item.path for item in bad}
    readable = [s for s in samples if s.path not in bad_paths]
    split_of, split, split_source, split_issue = _split_of(readable, config)
    for path, role in _folder_roles(samples).items():
        split_of.setdefault(path, role)  # unreadable images count under their folder's role

    with ThreadPoolExecutor(max_workers=workers) as pool:
        paths = [s.path for s in readable]
        hashes = dict(zip(paths, pool.map(_file_sha1, paths), strict=True))
    file_hash = {path: digest for path, digest in hashes.items() if digest is not None}
    duplicates = _duplicate_groups(readable, split_of, file_hash, image_info)

    patient_splits: dict[str, set[str]] = defaultdict(set)
    for sample in readable:
        if sample.patient_id and split_of[sample.path] != _UNSPLIT:
            patient_splits[sample.patient_id].add(split_of[sample.path])
    in_several = {
        patient: _in_role_order(splits)
        for patient, splits in sorted(patient_splits.items())
        if len(splits) > 1
    }
    accessions = _accessions_in_several_roles(patient_splits)

    issues = _unreadable_issues(bad)
    if split_issue is not None:
        issues.append(split_issue)
    issues.extend(_duplicate_issue(group) for group in duplicates)
    issues.extend(_near_copy_issues(readable, split_of, image_info))
    issues.extend(_leak_issues(readable, in_several, accessions))
    issues.extend(_file_issues(image_info, dataset.skipped))
    stain = (
        _stain_report(
            readable,
            split_of,
            dataset.class_names,
            images_per_group=stain_images,
            seed=seed,
        )
        if stain_images > 0 and readable
        else None
    )
    if stain is not None and stain.batch_effect:
        issues.append(_stain_issue(stain))
    issues.sort(key=lambda issue: issue.severity != "error")

    infos = list(image_info.values())
    magnifications = Counter(str(s.magnification or "unknown") for s in samples)
    patients = [s.patient_id for s in samples if s.patient_id]
    return DataReport(
        root=dataset.root,
        class_names=dataset.class_names,
        n_images=len(samples),
        split_source=split_source,
        split_method=split.method if split is not None else "none",
        per_class={name: sum(s.label == name for s in samples) for name in dataset.class_names},
        per_patient=_counts(patients),
        suffix_siblings=_suffix_siblings(patients),
        per_magnification=dict(sorted(magnifications.items(), key=lambda kv: _natural(kv[0]))),
        per_split=_per_role(samples, split_of),
        sizes=_counts([f"{i.width}x{i.height}" for i in infos]),
        modes=_counts([i.mode for i in infos]),
        formats=_counts([i.format for i in infos]),
        size_stats=_size_stats(infos),
        duplicates=tuple(duplicates),
        patients_in_several_splits=in_several,
        accessions_in_several_roles=accessions,
        unreadable=tuple(bad),
        skipped=tuple(dataset.skipped),
        issues=tuple(issues),
        stain=stain,
        image_info=dict(image_info),
        split=split,
    )


def check_data(
    path: Path,
    *,
    config: DataConfig | None = None,
    host: PluginHost | None = None,
    workers: int = 4,
) -> DataReport:
    """Check the dataset at ``path`` (a folder or a CSV manifest) and report what it finds.

    Args:
        path: The dataset.
        config: Data settings (split, grouping, magnification, task); defaults otherwise.
        host: Plugin host (the default host when ``None``).
        workers: Threads that decode and hash files.

    Returns:
        The report: counts, statistics, duplicates, leaks and every bad or suspicious file.

    Raises:
        DataError: The dataset cannot be read at all (missing path, no class folders, a broken
            manifest...); problems in individual files are reported, not raised.
    """
    config = (
        DataConfig(path=Path(path)) if config is None else dataclasses.replace(config, path=path)
    )
    dataset = load_dataset(config, host=host)
    return check_dataset(dataset, config, workers=workers)


def _table(title: str, rows: Mapping[str, Any]) -> list[str]:
    if not rows:
        return []
    width = max(len(str(key)) for key in rows)
    return [title, *(f"  {key!s:<{width}}  {value}" for key, value in rows.items())]


def _stain_lines(stain: StainReport) -> list[str]:
    def vector(values: tuple[float, ...] | None) -> str:
        return "(" + ", ".join(f"{v:.2f}" for v in values) + ")" if values else "n/a"

    rows = {
        name: f"{stats.images} images, tissue {stats.tissue_fraction:.0%}, mean OD "
        f"{vector(stats.mean_od)}, H {vector(stats.haematoxylin)}, E {vector(stats.eosin)}"
        for name, stats in (
            *((f"role {role}", stats) for role, stats in stain.per_role.items()),
            *((f"class {label}", stats) for label, stats in stain.per_class.items()),
        )
    }
    lines = _table("stain (Macenko, mean OD of the tissue, H and E vectors in RGB OD):", rows)
    if stain.role_distance is not None and stain.class_distance is not None:
        lines.append(
            f"  stain distance between roles (within a class) {stain.role_distance:.3f}, "
            f"furthest {' vs '.join(stain.roles_apart)}; between classes (within a role) "
            f"{stain.class_distance:.3f}"
        )
    return lines


def format_report(report: DataReport, *, max_issues: int = 50, width: int | None = None) -> str:
    """Render a report as human-readable text (tables, then every error and warning).

    Args:
        report: The report.
        max_issues: Errors and warnings listed (``--json`` has them all).
        width: Wrap lines to this many columns (continuation lines indented); ``None``: no
            wrapping.
    """
    import textwrap

    lines = [
        f"data check: {report.root}",
        f"  {report.n_images} images, {len(report.class_names)} classes, "
        f"{report.n_slides} patients (slides) in {report.n_accessions} accessions; "
        f"split: {report.split_method} ({report.split_source})",
    ]
    lines += _table("per class:", report.per_class)
    per_split = {
        split: ", ".join(f"{label} {count}" for label, count in row.items())
        for split, row in report.per_split.items()
    }
    lines += _table("per role:", per_split)
    lines += _table("per magnification:", report.per_magnification)
    if report.per_patient:
        counts = list(report.per_patient.values())
        lines.append(
            f"per patient: {len(counts)} patients, {min(counts)} to {max(counts)} images each"
        )
    lines += _table(
        "suffix siblings (slides of one accession):",
        {accession: ", ".join(slides) for accession, slides in report.suffix_siblings.items()},
    )
    lines += _table("image sizes:", report.sizes)
    lines += _table("modes:", report.modes)
    lines += _table("formats:", report.formats)
    if report.stain is not None:
        lines += _stain_lines(report.stain)
    lines.append(
        f"result: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        + (" - OK" if report.ok else " - FAILED")
    )
    for issue in report.issues[:max_issues]:
        lines.append(f"  {issue.severity.upper():7} [{issue.kind}] {issue.message}")
    if len(report.issues) > max_issues:
        lines.append(f"  ... and {len(report.issues) - max_issues} more (use --json for all)")
    if width is None:
        return "\n".join(lines)
    wrapped = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        wrapped += textwrap.wrap(
            line,
            width=max(width, 40),
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [""]
    return "\n".join(wrapped)
