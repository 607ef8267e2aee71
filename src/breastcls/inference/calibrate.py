"""``breastcls calibrate``: fit a model's temperature and thresholds for a TTA, explicitly.

Training fits the calibration of plain predictions on its selection set. A TTA averages the
model's outputs over transformed copies, and a temperature fitted on plain predictions does not
fit averaged ones, so each TTA gets its own, fitted here on the same selection set and kept in
the model record. This is the only step after training that changes the record; ``predict``,
``evaluate`` and ``slide predict`` read it and never fit anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from breastcls.data.images import ImageInfo
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError
from breastcls.inference.calibration import Calibration, fit_calibration
from breastcls.inference.domain import DomainReference, fit_domain_reference
from breastcls.inference.model import InferenceModel, Scores
from breastcls.inference.record import write_record
from breastcls.interfaces import DataRole, Predictions, Sample
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import read_split_csv
from breastcls.runs.lock import lock_folder

__all__ = ["MAX_DOMAIN_IMAGES", "calibrate", "fit_run_domain", "score_selection"]

MAX_DOMAIN_IMAGES = 2000
"""The most training images (a seeded subsample) the domain-shift reference is fitted on."""


def score_selection(
    model: InferenceModel,
    selection: Sequence[Sample],
    *,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
    image_info: Mapping[Path, ImageInfo] | None = None,
    features: bool = False,
) -> tuple[Predictions, Scores]:
    """The model's raw predictions of the selection set with ``tta``: what a calibration (and
    the domain-shift thresholds, from the ``features``) is fitted on.

    Raises:
        ValueError: ``selection`` is empty.
        DataError: A selection image is unreadable or of a class the model does not know.
    """
    if not selection:
        raise ValueError("A calibration is fitted on the selection set, and it is empty.")
    raw_model = model.without_calibration()
    scores = raw_model.score_files(
        selection,
        tta=tta,
        batch_size=batch_size,
        host=host,
        verbose=verbose,
        image_info=image_info,
        features=features,
    )
    return raw_model.labelled(selection, scores, role=DataRole.SELECTION), scores


def fit_run_domain(
    model: InferenceModel,
    training: Sequence[Sample],
    selection: Predictions,
    selection_scores: Scores,
    *,
    batch_size: int = 32,
    host: PluginHost | None = None,
    image_info: Mapping[Path, ImageInfo] | None = None,
    seed: int = 0,
) -> DomainReference | None:
    """Fit the domain-shift reference on (up to :data:`MAX_DOMAIN_IMAGES` of) the training
    images and choose its thresholds on the selection set's ``selection_scores`` (made with
    ``features``); ``None`` when the runtime gives no features.

    Raises:
        DataError: A training image is unreadable.
    """
    if selection_scores.features is None or len(training) < 4:
        return None
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(len(training))[:MAX_DOMAIN_IMAGES].tolist())
    subset = [training[i] for i in chosen]
    scores = model.without_calibration().score_files(
        subset, batch_size=batch_size, host=host, image_info=image_info, features=True
    )
    if scores.features is None:
        return None
    index = {name: i for i, name in enumerate(model.class_names)}
    return fit_domain_reference(
        scores.features,
        np.array([index[s.label] for s in subset], dtype=np.int64),
        _sides(subset, image_info),
        selection_scores.features,
        _sides([Sample(path=Path(p), label="") for p in selection.paths], image_info),
        n_classes=len(model.class_names),
        n_selection_patients=len({p for p in selection.patient_ids if p is not None}) or None,
    )


def _sides(samples: Sequence[Sample], image_info: Mapping[Path, ImageInfo] | None) -> list[int]:
    from breastcls.data.images import scan_samples

    info = image_info if image_info is not None else scan_samples(samples)[0]
    return [min(info[s.path].width, info[s.path].height) for s in samples]


def calibrate(
    run: Path,
    *,
    tta: str = "none",
    domain: bool = False,
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
) -> Calibration:
    """Fit the temperature and thresholds of predictions made with ``tta`` on the run's
    selection set, and keep them in the run's model record (replacing an earlier fit for
    ``tta``); with ``domain``, also (re)fit the domain-shift reference on the run's training
    images, its thresholds on the selection set (for runs trained before the score existed).

    Args:
        run: A run folder (it holds ``split.csv``, which names the selection and training sets).
        tta: Test-time augmentation id.
        domain: Fit the domain-shift reference too.
        batch_size: Images per model call (TTA multiplies it by the number of copies).
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows progress.

    Returns:
        The calibration fitted, with the number of selection images and patients.

    Raises:
        BreastclsError: Unknown TTA, a model that cannot be loaded, a folder without a selection
            set (an export or a bare model file), unreadable images, or a run folder another
            process holds or that cannot be written.
    """
    prepare_tensorflow()
    host = ensure_host(host)
    host.tta.info(tta)
    model = InferenceModel.load(Path(run))
    folder = model.folder
    roles = {role: _role(model, role) for role in (DataRole.SELECTION, DataRole.TRAIN)}
    if not roles[DataRole.SELECTION]:
        raise ConfigError(
            f"{folder.path} names no selection set (no split.csv, or none in it): a calibration "
            "is fitted on a run's selection set; calibrate the run folder the model came from."
        )
    with lock_folder(
        folder.path,
        purpose="calibrate",
        hint="wait for that process to end, then calibrate again.",
    ):
        predictions, scores = score_selection(
            model, roles[DataRole.SELECTION], tta=tta, batch_size=batch_size, host=host,
            verbose=verbose, features=domain,
        )  # fmt: skip
        calibration = fit_calibration(predictions, tta=tta)
        record = model.record.with_calibration(calibration)
        if domain:
            reference = fit_run_domain(
                model, roles[DataRole.TRAIN], predictions, scores, batch_size=batch_size,
                host=host,
            )  # fmt: skip
            record = dataclasses.replace(record, domain=reference)
        write_record(folder.path, record)
    return calibration


def _role(model: InferenceModel, role: DataRole) -> list[Sample]:
    """The images of ``role`` that the model's run folder's ``split.csv`` lists."""
    split = model.folder.split
    rows = read_split_csv(model.folder.path) if split.is_file() else []
    return [sample for sample, _ in rows if sample.split == role.value]
