"""What ``resume`` accepts and refuses, and a run interrupted before its first checkpoint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import breastcls
from _runs import read_history
from breastcls import ConfigError, DataConfig, DataError, ModelConfig, RunConfig, TrainConfig
from breastcls.cli.app import app
from breastcls.runs.folder import read_split_csv, write_split_csv, write_status
from breastcls.training.callbacks import TrainingCheckpoint
from breastcls.training.train import prepare_data
from conftest import copy_patients


def _config(data: Path, out: Path, epochs: int = 2) -> RunConfig:
    # Three of small_breakhis's five benign slides are accessions of their own: a selection
    # fraction of 0.34 gives the selection set patients of both classes.
    return RunConfig(
        data=DataConfig(path=data, image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(epochs=epochs, batch_size=4, learning_rate=1e-3, verbose=0),
        out_dir=out,
        name="run",
    )


def _started_run(data: Path, out: Path) -> Path:
    """A run folder as Ctrl-C leaves it before the first epoch ends (no TensorFlow needed)."""
    config = _config(data, out)
    prepared = prepare_data(config)
    run_dir = out / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    (run_dir / "class_names.json").write_text(json.dumps(list(prepared.class_names)))
    write_split_csv(run_dir, prepared.split, image_info=prepared.image_info, group_by=None)
    roles = {str(sample.path): sample.split for sample, _ in read_split_csv(run_dir)}
    assert set(roles.values()) == {"train", "selection", "test"}
    write_status(run_dir, "interrupted", reason="interrupted after 0 completed epoch(s)")
    return run_dir


def _cli_error(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    return result.output


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a breastcls run folder"):
        breastcls.resume(tmp_path)
    assert "no config.json" in _cli_error("train", "--resume", str(tmp_path))


def test_resume_takes_no_other_data_option(tmp_path: Path) -> None:
    output = _cli_error("train", "--resume", str(tmp_path), "--data", str(tmp_path))
    assert "do not pass --data" in output


def test_a_finished_run_is_not_resumed(small_breakhis: Path, tmp_path: Path) -> None:
    run_dir = _started_run(small_breakhis, tmp_path)
    write_status(run_dir, "finished")
    with pytest.raises(ConfigError, match="has finished already"):
        breastcls.resume(run_dir)


def test_a_run_still_training_is_not_resumed(small_breakhis: Path, tmp_path: Path) -> None:
    run_dir = _started_run(small_breakhis, tmp_path)
    write_status(run_dir, "running")  # written by this process, which is alive
    with pytest.raises(ConfigError, match=rf"still training \(process {os.getpid()} "):
        breastcls.resume(run_dir)


def test_changed_data_is_refused(small_breakhis: Path, tmp_path: Path) -> None:
    run_dir = _started_run(small_breakhis, tmp_path)
    changed = r"data or their roles changed since the run started \(split\.csv differs\)"
    # The same images in other roles (a training image recorded as a test image).
    recorded = (run_dir / "split.csv").read_text(encoding="utf-8")
    moved = recorded.replace(",train,", ",test,", 1)
    assert moved != recorded
    (run_dir / "split.csv").write_text(moved, encoding="utf-8")
    with pytest.raises(DataError, match=changed):
        breastcls.resume(run_dir)
    (run_dir / "split.csv").write_text(recorded, encoding="utf-8")
    next(iter((small_breakhis / "benign").iterdir())).unlink()
    with pytest.raises(DataError, match=changed):
        breastcls.resume(run_dir)
    shutil.move(small_breakhis / "benign", small_breakhis / "normal")
    with pytest.raises(DataError, match=r"trained on classes \['benign', 'malignant'\]"):
        breastcls.resume(run_dir)


def test_an_unreadable_training_state_is_refused(small_breakhis: Path, tmp_path: Path) -> None:
    run_dir = _started_run(small_breakhis, tmp_path)
    (run_dir / "train_state.json").write_text('{"format": 1, "completed_epochs": 2}')
    with pytest.raises(ConfigError, match="is not a breastcls training state"):
        breastcls.resume(run_dir)
    state = {
        "format": 1, "completed_epochs": 1, "checkpoint": "checkpoints/epoch-0001.keras",
        "monitor": "val_accuracy", "seed_generators": [], "history": [],
    }  # fmt: skip
    (run_dir / "train_state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=r"names the checkpoint checkpoints/epoch-0001\.keras"):
        breastcls.resume(run_dir)


def test_a_run_interrupted_before_its_first_checkpoint_starts_again(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(self: Any, epoch: int, logs: Any = None) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_epoch_end", interrupt)
        with pytest.raises(KeyboardInterrupt):
            breastcls.train(_config(small_breakhis, tmp_path, epochs=3))
    run_dir = tmp_path / "run"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert status["reason"].startswith("interrupted after 0 completed epoch(s)")
    assert not (run_dir / "train_state.json").exists()

    result = breastcls.resume(run_dir)
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1, 2, 3]
    assert len(result.history["loss"]) == 3
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"


def test_a_config_json_edited_after_training_started_is_refused(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TrainingCheckpoint.on_epoch_end

    def interrupt_after_one(self: Any, epoch: int, logs: Any = None) -> None:
        original(self, epoch, logs)  # the first epoch is committed, then Ctrl-C
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_epoch_end", interrupt_after_one)
        with pytest.raises(KeyboardInterrupt):
            breastcls.train(_config(small_breakhis, tmp_path, epochs=3))
    run_dir = tmp_path / "run"
    recorded = json.loads((run_dir / "config.json").read_text())
    for section, key, value, said in (
        ("model", "backbone", "mobilenetv3small", "mobilenetv3small + seed model at 32 px"),
        ("data", "image_size", 48, "smallcnn + seed model at 48 px"),
    ):
        edited = {**recorded, section: {**recorded[section], key: value}}
        (run_dir / "config.json").write_text(json.dumps(edited))
        before = (run_dir / "status.json").read_text()
        output = _cli_error("train", "--resume", str(run_dir))
        assert said in output and "breastcls_smallcnn_seed taking (None, 32, 32, 3)" in output
        assert "config.json was changed after training started" in output
        assert (run_dir / "status.json").read_text() == before  # the run is not marked failed
    (run_dir / "config.json").write_text(json.dumps(recorded))
    assert [int(r["epoch"]) for r in read_history(breastcls.resume(run_dir).run_dir)] == [1, 2, 3]


class PowerCut:
    """Fails the second fold of a cross-validation run at the end of its first epoch."""

    @breastcls.hookimpl
    def breastcls_epoch_end(self, run_dir: Path, epoch: int, logs: Any) -> None:
        if run_dir.name == "fold-2" and epoch == 0:
            raise RuntimeError("power cut")


def test_a_failed_cross_validation_run_resumes_fold_by_fold_and_aggregates(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    from breastcls.testing import isolated_host

    # Six slides per class (four benign accessions): each fold's training half has enough
    # patients of both classes for a selection set of half of them.
    data = copy_patients(breakhis_dev, tmp_path / "data", patients=6, images_per_patient=2)
    config = RunConfig(
        data=DataConfig(path=data, image_size=32, folds=2, selection_fraction=0.5),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, verbose=0),
        out_dir=tmp_path / "runs",
        name="cv",
    )
    with pytest.raises(RuntimeError, match="power cut"):
        breastcls.cross_validate(config, host=isolated_host(("power_cut", PowerCut())))
    run_dir = tmp_path / "runs" / "cv"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not (run_dir / "aggregate.json").exists()
    fold_1 = (run_dir / "fold-1" / "best.keras").read_bytes()
    assert json.loads((run_dir / "fold-2" / "status.json").read_text())["status"] != "finished"

    result = CliRunner().invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "2 folds, aggregate.json" in result.output
    # The finished fold was kept as it was; the failed one was completed.
    assert (run_dir / "fold-1" / "best.keras").read_bytes() == fold_1
    fold_2 = run_dir / "fold-2"
    assert json.loads((fold_2 / "status.json").read_text())["status"] == "finished"
    assert [row["epoch"] for row in read_history(fold_2)] == [1.0, 2.0]
    aggregate = json.loads((run_dir / "aggregate.json").read_text())
    assert aggregate["folds"] == ["fold-1", "fold-2"]
    accuracy = aggregate["metrics"]["classification.accuracy"]
    per_fold = [
        json.loads((run_dir / f / "metrics.json").read_text())["classification"]["accuracy"]
        for f in ("fold-1", "fold-2")
    ]
    assert accuracy["n"] == 2 and accuracy["mean"] == pytest.approx(sum(per_fold) / 2)
    # The headline is the pooled out-of-fold test evaluation over both folds' test sets.
    pooled = json.loads((run_dir / "pooled" / "metrics.json").read_text())
    assert pooled["classification"]["n_images"] == len(list(data.rglob("*.png")))  # every image
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished"
    assert status["headline"]["role"] == "test"
    assert status["headline"]["accuracy"] == pytest.approx(pooled["classification"]["accuracy"])
    assert status["headline"]["accuracy_mean"] == pytest.approx(accuracy["mean"])
    with pytest.raises(ConfigError, match="has finished already"):
        breastcls.resume_cross_validation(run_dir)
    with pytest.raises(ConfigError, match="is not a cross-validation run folder"):
        breastcls.resume_cross_validation(fold_2)
