"""The checks a training run makes up front, before any folder is created or image decoded: the
components and options exist, the backbone builds one feature map, a training step fits in
memory."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from breastcls.config import RunConfig
from breastcls.embeddings.probe import check_probe_config, frozen_extractor
from breastcls.errors import ConfigError, PluginError
from breastcls.limits import check_batch_memory
from breastcls.model import check_weights
from breastcls.plugins.host import PluginHost

__all__ = ["check_backbone_output", "check_run_config", "check_training_memory"]


def check_run_config(config: RunConfig, host: PluginHost) -> None:
    """Refuse, before any folder is created, a configuration that cannot train: an unknown
    component, a trainer option it does not take, unusable weights, ``tensorboard`` without
    its package, or a frozen extractor without a probe head or at another image size.

    Raises:
        UnknownComponentError: A backbone, head, augmentation or trainer id is not registered.
        ConfigError: A bad trainer option, weights that do not suit the backbone, or
            tensorboard is missing.
    """
    for kind, name in (
        ("backbone", config.model.backbone),
        ("head", config.model.head),
        ("augmentation", config.model.augmentation),
    ):
        host.registry(kind).info(name)
    host.trainers.get(config.train.trainer, config.train.trainer_options)
    extractor = frozen_extractor(config.model, host)
    if extractor is not None:
        check_probe_config(config, extractor)
    check_weights(
        config.model.weights,
        backbone_name=config.model.backbone,
        backbone=host.backbones.get(config.model.backbone, config.model.backbone_options),
    )
    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard needs the tensorboard package, which is not installed: "
            "pip install 'breastcls[tensorboard]', or train without --tensorboard."
        )


def check_backbone_output(backbone: str, image_size: int, host: PluginHost) -> Any:
    """Build ``backbone`` (without weights: they do not change shapes) and check that it is a
    Keras model with one ``(batch, height, width, channels)`` output, every size positive;
    return that model.

    A plugin's backbone that returns something else would otherwise fail inside the head, after
    all the data is decoded.

    Raises:
        PluginError: It fails to build, or builds something else (named, with its plugin).
    """
    import keras

    info = host.backbones.info(backbone)
    what = f"Backbone {backbone!r} (plugin {info.plugin!r})"
    shape = (image_size, image_size, 3)
    try:
        features = info.component.build(input_shape=shape, weights=None)
    except Exception as error:
        raise PluginError(
            f"{what} failed to build at {shape}: {type(error).__name__}: {error}."
        ) from error
    problem: str | None
    if not isinstance(features, keras.Model):
        problem = f"returns {type(features).__name__}, not a keras.Model"
    elif len(features.outputs) != 1:
        problem = f"has {len(features.outputs)} outputs, not one feature map"
    else:
        output = tuple(features.outputs[0].shape)
        valid = len(output) == 4 and all(isinstance(d, int) and d > 0 for d in output[1:])
        problem = None if valid else f"outputs shape {output}, not (batch, h, w, channels > 0)"
    if problem is not None:
        raise PluginError(
            f"{what} {problem} at input {shape}: fix the plugin's factory, or choose another "
            "--backbone."
        )
    return features


def check_training_memory(features: Any, config: RunConfig) -> None:
    """Refuse a batch and image size whose training memory exceeds the machine's (per device).

    Per image, the pixels and every activation of the backbone, twice (kept for the backward
    pass, and its gradient); whatever the batch, the weights with their gradients and Adam's
    two moments. The head and augmentation add little; so this is an estimate from below.
    """
    activations = sum(
        math.prod(int(d) for d in tensor.shape[1:] if d is not None)
        for layer in features.layers
        for tensor in _outputs(layer)
    )
    size = config.data.image_size
    check_batch_memory(
        batch_size=config.train.batch_size,  # per device: each holds its own batch
        image_size=size,
        floats_per_image=size * size * 3 + 2 * activations,
        fixed_bytes=16 * features.count_params(),
        what=f"training {config.model.backbone}",
    )


def _outputs(layer: Any) -> list[Any]:
    output = layer.output
    return list(output) if isinstance(output, list | tuple) else [output]
