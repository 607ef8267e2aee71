"""Configuration dataclasses: seed defaults, validation, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastcls import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.config import choices


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
    assert (train.monitor, train.trainer, train.trainer_options) == ("val_accuracy", "keras", {})


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
        (lambda: TrainConfig(monitor="accuracy"), "monitor='accuracy'"),
        (lambda: TrainConfig(seed=-1), "seed=-1"),
        (lambda: TrainConfig(trainer=""), "trainer=''"),
        (lambda: ModelConfig(backbone=" "), "backbone=' '"),
        (lambda: ModelConfig(weights=""), "weights=''"),
        (lambda: DataConfig(path=Path("x"), split_seed=-1), "split_seed=-1"),
        (lambda: DataConfig(path=Path("x"), cache=""), "cache=''"),
        (lambda: RunConfig(data=DataConfig(path=Path("x")), name="a/b"), "name='a/b'"),
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


# Every closed-choice field, an invalid value and its configuration class. A new Literal field
# must be added here (test_every_closed_choice_field_is_listed).
_CHOICE_FIELDS: list[tuple[type[object], str, object]] = [
    (DataConfig, "task", "subtypes"),
    (DataConfig, "split_by", "slide"),
    (DataConfig, "protocol", "random"),
    (DataConfig, "magnification", 50),
    (ModelConfig, "preprocessing", "imagenet"),
    (TrainConfig, "class_weight", "inverse"),
    (TrainConfig, "precision", "fp16"),
    (TrainConfig, "verbose", 3),
]


def _make(config: type[object], **values: object) -> object:
    if config is DataConfig:
        values.setdefault("path", Path("x"))
    return config(**values)


def test_fp16_precision_is_refused_with_its_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "precision='fp16'" in message and "'float32', 'mixed'" in message


def test_a_subtypes_task_is_refused_and_the_close_match_suggested() -> None:
    with pytest.raises(ConfigError, match=r"task='subtypes'.*Did you mean 'subtype'"):
        DataConfig(path=Path("x"), task="subtypes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "name", "bad"), _CHOICE_FIELDS, ids=[name for _, name, _ in _CHOICE_FIELDS]
)
def test_each_closed_choice_field_refuses_other_values(
    config: type[object], name: str, bad: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        _make(config, **{name: bad})
    message = str(caught.value)
    assert f"{config.__name__}.{name}={bad!r}" in message
    assert all(repr(choice) in message for choice in choices(config, name))


@pytest.mark.parametrize(
    ("config", "name", "bad"), _CHOICE_FIELDS, ids=[name for _, name, _ in _CHOICE_FIELDS]
)
def test_each_choice_is_accepted(config: type[object], name: str, bad: object) -> None:
    for choice in choices(config, name):
        assert getattr(_make(config, **{name: choice}), name) == choice


def test_every_closed_choice_field_is_listed() -> None:
    from breastcls.config import _literal_fields

    found = {
        (config, name)
        for config in (DataConfig, ModelConfig, TrainConfig, RunConfig)
        for name in _literal_fields(config)
    }
    assert found == {(config, name) for config, name, _ in _CHOICE_FIELDS}


def test_a_boolean_is_not_a_verbosity() -> None:
    with pytest.raises(ConfigError, match="verbose=True"):
        TrainConfig(verbose=True)  # type: ignore[arg-type]


def test_a_bad_choice_in_a_saved_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="precision='fp16'"):
        RunConfig.from_dict({"data": {"path": "x"}, "train": {"precision": "fp16"}})


def test_choices_of_a_free_field_is_an_error() -> None:
    assert choices(TrainConfig, "precision") == ("float32", "mixed")
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs is not a field with fixed choices"):
        choices(TrainConfig, "epochs")
