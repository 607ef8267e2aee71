"""Failures during training: NaN loss, Ctrl-C; each leaves a clear status and a usable run."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import breastcls
from _runs import (
    read_history,
    run_cli,
    start_cli,
    tiny_train_options,
    wait_for_epochs,
    wait_for_exit,
)
from breastcls import (
    DataConfig,
    ModelConfig,
    PluginRegistry,
    RunConfig,
    TrainConfig,
    Trainer,
    TrainingError,
    hookimpl,
)
from breastcls.builtin.trainer import KerasTrainer
from breastcls.plugins import PluginHost
from breastcls.runs import list_runs


class PoisonedTrainer:
    """The keras trainer, except that the weights turn to NaN when epoch ``poison_epoch`` starts."""

    def __init__(self, poison_epoch: int) -> None:
        self.poison_epoch = poison_epoch

    def fit(
        self,
        model: Any,
        train: Any,
        validation: Any,
        *,
        callbacks: Sequence[Any],
        **settings: Any,
    ) -> dict[str, list[float]]:
        import keras

        poison_epoch = self.poison_epoch

        class Poison(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                if epoch == poison_epoch:
                    kernel = self.model.trainable_variables[0]
                    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))

        return KerasTrainer().fit(
            model, train, validation, callbacks=[Poison(), *callbacks], **settings
        )


class PoisonPlugin:
    @hookimpl
    def breastcls_register_trainers(self, registry: PluginRegistry[Trainer]) -> None:
        registry.add("poisoned", PoisonedTrainer(poison_epoch=2), summary="NaN weights at epoch 3")


def test_a_nan_loss_stops_training_and_keeps_the_last_good_model(
    small_breakhis: Path, tmp_path: Path
) -> None:
    host = PluginHost(plugins=[("poison", PoisonPlugin())])
    config = RunConfig(
        # Five benign slides, three accessions: 0.34 puts both classes in the selection set.
        data=DataConfig(path=small_breakhis, image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(
            trainer="poisoned", epochs=5, batch_size=4, learning_rate=1e-3, verbose=0
        ),
        out_dir=tmp_path,
        name="nan",
    )
    with pytest.raises(TrainingError) as caught:
        breastcls.train(config, host=host)
    message = str(caught.value)
    assert "the loss became nan at batch 1 in epoch 3" in message
    assert "the last good model is kept as best.keras" in message
    assert "Lower the learning rate" in message

    run_dir = tmp_path / "nan"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == message
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["completed_epochs"] == 2
    assert state["checkpoint"] == "checkpoints/epoch-0002.keras"
    best = breastcls.load_model(run_dir).keras_model
    assert all(np.isfinite(np.asarray(w)).all() for w in best.weights)
    assert (run_dir / "best.keras").samefile(run_dir / state["best_checkpoint"])
    losses = [row["loss"] for row in read_history(run_dir)]
    assert all(math.isfinite(v) for v in losses[:2]) and len(losses) <= 3


def test_ctrl_c_stops_cleanly_and_the_run_resumes(small_breakhis: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run_dir = out / "ctrl-c"
    args = ["train", "--data", str(small_breakhis), "--out", str(out), "--name", "ctrl-c"]
    log = tmp_path / "train.log"
    process = start_cli([*args, *tiny_train_options(6)], log)
    wait_for_epochs(process, run_dir, 2, log=log)
    process.send_signal(signal.SIGINT)
    code = wait_for_exit(process, log, run_dir)
    output = (tmp_path / "train.log").read_text()
    assert code == 130, output
    # The last line says how to continue the run.
    assert output.rstrip().endswith(
        f"interrupted: continue with `breastcls train --resume {run_dir}`."
    )
    assert "Traceback" not in output

    status = json.loads((run_dir / "status.json").read_text())
    state = json.loads((run_dir / "train_state.json").read_text())
    assert status["status"] == "interrupted"
    assert status["reason"] == (
        f"interrupted after {state['completed_epochs']} completed epoch(s); continue with "
        f"`breastcls train --resume {run_dir}`"
    )
    (listed,) = list_runs(out)
    assert listed.status == "interrupted"

    assert run_cli(["train", "--resume", str(run_dir)], tmp_path / "resume.log") == 0
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
