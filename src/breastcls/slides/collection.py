"""Many slides: the slides of folders and manifests, shards of an array job, and the
collection's ``summary.csv`` gathered from its slide folders.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from breastcls.data.manifest import read_csv_rows
from breastcls.errors import (
    BreastclsError,
    ConfigError,
    DataError,
    FolderInUseError,
    OutputError,
)
from breastcls.inference.model import InferenceModel
from breastcls.inference.runtime import check_runtime
from breastcls.io import SafeCsvWriter, atomic_write_text, csv_records
from breastcls.limits import check_inference_batch
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.progress import reporting_prefixed
from breastcls.runs.folder import SlideFolder
from breastcls.runs.lock import writers_in_turn
from breastcls.slides.embeddings import check_tile_embeddings
from breastcls.slides.job import predict_slide
from breastcls.slides.options import SlideJob, SlideJobOptions
from breastcls.slides.scale import model_scale

__all__ = [
    "FoundSlides",
    "SlideOutcome",
    "parse_shard",
    "predict_slides",
    "read_slide_manifest",
    "shard_of",
    "slide_files",
    "summarize_slide_folders",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideOutcome:
    """One slide of :func:`predict_slides`: its folder, and its result, its error, or why it
    was skipped.

    Attributes:
        slide: The slide file.
        folder: Its slide folder; ``None`` for a file skipped.
        summary: The slide's ``summary.json`` content, or ``None`` when it failed.
        error: Why it failed or was skipped, in one line, or ``None``.
        skipped: Whether the file was left out as not a slide (a scanner's label or macro
            image, a flat image beside slides).
    """

    slide: Path
    folder: Path | None
    summary: Mapping[str, Any] | None
    error: str | None
    skipped: bool = False

    @property
    def status(self) -> str:
        """``ok``, ``error`` or ``skipped``."""
        if self.skipped:
            return "skipped"
        return "ok" if self.error is None and self.summary is not None else "error"


_SUMMARY_COLUMNS = (
    "slide", "folder", "status", "message", "tissue_tiles", "top_k", "top_k_mean_score",
    "mean_score", "max_score", "domain_flagged_fraction", "case_id", "threshold_name",
    "threshold", "fraction_called_positive", "tissue_classified_fraction",
)  # fmt: skip

# The names scanners give the photographs they store beside a slide (Aperio's, Leica's,
# Hamamatsu's exports): `<slide>_macro.jpg`, `<slide>-label.png`, `thumbnail.jpg`...
_NOT_SLIDE_NAME = re.compile(r"(^|[_\-. ])(macro|label|thumbnail|overview)$", re.IGNORECASE)
_FLAT_IMAGE = frozenset({".jpg", ".jpeg", ".png"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FoundSlides:
    """What :func:`slide_files` found.

    Attributes:
        slides: The slide files, each once, sorted by path.
        skipped: The files of the folders left out, each with why, sorted by path.
    """

    slides: list[Path]
    skipped: list[tuple[Path, str]]


def slide_files(inputs: Sequence[Path], *, host: PluginHost | None = None) -> FoundSlides:
    """The slides among ``inputs``: files as given, and in folders (not recursively) every file
    a registered slide reader accepts; each once, sorted by path (the order the shards of
    ``--shard`` split, whatever order a shell expanded the arguments in).

    In a folder, a scanner's label or macro image (``*_macro.jpg``, ``*_label.png``...) is
    skipped, and so is a flat PNG or JPEG image beside other slides: given as a file, it is
    taken as a slide.
    """
    readers = list(ensure_host(host).slide_readers)
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            found.append(item)
            continue
        children = [
            child for child in sorted(item.iterdir())
            if child.is_file() and any(r.component.accepts(child) for r in readers)
        ]  # fmt: skip
        pyramidal = any(child.suffix.lower() not in _FLAT_IMAGE for child in children)
        for child in children:
            reason = _not_a_slide(child, beside_slides=pyramidal)
            if reason is None:
                found.append(child)
            else:
                skipped.append((child, reason))
    return FoundSlides(
        slides=sorted(dict.fromkeys(found), key=str),
        skipped=sorted(dict.fromkeys(skipped), key=lambda pair: str(pair[0])),
    )


def _not_a_slide(path: Path, *, beside_slides: bool) -> str | None:
    if _NOT_SLIDE_NAME.search(path.stem):
        return "skipped: a scanner's label or macro image, not a slide (by its name)"
    if beside_slides and path.suffix.lower() in _FLAT_IMAGE:
        return (
            "skipped: a flat image beside pyramidal slides (a scanner's photograph); give it as "
            "a file to predict it as a slide"
        )
    return None


_MANIFEST_COLUMNS = ("path", "mpp", "roi", "tissue_mask", "case_id")
_MANIFEST_LAYOUT = "path[,mpp][,roi][,tissue_mask][,case_id]"


def read_slide_manifest(path: Path) -> list[SlideJob]:
    """Read a manifest of slides: a CSV file with the columns ``path`` (first; relative to the
    manifest's folder, or absolute) and optionally ``mpp`` (microns per pixel, for a slide that
    records none), ``roi`` (a QuPath GeoJSON), ``tissue_mask`` (a PNG) and ``case_id``.

    Raises:
        DataError: The file is not a valid manifest (its header, a row, an unknown column), a
            slide is missing or listed twice, or an ``mpp`` is not a positive number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Manifest {str(path)!r} does not exist: pass an existing CSV file.")
    header, rows = read_csv_rows(path, first=("path",), layout=_MANIFEST_LAYOUT, unit="slide")
    unknown = [column for column in header if column not in _MANIFEST_COLUMNS]
    if unknown:
        raise DataError(
            f"Manifest {str(path)!r} has the unknown column(s) {', '.join(unknown)}: the columns "
            f"are {_MANIFEST_LAYOUT}."
        )
    jobs: list[SlideJob] = []
    problems: list[str] = []
    lines: dict[Path, int] = {}
    for line, row in rows:
        try:
            job = _manifest_job(path.parent, row)
        except (BreastclsError, ValueError) as error:
            problems.append(f"line {line}: {error}")
            continue
        if job.path in lines:
            problems.append(f"line {line} repeats line {lines[job.path]}: {job.path}")
        elif not job.path.is_file():
            problems.append(f"line {line}: {job.path} does not exist")
        lines.setdefault(job.path, line)
        jobs.append(job)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"Manifest {str(path)!r}: {'; '.join(problems[:5])}{more}: fix the rows.")
    return jobs


def _manifest_job(folder: Path, row: dict[str, str]) -> SlideJob:
    def file(column: str) -> Path | None:
        value = row.get(column, "")
        return (folder / value) if value else None

    mpp_text = row.get("mpp", "")
    try:
        mpp = float(mpp_text) if mpp_text else None
    except ValueError:
        raise ValueError(f"mpp {mpp_text!r} is not a number of microns per pixel") from None
    slide = file("path")
    if slide is None:
        raise ValueError("the path is empty")
    return SlideJob(
        path=slide, mpp=mpp, roi=file("roi"), tissue_mask=file("tissue_mask"),
        case_id=row.get("case_id", ""),
    )  # fmt: skip


def parse_shard(text: str) -> tuple[int, int]:
    """Read ``--shard K/N``: shard ``K`` (counted from 1) of ``N``.

    Raises:
        ConfigError: ``text`` is not ``K/N`` with ``1 <= K <= N``.
    """
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigError(
            f"--shard {text!r} is not K/N: pass the job's shard and the number of shards, "
            "e.g. --shard 3/8 (K counts from 1)."
        )
    k, n = int(index), int(count)
    if not 1 <= k <= n:
        raise ConfigError(
            f"--shard {text!r}: K must lie between 1 and N={n} (K counts from 1; a 0-based "
            "index such as Kubernetes' JOB_COMPLETION_INDEX needs + 1)."
        )
    return k, n


def shard_of(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Shard ``K`` of ``N`` of ``items``: items ``K``, ``K + N``, ``K + 2N``... (from 1). The
    ``N`` shards partition ``items``; dealing them out in turn keeps neighbours (often slides of
    one case, of similar size) in different jobs."""
    k, n = shard
    return list(items[k - 1 :: n])


def _folder_names(slides: Sequence[Path]) -> list[str]:
    names: list[str] = []
    used: set[str] = set()
    for slide in slides:
        stem = slide.stem or "slide"
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def predict_slides(
    model: InferenceModel | Path,
    inputs: Sequence[Path | SlideJob],
    *,
    out_dir: Path,
    options: SlideJobOptions | None = None,
    shard: tuple[int, int] | None = None,
    host: PluginHost | None = None,
) -> list[SlideOutcome]:
    """Predict many slides, one slide folder each under ``out_dir`` (named after the file),
    and write ``out_dir/summary.csv``. A slide that fails is recorded with its error and the
    others go on; a slide folder already complete is kept, one interrupted is resumed.

    Args:
        model: An :class:`~breastcls.InferenceModel`, a run folder or a ``.keras`` file.
        inputs: Slide files, folders of slides (:func:`slide_files`) and manifest rows
            (:func:`read_slide_manifest`).
        out_dir: The folder of slide folders.
        options: The job's options; ``None``: the defaults, on TensorFlow.
        shard: ``(K, N)``: only shard ``K`` of ``N`` of the sorted slide list is predicted
            (:func:`shard_of`), into the same folders an unsharded call would write, and the
            summary goes to ``out_dir/summary-shard-K-of-N.csv``: the jobs of an array job
            share ``out_dir`` without overwriting each other, and
            :func:`summarize_slide_folders` merges them.
        host: The plugin host (default: every installed plugin).

    Raises:
        ModelLoadError: The model cannot be loaded.
        ConfigError: An option is unknown or out of range, ``model_mpp`` is ``None`` and the
            run records no training scale, or ``shard`` is not ``(K, N)`` with
            ``1 <= K <= N``.
        UnknownComponentError: The options name an unknown TTA, slide reader or tissue
            detector.
        OutputError: ``out_dir`` cannot be written.
    """
    options = options or SlideJobOptions(runtime="tensorflow")
    if shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
    host = ensure_host(host)
    jobs, skipped = _slide_jobs(inputs, host)
    inference = _load_for_slides(model, options, host)
    per_slide = options.replace(runtime=None)  # the runtime chosen once serves every slide
    # Folder names are given over the whole list, so that every shard names a slide alike.
    named = list(zip(jobs, _folder_names([job.path for job in jobs]), strict=True))
    if shard is not None:
        named = shard_of(named, shard)
    outcomes = [
        SlideOutcome(slide=path, folder=None, summary=None, error=reason, skipped=True)
        for path, reason in skipped
    ]
    held_elsewhere: set[Path] = set()
    for number, (job, name) in enumerate(named, start=1):
        folder = Path(out_dir) / name
        try:
            with reporting_prefixed(f"slide {number} of {len(named)}: "):
                result = predict_slide(inference, job, out=folder, options=per_slide, host=host)
            outcomes.append(
                SlideOutcome(slide=job.path, folder=folder, summary=result.summary, error=None)
            )
        except BreastclsError as error:
            message = " ".join(str(error).splitlines())
            outcomes.append(
                SlideOutcome(slide=job.path, folder=folder, summary=None, error=message)
            )
            if isinstance(error, FolderInUseError):
                held_elsewhere.add(folder)
    target = (
        SlideFolder.collection_summary(out_dir)
        if shard is None
        else SlideFolder.shard_summary(out_dir, *shard)
    )
    return _write_summary_in_turn(target, outcomes, held_elsewhere=held_elsewhere)


def _slide_jobs(
    inputs: Sequence[Path | SlideJob], host: PluginHost
) -> tuple[list[SlideJob], list[tuple[Path, str]]]:
    """The slide jobs of ``inputs`` sorted by path, a manifest row winning over the same file
    given otherwise, and the files of folders skipped."""
    rows = {item.path: item for item in inputs if isinstance(item, SlideJob)}
    found = slide_files([item for item in inputs if not isinstance(item, SlideJob)], host=host)
    jobs = {path: SlideJob(path=path) for path in found.slides} | rows
    return sorted(jobs.values(), key=lambda job: str(job.path)), found.skipped


def _load_for_slides(
    model: InferenceModel | Path, options: SlideJobOptions, host: PluginHost
) -> InferenceModel:
    """The model, loaded once for every slide, on the options' runtime, after the options
    that need no model are checked.

    Raises:
        ConfigError: An unknown TTA, reader or runtime, a batch too large for memory, no
            scale for the model, or tile embeddings of a model that has none.
    """
    host.tta.info(options.tta)  # before the model loads
    host.tissue_detectors.info(options.tissue_detector)
    if options.reader is not None:
        host.slide_readers.info(options.reader)
    runtime = check_runtime(options.runtime or "tensorflow")
    inference = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    check_inference_batch(options.batch_size, inference.image_size, what="slide predict")
    model_scale(inference, options.model_mpp)  # once, before any slide
    check_tile_embeddings(inference, options.tile_embeddings)
    inference.calibration(options.tta)
    # Once too: `auto` may measure, and an ONNX Runtime session serves every slide.
    return inference.with_runtime(runtime, batch_size=options.batch_size, verbose=options.verbose)


def summarize_slide_folders(out_dir: Path) -> list[SlideOutcome]:
    """Gather the slide folders under ``out_dir`` (written by one or many jobs) into
    ``out_dir/summary.csv``: complete ones with their figures, others as incomplete, and the
    slides that the summaries already there list as failed before they had a folder, and the
    files they list as skipped.

    Raises:
        OutputError: ``out_dir`` is not a folder.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir} is not a folder of slide folders.")
    outcomes: list[SlideOutcome] = []
    for child in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        folder = SlideFolder(child)
        if not folder.job.is_file():
            continue
        try:
            job = folder.read_job()
            summary = folder.read_summary()
        except ConfigError as error:
            outcomes.append(
                SlideOutcome(slide=child, folder=child, summary=None, error=f"unreadable: {error}")
            )
            continue
        slide = Path(job.slide if job.slide is not None else child.name)
        problem = None if summary is not None else "incomplete: run `breastcls slide predict` again"
        outcomes.append(SlideOutcome(slide=slide, folder=child, summary=summary, error=problem))
    outcomes.extend(_rows_without_folder(out_dir, {o.folder.name for o in outcomes if o.folder}))
    outcomes.sort(key=lambda o: (o.folder.name if o.folder else "", str(o.slide)))
    return _write_summary_in_turn(SlideFolder.collection_summary(out_dir), outcomes)


def _rows_without_folder(out_dir: Path, folders: set[str]) -> list[SlideOutcome]:
    """The slides that earlier summaries (a whole job's, each shard's) list as failed before
    their folder was made (unreadable, no resolution, no tissue), and the files they list as
    skipped: no folder records them."""
    found: dict[str, SlideOutcome] = {}
    for table in [SlideFolder.collection_summary(out_dir), *SlideFolder.shard_summaries(out_dir)]:
        try:
            with open(table, newline="", encoding="utf-8") as handle:
                rows = csv_records(handle)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue  # absent or damaged: the folders still say everything else
        for row in rows:
            name, slide = row.get("folder") or "", Path(row.get("slide") or "")
            if row.get("status") == "skipped":
                found[f"skipped {slide}"] = SlideOutcome(
                    slide=slide, folder=None, summary=None, error=row.get("message") or "skipped",
                    skipped=True,
                )  # fmt: skip
            elif row.get("status") == "error" and name and name not in folders:
                found[name] = SlideOutcome(
                    slide=Path(row.get("slide") or name), folder=out_dir / name, summary=None,
                    error=row.get("message") or "failed",
                )  # fmt: skip
    return list(found.values())


def _write_collection_summary(path: Path, outcomes: Sequence[SlideOutcome]) -> None:
    threshold_names = list(
        dict.fromkeys(
            name for o in outcomes if o.summary for name in o.summary.get("fraction_positive", {})
        )
    )
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow([*_SUMMARY_COLUMNS, *(f"fraction_positive_{n}" for n in threshold_names)])
    for o in outcomes:
        s = o.summary or {}
        fractions = s.get("fraction_positive", {})
        decision = s.get("threshold") or {}
        writer.writerow(
            [
                o.slide, o.folder.name if o.folder else "", o.status, o.error or "",
                s.get("tiles", {}).get("classified", ""), s.get("top_k", ""),
                _number(s.get("top_k_mean_score")), _number(s.get("mean_score")),
                _number(s.get("max_score")),
                _number((s.get("domain") or {}).get("flagged_fraction")), s.get("case_id", ""),
                decision.get("name", ""), _number(decision.get("value")),
                _number(decision.get("fraction_positive")),
                _number(s.get("tissue_classified_fraction")),
                *(_number(fractions.get(n)) for n in threshold_names),
            ]
        )  # fmt: skip
    try:
        atomic_write_text(path, buffer.getvalue())
    except OSError as error:
        raise OutputError(f"Cannot write {path}: {error}.") from error


def _number(value: Any) -> str:
    return "" if value is None else repr(float(value))


def _write_summary_in_turn(
    path: Path, outcomes: Sequence[SlideOutcome], *, held_elsewhere: Set[Path] = frozenset()
) -> list[SlideOutcome]:
    """Write a summary table of ``outcomes`` while holding its folder (:func:`writers_in_turn`:
    jobs sharing ``out_dir`` write one after the other), each slide of ``held_elsewhere``
    (folders another job held when this one came to them) as that job has left it by then;
    return the outcomes as written.

    A job refused a slide folder in use would otherwise write that slide as failed over the
    other job's finished result.

    Raises:
        OutputError: The table cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with writers_in_turn(path.parent):
            written = [_as_left(o) if o.folder in held_elsewhere else o for o in outcomes]
            _write_collection_summary(path, written)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"Cannot write {path}: {error}.") from error
    return written


def _as_left(outcome: SlideOutcome) -> SlideOutcome:
    """A slide another job was predicting: complete by now (its figures), or still the refusal."""
    if outcome.folder is None:
        return outcome
    folder = SlideFolder(outcome.folder)
    try:
        summary = folder.read_summary()
    except ConfigError:
        return outcome
    if summary is None:
        return outcome
    return SlideOutcome(slide=outcome.slide, folder=outcome.folder, summary=summary, error=None)
