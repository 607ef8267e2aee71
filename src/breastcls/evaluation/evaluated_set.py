"""The choice of data an evaluation scores: the run's own test set (``split.csv``) or given
images checked against those that trained or selected the model, what that set is to the model
(its role, a leak, an overlap), and the test-look ledger entry an evaluation of a test set makes
(:mod:`breastcls.evaluation.looks`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from breastcls.config import DataConfig
from breastcls.data.images import ImageInfo
from breastcls.data.overlap import Overlap, find_overlap
from breastcls.data.split import Leak, Split, find_leak, group_key
from breastcls.errors import DataError, ModelLoadError
from breastcls.evaluation.looks import record_test_look
from breastcls.evaluation.robustness import StainShift
from breastcls.inference.model import InferenceModel
from breastcls.interfaces import DataRole, Predictions, Sample, SkippedFile
from breastcls.plugins.host import PluginHost
from breastcls.runs.folder import RunFolder, read_split_csv

__all__ = [
    "EvaluationData",
    "EvaluationSettings",
    "evaluation_data",
    "looked_set",
    "training_look",
    "with_class_names",
    "with_split_groups",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationData:
    """The images ``evaluate`` scores, and what they are to the model."""

    samples: list[Sample]
    class_names: tuple[str, ...] | None
    name: str
    role: DataRole | None
    overlap: Overlap
    image_info: Mapping[Path, ImageInfo] = dataclasses.field(default_factory=dict)
    skipped: tuple[SkippedFile, ...] = ()
    caveat: str | None = None
    leak: Leak | None = None
    group_of: Mapping[Path, str | None] = dataclasses.field(default_factory=dict)

    def grouped(self, predictions: Predictions) -> Predictions:
        """``predictions`` of :attr:`samples` with each image's group: patient-level figures
        count, aggregate and resample by the run's groups (biopsies), not by slide."""
        groups = tuple(self.group_of.get(s.path) for s in self.samples)
        return dataclasses.replace(predictions, groups=groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationSettings:
    """How ``evaluate`` was asked to evaluate: the data as given (``None``: the run's own set),
    the set chosen from it, and the options that change the figures."""

    data: Path | None
    chosen: EvaluationData
    tta: str
    gradcam: bool
    stain_shift: StainShift = "none"
    stain_reference: Path | None = None
    stain_transfer: str = "macenko"
    batch_size: int = 32
    verbose: int = 0


def evaluation_data(
    data: Path | None,
    model: InferenceModel,
    host: PluginHost,
    *,
    allow_overlap: bool,
    skip_bad_images: bool = False,
) -> EvaluationData:
    """Return what to evaluate: the run's test set (``data`` is ``None``) or ``data``, checked
    against the images and patients that trained or selected the model. Every image is
    decoded once here, before anything is written: an unreadable one stops the evaluation,
    or is left out (listed) with ``skip_bad_images``."""
    from breastcls.data.images import describe_unreadable, scan_samples

    chosen = _chosen_data(data, model, host, allow_overlap=allow_overlap)
    if chosen.image_info or chosen.skipped:
        info, skipped = dict(chosen.image_info), list(chosen.skipped)  # scanned for overlap
    else:
        info, skipped = scan_samples(chosen.samples)
    if skipped and not skip_bad_images:
        raise DataError(
            f"{describe_unreadable(skipped)} Fix or remove them, then run again. "
            "--skip-bad-images (skip_bad_images=True) evaluates the others and lists them in "
            "skipped.csv."
        )
    if skipped and len(skipped) == len(chosen.samples):
        raise DataError(f"No image could be read: {describe_unreadable(skipped)}")
    if not skipped:
        return dataclasses.replace(chosen, image_info=info)
    unreadable = {item.path for item in skipped}
    return dataclasses.replace(
        chosen,
        samples=[s for s in chosen.samples if s.path not in unreadable],
        image_info=info,
        skipped=tuple(skipped),
    )


def _chosen_data(
    data: Path | None,
    model: InferenceModel,
    host: PluginHost,
    *,
    allow_overlap: bool,
) -> EvaluationData:
    from breastcls.data.images import scan_samples
    from breastcls.data.loading import load_dataset

    model_dir = model.folder.path
    if data is None:
        run_set = _run_set(model_dir)
        foreign = sorted({s.label for s in run_set.samples} - set(model.class_names))
        if foreign and model.record.class_names_known:
            raise DataError(
                f"{model.folder.split} lists images of class(es) {foreign}, which the model "
                f"({list(model.class_names)}) does not have: the split and the model do not "
                "belong to one run; restore them, or pass --data to evaluate on."
            )
        return run_set
    model_folder = RunFolder(model_dir)
    config = DataConfig(path=Path(data), image_size=model.image_size)
    if model_folder.config.is_file():
        # The data is read as the run read its own: the same task, magnification and groups.
        saved = model_folder.read_config_record().run_config.data
        config = dataclasses.replace(
            config, task=saved.task, magnification=saved.magnification, group_by=saved.group_by
        )
    dataset = load_dataset(config, host=host)
    samples = [s for s in dataset.samples if s.split == "test"] or list(dataset.samples)
    checked = model_folder.split.is_file()
    overlap = Overlap()
    info: dict[Path, ImageInfo] = {}
    bad: list[SkippedFile] = []
    if checked:
        seen = [image for _, image in read_split_csv(model_dir)]
        info, bad = scan_samples(samples)  # unreadable ones: see evaluation_data
        overlap = find_overlap(seen, samples, info, group_by=config.group_by)
    if overlap and not allow_overlap:
        raise DataError(
            f"{data}: {overlap.describe()} Figures on them would not estimate performance on new "
            "patients: evaluate on other patients, or pass --allow-overlap to score them anyway "
            "(the report is then labelled as overlapping)."
        )
    return EvaluationData(
        samples=samples,
        class_names=dataset.class_names,
        name=Path(data).stem or "data",
        # Without the run's split.csv nothing says what the model has seen.
        role=DataRole.TEST if checked and not overlap else None,
        overlap=overlap,
        image_info=info,
        skipped=tuple(bad),
        caveat=_patients_unknown(samples, config.group_by) if checked else None,
        group_of={s.path: group_key(s, config.group_by) for s in samples},
    )


def _run_set(run_dir: Path) -> EvaluationData:
    """The run's test images from ``split.csv`` (or its selection images when it has none),
    with their recorded groups and the patients of theirs that trained or selected the model."""
    rows = read_split_csv(run_dir)
    for role in (DataRole.TEST, DataRole.SELECTION):
        chosen = [sample for sample, _ in rows if sample.split == role.value]
        if chosen:
            return EvaluationData(
                samples=chosen,
                class_names=None,
                name=role.value,
                role=role,
                overlap=Overlap(),
                leak=find_leak(((seen.role, seen.group) for _, seen in rows), role),
                group_of={sample.path: seen.group for sample, seen in rows},
            )
    raise DataError(
        f"{RunFolder(run_dir).split} lists no test or selection images: pass --data to evaluate on."
    )


def _patients_unknown(samples: Sequence[Sample], group_by: str | None) -> str | None:
    """The caveat of data whose patients are unknown: new images of a patient who trained the
    model pass the copy checks, and only patient ids would catch them."""
    if all(group_key(sample, group_by) is not None for sample in samples):
        return None
    return "test set: checked for exact and near copies only (patients unknown)"


def with_class_names(
    loaded: InferenceModel, chosen: EvaluationData, data: Path | None
) -> InferenceModel:
    """The model with its class names checked against the data's (a bare model file whose
    class names are unknown takes the data's)."""
    if chosen.class_names is None:
        return loaded
    record = loaded.record
    if not record.class_names_known and len(chosen.class_names) == len(record.class_names):
        return loaded.with_record(
            dataclasses.replace(record, class_names=chosen.class_names, class_names_known=True)
        )
    if list(chosen.class_names) != list(loaded.class_names):
        raise ModelLoadError(
            f"The model {loaded.source} was trained on classes {list(loaded.class_names)} but "
            f"{data} has {list(chosen.class_names)}: evaluate it on data with the same classes."
        )
    return loaded


def with_split_groups(predictions: Predictions, split: Split) -> Predictions:
    """``predictions`` with each image's group in ``split``: patient-level figures count,
    aggregate and resample by the split's groups (biopsies), not by slide."""
    group_of = {
        str(s.path): group_key(s, split.group_by) for _, part in split.parts() for s in part
    }
    return dataclasses.replace(
        predictions, groups=tuple(group_of.get(p) for p in predictions.paths)
    )


def looked_set(model_dir: Path, how: EvaluationSettings, out_dir: Path) -> str | None:
    """How the evaluated set is named (overlapping, leaky, patients unknown); a test set's
    look is recorded in the model's ledger."""
    from breastcls.evaluation.metrics import describe_set

    chosen = how.chosen
    if chosen.overlap:
        return f"overlapping data (optimistic): {chosen.overlap.describe()}"
    if chosen.role is not DataRole.TEST:
        return describe_set(chosen.role, chosen.leak)
    options = {
        "stain_shift": how.stain_shift,
        "stain_reference": str(how.stain_reference) if how.stain_reference else None,
        "stain_transfer": how.stain_transfer if how.stain_reference else None,
        "skipped_images": len(chosen.skipped),
    }
    return record_test_look(
        model_dir,
        chosen.caveat or describe_set(chosen.role, chosen.leak) or "test set",
        data=how.data,
        tta=how.tta,
        options=options,
        evaluation=out_dir,
    )


def training_look(run_dir: Path, split: Split, description: str | None) -> str | None:
    """Record training's look at the run's test set; return ``description`` (``None``: the
    role says enough) with the look, unchanged without a test set."""
    if not split.test:
        return description
    return record_test_look(
        run_dir, description or "test set", data=None, tta="none", options={}, evaluation=run_dir
    )
