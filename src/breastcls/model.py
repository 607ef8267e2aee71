"""Building, loading and inspecting breastcls models."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from breastcls.config import ModelConfig
from breastcls.errors import ConfigError, ModelLoadError
from breastcls.interfaces import Backbone
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import RunFolder

if TYPE_CHECKING:
    from breastcls.stain.fit import StainFit

__all__ = [
    "MAX_MODEL_BYTES",
    "MAX_MODEL_ENTRIES",
    "MAX_MODEL_JSON_BYTES",
    "MAX_MODEL_RATIO",
    "ModelLimits",
    "archived_model",
    "build_model",
    "check_model_archive",
    "check_weights",
    "load_checkpoint",
    "load_keras_model",
    "model_file",
]

#: The most entries a ``.keras`` archive may hold (Keras writes three, plus assets).
MAX_MODEL_ENTRIES = 1_000
#: The most bytes all entries of a ``.keras`` archive may unpack to (4 GiB; DenseNet201 with
#: Adam's state is about 0.25 GB).
MAX_MODEL_BYTES = 4 * 2**30
#: The most bytes one JSON entry (``config.json``, ``metadata.json``) may unpack to (64 MiB;
#: DenseNet201's configuration is under 1 MB). JSON is parsed whole, in memory.
MAX_MODEL_JSON_BYTES = 64 * 2**20
#: The highest compression ratio (unpacked / packed size) of an entry over 1 MiB. Keras stores
#: entries uncompressed (ratio 1) and weights barely compress; a zip bomb's ratio is near 1000.
MAX_MODEL_RATIO = 100
_RATIO_FLOOR = 2**20

_LIMIT_VARIABLES = {
    "max_entries": "BREASTCLS_MAX_MODEL_ENTRIES",
    "max_bytes": "BREASTCLS_MAX_MODEL_BYTES",
    "max_json_bytes": "BREASTCLS_MAX_MODEL_JSON_BYTES",
    "max_ratio": "BREASTCLS_MAX_MODEL_RATIO",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLimits:
    """What a ``.keras`` archive may unpack to before breastcls loads it (a model file is
    untrusted input, in size too).

    Each limit can be raised with an environment variable (``BREASTCLS_MAX_MODEL_ENTRIES``,
    ``BREASTCLS_MAX_MODEL_BYTES``, ``BREASTCLS_MAX_MODEL_JSON_BYTES``,
    ``BREASTCLS_MAX_MODEL_RATIO``; see :meth:`from_environment`) or by passing limits to
    :func:`load_keras_model`.

    Attributes:
        max_entries: The most entries.
        max_bytes: The most bytes all entries unpack to together.
        max_json_bytes: The most bytes one ``.json`` entry unpacks to.
        max_ratio: The highest compression ratio of an entry over 1 MiB.
    """

    max_entries: int = MAX_MODEL_ENTRIES
    max_bytes: int = MAX_MODEL_BYTES
    max_json_bytes: int = MAX_MODEL_JSON_BYTES
    max_ratio: int = MAX_MODEL_RATIO

    @classmethod
    def from_environment(cls) -> ModelLimits:
        """The default limits, each replaced by its environment variable when set.

        Raises:
            ConfigError: A variable is set to something other than a positive whole number.
        """
        values: dict[str, int] = {}
        for field, variable in _LIMIT_VARIABLES.items():
            raw = os.environ.get(variable)
            if raw is None:
                continue
            if not raw.strip().isdigit() or int(raw) <= 0:
                raise ConfigError(
                    f"{variable}={raw!r} is not a positive whole number: set it to a larger "
                    f"limit than the default {getattr(cls(), field)}, or unset it."
                )
            values[field] = int(raw)
        return cls(**values)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check_model_archive(path: Path, limits: ModelLimits | None = None) -> None:
    """Check a ``.keras`` archive's entries before anything in it is unpacked or parsed.

    Only the archive's directory is read: the names, the number of entries, each entry's
    unpacked size (Python's zip reader never unpacks more than that size), their total and the
    compression ratios.

    Args:
        path: The ``.keras`` file.
        limits: The limits (default: :meth:`ModelLimits.from_environment`).

    Raises:
        ModelLoadError: It is not a zip archive, or an entry breaks a limit or has a name that
            is absolute, climbs out with ``..``, repeats, or holds control characters; the
            message names the file, the entry, the size and how to raise the limit.
    """
    limits = ModelLimits.from_environment() if limits is None else limits
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise ModelLoadError(
            f"{path} is not a .keras model file (not a readable zip archive: {error})."
        ) from error

    def refuse(what: str, field: str) -> ModelLoadError:
        return ModelLoadError(
            f"{path}: {what}; a breastcls model is far smaller, so the file is damaged or "
            f"hostile and is not loaded. If you trust it, raise the limit with "
            f"{_LIMIT_VARIABLES[field]}=N (or load_keras_model(..., limits=ModelLimits(...)))."
        )

    if len(entries) > limits.max_entries:
        raise refuse(
            f"it holds {len(entries)} entries, over the limit of {limits.max_entries}",
            "max_entries",
        )
    seen: set[str] = set()
    total = 0
    for entry in entries:
        name = entry.filename
        parts = PurePosixPath(name).parts
        if (
            name.startswith("/")
            or "\\" in name
            or ".." in parts
            or any(ord(c) < 32 or c == "\x7f" for c in name)
            or name in seen
        ):
            raise ModelLoadError(
                f"{path}: its entry {name!r} is absolute, climbs out of the archive, repeats "
                "another or holds control characters; Keras never writes such a name, so the "
                "file is damaged or hostile and is not loaded."
            )
        seen.add(name)
        size = entry.file_size
        if name.endswith(".json") and size > limits.max_json_bytes:
            raise refuse(
                f"its entry {name!r} unpacks to {_size(size)} ({size} bytes), over the limit of "
                f"{_size(limits.max_json_bytes)} for a JSON entry",
                "max_json_bytes",
            )
        if size > _RATIO_FLOOR and size > limits.max_ratio * max(entry.compress_size, 1):
            raise refuse(
                f"its entry {name!r} unpacks to {_size(size)} from {_size(entry.compress_size)}, "
                f"a compression ratio over the limit of {limits.max_ratio} (a zip bomb?)",
                "max_ratio",
            )
        total += size
        if total > limits.max_bytes:
            raise refuse(
                f"its entries unpack to over {_size(limits.max_bytes)} (the limit) by entry "
                f"{name!r} ({_size(size)})",
                "max_bytes",
            )


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
    stain: StainFit | None = None,
) -> Any:
    """Build the uncompiled Keras model: stain normalisation, augmentation, preprocessing,
    backbone, head.

    The model takes raw 0-255 RGB images of shape ``(image_size, image_size, 3)``; the stain
    normalisation (when the configuration names one) runs first, in training and inference
    alike, augmentation is active only in training, and the backbone's preprocessing runs inside
    the model, so a saved model needs no separate preprocessing step.

    Args:
        config: Which backbone, head, augmentation and stain normaliser, and which weights.
        n_classes: Number of output classes.
        image_size: Input side in pixels.
        seed: Seed of the augmentation's random transforms.
        host: Plugin host to resolve ids with (the default host when ``None``).
        stain: The stain normaliser fitted to its reference
            (:func:`breastcls.stain.fit.fit_run_stain`); needed unless
            ``config.stain_normalisation`` is ``none``.

    Raises:
        UnknownComponentError: An id is not registered.
        ConfigError: The weights file does not exist, the backbone has no ImageNet weights, or
            they cannot be downloaded; or the stain normaliser is not fitted.
    """
    host = ensure_host(host)
    backbone = host.backbones.get(config.backbone)
    head = host.heads.get(config.head)
    augmentation = host.augmentations.get(config.augmentation)
    normaliser = host.stain_normalisers.get(config.stain_normalisation)
    if config.stain_normalisation != "none" and (
        stain is None or stain.normaliser != config.stain_normalisation
    ):
        raise ConfigError(
            f"stain_normalisation={config.stain_normalisation!r} needs its fitted parameters: "
            "pass stain=breastcls.stain.fit.fit_run_stain(config, training_samples)."
        )
    check_weights(config.weights, backbone_name=config.backbone, backbone=backbone)
    if n_classes < 2:
        raise ConfigError(f"n_classes={n_classes}: a classifier needs at least two classes.")

    import keras

    from breastcls.layers import ImagePreprocessing

    shape = (image_size, image_size, 3)
    features_model = _built_backbone(backbone, config, shape)
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    normalisation = normaliser.layer(stain.parameters) if stain is not None else None
    if normalisation is not None:
        x = normalisation(x)
    x = augmentation(seed=seed)(x)
    mode = backbone.preprocessing if config.preprocessing == "backbone" else "none"
    x = ImagePreprocessing(mode=mode, name="preprocessing")(x)
    features = features_model(x)
    outputs = head(features, n_classes=n_classes)
    return keras.Model(inputs, outputs, name=f"breastcls_{config.backbone}_{config.head}")


def _built_backbone(backbone: Backbone, config: ModelConfig, shape: tuple[int, int, int]) -> Any:
    """The backbone's feature model with the configuration's weights.

    Raises:
        ConfigError: The ImageNet weights cannot be had, or the weights file does not fit.
    """
    weights = (
        str(Path(config.weights).expanduser())
        if config.weights not in (None, "imagenet")
        else config.weights
    )
    try:
        return backbone.build(input_shape=shape, weights=weights)
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


# The model files of export folders that breastcls loads (keras and onnx exports).
_EXPORTED_MODELS = ("model.keras", "model.onnx")


def model_file(path: Path) -> Path:
    """Return the model file ``path`` names: itself, a run folder's ``best.keras``, or an
    export folder's ``model.keras`` or ``model.onnx``.

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
    exported = [path / name for name in _EXPORTED_MODELS if (path / name).is_file()]
    if exported:
        return exported[0]
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


def load_keras_model(path: Path, *, limits: ModelLimits | None = None) -> Any:
    """Load a ``.keras`` model in Keras safe mode (no code from the file is executed).

    The archive is checked first (:func:`check_model_archive`): a file whose entries would
    unpack to more than ``limits`` allow is refused before anything is unpacked. This loads the
    Keras model alone; :func:`breastcls.load_model` loads it with its record, ready to predict.

    Args:
        path: A ``.keras`` file or a run folder (its ``best.keras`` is loaded).
        limits: Size limits of the archive (default: :meth:`ModelLimits.from_environment`).

    Raises:
        ModelLoadError: The file is missing, not a Keras model or over a size limit, or it
            needs a layer from a plugin that is not installed.
    """
    path = model_file(path)
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a .keras model file (not a zip archive).")
    check_model_archive(path, limits)
    return _safe_load(path, compile=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchivedModel:
    """What a ``.keras`` archive says of its model, read without building it.

    Attributes:
        name: The model's name (``breastcls_<backbone>_<head>`` for a model breastcls built).
        input_shape: Its input's shape (``None`` for the batch), when it has one input layer.
    """

    name: str
    input_shape: tuple[int | None, ...] | None


def archived_model(path: Path) -> ArchivedModel:
    """Read a ``.keras`` archive's model name and input shape from its ``config.json`` (the
    archive checked first, nothing built or loaded).

    Raises:
        ModelLoadError: The file is not a readable, safe ``.keras`` archive, or its
            configuration is not a model's.
    """
    check_model_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"]
        shape = layers[0]["config"].get("batch_shape") if layers else None
        return ArchivedModel(
            name=str(config["config"]["name"]),
            input_shape=tuple(shape) if isinstance(shape, list) else None,
        )
    except (OSError, KeyError, TypeError, IndexError, ValueError, zipfile.BadZipFile) as error:
        raise ModelLoadError(
            f"{path} holds no model configuration breastcls can read ({type(error).__name__}: "
            f"{error}): it is damaged."
        ) from error


def load_checkpoint(path: Path) -> Any:
    """Load a training checkpoint in safe mode, compiled, with its optimizer state.

    Used to resume a run: the optimizer (Adam's moments, its step counter and the current
    learning rate) continues where it stopped.

    Raises:
        ModelLoadError: As :func:`load_keras_model`.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a .keras model file (not a zip archive).")
    check_model_archive(path)
    return _safe_load(path, compile=True)


_OPTIMIZER_MISMATCH = "Skipping variable loading for optimizer"


def _safe_load(path: Path, *, compile: bool) -> Any:
    import keras

    # Imported for their effect: they register breastcls' layers for deserialisation.
    import breastcls.layers
    import breastcls.stain.layer  # noqa: F401

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
