"""Exporting a trained model to Keras, TensorFlow SavedModel, ONNX or TFLite.

Every export is an inference model (:mod:`breastcls.conversion`): the training augmentation is
removed, the preprocessing stays inside, so each format takes raw 0-255 RGB images of the run's
input size and returns class probabilities, checked against the run's model. Beside it lie the
run's model record, copied verbatim (class names, input, scale, stain normaliser, every
calibration: :mod:`breastcls.inference.record`), the model card and ``export.json``; a ``keras``
or ``onnx`` export folder loads with :meth:`breastcls.InferenceModel.load` and predicts what the
run predicts. A probe on a frozen extractor exports as ``keras`` (the probe and the extractor file
side by side) or as one model holding both (:mod:`breastcls.embeddings.probe_export`).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from breastcls.conversion import (
    EXPORT_FILE_NAMES,
    EXPORT_TOLERANCE,
    Conversion,
    ExportFormat,
    check_format,
    convert_model,
)
from breastcls.embeddings.probe_export import (
    check_probe_format,
    convert_probe,
    describe_probe_export,
)
from breastcls.embeddings.runtime import ProbeRuntime
from breastcls.errors import ModelLoadError, OutputError
from breastcls.inference.model import InferenceModel
from breastcls.inference.record import write_record
from breastcls.io import (
    atomic_path,
    atomic_write_json,
    ensure_writable_dir,
    is_disk_full,
    replace_path,
)
from breastcls.records import ExportRecord
from breastcls.runs.folder import RunFolder

__all__ = ["ExportResult", "export_model"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        format: The export format.
        model: The exported model (a file, or a folder for ``savedmodel``).
        out_dir: The folder holding it, its ``model_record.json``, ``model_card.md`` and
            ``export.json``.
        max_difference: Largest absolute difference between the export's probabilities and the
            run model's, on a check batch.
    """

    format: ExportFormat
    model: Path
    out_dir: Path
    max_difference: float


def export_model(
    run: Path, *, format: ExportFormat | str, out_dir: Path | None = None
) -> ExportResult:
    """Export a run's best model for serving elsewhere.

    A probe on a frozen extractor (a foundation model) exports as ``keras`` (the probe and the
    extractor file side by side, loaded by breastcls), and as one model holding both: ``onnx``
    for either extractor kind, ``savedmodel`` and ``tflite`` for a ``keras`` extractor
    (:mod:`breastcls.embeddings.probe_export`).

    Args:
        run: A run folder (its ``best.keras`` is exported) or a ``.keras`` file.
        format: ``keras``, ``savedmodel`` (TensorFlow Serving, TF.js converters), ``onnx``
            (onnxruntime; needs the ``onnx`` extra) or ``tflite`` (mobile and edge devices).
        out_dir: Output folder (default: ``<run>/export/<format>``).

    Returns:
        Where the export went and how closely it matches the run's model.

    Raises:
        ConfigError: Unknown format, ``onnx`` without tf2onnx installed, or ``savedmodel`` or
            ``tflite`` of a probe on an ``onnx`` extractor.
        ModelLoadError: The run has no loadable ``best.keras`` (or it is an ONNX export).
        OutputError: The output folder cannot be written (a full disk included), or the export
            does not reproduce the model's probabilities within
            :data:`~breastcls.conversion.EXPORT_TOLERANCE`; the previous export in the folder is
            then kept as it was, and nothing of the new one is left behind.
    """
    checked = check_format(format)
    loaded = InferenceModel.load(Path(run))  # checked first: nothing is created for a bad run
    extractor = loaded.record.extractor
    if extractor is not None:
        check_probe_format(extractor.extractor, checked, loaded.source)
    elif loaded.keras_model is None:
        raise ModelLoadError(
            f"{loaded.source} is an ONNX model: export the run folder it came from instead."
        )
    target_dir = Path(out_dir) if out_dir is not None else loaded.folder.export_folder(checked).path
    ensure_writable_dir(target_dir)
    write = _write_probe if extractor is not None else _write_converted
    # The whole export is written beside the previous one first; only a complete export
    # replaces it, file by file, export.json last.
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=target_dir) as folder:
        staging = RunFolder(Path(folder))
        try:
            exported = write(loaded, checked, staging)
            atomic_write_json(staging.export_record, exported.to_json())
        except OutputError as error:
            if not is_disk_full(error):
                raise  # the conversion's own reason (no equivalent layer, a mismatch)
            raise _unwritten(error, target_dir, checked) from error
        except OSError as error:
            raise _unwritten(error, target_dir, checked) from error
        target = RunFolder(target_dir)
        written = [exported.model, target.model_record.name, target.model_card.name]
        for name in (*written, *([exported.extractor] if exported.extractor else [])):
            replace_path(staging.path / name, target_dir / name)
        replace_path(staging.export_record, target.export_record)
    return ExportResult(
        format=checked,
        model=target_dir / exported.model,
        out_dir=target_dir,
        max_difference=exported.max_difference or 0.0,
    )


def _write_converted(
    loaded: InferenceModel, format: ExportFormat, staging: RunFolder
) -> ExportRecord:
    """Convert a network trained end to end, with its record and model card."""
    name = EXPORT_FILE_NAMES[format]
    conversion = convert_model(
        loaded.keras_model, format, staging.path / name, source=loaded.source
    )
    _write_sidecars(loaded, staging)
    return _export_record(loaded, format, staging, conversion)


def _export_record(
    loaded: InferenceModel,
    format: ExportFormat,
    staging: RunFolder,
    conversion: Conversion,
    *,
    extractor: str | None = None,
    holds: str | None = None,
) -> ExportRecord:
    return ExportRecord(
        format=format,
        model=EXPORT_FILE_NAMES[format],
        source=str(loaded.source),
        record=staging.model_record.name,
        max_difference=conversion.max_difference,
        tolerance=EXPORT_TOLERANCE,
        computes_in=conversion.computes_in,
        max_difference_to_run_model=conversion.max_difference_to_model,
        extractor=extractor,
        holds=holds,
    )


def _write_probe(loaded: InferenceModel, format: ExportFormat, staging: RunFolder) -> ExportRecord:
    """A probe on a frozen extractor: as ``keras``, the probe as ``model.keras`` and the
    extractor file beside it, both copied byte for byte, the record naming the extractor by its
    name in the folder (so the folder moves whole); in the other formats, one model holding
    the extractor and the probe, the record naming that model as the extractor's file (its
    SHA-256 stays the one the probe was fitted on)."""
    from breastcls.model_card import write_model_card

    extractor = loaded.record.extractor
    if extractor is None or not isinstance(loaded.runtime, ProbeRuntime):
        raise ModelLoadError(f"{loaded.source} is not a probe on a frozen extractor.")
    model = EXPORT_FILE_NAMES[format]
    copied = f"extractor{extractor.extractor.path.suffix}" if format == "keras" else None
    if copied is not None:
        shutil.copyfile(loaded.source, staging.path / model)
        shutil.copyfile(loaded.runtime.embedder.spec.path, staging.path / copied)
        conversion = Conversion(
            max_difference=0.0, max_difference_to_model=0.0, computes_in="float32"
        )
    else:
        conversion = convert_probe(
            loaded.runtime, format, staging.path / model, source=loaded.source
        )
    spec = dataclasses.replace(extractor.extractor, file=copied or model)
    write_record(
        staging.path,
        dataclasses.replace(
            loaded.record, extractor=dataclasses.replace(extractor, extractor=spec)
        ),
    )
    write_model_card(loaded.folder.path, staging.model_card)
    holds = describe_probe_export(extractor.extractor, extractor.probe, format)
    return _export_record(loaded, format, staging, conversion, extractor=copied, holds=holds)


def _unwritten(error: OSError, target_dir: Path, format: str) -> OutputError:
    why = "the disk is full" if is_disk_full(error) else (error.strerror or str(error))
    return OutputError(
        f"The {format} export could not be written into {target_dir} ({why}); the previous "
        "export there, if any, is kept as it was. Free space or choose another --out, then "
        "export again."
    )


def _write_sidecars(loaded: InferenceModel, target: RunFolder) -> None:
    """Copy the model record verbatim (a folder written before records gets its upgraded
    record) and write the model card."""
    from breastcls.model_card import write_model_card

    source = loaded.folder.model_record
    if source.is_file():
        with atomic_path(target.model_record) as temporary:
            shutil.copyfile(source, temporary)
    else:
        write_record(target.path, loaded.record)
    write_model_card(loaded.folder.path, target.model_card)
