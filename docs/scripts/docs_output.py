"""Regenerate, or check, the terminal output that the docs show, from real runs.

    python docs/scripts/docs_output.py            # run, rewrite the blocks and the figures
    python docs/scripts/docs_output.py --check    # run, fail if a committed block differs

``breastcls train --demo``, one small run on the development images (the ``smallcnn``
backbone, 64-pixel images, 3 epochs), an evaluation of its test set, then ``breastcls slide
predict`` with that run over a small synthetic slide made of its test images, and ``breastcls
slide summary``: about 85 s of CPU time in all (the slide job about 13 s of it; 3 to 6 minutes
of wall-clock time on a busy 2-core machine, mostly TensorFlow starting four times). The
commands run in a scratch folder laid out like a clone beside ``../shared``, so every path they
print is the relative one a reader types. Each output goes into the docs pages between marker
comments::

    <!-- docs-output:NAME -->
    ...replaced...
    <!-- /docs-output -->

Timings differ from one run to the next: ``--check`` compares the blocks with every number of
seconds masked, so it fails only when what the program prints has changed. Without
``--check``, the figures of ``docs/images`` that the run makes (the sample grid, training curves,
confusion matrices, ROC, reliability diagram and, with Chromium, the report's first screen) are
copied too.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BREASTCLS_SHARED_DATA", REPO.parent / "shared/data/breakhis-dev"))
PAGES = ("getting-started.md", "training.md", "evaluation.md", "slides.md")
RUN = "dev-run"
IMAGE_SIZE = 64
TRAIN = [
    "train", "--data", "../shared/data/breakhis-dev", "--backbone", "smallcnn",
    "--weights", "none", "--image-size", str(IMAGE_SIZE), "--epochs", "3", "--seed", "5",
    "--deterministic", "--out", "runs", "--name", RUN,
]  # fmt: skip
EVALUATE = ["evaluate", f"runs/{RUN}"]
SLIDE_CELL, SLIDE_MPP = 224, 0.5
# The run's training images come at several magnifications, so it records no scale: the model
# pixel is one cell's width in microns divided by the input size, so that a tile is a cell.
SLIDE_MODEL_MPP = SLIDE_CELL * SLIDE_MPP / IMAGE_SIZE
SLIDE = "slides/test-mosaic.tif"
SLIDE_PREDICT = [
    "slide", "predict", f"runs/{RUN}", SLIDE,
    "--model-mpp", f"{SLIDE_MODEL_MPP:g}", "--out", "slide-results",
]  # fmt: skip
SLIDE_SUMMARY = ["slide", "summary", "slide-results"]
DEMO = ["train", "--demo", "--deterministic", "--out", "runs", "--name", "demo"]
FIGURES = (
    "samples.png",
    "loss.png",
    "accuracy.png",
    "confusion_matrix.png",
    "confusion_matrix_normalised.png",
    "roc.png",
    "precision_recall.png",
    "reliability.png",
)
BLOCK = re.compile(
    r"(<!-- docs-output:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /docs-output -->)", re.S
)
# What changes from one run to the next: seconds, rates per second, ETAs, the machine's cores.
VOLATILE = re.compile(
    r"\d+(?:\.\d+)?(?= ?s\b| ?min\b| (?:images|tiles)/s| CPU cores)|(?<=ETA )\d+:\d\d:\d\d"
)


def _command_line(args: Sequence[str]) -> str:
    """``breastcls ARGS`` as the docs show it, wrapped before options at 90 columns."""
    lines, line = [], "breastcls"
    for i, word in enumerate(args):
        starts_option = word.startswith("--") and i > 0
        if starts_option and len(line) + len(word) > 80:
            lines.append(line + " \\")
            line = "    "
        line += ("" if line.endswith(" ") else " ") + word
    return "\n".join([*lines, line])


def _run(args: Sequence[str], cwd: Path) -> tuple[str, str]:
    """Run ``breastcls ARGS`` in ``cwd``; return what it printed (stdout and stderr, in order)
    and how long it took: wall-clock and CPU seconds (the CPU time varies less on a shared
    machine)."""
    env = {**os.environ, "COLUMNS": "100", "TF_CPP_MIN_LOG_LEVEL": "3", "NO_COLOR": "1"}
    started, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-c", "from breastcls.cli.app import main; main()", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    took = (
        f"{time.monotonic() - started:.0f} s on {os.cpu_count()} CPU cores "
        f"({_children_cpu() - cpu:.0f} s of CPU time)"
    )
    if done.returncode != 0:
        raise SystemExit(f"breastcls {' '.join(args)} failed ({done.returncode}):\n{done.stdout}")
    return done.stdout.rstrip("\n"), took


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


DESCRIPTIONS = {
    "accuracy.png": "accuracy per epoch, training and selection sets",
    "best.keras": "the model of the kept epoch (best selection accuracy)",
    "checkpoints/": "the last (and best) epoch's full checkpoint, optimizer included",
    "class_names.json": "class names, index 0 first",
    "config.json": "the resolved configuration, split, devices, precision and training scale",
    "confusion_matrix.png": "test-set confusion matrix (and its row-normalised twin)",
    "data_check.json": "what `breastcls data check` found in the data before training",
    "domain_scores.png": "test images' domain-shift scores against the selection set's threshold",
    "evaluations/": "one folder per `breastcls evaluate` of the run (here: its test set again)",
    "environment.json": "breastcls, Python, TensorFlow, Keras, numpy versions; devices",
    "history.csv": "per epoch: loss and accuracy on the training and selection sets, learning rate",
    "loss.png": "loss per epoch, training and selection sets",
    "metrics.json": "test-set figures with bootstrap intervals, thresholds, calibration, patients",
    "model_card.md": "intended use, data, test figures with intervals, limitations",
    "model_record.json": "what predicting needs: classes, input, preprocessing, calibrations",
    "precision_recall.png": "test-set precision-recall curve",
    "predictions.csv": "one row per test image: calibrated p_<class>, then raw_p_<class>",
    "reliability.png": "test-set reliability diagram",
    "report.html": "the test set's report: summary card, every section, the training curves",
    "roc.png": "test-set ROC curve",
    "samples.png": "a labelled grid of training images",
    "selection/": "the same figures on the selection set (optimistic: it chose the model)",
    "split.csv": "every image with its role (train, selection, test), group and pixel hash",
    "status.json": "running / finished / failed / interrupted (+ the reason)",
    "test_looks.jsonl": "each look at the test set, counted",
    "train_state.json": "what `--resume` needs: epoch, kept epoch, schedule and RNG state",
}
"""What each file of a run folder holds (a file the run no longer writes is not listed)."""


def _listing(folder: Path) -> str:
    """The run folder's files and folders, one a line, each with what it holds."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    width = max(map(len, names)) + 2
    lines = [f"  {name:<{width}}{DESCRIPTIONS.get(name, '')}".rstrip() for name in names]
    return "\n".join([f"runs/{folder.name}/", *lines])


SLIDE_FILES = {
    "heatmap.png": "the thumbnail and the tile scores beside it",
    "heatmap.tif": "the heat map at the slide's level-0 size, for QuPath, ASAP or OpenSlide",
    "report.html": "the slide's summary as a page",
    "slide.json": "the slide, the model, the options and the tile grid",
    "summary.json": "counts, the fraction called positive at each threshold, top-k mean",
    "thumbnail.png": "the slide's thumbnail",
    "tiles.csv": "one row per tissue tile: place, tissue fraction, probabilities, score",
    "tiles.geojson": "the tiles for QuPath, each with its class and probabilities",
    "tissue_mask.png": "the tissue found on the thumbnail",
}
"""What each file of a slide folder holds."""


def _write_test_slide(run: Path, slide: Path) -> None:
    """A slide of 5 x 2 cells: 4 of the run's benign test images on the left, glass in the
    middle, 4 malignant ones on the right (200X images, which are 224 pixels square)."""
    import csv

    from breastcls.testing.slides import write_mosaic_slide

    with open(run / "split.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["role"] == "test" and "-200-" in r["path"]]
    images = {
        label: sorted(run.parent.parent / r["path"] for r in rows if r["label"] == label)[:4]
        for label in ("benign", "malignant")
    }
    if min(map(len, images.values())) < 4:
        raise SystemExit(f"{run}: fewer than 4 test images at 200X of a class for the slide")
    cells = {
        (column + offset, row): images[label][2 * column + row]
        for label, offset in (("benign", 0), ("malignant", 3))
        for column in (0, 1)
        for row in (0, 1)
    }
    slide.parent.mkdir(parents=True, exist_ok=True)
    write_mosaic_slide(slide, cells, columns=5, rows=2, cell=SLIDE_CELL, mpp=SLIDE_MPP)


def _slide_listing(results: Path) -> str:
    """The slide job's output folder: the collection summary and the slide's folder."""
    lines = [f"{results.name}/", "  summary.csv    one row per slide"]
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        lines.append(f"  {folder.name}/")
        names = sorted(p.name for p in folder.iterdir())
        width = max(map(len, names)) + 2
        lines += [f"    {name:<{width}}{SLIDE_FILES.get(name, '')}".rstrip() for name in names]
    return "\n".join(lines)


def _fenced(text: str, language: str = "text") -> str:
    return f"```{language}\n{text}\n```\n"


def make_blocks(scratch: Path) -> tuple[dict[str, str], Path]:
    """Make the run in ``scratch`` and return the docs blocks by name, and the run folder."""
    clone = scratch / "clone"
    (scratch / "shared" / "data").mkdir(parents=True)
    (scratch / "shared" / "data" / "breakhis-dev").symlink_to(DATA.resolve())
    clone.mkdir()
    demo, demo_s = _run(DEMO, clone)
    trained, train_s = _run(TRAIN, clone)
    evaluated, evaluate_s = _run(EVALUATE, clone)
    run = clone / "runs" / RUN
    _write_test_slide(run, clone / SLIDE)
    slid, slide_s = _run(SLIDE_PREDICT, clone)
    summarised, _ = _run(SLIDE_SUMMARY, clone)
    blocks = {
        "demo": _fenced(f"$ {_command_line(DEMO)}\n{demo}"),
        "demo-time": f"It took {demo_s}, TensorFlow's start included.\n",
        "train-command": _fenced(_command_line(TRAIN), "bash"),
        "train": _fenced(f"$ {_command_line(TRAIN)}\n{trained}"),
        "train-tail": _fenced("\n".join(trained.splitlines()[-6:])),
        "train-time": f"The run took {train_s}, TensorFlow's start included.\n",
        "evaluate": _fenced(f"$ {_command_line(EVALUATE)}\n{evaluated}"),
        "evaluate-time": f"The evaluation took {evaluate_s}.\n",
        "run-folder": _fenced(_listing(run)),
        "slide": _fenced(
            f"$ {_command_line(SLIDE_PREDICT)}\n{slid}\n$ {_command_line(SLIDE_SUMMARY)}\n"
            f"{summarised}"
        ),
        "slide-time": f"It took {slide_s}, TensorFlow's start included.\n",
        "slide-folder": _fenced(_slide_listing(clone / "slide-results")),
    }
    return blocks, run


def masked(text: str) -> str:
    """``text`` with its timings and rates replaced by ``#``."""
    return VOLATILE.sub("#", text)


def fill(page: str, blocks: Mapping[str, str]) -> tuple[str, list[str]]:
    """``page`` with each marked block replaced by ``blocks[name]``; and the unknown names."""
    unknown: list[str] = []

    def replace(found: re.Match[str]) -> str:
        name = found["name"]
        if name not in blocks:
            unknown.append(name)
            return found[0]
        return f"{found[1]}{blocks[name]}{found[4]}"

    return BLOCK.sub(replace, page), unknown


def _screenshot(report: Path, target: Path) -> None:
    """The first screen of ``report`` at 1280 px, by headless Chromium (skipped without it)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: docs/images/report.png left as it is")
        return
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--screenshot={target}", "--window-size=1280,1600",
             report.resolve().as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a committed block differs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="breastcls-docs-") as scratch:
        blocks, run = make_blocks(Path(scratch))
        stale = []
        for name in PAGES:
            path = REPO / "docs" / name
            page = path.read_text(encoding="utf-8")
            filled, unknown = fill(page, blocks)
            if unknown:
                raise SystemExit(f"{path}: no output named {unknown} (known: {sorted(blocks)})")
            if args.check:
                if masked(filled) != masked(page):
                    stale.append(name)
                    sys.stdout.writelines(
                        difflib.unified_diff(
                            masked(page).splitlines(keepends=True),
                            masked(filled).splitlines(keepends=True),
                            f"docs/{name} (committed)",
                            f"docs/{name} (the program now)",
                        )
                    )
            elif filled != page:
                path.write_text(filled, encoding="utf-8")
                print(f"rewrote {path.relative_to(REPO)}")
        if args.check:
            if stale:
                print(f"stale output in docs/{', docs/'.join(stale)}: run python {__file__}")
                return 1
            print("docs output blocks match the program")
            return 0
        for figure in FIGURES:
            shutil.copyfile(run / figure, REPO / "docs" / "images" / figure)
        for overlay in sorted(run.glob("evaluations/*/gradcam_errors.png"))[:1]:
            shutil.copyfile(overlay, REPO / "docs" / "images" / overlay.name)
        _screenshot(run / "report.html", REPO / "docs" / "images" / "report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
