"""Building, loading and inspecting breastcls models."""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from breastcls.config import ModelConfig
from breastcls.errors import ConfigError, ModelLoadError
from breastcls.interfaces import Backbone
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import RunFolder

__all__ = ["build_model", "check_weights", "load_checkpoint", "load_model", "model_file"]


def check_weights(weights: str | None, *, backbone_name: str, backbone: Backbone) -> None:
    """Check a ``weights`` setting for a backbone before anything is built or written.

    Raises:
        ConfigError: ``weights`` is ``imagenet`` for a backbone that declares it has no ImageNet
            weights (``KerasBackbone(imagenet_weights=False)``), or a path that does not exist
            or is not a file.
    """
    if weights == "imagenet" and not getattr(backbone, "imagenet_weights", True):
        raise ConfigError(
            f"Backbone {backbone_name!r} has no ImageNet weights: pass --weights none to train "
            "it from scratch (weights=None in Python), or --weights PATH for a weights file made "
            "for it."
        )
    if weights is None or weights == "imagenet":
        return
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"Weights file {weights!r} does not exist: pass --weights imagenet (downloads when "
            "online), none (random init) or the path of a local .h5/.weights.h5 file."
        )


def build_model(
    config: ModelConfig,
    *,
    n_classes: int,
    image_size: int,
    seed: int | None = None,
    host: PluginHost | None = None,
) -> Any:
    """Build the uncompiled Keras model: augmentation, preprocessing, backbone, head.

    The model takes raw 0-255 RGB images of shape ``(image_size, image_size, 3)``; augmentation
    is active only in training and the backbone's preprocessing runs inside the model, so a
    saved model needs no separate preprocessing step.

    Args:
        config: Which backbone, head and augmentation, and which weights.
        n_classes: Number of output classes.
        image_size: Input side in pixels.
        seed: Seed of the augmentation's random transforms.
        host: Plugin host to resolve ids with (the default host when ``None``).

    Raises:
        UnknownComponentError: An id is not registered.
        ConfigError: The weights file does not exist, the backbone has no ImageNet weights, or
            they cannot be downloaded.
    """
    host = ensure_host(host)
    backbone = host.backbones.get(config.backbone)
    head = host.heads.get(config.head)
    augmentation = host.augmentations.get(config.augmentation)
    check_weights(config.weights, backbone_name=config.backbone, backbone=backbone)
    if n_classes < 2:
        raise ConfigError(f"n_classes={n_classes}: a classifier needs at least two classes.")

    import keras

    from breastcls.layers import ImagePreprocessing

    shape = (image_size, image_size, 3)
    weights = (
        str(Path(config.weights).expanduser())
        if config.weights not in (None, "imagenet")
        else config.weights
    )
    try:
        features_model = backbone.build(input_shape=shape, weights=weights)
    except Exception as error:
        if config.weights == "imagenet":
            raise ConfigError(
                f"Could not load ImageNet weights for backbone {config.backbone!r} "
                f"({type(error).__name__}: {error}). Offline? Put the Keras weights file in "
                "~/.keras/models/ or pass --weights PATH; --weights none trains from scratch."
            ) from error
        if config.weights is not None:
            raise ConfigError(
                f"Could not load weights file {config.weights!r} into backbone "
                f"{config.backbone!r}: {type(error).__name__}: {error}. Use a no-top weights "
                "file made for this backbone."
            ) from error
        raise
    inputs = keras.Input(shape=shape, name="image")
    x = augmentation(seed=seed)(inputs)
    mode = backbone.preprocessing if config.preprocessing == "backbone" else "none"
    x = ImagePreprocessing(mode=mode, name="preprocessing")(x)
    features = features_model(x)
    outputs = head(features, n_classes=n_classes)
    return keras.Model(inputs, outputs, name=f"breastcls_{config.backbone}_{config.head}")


def model_file(path: Path) -> Path:
    """Return the ``.keras`` file ``path`` names: itself, or a run folder's ``best.keras``.

    Raises:
        ModelLoadError: Nothing is there, or a folder holds no ``best.keras`` (a
            cross-validation run, whose models are in its fold folders, or a run that saved no
            model yet); the message says which and what to pass instead.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(
            f"Model {str(path)!r} does not exist: pass a run folder (holding best.keras) or a "
            ".keras file."
        )
    if not path.is_dir():
        return path
    run = RunFolder(path)
    if run.best_model.is_file():
        return run.best_model
    if run.is_cross_validation:
        folds = [fold.path.name for fold in run.folds() if fold.best_model.is_file()]
        raise ModelLoadError(
            f"{str(path)!r} is a cross-validation run: its models are in its fold folders "
            f"({', '.join(folds) or 'none saved yet'}); pass one of them."
        )
    raise ModelLoadError(
        f"{str(path)!r} holds no best.keras: pass a run folder that saved a model or a .keras "
        "file (`breastcls runs` shows whether a run failed or stopped before its first epoch)."
    )


def load_model(path: Path, *, class_names: Sequence[str] | None = None) -> Any:
    """Load a ``.keras`` model in Keras safe mode (no code from the file is executed).

    Args:
        path: A ``.keras`` file or a run folder (its ``best.keras`` is loaded).
        class_names: When given, the class names the model was trained with (``class_names.json``
            beside the model) must be the same, in the same order.

    Raises:
        ModelLoadError: The file is missing or not a Keras model, it needs a layer from a plugin
            that is not installed, or its class names differ from ``class_names``.
    """
    path = model_file(path)
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a .keras model file (not a zip archive).")
    if class_names is not None:
        trained = model_class_names(path)
        if trained is not None and list(trained) != list(class_names):
            raise ModelLoadError(
                f"The model {path} was trained on classes {trained} but the data has "
                f"{list(class_names)}: evaluate it on data with the same classes."
            )

    return _safe_load(path, compile=False)


def load_checkpoint(path: Path) -> Any:
    """Load a training checkpoint in safe mode, compiled, with its optimizer state.

    Used to resume a run: the optimizer (Adam's moments, its step counter and the current
    learning rate) continues where it stopped.

    Raises:
        ModelLoadError: As :func:`load_model`.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a .keras model file (not a zip archive).")
    return _safe_load(path, compile=True)


_OPTIMIZER_MISMATCH = "Skipping variable loading for optimizer"


def _safe_load(path: Path, *, compile: bool) -> Any:
    import keras

    import breastcls.layers  # noqa: F401  (registers breastcls' layers for deserialisation)

    try:
        with warnings.catch_warnings():
            # Keras only warns when a checkpoint's optimizer state does not fit the optimizer it
            # rebuilds (e.g. a loss-scaled float16 run loaded under another precision) and then
            # trains on with a fresh one: a resumed run would silently lose Adam's moments.
            warnings.filterwarnings("error", message=_OPTIMIZER_MISMATCH)
            return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as error:
        message = str(error)
        if _OPTIMIZER_MISMATCH in message:
            raise ModelLoadError(
                f"{path}: its optimizer state does not fit the optimizer rebuilt under the "
                f"current precision ({keras.mixed_precision.global_policy().name}); it was saved "
                "under another one. Resume the run with `breastcls train --resume RUN_DIR`, which "
                "restores the precision its config.json records (dtype_policy)."
            ) from error
        missing = _unregistered_layers(path)
        if missing:
            names = ", ".join(
                f"{name.split('>')[1]} (registered by {name.split('>')[0]!r})" for name in missing
            )
            packages = sorted({name.split(">")[0] for name in missing})
            raise ModelLoadError(
                f"{path} needs the layer(s) {names}, which no installed plugin provides: install "
                f"the breastcls plugin {' / '.join(packages)} that registers them, then load "
                "again."
            ) from error
        if "safe_mode" in message or "Lambda" in message:
            raise ModelLoadError(
                f"{path} contains code (a Lambda layer) that safe mode refuses to run; breastcls "
                "never loads such models."
            ) from error
        first_line = message.splitlines()[0] if message else type(error).__name__
        raise ModelLoadError(
            f"{path} could not be loaded ({first_line}): it is damaged or not a Keras 3 model."
        ) from error


def _unregistered_layers(path: Path) -> list[str]:
    """Return the custom classes (``package>Name``) the model's config names but Keras lacks."""
    import keras

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and ">" in name:
                found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return sorted(name for name in found if keras.saving.get_registered_object(name) is None)


def model_class_names(path: Path) -> list[str] | None:
    """Return the class names stored beside a model (``class_names.json``), if any.

    Raises:
        ConfigError: The file is there but unreadable or not a list of names.
    """
    folder = RunFolder(Path(path).parent)
    return list(folder.read_class_names()) if folder.class_names.is_file() else None
