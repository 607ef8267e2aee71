"""A run folder never holds a truncated file: kills and full disks during checkpoint writes."""

from __future__ import annotations

import csv
import errno
import json
import shutil
import signal
import sys
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import breastcls
from _runs import (
    completed_epochs,
    read_history,
    run_cli,
    run_signals,
    run_watched,
    tiny_train_options,
)
from breastcls import DataConfig, ModelConfig, OutputError, RunConfig, TrainConfig
from breastcls.model import load_checkpoint, load_keras_model
from breastcls.runs import list_runs

# Runs breastcls with keras.Model.save dying halfway through the third checkpoint: the file
# being written is cut to half its size, then the process kills itself with SIGKILL.
DIE_DURING_THIRD_SAVE = """
import os, signal, sys
import keras
original = keras.Model.save
saves = []
def dying_save(self, filepath, *args, **kwargs):
    saves.append(filepath)
    original(self, filepath, *args, **kwargs)
    if len(saves) == 3:
        size = os.path.getsize(filepath)
        with open(filepath, "r+b") as handle:
            handle.truncate(size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save = dying_save
from breastcls.cli.app import main
sys.argv = ["breastcls", *sys.argv[1:]]
main()
"""


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def check_loadable(path: Path) -> None:
    """Open ``path`` with the reader of its kind; raise if it is truncated or corrupt."""
    if path.suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".jsonl":  # the test-look ledger: appended one whole line at a time
        for line in path.read_text(encoding="utf-8").splitlines():
            json.loads(line)
    elif path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            assert all(len(row) == len(header) for row in reader), path
    elif path.suffix == ".keras":
        load_checkpoint(path)
        load_keras_model(path)
    elif path.suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif path.suffix in (".html", ".md", ".txt"):
        path.read_text(encoding="utf-8")
    else:
        raise AssertionError(f"unexpected file in the run folder: {path}")


def test_sigkill_during_a_checkpoint_write_leaves_only_loadable_files(
    small_breakhis: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    run_dir = out / "cut"
    args = ["train", "--data", str(small_breakhis), "--out", str(out), "--name", "cut"]
    command = [sys.executable, "-c", DIE_DURING_THIRD_SAVE, *args, *tiny_train_options(4)]
    killed = run_watched(command, watched=run_signals(run_dir))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    files = [p for p in run_dir.rglob("*") if p.is_file()]
    leftovers = [p for p in files if is_temporary(p)]
    # The kill hit the third checkpoint mid-write: its truncated temporary file is all that is
    # left of it, under a hidden temporary name, never under the checkpoint's own name.
    assert [p.parent.name for p in leftovers] == ["checkpoints"]
    assert leftovers[0].name.startswith(".epoch-0003.")
    with pytest.raises(breastcls.ModelLoadError):
        load_checkpoint(leftovers[0])
    for path in files:
        if not is_temporary(path):
            check_loadable(path)
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["completed_epochs"] == 2
    kept = {f"checkpoints/{p.name}" for p in (run_dir / "checkpoints").glob("epoch-*.keras")}
    assert kept == {state["checkpoint"], state["best_checkpoint"]}
    (listed,) = list_runs(out)
    assert listed.status == "killed" and listed.epochs >= 2

    log = tmp_path / "resume.log"
    assert run_cli(["train", "--resume", str(run_dir)], log) == 0, log.read_text()
    assert not [p for p in run_dir.rglob("*") if is_temporary(p)]
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1, 2, 3, 4]
    for path in run_dir.rglob("*"):
        if path.is_file():
            check_loadable(path)
    (listed,) = list_runs(out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert listed.status == "finished" and listed.epochs == 4
    assert metrics["evaluated_on"]["role"] == "test"
    assert (listed.figures_from, listed.accuracy) == (
        "test",
        pytest.approx(metrics["classification"]["accuracy"]),
    )


def _config(data: Path, out: Path, epochs: int) -> RunConfig:
    return RunConfig(
        # small_breakhis's five benign slides are three accessions: 0.34 puts both classes in
        # the selection set.
        data=DataConfig(path=data, image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(epochs=epochs, batch_size=4, learning_rate=1e-3, verbose=0),
        out_dir=out,
        name="full",
    )


def test_a_full_disk_mid_training_fails_clearly_and_keeps_earlier_files(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    original = keras.Model.save
    saves: list[str] = []

    def save_until_the_disk_is_full(self: Any, filepath: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(str(filepath))
        if len(saves) == 2:
            Path(filepath).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_until_the_disk_is_full)
    with pytest.raises(OutputError, match="No space left on device") as caught:
        breastcls.train(_config(small_breakhis, tmp_path, epochs=3))
    assert "--resume" in str(caught.value)
    run_dir = tmp_path / "full"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "No space left" in status["reason"]
    assert completed_epochs(run_dir) == 1
    assert not [p for p in run_dir.rglob("*") if is_temporary(p)]
    for path in run_dir.rglob("*"):
        if path.is_file():
            check_loadable(path)
    assert (run_dir / "best.keras").samefile(run_dir / "checkpoints" / "epoch-0001.keras")


def test_too_little_free_space_is_refused_before_anything_is_written(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 10**6, 10**6))
    out = tmp_path / "runs"
    with pytest.raises(OutputError, match=r"Only 1 MB free .* needs about 50 MB"):
        breastcls.train(_config(small_breakhis, out, epochs=1))
    assert not out.exists()


def test_an_output_folder_below_a_file_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # The data path does not exist either: the output problem is found first, up front.
    with pytest.raises(OutputError, match="Cannot write to output folder"):
        breastcls.train(_config(tmp_path / "nowhere", blocker / "sub", epochs=1))
