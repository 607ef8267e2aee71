"""Configuration dataclasses: seed defaults, validation, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastcls import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig


def test_defaults_are_the_seed_recipe() -> None:
    data, model, train = DataConfig(path=Path("x")), ModelConfig(), TrainConfig()
    assert (data.image_size, data.test_fraction, data.selection_fraction, data.split_seed) == (
        224,
        0.2,
        0.2,
        11,
    )
    assert (model.backbone, model.head, model.weights) == ("densenet201", "seed", "imagenet")
    assert (train.learning_rate, train.batch_size, train.epochs) == (1e-4, 16, 20)
    assert (train.monitor, train.lr_patience, train.lr_factor, train.min_lr) == (
        "val_accuracy",
        5,
        0.2,
        1e-7,
    )


def test_weights_none_string_means_random_init() -> None:
    assert ModelConfig(weights="none").weights is None
    assert ModelConfig(weights="None").weights is None


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: DataConfig(path=Path("x"), image_size=8), "image_size=8"),
        (lambda: DataConfig(path=Path("x"), selection_fraction=1.0), "selection_fraction=1.0"),
        (lambda: DataConfig(path=Path("x"), selection_fraction=0.0), "selection_fraction=0.0"),
        (lambda: DataConfig(path=Path("x"), test_fraction=1.0), "test_fraction=1.0"),
        (lambda: DataConfig(path=Path("x"), test_fraction=-0.1), "test_fraction=-0.1"),
        (lambda: DataConfig(path=Path("x"), magnification=50), "magnification=50"),
        (lambda: TrainConfig(epochs=0), "epochs=0"),
        (lambda: TrainConfig(batch_size=0), "batch_size=0"),
        (lambda: TrainConfig(learning_rate=-1.0), "learning_rate=-1.0"),
    ],
)
def test_invalid_values_are_rejected_with_the_value(factory: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        factory()  # type: ignore[operator]


def test_round_trip_through_json_dict() -> None:
    config = RunConfig(
        data=DataConfig(path=Path("/data/x"), image_size=128, magnification=200),
        model=ModelConfig(backbone="smallcnn", weights=None),
        train=TrainConfig(epochs=3, seed=5),
        out_dir=Path("out"),
        name="run1",
    )
    raw = config.to_dict()
    assert raw["data"]["path"] == "/data/x" and raw["out_dir"] == "out"
    assert RunConfig.from_dict(raw) == config


def test_a_test_fraction_of_zero_keeps_no_test_set() -> None:
    assert DataConfig(path=Path("x"), test_fraction=0.0).test_fraction == 0.0


def test_a_0_1_config_reads_its_validation_fraction_as_the_selection_set() -> None:
    config = RunConfig.from_dict({"data": {"path": "x", "validation_fraction": 0.3}})
    assert (config.data.selection_fraction, config.data.test_fraction) == (0.3, 0.0)
    assert "validation_fraction" not in config.to_dict()["data"]


def test_unknown_keys_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Invalid run configuration"):
        RunConfig.from_dict({"data": {"path": "x", "colour": "pink"}})
