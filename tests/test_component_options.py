"""Components that take options: the Keras trainer's ReduceLROnPlateau settings, from the API, a
saved configuration and the command line, validated by the trainer itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastcls import ConfigError, DataConfig, RunConfig, TrainConfig
from breastcls.builtin.trainer import KerasTrainer
from breastcls.cli.app import app
from breastcls.plugins import PluginHost


def test_the_keras_trainer_keeps_the_seed_schedule_by_default() -> None:
    trainer = PluginHost().trainers.get("keras")
    assert (trainer.lr_patience, trainer.lr_factor, trainer.min_lr) == (5, 0.2, 1e-7)
    assert PluginHost().trainers.option_defaults("keras") == {
        "lr_patience": 5, "lr_factor": 0.2, "min_lr": 1e-7,
    }  # fmt: skip


def test_options_from_text_are_converted_and_checked_by_the_trainer() -> None:
    host = PluginHost()
    trainer = host.trainers.get("keras", {"min_lr": "1e-6", "lr_patience": "3"})
    assert isinstance(trainer, KerasTrainer)
    assert (trainer.lr_patience, trainer.min_lr, trainer.lr_factor) == (3, 1e-6, 0.2)
    with pytest.raises(ConfigError, match=r"lr_factor=1\.5 must lie strictly between 0 and 1"):
        host.trainers.get("keras", {"lr_factor": 1.5})
    with pytest.raises(ConfigError, match=r"no option 'min_l'\. Did you mean 'min_lr'"):
        host.trainers.get("keras", {"min_l": "1e-6"})
    with pytest.raises(ConfigError, match="lr_patience='three' is not a int"):
        host.trainers.get("keras", {"lr_patience": "three"})
    # The registered component itself is left as it was.
    assert host.trainers.get("keras").min_lr == 1e-7


def test_components_that_are_not_dataclasses_take_no_options() -> None:
    with pytest.raises(ConfigError, match="takes no options"):
        PluginHost().heads.get("seed", {"dropout": "0.3"})


def test_a_configuration_of_breastcls_0_1_moves_its_schedule_into_the_trainer_options() -> None:
    old = {"data": {"path": "x"}, "train": {"lr_patience": 2, "min_lr": 1e-5, "epochs": 3}}
    train = RunConfig.from_dict(old).train
    assert train.trainer_options == {"lr_patience": 2, "min_lr": 1e-5} and train.epochs == 3
    again = RunConfig.from_dict(RunConfig.from_dict(old).to_dict()).train
    assert again == train


def test_the_command_line_refuses_a_bad_trainer_option_before_anything_is_written(
    tmp_path: Path, small_breakhis: Path
) -> None:
    runner = CliRunner()
    common = ["train", "--data", str(small_breakhis), "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, [*common, "--trainer-option", "lr_factor=2"])
    assert result.exit_code == 2 and "lr_factor=2.0 must lie strictly between 0 and 1" in (
        result.output
    )
    result = runner.invoke(app, [*common, "--trainer-option", "min_lr"])
    assert result.exit_code == 2 and "is not NAME=VALUE" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_trainer_options_reach_the_run_configuration(tmp_path: Path) -> None:
    config = TrainConfig(trainer_options={"min_lr": 1e-6})
    assert RunConfig(data=DataConfig(path=tmp_path), train=config).to_dict()["train"][
        "trainer_options"
    ] == {"min_lr": 1e-6}
