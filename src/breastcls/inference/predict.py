"""``breastcls.predict``: calibrated predictions of unlabelled images, in memory and as a CSV."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import IMAGE_EXTENSIONS
from breastcls.environment import prepare_tensorflow
from breastcls.errors import DataError, OutputError
from breastcls.inference.model import InferenceModel, Prediction
from breastcls.interfaces import Sample, SkippedFile
from breastcls.io import SafeCsvWriter, atomic_path, check_writable_dir
from breastcls.limits import check_inference_batch
from breastcls.plugins.host import PluginHost, ensure_host

__all__ = ["PredictResult", "expand_inputs", "predict", "skipped_path"]


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


def expand_inputs(inputs: Iterable[Path | str]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively (hidden
    entries skipped, sorted).

    Raises:
        DataError: An input does not exist, or no image was found.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for directory, subdirectories, names in os.walk(path):
                subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
                files.extend(
                    Path(directory, name)
                    for name in sorted(names)
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
                )
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input {str(path)!r} does not exist: pass image files or folders.")
    if not files:
        raise DataError(
            f"No image ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
            f"{', '.join(str(p) for p in inputs)}."
        )
    return files


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
    model: Path | InferenceModel,
    inputs: Sequence[Any] | npt.NDArray[Any],
    *,
    out: Path | None = None,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
    skip_bad_images: bool = False,
) -> PredictResult:
    """Predict the class of unlabelled images, as the model's run would.

    The temperature and operating thresholds fitted on the run's selection set (for ``tta``)
    are applied. With ``out``, one CSV row per image is written (atomically): ``path``,
    ``patient_id`` and ``magnification`` (parsed from BreakHis file names, empty otherwise),
    ``predicted`` (the top class), ``p_<class>`` per class at full precision and, for each
    threshold, ``at_<threshold name>``: the positive side (``malignant``; for subtype models the
    malignant subtypes, scored by the sum of their probabilities) when its score reaches the
    threshold, else the negative side.

    Every file is decoded once before the model runs. An unreadable one stops the prediction
    with the list of them, unless ``skip_bad_images``: then they are left out, listed in the
    result's ``skipped`` and, with ``out``, in :func:`skipped_path` (``path,reason``; header
    only when none was skipped). File names are written as the file system has them: a name
    that is not valid UTF-8 keeps its raw bytes in the CSVs.

    Args:
        model: A run folder, a ``.keras`` file or a loaded :class:`InferenceModel`.
        inputs: Image files and/or folders (searched recursively), or in-memory images:
            ``(h, w, 3)`` arrays of 0-255 RGB values, one ``(n, h, w, 3)`` array, or PIL images.
        out: The CSV file to write, if any.
        tta: Test-time augmentation id.
        batch_size: Images per model call.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows progress.
        skip_bad_images: Leave unreadable image files out (listed) instead of stopping.

    Raises:
        BreastclsError: Missing inputs, unreadable images (without ``skip_bad_images``, or when
            none is readable), unknown TTA, unreadable model, or an ``out`` that is a folder
            (all checked before any inference).
    """
    from breastcls.data.images import describe_unreadable, scan_samples

    prepare_tensorflow()
    host = ensure_host(host)
    host.tta.info(tta)
    if out is not None:
        _check_out(Path(out))
    in_memory = isinstance(inputs, np.ndarray) or not all(
        isinstance(item, (str, Path)) for item in inputs
    )
    files = [] if in_memory else expand_inputs(inputs)
    loaded = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    check_inference_batch(batch_size, loaded.image_size, what="predict")
    info = None
    skipped: list[SkippedFile] = []
    if files:
        info, skipped = scan_samples([Sample(path=f, label=loaded.class_names[0]) for f in files])
        if skipped and not skip_bad_images:
            raise DataError(
                f"{describe_unreadable(skipped)} Fix or remove them, then run again. "
                "--skip-bad-images (skip_bad_images=True) predicts the others and lists them."
            )
        if len(skipped) == len(files):
            raise DataError(f"No image could be read: {describe_unreadable(skipped)}")
        unreadable = {item.path for item in skipped}
        files = [f for f in files if f not in unreadable]
    prediction = loaded.predict(
        inputs if in_memory else files,
        tta=tta,
        batch_size=batch_size,
        host=host,
        verbose=verbose,
        image_info=info,
    )
    sources = tuple(
        [f"<array {i}>" for i in range(len(prediction.predicted))]
        if in_memory
        else [str(path) for path in files]
    )
    side = None
    if out is not None:
        if skip_bad_images and not in_memory:
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
                ]
            )
