"""A run folder's layout (:class:`RunFolder`): every file name, and the readers and writers of
its records (status, split, history, skipped files, environment).

No other module spells a run folder's file names: they ask a :class:`RunFolder`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from breastcls._version import __version__
from breastcls.data.images import ImageInfo
from breastcls.data.overlap import SeenImage
from breastcls.data.split import Split, group_key
from breastcls.errors import ConfigError, DataError, OutputError
from breastcls.interfaces import DataRole, Sample, SkippedFile
from breastcls.io import (
    NotRegularFileError,
    SafeCsvWriter,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    csv_records,
    ensure_writable_dir,
    open_regular,
)
from breastcls.limits import env_limit
from breastcls.records import (
    ConfigRecord,
    ExportRecord,
    MetricsRecord,
    SlideJobRecord,
    SlideProgressRecord,
    SlideSummaryRecord,
    StatusRecord,
)
from breastcls.runs.lock import LOCK_NAME, FolderLock, lock_folder, locked_appender

__all__ = [
    "RunFolder",
    "RunResult",
    "RunStatus",
    "SlideFolder",
    "TestLook",
    "append_test_look",
    "create_run_dir",
    "read_split_csv",
    "read_status",
    "read_test_looks",
    "write_history_csv",
    "write_split_csv",
    "write_status",
]

RunStatus = Literal["running", "finished", "failed", "interrupted"]

#: The largest JSON record of a run folder that is read (50 MB): breastcls writes records of a
#: few kB, so a larger one is damaged or hostile and refused unread.
MAX_RECORD_BYTES = 50_000_000
#: The environment variable that raises :data:`MAX_RECORD_BYTES`.
RECORD_LIMIT_VARIABLE = "BREASTCLS_MAX_RECORD_BYTES"


def max_record_bytes() -> int:
    """The largest JSON record read: ``BREASTCLS_MAX_RECORD_BYTES``, else :data:`MAX_RECORD_BYTES`.

    Raises:
        ConfigError: The environment variable is not a positive whole number.
    """
    return env_limit(RECORD_LIMIT_VARIABLE, MAX_RECORD_BYTES)


@dataclass(frozen=True, slots=True)
class RunFolder:
    """The layout of a run folder (or of an evaluation folder, which shares the report files).

    Attributes:
        path: The folder.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # What a run records before training.
    @property
    def config(self) -> Path:
        """``config.json``: the resolved configuration, split summary, devices, precision."""
        return self.path / "config.json"

    @property
    def class_names(self) -> Path:
        """``class_names.json``: the class names in label order."""
        return self.path / "class_names.json"

    @property
    def environment(self) -> Path:
        """``environment.json``: versions, devices and TensorFlow settings."""
        return self.path / "environment.json"

    @property
    def status(self) -> Path:
        """``status.json``: running / finished / failed / interrupted, the writer, the headline."""
        return self.path / "status.json"

    @property
    def lock(self) -> Path:
        """The lock file of the process working in the folder (:mod:`breastcls.runs.lock`)."""
        return self.path / LOCK_NAME

    @property
    def split(self) -> Path:
        """``split.csv``: every image with its role, group and pixel hash."""
        return self.path / "split.csv"

    @property
    def test_looks(self) -> Path:
        """``test_looks.jsonl``: the test-look ledger, one JSON line per evaluation of a test
        set with this model (:func:`append_test_look`)."""
        return self.path / "test_looks.jsonl"

    @property
    def skipped(self) -> Path:
        """``skipped.csv``: files left out, with the reason."""
        return self.path / "skipped.csv"

    @property
    def data_check(self) -> Path:
        """``data_check.json``: the data check of the run's data."""
        return self.path / "data_check.json"

    @property
    def stain_normalisation(self) -> Path:
        """``stain_normalisation.json``: the stain normaliser, its reference and its fitted
        parameters (the model's normalisation layer holds the same numbers)."""
        return self.path / "stain_normalisation.json"

    @property
    def samples(self) -> Path:
        """``samples.png``: a grid of labelled training images."""
        return self.path / "samples.png"

    # What training writes.
    @property
    def history(self) -> Path:
        """``history.csv``: one row per epoch."""
        return self.path / "history.csv"

    @property
    def curves(self) -> tuple[Path, Path]:
        """``loss.png`` and ``accuracy.png``: the training curves."""
        return self.path / "loss.png", self.path / "accuracy.png"

    @property
    def best_model(self) -> Path:
        """``best.keras``: the model of the best epoch on the selection set."""
        return self.path / "best.keras"

    @property
    def train_state(self) -> Path:
        """``train_state.json``: the committed state a run resumes from."""
        return self.path / "train_state.json"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the full model of recent epochs."""
        return self.path / "checkpoints"

    @staticmethod
    def checkpoint_name(epoch: int) -> str:
        """Epoch ``epoch``'s checkpoint, relative to the run folder (as ``train_state.json``
        names it)."""
        return f"checkpoints/epoch-{epoch:04d}.keras"

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``: TensorBoard logs, with ``--tensorboard``."""
        return self.path / "tensorboard"

    # What evaluation writes (also the files of an evaluation folder).
    @property
    def predictions(self) -> Path:
        """``predictions.csv``: one row per evaluated image, probabilities at full precision."""
        return self.path / "predictions.csv"

    @property
    def metrics(self) -> Path:
        """``metrics.json``: every metric section, after ``evaluated_on``."""
        return self.path / "metrics.json"

    @property
    def report(self) -> Path:
        """``report.html``: the self-contained report."""
        return self.path / "report.html"

    @property
    def evaluation(self) -> Path:
        """``evaluation.json`` of an evaluation folder: what was evaluated, how."""
        return self.path / "evaluation.json"

    @property
    def model_card(self) -> Path:
        """``model_card.md``."""
        return self.path / "model_card.md"

    @property
    def model_record(self) -> Path:
        """``model_record.json``: what the model needs to predict as its run did
        (:mod:`breastcls.inference.record`); beside the model in run and export folders."""
        return self.path / "model_record.json"

    def legacy_calibration(self, tta: str = "none") -> tuple[Path, Path]:
        """The temperature and thresholds files of ``tta`` that folders written before the
        model record kept (read only to upgrade them)."""
        if tta == "none":
            return self.path / "temperature.json", self.path / "thresholds.json"
        return self.path / f"temperature-{tta}.json", self.path / f"thresholds-{tta}.json"

    def legacy_calibrated_ttas(self) -> list[str]:
        """The test-time augmentations a folder written before the model record calibrated."""
        found = ["none"] if any(p.is_file() for p in self.legacy_calibration("none")) else []
        found += sorted(
            p.stem.removeprefix("temperature-") for p in self.path.glob("temperature-*.json")
        )
        return found

    def export_folder(self, format: str) -> RunFolder:
        """``export/<format>/``: an exported model with its record and card."""
        return RunFolder(self.path / "export" / format)

    @property
    def export_record(self) -> Path:
        """``export.json`` of an export folder: format, source file and how closely the export
        reproduces the model."""
        return self.path / "export.json"

    @property
    def selection(self) -> RunFolder:
        """``selection/``: the selection set's predictions and metrics."""
        return RunFolder(self.path / "selection")

    def evaluation_folder(self, name: str) -> RunFolder:
        """``evaluations/<name>/``: a ``breastcls evaluate`` output."""
        return RunFolder(self.path / "evaluations" / name)

    # A cross-validation folder.
    @property
    def cross_validation(self) -> Path:
        """``cross_validation.json``: written first; the number of folds and the configuration."""
        return self.path / "cross_validation.json"

    @property
    def aggregate(self) -> Path:
        """``aggregate.json``: the folds' test figures and the pooled evaluation."""
        return self.path / "aggregate.json"

    @property
    def pooled(self) -> RunFolder:
        """``pooled/``: the pooled out-of-fold evaluation."""
        return RunFolder(self.path / "pooled")

    @property
    def is_cross_validation(self) -> bool:
        """Whether this is a cross-validation folder (holding ``cross_validation.json``)."""
        return self.cross_validation.is_file()

    @staticmethod
    def fold_name(fold: int) -> str:
        """The name of fold ``fold``'s run folder: ``fold-<fold>``."""
        return f"fold-{fold}"

    def folds(self) -> list[RunFolder]:
        """The fold folders of a cross-validation folder, in order."""
        found = [p for p in self.path.glob("fold-*") if p.is_dir() and p.name[5:].isdigit()]
        return [RunFolder(p) for p in sorted(found, key=lambda p: int(p.name[5:]))]

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run (a status or a configuration).

        Any file of those names counts, a FIFO or a folder included: readers then refuse it
        with an error that names it, rather than skip the run unseen.
        """
        return self.status.exists() or self.config.exists()

    # Readers.
    def read_record(self, path: Path, *, max_bytes: int | None = None) -> Any:
        """Read one of the folder's JSON records, refusing one over the size limit unread.

        Args:
            path: The record.
            max_bytes: The largest record read (default: :data:`MAX_RECORD_BYTES`, or the
                ``BREASTCLS_MAX_RECORD_BYTES`` environment variable).

        Raises:
            ConfigError: The file is missing, too large, or not readable JSON (named, with what
                to do).
        """
        limit = max_record_bytes() if max_bytes is None else max_bytes
        try:
            with open_regular(path) as handle:
                # Read one byte past the limit: a growing file or a device (/dev/zero behind a
                # symbolic link) is refused without reading it whole.
                raw = handle.read(limit + 1)
            if len(raw) > limit:
                raise ConfigError(
                    f"{path} is over {limit} bytes, far larger than any record breastcls "
                    f"writes: restore it; if you trust it, raise the limit with "
                    f"{RECORD_LIMIT_VARIABLE}=BYTES."
                )
            return json.loads(raw.decode("utf-8"))
        except ConfigError:
            raise  # the size limit's own message, not "not readable JSON"
        except NotRegularFileError as error:
            raise ConfigError(f"{error}: restore the file breastcls wrote there.") from error
        except (OSError, ValueError, RecursionError) as error:
            raise ConfigError(
                f"{path} is not readable JSON ({type(error).__name__}: {error}): restore it, or "
                "start a new run."
            ) from error

    def read_config_record(self) -> ConfigRecord:
        """``config.json`` as written: the configuration plus the split, devices and precision.

        Raises:
            ConfigError: It is missing, unreadable, not a JSON object, one of its fields has
                the wrong type, or the configuration is invalid (the file and field named).
        """
        return ConfigRecord.from_json(self.read_record(self.config), source=self.config)

    def read_status(self) -> StatusRecord:
        """``status.json`` (status ``unknown`` when the folder has none).

        Raises:
            ConfigError: It exists but is unreadable, or a field is malformed (named).
        """
        if not self.status.exists():
            return StatusRecord(status="unknown")
        return StatusRecord.from_json(self.read_record(self.status), source=self.status)

    def read_class_names(self) -> tuple[str, ...]:
        """``class_names.json``.

        Raises:
            ConfigError: It is missing, unreadable, or not a list of two or more distinct,
                non-empty names.
        """
        names = self.read_record(self.class_names)
        if (
            not isinstance(names, list)
            or len(names) < 2
            or not all(isinstance(n, str) and n.strip() for n in names)
            or len(set(names)) != len(names)
        ):
            raise ConfigError(
                f"{self.class_names} is not a list of two or more distinct class names: "
                "restore it (the class names of the model, in label order)."
            )
        return tuple(names)

    def read_metrics(self) -> MetricsRecord:
        """``metrics.json`` (an empty record when the folder has none yet).

        Raises:
            ConfigError: It exists but is unreadable, or a field is malformed (named).
        """
        if not self.metrics.is_file():
            return MetricsRecord(evaluated_on=None)
        return MetricsRecord.from_json(self.read_record(self.metrics), source=self.metrics)

    def read_export_record(self) -> ExportRecord:
        """``export.json`` of an export folder.

        Raises:
            ConfigError: It is missing, unreadable, or a field is malformed (named).
        """
        return ExportRecord.from_json(
            self.read_record(self.export_record), source=self.export_record
        )


@dataclass(frozen=True, slots=True)
class SlideFolder:
    """The layout of one slide's folder, written by ``breastcls slide predict``.

    The job record comes first; ``tiles.partial.csv`` grows chunk by chunk, each chunk committed
    in ``progress.json``; at the end it becomes ``tiles.csv``, the pictures and the GeoJSON are
    drawn from it, and ``summary.json``, written last, marks the folder complete.

    Attributes:
        path: The folder.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def job(self) -> Path:
        """``slide.json``: the slide, the model, the options and the tile grid; written first,
        and compared on resuming."""
        return self.path / "slide.json"

    @property
    def progress(self) -> Path:
        """``progress.json``: the tiles and bytes of ``tiles.partial.csv`` committed so far."""
        return self.path / "progress.json"

    @property
    def partial_tiles(self) -> Path:
        """``tiles.partial.csv``: the tiles predicted so far (past its committed length: a chunk
        cut short by a crash, dropped on resuming)."""
        return self.path / "tiles.partial.csv"

    @property
    def tiles(self) -> Path:
        """``tiles.csv``: one row per tissue tile: position, level, tissue fraction,
        probabilities at full precision."""
        return self.path / "tiles.csv"

    @property
    def embeddings(self) -> Path:
        """``embeddings.npz``: the frozen extractor's float16 embedding of each tile, in the
        order of ``tiles.csv``, with its column and row (a probe model's job only;
        :mod:`breastcls.slides.embeddings`)."""
        return self.path / "embeddings.npz"

    @property
    def partial_embeddings(self) -> Path:
        """``embeddings.partial/``: the tile embeddings chunk by chunk until ``embeddings.npz``
        is written."""
        return self.path / "embeddings.partial"

    @property
    def thumbnail(self) -> Path:
        """``thumbnail.png``: the slide at the scale of the tissue mask."""
        return self.path / "thumbnail.png"

    @property
    def tissue_mask(self) -> Path:
        """``tissue_mask.png``: white where tissue was found, at the thumbnail's scale."""
        return self.path / "tissue_mask.png"

    @property
    def heatmap(self) -> Path:
        """``heatmap.png``: the positive score over the thumbnail, with a colour bar."""
        return self.path / "heatmap.png"

    @property
    def overlay(self) -> Path:
        """``heatmap.tif``: the heat map as a pyramidal TIFF of the slide's size (viewers lay
        it over the slide)."""
        return self.path / "heatmap.tif"

    @property
    def geojson(self) -> Path:
        """``tiles.geojson``: one polygon per tile with its probabilities (QuPath opens it)."""
        return self.path / "tiles.geojson"

    @property
    def report(self) -> Path:
        """``report.html``: the slide-level summary with the heat map, as a self-contained page."""
        return self.path / "report.html"

    @property
    def summary(self) -> Path:
        """``summary.json``: the slide-level figures; written last."""
        return self.path / "summary.json"

    @property
    def lock(self) -> Path:
        """The lock file of the process working in the folder (:mod:`breastcls.runs.lock`)."""
        return self.path / LOCK_NAME

    # Readers (the size limit and the JSON errors of :meth:`RunFolder.read_record`).
    def read_job(self) -> SlideJobRecord:
        """``slide.json``.

        Raises:
            ConfigError: It is missing, unreadable, or a field is malformed (the file and
                field named).
        """
        return SlideJobRecord.from_json(RunFolder(self.path).read_record(self.job), source=self.job)

    def read_progress(self) -> SlideProgressRecord:
        """``progress.json``.

        Raises:
            ConfigError: It is missing, unreadable, or a field is malformed (named).
        """
        return SlideProgressRecord.from_json(
            RunFolder(self.path).read_record(self.progress), source=self.progress
        )

    def read_summary(self) -> SlideSummaryRecord | None:
        """``summary.json``; ``None`` while the folder is incomplete (it has none yet).

        Raises:
            ConfigError: It exists but is unreadable, or a field is malformed (named).
        """
        if not self.summary.is_file():
            return None
        return SlideSummaryRecord.from_json(
            RunFolder(self.path).read_record(self.summary), source=self.summary
        )

    @staticmethod
    def collection_summary(out_dir: Path) -> Path:
        """``summary.csv`` of a folder of slide folders: one row per slide."""
        return Path(out_dir) / "summary.csv"

    @staticmethod
    def shard_summary(out_dir: Path, index: int, count: int) -> Path:
        """``summary-shard-K-of-N.csv``: the rows of the slides shard ``K`` of ``N`` predicted
        (each job of an array job writes its own; ``breastcls slide summary`` merges)."""
        return Path(out_dir) / f"summary-shard-{index}-of-{count}.csv"

    @staticmethod
    def shard_summaries(out_dir: Path) -> list[Path]:
        """The shard summaries in ``out_dir``, sorted."""
        return sorted(Path(out_dir).glob("summary-shard-*-of-*.csv"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What :func:`breastcls.train` returns.

    Attributes:
        run_dir: The run folder.
        class_names: Class names in label order.
        history: Per-epoch values (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``...;
            ``val_`` values are measured on the selection set).
        metrics: The best model's ``metrics.json``, measured on the set ``role`` names.
        role: The set ``metrics`` come from: the test set, or the selection set (optimistic)
            when the run keeps no test set.
        selection_metrics: The same metrics on the selection set (``selection/metrics.json``),
            which chose the model: optimistic, for comparison only.
        best_model: Path of the best model (``best.keras``).
        report: The HTML report.
    """

    run_dir: Path
    class_names: tuple[str, ...]
    history: dict[str, list[float]]
    metrics: MetricsRecord
    role: DataRole
    selection_metrics: MetricsRecord
    best_model: Path
    report: Path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def create_run_dir(
    out_dir: Path, name: str | None, *, default_stem: str, reserve: int = 0
) -> FolderLock:
    """Create a new, empty run folder under ``out_dir`` and take it for this process.

    The folder is held (:func:`~breastcls.runs.lock.lock_folder`) until the returned lock is
    released (use it in a ``with`` block): of two processes creating the same ``name`` at
    once, exactly one gets the folder and the other an :class:`OutputError`, having written
    nothing. An existing empty folder (or one holding only the lock file of a process that died)
    is reused.

    Args:
        out_dir: The folder that holds run folders.
        name: The run folder's name; ``None`` for ``<date>-<time>-<default_stem>``.
        default_stem: The end of an unnamed run folder's name.
        reserve: Bytes kept aside on the disk for the run's last status write
            (:func:`~breastcls.runs.lock.lock_folder`).

    Raises:
        OutputError: ``out_dir`` is not writable, the named run folder exists already, or
            another process is creating or using it.
    """
    ensure_writable_dir(out_dir)
    if name is not None:
        run_dir = out_dir / name
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"Cannot create the run folder {str(run_dir)!r}: {error.strerror or error}. "
                "Choose another --name or --out."
            ) from error
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = out_dir / f"{stamp}-{default_stem}"
        suffix = 1
        while True:
            try:
                run_dir.mkdir()  # exclusive: another process's folder of the same second is skipped
                break
            except FileExistsError:
                suffix += 1
                run_dir = out_dir / f"{stamp}-{default_stem}-{suffix}"
    lock = lock_folder(
        run_dir,
        purpose="train",
        hint="choose another --name, or wait for that process and --resume the run.",
        reserve=reserve,
    )
    if any(path.name != LOCK_NAME for path in run_dir.iterdir()):
        lock.release()
        raise OutputError(
            f"Run folder {str(run_dir)!r} exists already: choose another --name, or --resume it."
        )
    return lock


def write_status(
    run_dir: Path, status: RunStatus, *, reason: str | None = None, **extra: Any
) -> None:
    """Record the run's status in ``status.json`` (atomically), with the writing process's id
    and host (so a listing can tell a live run from one whose process was killed)."""
    record: dict[str, Any] = {
        "status": status,
        "updated": _now(),
        "pid": os.getpid(),
        "host": platform.node(),
    }
    if reason:
        record["reason"] = reason
    record.update(extra)
    atomic_write_json(RunFolder(run_dir).status, record)


def read_status(run_dir: Path) -> StatusRecord:
    """Read ``status.json``; a folder without one reports ``unknown``.

    Raises:
        ConfigError: It is unreadable, or a field is malformed (the file and field named).
    """
    return RunFolder(run_dir).read_status()


# Environment variables that change TensorFlow's speed, numerics or devices.
TENSORFLOW_SETTINGS = (
    "TF_CPU_ALLOCATOR_USE_BFC",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "TF_XLA_FLAGS",
    "XLA_FLAGS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "CUDA_VISIBLE_DEVICES",
)


def environment() -> dict[str, Any]:
    """Return the versions, Keras backend, devices and TensorFlow settings a run used
    (``environment.json``)."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "breastcls": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "devices": [device.name for device in tf.config.list_logical_devices()],
        "settings": {name: os.environ[name] for name in TENSORFLOW_SETTINGS if name in os.environ},
        "created": _now(),
    }


_SPLIT_COLUMNS = ("path", "label", "patient_id", "group", "magnification", "role", "pixel_sha1")
# Written since near copies are looked for; a split.csv without it is still read.
_OPTIONAL_SPLIT_COLUMNS = ("dhash",)


def write_split_csv(
    run_dir: Path,
    split: Split,
    *,
    image_info: Mapping[Path, ImageInfo],
    group_by: str | None,
) -> None:
    """Write ``split.csv``: every image, its group key, its role, the hash of its pixels and
    its difference hash (:mod:`breastcls.data.perceptual`).

    Names are written as the file system has them: a name that is not valid UTF-8 keeps its
    raw bytes (``surrogateescape``), so :func:`read_split_csv` gives back the same path.
    """
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(_SPLIT_COLUMNS + _OPTIONAL_SPLIT_COLUMNS)
    for role, samples in split.parts():
        for s in samples:
            info = image_info.get(s.path)
            writer.writerow(
                [
                    s.path,
                    s.label,
                    s.patient_id or "",
                    group_key(s, group_by) or "",
                    s.magnification or "",
                    role.value,
                    info.pixel_sha1 if info is not None else "",
                    info.dhash if info is not None else "",
                ]
            )
    with atomic_path(RunFolder(run_dir).split) as temporary:
        temporary.write_bytes(buffer.getvalue().encode("utf-8", errors="surrogateescape"))


def read_split_csv(run_dir: Path) -> list[tuple[Sample, SeenImage]]:
    """Read ``split.csv`` back: each image as a sample (``split`` holding its role) and as
    :class:`~breastcls.data.overlap.SeenImage`.

    Raises:
        ConfigError: The run has no ``split.csv``.
        DataError: It is not a ``split.csv`` written by this version (columns, roles).
    """
    path = RunFolder(run_dir).split
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no {path.name}, so it names no test or selection images: pass "
            "--data with the images to evaluate."
        )
    fix = "restore it from a backup, or pass --data with the images to evaluate"
    try:
        # Names that are not valid UTF-8 were written with their raw bytes (see write_split_csv).
        with io.TextIOWrapper(
            open_regular(path), newline="", encoding="utf-8", errors="surrogateescape"
        ) as handle:
            rows = csv_records(handle)
    except (OSError, csv.Error) as error:
        raise DataError(f"{path} is not a readable CSV ({error}): {fix}.") from error
    if rows and not set(_SPLIT_COLUMNS) <= set(rows[0]):
        raise DataError(
            f"{path} lacks the columns {', '.join(_SPLIT_COLUMNS)}: it was written by an older "
            "breastcls (no test set); pass --data with the images to evaluate."
        )
    images = []
    for line, row in enumerate(rows, start=2):
        if any(row.get(column) is None for column in _SPLIT_COLUMNS) or None in row:
            raise DataError(f"{path}, line {line}: not {len(_SPLIT_COLUMNS)} fields: {fix}.")
        if not row["path"] or not row["label"]:
            raise DataError(f"{path}, line {line}: no path or no label: {fix}.")
        try:
            role = DataRole(row["role"])
        except ValueError as error:
            raise DataError(f"{path}, line {line}: unknown role {row['role']!r}: {fix}.") from error
        magnification = row["magnification"]
        sample = Sample(
            path=Path(row["path"]),
            label=row["label"],
            patient_id=row["patient_id"] or None,
            magnification=int(magnification) if magnification.isdigit() else None,
            split=role.value,
        )
        seen = SeenImage(
            path=row["path"],
            role=role,
            group=row["group"] or None,
            pixel_sha1=row["pixel_sha1"],
            dhash=row.get("dhash") or "",
        )
        images.append((sample, seen))
    return images


def write_history_csv(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """Write one row per epoch (``epoch`` from 1, then every logged metric) to ``history.csv``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            (int(row[k]) if k == "epoch" else row[k]) if k in row else "" for k in columns
        )
    atomic_write_text(path, buffer.getvalue())


def write_skipped_csv(path: Path, skipped: Sequence[SkippedFile]) -> None:
    """Write every file left out of the run, with its reason (``skipped.csv``)."""
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(["path", "reason"])
    for item in skipped:
        writer.writerow([item.path, item.reason])
    atomic_write_text(path, buffer.getvalue())


def check_free_space(folder: Path, *, needed_bytes: int) -> None:
    """Fail before training when ``folder``'s disk cannot hold the run's checkpoints.

    Raises:
        OutputError: Less than ``needed_bytes`` are free.
    """
    import shutil

    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise OutputError(
            f"Only {free / 1e6:.0f} MB free in {folder}, the run needs about "
            f"{needed_bytes / 1e6:.0f} MB for its checkpoints: free space or choose --out."
        )


class TestLook(TypedDict):
    """One line of the test-look ledger (``test_looks.jsonl``).

    ``look`` counts the evaluations of the same ``data`` so far, this one included; ``data`` is
    ``split.csv`` (the run's own test set) or the evaluated folder or manifest.
    """

    look: int
    when: str
    data: str
    tta: str
    options: dict[str, Any]
    evaluation: str


def read_test_looks(run_dir: Path) -> list[TestLook]:
    """The ledger's records, oldest first (none when the run has no ledger).

    A line that is not a JSON record (cut short by a crash) is passed over.
    """
    try:
        text = RunFolder(run_dir).test_looks.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise DataError(
            f"{RunFolder(run_dir).test_looks} is not readable ({error.strerror or error}): fix "
            "its permissions."
        ) from error
    records: list[TestLook] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("look"), int):
            records.append(record)  # type: ignore[arg-type]
    return records


def append_test_look(
    run_dir: Path, *, data: str, tta: str, options: Mapping[str, Any], evaluation: Path
) -> int:
    """Record one evaluation of a test set in ``run_dir``'s ledger; return its look number.

    The number is 1 + the looks recorded before at the same ``data``. Concurrent evaluations
    take turns on the ledger (:func:`~breastcls.runs.lock.locked_appender`), so none is lost and
    no two get the same number.

    Args:
        run_dir: The model's run folder.
        data: What was evaluated: ``split.csv`` (the run's test set) or the data's path.
        tta: The test-time augmentation.
        options: The other settings that can change the figures (stain options...).
        evaluation: The folder the evaluation wrote.

    Raises:
        OutputError: The ledger cannot be written.
    """
    path = RunFolder(run_dir).test_looks
    try:
        with locked_appender(path) as descriptor:
            look = 1 + sum(record["data"] == data for record in read_test_looks(run_dir))
            record: TestLook = {
                "look": look,
                "when": _now(),
                "data": data,
                "tta": tta,
                "options": dict(options),
                "evaluation": str(evaluation),
            }
            os.write(descriptor, (json.dumps(record, default=str) + "\n").encode("utf-8"))
    except OSError as error:
        raise OutputError(
            f"Cannot record the test look in {path} ({error.strerror or error}): make "
            f"{run_dir} writable."
        ) from error
    return look
