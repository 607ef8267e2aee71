"""``breastcls.predict``: calibrated predictions of unlabelled images, in memory and as a CSV."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import ImageInfo
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError, DataError, OutputError
from breastcls.inference.domain import DOMAIN_COLUMNS, domain_cells, flagged_line
from breastcls.inference.inputs import ImageInputs, image_inputs
from breastcls.inference.model import InferenceModel, Prediction
from breastcls.interfaces import Sample, SkippedFile
from breastcls.io import SafeCsvWriter, atomic_path, check_writable_dir
from breastcls.limits import check_inference_batch
from breastcls.plugins.host import PluginHost, ensure_host

__all__ = ["DomainCheck", "PredictResult", "check_domain", "predict", "skipped_path"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictResult:
    """What :func:`breastcls.predict` returns.

    Attributes:
        prediction: The calibrated probabilities, top classes, positive scores and decisions at
            each operating threshold, in input order.
        sources: Each image's file, or ``<array i>`` for an in-memory image.
        path: The CSV written (``None`` when none was asked for).
        skipped: The unreadable files left out (with ``skip_bad_images``), with the reason.
        skipped_path: The CSV listing them (:func:`skipped_path`; written with ``out`` and
            ``skip_bad_images``).
    """

    prediction: Prediction
    sources: tuple[str, ...]
    path: Path | None = None
    skipped: tuple[SkippedFile, ...] = ()
    skipped_path: Path | None = None

    @property
    def n_images(self) -> int:
        """Number of images predicted."""
        return len(self.sources)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, in the order of the probability columns."""
        return self.prediction.class_names

    def __repr__(self) -> str:
        line = self.prediction.describe()
        if self.skipped:
            line += f"; {len(self.skipped)} skipped"
        if self.path is not None:
            line += f" -> {self.path}"
        return f"PredictResult({line})"


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise OutputError(f"--out {str(out)!r} is a folder: name the CSV file to write.")
    # Checked, not created: a refused model or image must leave nothing behind.
    check_writable_dir(out.parent)


def skipped_path(out: Path) -> Path:
    """The CSV beside ``out`` that lists the files ``skip_bad_images`` left out:
    ``predictions.csv`` -> ``predictions.skipped.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


def predict(
    model: Path | str | InferenceModel,
    inputs: ImageInputs,
    *,
    out: Path | None = None,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
    skip_bad_images: bool = False,
) -> PredictResult:
    """Predict the class of unlabelled images, as the model's run would.

    The calibration the model record holds for ``tta`` (temperature and operating thresholds
    fitted on the run's selection set) is applied; a model without one is used raw, and says
    so. With ``out``, one CSV row per image is written (atomically): ``path``, ``patient_id`` and
    ``magnification`` (parsed from BreakHis file names, empty otherwise), ``predicted`` (the top
    class), ``p_<class>`` per class at full precision and, for each threshold,
    ``at_<threshold name>``: the positive side (``malignant``; for subtype models the malignant
    subtypes, scored by the sum of their probabilities) when its score reaches the threshold,
    else the negative side; then, when the model has a domain reference,
    ``domain_score``, ``in_distribution`` and ``domain_reason``
    (:mod:`breastcls.inference.domain`). Nothing is written into the model's folder.

    Every file is decoded once before the model runs. An unreadable one stops the prediction
    with the list of them, unless ``skip_bad_images``: then they are left out, listed in the
    result's ``skipped`` and, with ``out``, in :func:`skipped_path` (``path,reason``; header
    only when none was skipped). File names are written as the file system has them: a name
    that is not valid UTF-8 keeps its raw bytes in the CSVs.

    Args:
        model: A run folder, an export folder, a model file, or a loaded
            :class:`InferenceModel` (what :func:`breastcls.load_model` returns).
        inputs: One image or many (:func:`~breastcls.inference.inputs.image_inputs`): image
            files and/or folders (searched recursively), an ``(h, w, 3)`` array of 0-255 RGB
            values or a PIL image, an ``(n, h, w, 3)`` array, or a list of arrays and PIL
            images.
        out: The CSV file to write, if any.
        tta: Test-time augmentation id.
        batch_size: Images per model call.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows progress.
        skip_bad_images: Leave unreadable image files out (listed) instead of stopping.

    Raises:
        BreastclsError: Missing inputs, unreadable images (without ``skip_bad_images``, or when
            none is readable), images that are not 0-255 RGB, unknown TTA or one the model has
            no calibration for, unreadable model, or an ``out`` that is a folder (all checked
            before any inference).
    """
    prepare_tensorflow()
    host = ensure_host(host)
    host.tta.info(tta)
    if out is not None:
        _check_out(Path(out))
    images = image_inputs(inputs)
    loaded = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    check_inference_batch(batch_size, loaded.image_size, what="predict")
    loaded.calibration(tta)  # a TTA without calibration stops before any image is decoded
    files, info, skipped = _readable(list(images.files), skip_bad_images=skip_bad_images)
    prediction = loaded.predict(
        list(images.arrays) if images.in_memory else files,
        tta=tta,
        batch_size=batch_size,
        host=host,
        verbose=verbose,
        image_info=info,
    )
    sources = tuple(
        [f"<array {i}>" for i in range(len(images))]
        if images.in_memory
        else [str(path) for path in files]
    )
    side = None
    if out is not None:
        if skip_bad_images and not images.in_memory:
            side = skipped_path(Path(out))
            _write_skipped(side, skipped)
        _write_csv(Path(out), prediction, sources)
    return PredictResult(
        prediction=prediction,
        sources=sources,
        path=out,
        skipped=tuple(skipped),
        skipped_path=side,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainCheck:
    """How many images of a folder are unlike a model's training images
    (:func:`check_domain`).

    Attributes:
        n_images: Images scored (unreadable ones are left out).
        n_flagged: Images whose domain-shift score is above 1.
        reasons: How many images each part of the score flagged.
        line: The finding in words.
        applies: Whether the model's figures and predictions can apply to these images (at
            most :data:`~breastcls.inference.domain.DOMAIN_WARNING_FRACTION` flagged).
        reference: Where the score's reference and thresholds come from.
    """

    n_images: int
    n_flagged: int
    reasons: dict[str, int]
    line: str
    applies: bool
    reference: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``breastcls data check --model --json``)."""
        return {
            "n_images": self.n_images,
            "n_flagged": self.n_flagged,
            "flagged_fraction": self.n_flagged / self.n_images if self.n_images else 0.0,
            "reasons": self.reasons,
            "applies": self.applies,
            "reference": self.reference,
        }


def check_domain(
    model: Path | str | InferenceModel,
    inputs: ImageInputs,
    *,
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
) -> DomainCheck:
    """Score images with a model's domain-shift score before anyone trusts its predictions on
    them (unreadable files are left out).

    Raises:
        ConfigError: The model has no domain reference (fit one with
            ``breastcls calibrate RUN --domain``).
        BreastclsError: As :func:`predict`.
    """
    loaded = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    if loaded.record.domain is None:
        raise ConfigError(
            f"{loaded.source} has no domain-shift reference (it was trained before breastcls "
            f"kept one): fit it with `breastcls calibrate {loaded.folder.path} --domain`."
        )
    prediction = predict(
        loaded, inputs, batch_size=batch_size, host=host, verbose=verbose, skip_bad_images=True
    ).prediction
    kept = prediction.in_distribution
    if kept is None:
        raise ConfigError(f"{loaded.source} runs in ONNX Runtime, which gives no features.")
    n_flagged = int((~kept).sum())
    line, applies = flagged_line(n_flagged, len(kept))
    return DomainCheck(
        n_images=len(kept),
        n_flagged=n_flagged,
        reasons=dict(Counter(r for r in prediction.domain_reason or () if r)),
        line=line,
        applies=applies,
        reference=loaded.record.domain.describe(),
    )


def _readable(
    files: list[Path], *, skip_bad_images: bool
) -> tuple[list[Path], Mapping[Path, ImageInfo] | None, list[SkippedFile]]:
    """The readable ``files``, their scan, and the unreadable ones left out (with
    ``skip_bad_images``; else they stop the prediction)."""
    from breastcls.data.images import describe_unreadable, scan_samples

    if not files:
        return files, None, []
    info, skipped = scan_samples([Sample(path=f, label="unlabelled") for f in files])
    if skipped and not skip_bad_images:
        raise DataError(
            f"{describe_unreadable(skipped)} Fix or remove them, then run again. "
            "--skip-bad-images (skip_bad_images=True) predicts the others and lists them."
        )
    if len(skipped) == len(files):
        raise DataError(f"No image could be read: {describe_unreadable(skipped)}")
    unreadable = {item.path for item in skipped}
    return [f for f in files if f not in unreadable], info, skipped


def _open_csv(temporary: Path) -> Any:
    # A file name that is not valid UTF-8 is written with its raw bytes: the CSV names the
    # file exactly as the file system does (read it back with errors="surrogateescape").
    return temporary.open("w", newline="", encoding="utf-8", errors="surrogateescape")


def _write_skipped(path: Path, skipped: Sequence[SkippedFile]) -> None:
    with atomic_path(path) as temporary, _open_csv(temporary) as handle:
        writer = SafeCsvWriter(handle)
        writer.writerow(["path", "reason"])
        writer.writerows([str(item.path), item.reason] for item in skipped)


def _write_csv(out: Path, prediction: Prediction, sources: Sequence[str]) -> None:
    with atomic_path(out) as temporary, _open_csv(temporary) as handle:
        writer = SafeCsvWriter(handle)
        writer.writerow(
            [
                "path",
                "patient_id",
                "magnification",
                "predicted",
                *(f"p_{name}" for name in prediction.class_names),
                *(f"at_{name}" for name in prediction.decisions),
                *(DOMAIN_COLUMNS if prediction.domain_score is not None else ()),
            ]
        )
        for row, source in enumerate(sources):
            parsed = parse_breakhis_name(Path(source).name)
            writer.writerow(
                [
                    source,
                    parsed.patient_id if parsed else "",
                    parsed.magnification if parsed else "",
                    prediction.predicted[row],
                    *(repr(float(p)) for p in prediction.probabilities[row]),
                    *(decisions[row] for decisions in prediction.decisions.values()),
                    *(
                        domain_cells(
                            prediction.domain_score,
                            prediction.in_distribution,
                            prediction.domain_reason,
                            row,
                        )
                        if prediction.domain_score is not None
                        else ()
                    ),
                ]
            )
