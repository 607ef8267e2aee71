"""One process per run, cross-validation or evaluation folder: races, stale locks, clean endings.

No test here trains a model: the creation and lock functions are called directly, by racing
processes where the race is the point, or through the real command line.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from typer.testing import CliRunner

import breastcls
from _runs import CLI, QUIET_LIMIT_S, run_watched, timeout_scale, wait_on_progress
from breastcls import OutputError
from breastcls.cli.app import app
from breastcls.runs import list_runs
from breastcls.runs.folder import RunFolder, create_run_dir, read_status, write_status
from breastcls.runs.lock import (
    LOCK_NAME,
    exclusive_folder,
    held_lock,
    lock_folder,
    lock_state,
)
from breastcls.training.run import lock_run
from breastcls.training.train import _train_recording_status

RACES = 20
SLOT_S = 0.15

# Races ``RACES`` times for one folder against another copy of itself. Each race starts at a
# wall-clock time both processes know; the winner of a resume race (and of every other create
# race) holds the folder until the other process has made its attempt. One JSON line per race.
RACER = """
import json, sys, time
from pathlib import Path
from breastcls.errors import OutputError
from breastcls.runs.folder import create_run_dir, write_status
from breastcls.training.run import lock_run

mode, me, other, root = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
start, races, slot = float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
hold_s = float(sys.argv[8])
for race in range(races):
    time.sleep(max(0.0, start + race * slot - time.time()))
    lock, error = None, None
    try:
        if mode == "create":
            lock = create_run_dir(root, f"race-{race}", default_stem="x")
            write_status(lock.path, "running")
        else:
            lock = lock_run(root / f"race-{race}", purpose="resume")
    except OutputError as caught:
        error = str(caught)
    (root / f"attempted-{race}-{me}").touch()
    if lock is not None:
        if mode == "resume" or race % 2 == 0:
            deadline = time.time() + hold_s
            while not (root / f"attempted-{race}-{other}").exists() and time.time() < deadline:
                time.sleep(0.002)
        lock.release()
    print(json.dumps({"race": race, "won": lock is not None, "error": error}), flush=True)
"""


def _race(mode: str, root: Path) -> list[list[dict[str, Any]]]:
    # Both processes have imported breastcls by the start (on a busy machine, later: scaled).
    start = time.time() + 4 * timeout_scale()
    # A winner holds the folder until the other has tried; the other is only ever slow.
    hold_s = QUIET_LIMIT_S * timeout_scale()
    logs = {me: (root / f"{me}.out", root / f"{me}.err") for me in ("a", "b")}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, mode, me, other, str(root), str(start), str(RACES),
             str(SLOT_S), str(hold_s)],
            stdout=logs[me][0].open("wb"),
            stderr=logs[me][1].open("wb"),
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]  # fmt: skip
    results = []
    every_log = [path for pair in logs.values() for path in pair]
    for racer, (out, err) in zip(racers, logs.values(), strict=True):
        wait_on_progress(racer, [*every_log, root], what="a racer to end")
        assert racer.returncode == 0, err.read_text()
        results.append([json.loads(line) for line in out.read_text().splitlines()])
    return results


def _check_one_winner_per_race(results: list[list[dict[str, Any]]], expected: str) -> None:
    a, b = results
    assert len(a) == len(b) == RACES
    for first, second in zip(a, b, strict=True):
        assert first["won"] != second["won"], (first, second)
        loser = second if first["won"] else first
        assert len(loser["error"].splitlines()) == 1
        assert any(part in loser["error"] for part in expected.split("|")), loser["error"]


def test_two_trainings_racing_for_one_run_name_make_exactly_one_winner(tmp_path: Path) -> None:
    results = _race("create", tmp_path)
    _check_one_winner_per_race(results, "is in use by process|exists already")
    for race in range(RACES):
        run_dir = tmp_path / f"race-{race}"
        # The winner's status only; the loser wrote nothing, and the lock went with the winner.
        assert sorted(p.name for p in run_dir.iterdir()) == ["status.json"]
        winner = "a" if results[0][race]["won"] else "b"
        assert winner in ("a", "b")


def test_two_resumes_racing_for_one_run_make_exactly_one_winner(tmp_path: Path) -> None:
    for race in range(RACES):
        run_dir = tmp_path / f"race-{race}"
        run_dir.mkdir()
        write_status(run_dir, "interrupted", reason="test")
    results = _race("resume", tmp_path)
    _check_one_winner_per_race(results, "is in use by process")
    assert any(r["won"] for r in results[0]) or any(r["won"] for r in results[1])
    for race in range(RACES):
        assert not (tmp_path / f"race-{race}" / LOCK_NAME).exists()


def test_a_held_run_name_is_refused_with_one_line_and_nothing_written(tmp_path: Path) -> None:
    with create_run_dir(tmp_path, "run", default_stem="x") as lock:
        assert lock.path == tmp_path / "run" and held_lock(lock.path) is lock
        assert lock_state(lock.path) == "held"
        with pytest.raises(OutputError, match=rf"in use by process {os.getpid()} on this machine"):
            create_run_dir(tmp_path, "run", default_stem="x")
        with pytest.raises(OutputError, match=r"in use by process .* one process at a time"):
            lock_run(lock.path, purpose="resume")
        assert [p.name for p in lock.path.iterdir()] == [LOCK_NAME]
    assert not lock.held and held_lock(tmp_path / "run") is None
    assert list((tmp_path / "run").iterdir()) == []
    # Released: the (still empty) folder can be taken again; once it holds a run, it is refused.
    with create_run_dir(tmp_path, "run", default_stem="x") as lock:
        write_status(lock.path, "running")
    with pytest.raises(OutputError, match="exists already"):
        create_run_dir(tmp_path, "run", default_stem="x")
    assert lock_state(tmp_path / "run") == "none"


def test_unnamed_run_folders_of_the_same_second_are_distinct(tmp_path: Path) -> None:
    locks = [create_run_dir(tmp_path, None, default_stem="smallcnn") for _ in range(3)]
    assert len({lock.path for lock in locks}) == 3
    for lock in locks:
        lock.release()


def test_resume_of_a_run_held_by_another_process_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    write_status(run_dir, "interrupted", reason="test")
    with lock_folder(run_dir, purpose="train", hint="wait."):
        with pytest.raises(OutputError, match=r"in use by process \d+ on this machine \(train"):
            breastcls.resume(run_dir)
        result = CliRunner().invoke(app, ["train", "--resume", str(run_dir)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
        assert "in use by process" in result.output
    assert read_status(run_dir).status == "interrupted"  # the refused resume wrote nothing


def _killed_holder(folder: Path) -> None:
    """Take ``folder`` in a process that is then killed with SIGKILL, leaving its lock file."""
    script = (
        "import os, signal, sys\n"
        "from breastcls.runs.lock import lock_folder\n"
        "lock_folder(__import__('pathlib').Path(sys.argv[1]), purpose='train', hint='')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", script, str(folder)], check=False)
    assert died.returncode == -signal.SIGKILL
    assert (folder / LOCK_NAME).is_file()


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _killed_holder(run_dir)
    left = json.loads((run_dir / LOCK_NAME).read_text())
    assert left["pid"] != os.getpid() and lock_state(run_dir) == "stale"
    # The status names a live process (this one: a process id reused after a reboot), but the
    # folder's lock shows nobody works there.
    write_status(run_dir, "running")
    (listed,) = list_runs(tmp_path)
    assert listed.status == "killed"
    with lock_run(run_dir, purpose="resume") as lock:
        assert json.loads(lock.file.read_text())["pid"] == os.getpid()
        (listed,) = list_runs(tmp_path)
        assert listed.status == "running"
    # An empty folder whose creator died before writing anything is a new run's folder again.
    empty = tmp_path / "empty"
    empty.mkdir()
    _killed_holder(empty)
    with create_run_dir(tmp_path, "empty", default_stem="x") as lock:
        assert lock.path == empty


def test_a_lock_file_naming_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    record = {"pid": finished.pid, "host": os.uname().nodename, "purpose": "train"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with lock_folder(tmp_path, purpose="resume", hint="") as lock:
        assert json.loads(lock.file.read_text())["purpose"] == "resume"
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_failed_evaluation_removes_the_folder_it_created_and_nothing_else(
    tmp_path: Path,
) -> None:
    class Failure(Exception):
        pass

    target = tmp_path / "run" / "evaluations" / "test-none"
    (tmp_path / "run").mkdir()
    with pytest.raises(Failure), exclusive_folder(target, purpose="evaluate", hint="") as lock:
        (lock.path / "predictions.csv").write_text("path\n")
        raise Failure
    # The evaluation folder and the evaluations/ folder it created are gone; run/ stays.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run"]

    # A folder that existed before keeps what it held.
    target.mkdir(parents=True)
    (target / "metrics.json").write_text("{}")
    with pytest.raises(Failure), exclusive_folder(target, purpose="evaluate", hint=""):
        raise Failure
    assert sorted(p.name for p in target.iterdir()) == ["metrics.json"]

    # The loser of a race for a new folder removes nothing: the folder is the winner's.
    fresh = tmp_path / "fresh"
    with exclusive_folder(fresh, purpose="evaluate", hint="wait.") as winner:
        with (
            pytest.raises(OutputError, match="in use by process"),
            exclusive_folder(fresh, purpose="evaluate", hint="wait."),
        ):
            pass
        assert winner.path.is_dir() and winner.file.is_file()
    assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_a_failing_evaluate_leaves_no_half_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breastcls.evaluation import evaluate as module
    from breastcls.interfaces import DataRole

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()

    def calibration(*_: Any, **__: Any) -> Any:
        raise breastcls.DataError("an image turned out unreadable")

    model = SimpleNamespace(folder=run, calibration=calibration, image_size=48)
    chosen = SimpleNamespace(name="test", samples=(), role=DataRole.TEST)
    monkeypatch.setattr(module.InferenceModel, "load", staticmethod(lambda _: model))
    monkeypatch.setattr(module, "evaluation_data", lambda *_, **__: chosen)
    monkeypatch.setattr(module, "with_class_names", lambda loaded, *_: loaded)
    with pytest.raises(breastcls.DataError, match="unreadable"):
        module.evaluate(run.path)
    assert list(run.path.iterdir()) == []


def test_a_full_disk_during_training_records_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import breastcls.runs.folder as folder_module

    train_module = sys.modules["breastcls.training.train"]  # `breastcls.train` is also the function

    lock = create_run_dir(tmp_path, "full", default_stem="x", reserve=1 << 16)
    run_dir = lock.path
    write_status(run_dir, "running")
    assert lock.file.stat().st_size >= 1 << 16

    def disk_full(*_: Any, **__: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    original = folder_module.atomic_write_json
    attempts: list[int] = []

    def status_write_on_a_full_disk(path: Path, data: Any) -> None:
        # The first status write finds the disk full; the next one finds the reserve freed.
        attempts.append(lock.file.stat().st_size)
        if len(attempts) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data)

    monkeypatch.setattr(train_module, "_train_in", disk_full)
    monkeypatch.setattr(folder_module, "atomic_write_json", status_write_on_a_full_disk)
    with lock, pytest.raises(OutputError, match=r"No space left on device.*--resume"):
        _train_recording_status(
            run_dir, cast(Any, None), cast(Any, None), cast(Any, None), resume_from=None
        )
    assert attempts[0] >= 1 << 16 and attempts[1] < 1 << 10
    status = read_status(run_dir)
    assert status.status == "failed" and "No space left on device" in (status.reason or "")
    (listed,) = list_runs(tmp_path)
    assert listed.status == "failed"
    assert sorted(p.name for p in run_dir.iterdir()) == ["status.json"]


def test_a_really_full_disk_still_records_failed(tmp_path: Path) -> None:
    """The same on a real full disk: a 256 kB tmpfs (needs root; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        train_module = sys.modules["breastcls.training.train"]
        with create_run_dir(disk, "run", default_stem="x", reserve=1 << 16) as lock:
            write_status(lock.path, "running")
            with (
                open(disk / "filler", "wb", buffering=0) as filler,
                pytest.raises(OSError, match="No space left"),
            ):
                while True:
                    filler.write(b"x" * 4096)

            def disk_full(*_: Any, **__: Any) -> Any:
                raise OSError(errno.ENOSPC, "No space left on device")

            with pytest.MonkeyPatch.context() as patch, pytest.raises(OutputError):
                patch.setattr(train_module, "_train_in", disk_full)
                _train_recording_status(
                    lock.path, cast(Any, None), cast(Any, None), cast(Any, None), resume_from=None
                )
            assert read_status(lock.path).status == "failed"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _summary_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        return {row["folder"]: row for row in csv.DictReader(handle)}


def test_a_slide_job_refused_a_folder_in_use_does_not_write_it_as_failed(
    tmp_path: Path, breakhis_dev: Path
) -> None:
    """Two `slide predict` jobs sharing --out: the one that finds a slide folder in use writes
    summary.csv (in turn, under a lock on --out) with that slide as the other job has left it:
    complete, with its figures (before: `error ... is in use`, over the other job's result), or
    still in use."""
    from breastcls.model import build_model
    from breastcls.slides.job import predict_slide
    from breastcls.testing.slides import write_mosaic_slide

    image = sorted((breakhis_dev / "benign").glob("*.png"))[0]
    slides = [
        write_mosaic_slide(tmp_path / name, {(0, 0): image, (1, 0): image}, columns=2, rows=1)
        for name in ("done.tif", "busy.tif")
    ]
    model = tmp_path / "model.keras"
    config = breastcls.ModelConfig(backbone="smallcnn", weights=None)
    build_model(config, n_classes=2, image_size=32).save(model)
    out = tmp_path / "out"
    done = predict_slide(
        breastcls.InferenceModel.load(model), slides[0], model_mpp=3.5, out=out / "done"
    )
    # Another job holds both folders: `done` as it ends (complete), `busy` while it works.
    (out / "busy").mkdir()
    predict = [*CLI, "slide", "predict", str(model), *map(str, slides), "--out", str(out)]
    with (
        lock_folder(out / "done", purpose="slide", hint="wait."),
        lock_folder(out / "busy", purpose="slide", hint="wait."),
    ):
        result = run_watched([*predict, "--model-mpp", "3.5"])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "busy.tif" in errors[0] and "is in use by process" in errors[0]
    rows = _summary_rows(out)
    assert rows["done"]["status"] == "ok" and rows["done"]["message"] == ""
    assert float(rows["done"]["top_k_mean_score"]) == done.summary["top_k_mean_score"]
    assert rows["busy"]["status"] == "error" and "is in use by process" in rows["busy"]["message"]
