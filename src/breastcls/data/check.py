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
  the tissue and the haematoxylin and eosin vectors estimated with Macenko's method (the
  survey is :mod:`breastcls.stain.survey`'s); a warning when two roles' stain differs more than
  the classes' does (a batch effect: another laboratory, scanner or staining batch in one role).

The split checked is the one :func:`breastcls.train` would make with the same configuration:
the roles the data fixes (split folders or a manifest ``split`` column; a ``validation/``
folder is the test set unless a ``test/`` folder is there too, see
:mod:`breastcls.data.split`) or, when it fixes none, the split computed from the fractions.
Every image is labelled with its role. When no split can be made (a ``split`` error), data that
fixes its split is labelled by folder (``train/`` as ``train``, ``validation/`` and ``test/``
as above); other images, and unreadable images of unsplit data, are ``(unsplit)``.

The command line renders the report as text (:mod:`breastcls.cli.data_report`).
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

from breastcls.config import DataConfig
from breastcls.data.breakhis import accession_number
from breastcls.data.images import ImageInfo, scan_samples
from breastcls.data.loading import load_dataset
from breastcls.data.perceptual import HASH_BITS, near_copy_pairs
from breastcls.data.split import Split, split_for_config
from breastcls.errors import DataError
from breastcls.interfaces import DataRole, Dataset, Sample, SkippedFile
from breastcls.plugins.host import PluginHost
from breastcls.stain.optics import estimate_stain
from breastcls.stain.survey import StainReport, StainStatistics, survey_stain

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


def _roles(
    samples: Sequence[Sample], readable: Sequence[Sample], config: DataConfig
) -> tuple[dict[Path, str], Split | None, Literal["data", "computed", "none"], DataIssue | None]:
    """The split of the readable images (as :func:`_split_of`), and each unreadable image's
    role by its folder."""
    split_of, split, source, issue = _split_of(readable, config)
    for path, role in _folder_roles(samples).items():
        split_of.setdefault(path, role)
    return split_of, split, source, issue


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


def _file_hashes(samples: Sequence[Sample], workers: int) -> dict[Path, str]:
    """The SHA-1 of each file's bytes, hashed on ``workers`` threads (unreadable files left out)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        paths = [s.path for s in samples]
        hashes = dict(zip(paths, pool.map(_file_sha1, paths), strict=True))
    return {path: digest for path, digest in hashes.items() if digest is not None}


def _patients_across_roles(
    readable: Sequence[Sample], split_of: Mapping[Path, str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, tuple[str, ...]]]]:
    """The patients in several roles (each with its roles), and the accessions whose slides
    sit in different roles (see :func:`_accessions_in_several_roles`)."""
    patient_splits: dict[str, set[str]] = defaultdict(set)
    for sample in readable:
        if sample.patient_id and split_of[sample.path] != _UNSPLIT:
            patient_splits[sample.patient_id].add(split_of[sample.path])
    in_several = {
        patient: _in_role_order(splits)
        for patient, splits in sorted(patient_splits.items())
        if len(splits) > 1
    }
    return in_several, _accessions_in_several_roles(patient_splits)


def _stain_survey(
    readable: Sequence[Sample],
    split_of: Mapping[Path, str],
    class_names: Sequence[str],
    images_per_group: int,
    seed: int,
) -> StainReport | None:
    """The stain of the roles and classes (``None`` when no image is to be sampled)."""
    if images_per_group <= 0 or not readable:
        return None
    roles = _in_role_order({split_of[s.path] for s in readable} - {_UNSPLIT})
    return survey_stain(
        readable, split_of, roles, class_names, images_per_group=images_per_group, seed=seed
    )


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
    split_of, split, split_source, split_issue = _roles(samples, readable, config)
    duplicates = _duplicate_groups(readable, split_of, _file_hashes(readable, workers), image_info)
    in_several, accessions = _patients_across_roles(readable, split_of)
    stain = _stain_survey(readable, split_of, dataset.class_names, stain_images, seed)
    issues = _unreadable_issues(bad)
    if split_issue is not None:
        issues.append(split_issue)
    issues.extend(_duplicate_issue(group) for group in duplicates)
    issues.extend(_near_copy_issues(readable, split_of, image_info))
    issues.extend(_leak_issues(readable, in_several, accessions))
    issues.extend(_file_issues(image_info, dataset.skipped))
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
