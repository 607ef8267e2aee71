"""Probe heads on cached embeddings: how a frozen extractor's run trains.

With a frozen extractor as backbone (:class:`~breastcls.embeddings.extractor.FrozenExtractor`),
``breastcls train`` embeds the training and selection images through the cache and fits a probe
instead of fine-tuning a network: ``linear`` (L2-regularised logistic regression on standardised
embeddings, its strength chosen on the **selection set** by log loss) or ``mlp`` (one hidden
layer, stopped at the epoch with the lowest selection-set loss). The probe is saved as the run's
``best.keras`` (a Keras model from embeddings to probabilities), with a model record naming the
extractor; everything after it is the ordinary end of training: the calibration on the
selection set, the test set scored once, the reports, ``--folds`` and ``--protocol``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import ModelConfig, RunConfig
from breastcls.data.images import ImageInfo
from breastcls.data.split import Split
from breastcls.embeddings.cache import CachedEmbedder
from breastcls.embeddings.extractor import ExtractorRecord, FrozenExtractor
from breastcls.errors import ConfigError
from breastcls.interfaces import Sample
from breastcls.io import atomic_path, atomic_write_json
from breastcls.plugins.host import PluginHost
from breastcls.runs.folder import RunFolder

__all__ = [
    "LINEAR_STRENGTHS",
    "PROBES",
    "ProbeFit",
    "check_probe_config",
    "embed_samples",
    "fit_linear_probe",
    "fit_mlp_probe",
    "fit_probe_run",
    "frozen_extractor",
]

PROBES = ("linear", "mlp")
"""The probe heads a frozen extractor's run fits (``--head``)."""
LINEAR_STRENGTHS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""The inverse L2 strengths ``C`` the linear probe tries; the selection set picks one."""
_MLP_HIDDEN = 256
_MLP_PATIENCE = 10

FloatArray = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeFit:
    """A fitted probe.

    Attributes:
        model: The Keras model from ``(n, d)`` embeddings to ``(n, n_classes)`` probabilities.
        choice: What was chosen on the selection set and why (JSON-ready).
        history: ``loss``, ``accuracy`` and their selection-set ``val_`` columns per epoch
            (the linear probe has one row: the chosen strength).
    """

    model: Any
    choice: dict[str, Any]
    history: dict[str, list[float]]


def frozen_extractor(model: ModelConfig, host: PluginHost) -> FrozenExtractor | None:
    """The configuration's backbone with its options when it is a frozen extractor, else
    ``None``.

    Raises:
        UnknownComponentError: The backbone is not registered.
        ConfigError: Options it does not take.
    """
    backbone = host.backbones.get(model.backbone, model.backbone_options)
    return backbone if isinstance(backbone, FrozenExtractor) else None


def check_probe_config(config: RunConfig, extractor: FrozenExtractor) -> None:
    """Refuse what a frozen extractor's run cannot do, before any folder or image.

    Raises:
        ConfigError: A head other than a probe, another image size than the extractor's, or
            a stain normaliser (the extractor sees the images as its model card says).
    """
    backbone = config.model.backbone
    if config.model.head not in PROBES:
        raise ConfigError(
            f"Backbone {backbone!r} is a frozen extractor: its head is a probe on the "
            f"embeddings, --head {' or '.join(PROBES)} (not {config.model.head!r})."
        )
    if config.data.image_size != extractor.input_size:
        raise ConfigError(
            f"Backbone {backbone!r} takes {extractor.input_size} px images (input_size) but "
            f"--image-size is {config.data.image_size}: pass --image-size "
            f"{extractor.input_size}."
        )
    if config.model.stain_normalisation != "none":
        raise ConfigError(
            f"Backbone {backbone!r} is a frozen extractor: a stain normaliser inside the "
            "model is not applied to it; pass --stain-normalisation none."
        )


def embed_samples(
    embedder: CachedEmbedder,
    samples: Sequence[Sample],
    *,
    image_size: int,
    batch_size: int,
    image_info: Mapping[Path, ImageInfo],
) -> FloatArray:
    """The ``(n, d)`` embeddings of image files, decoded and resized as training does."""
    from breastcls.data.pipeline import make_dataset

    unlabelled = [dataclasses.replace(s, label="_") for s in samples]
    batches = make_dataset(
        unlabelled, ("_",), image_size=image_size, batch_size=batch_size, image_info=image_info
    )
    parts = [embedder.embeddings(images.numpy()) for images, _ in batches]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _log_loss(probabilities: npt.NDArray[Any], labels: Labels) -> float:
    rows = np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.mean(np.log(rows)))


def _accuracy(probabilities: npt.NDArray[Any], labels: Labels) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def _dense_probe(kernel: FloatArray, bias: FloatArray, name: str) -> Any:
    """A Keras model applying ``softmax(x @ kernel + bias)``."""
    import keras

    inputs = keras.Input(shape=(kernel.shape[0],), name="embedding")
    layer = keras.layers.Dense(kernel.shape[1], activation="softmax", name="probe_probabilities")
    model = keras.Model(inputs, layer(inputs), name=name)
    layer.set_weights([kernel, bias])
    return model


def fit_linear_probe(
    train: tuple[FloatArray, Labels],
    selection: tuple[FloatArray, Labels],
    *,
    n_classes: int,
    balanced: bool = False,
) -> ProbeFit:
    """L2 logistic regression on standardised embeddings, its strength ``C`` chosen from
    :data:`LINEAR_STRENGTHS` by the selection set's log loss (the stronger on a tie); the
    standardisation is folded into the Keras model's one Dense layer."""
    from sklearn.linear_model import LogisticRegression

    (x, y), (sx, sy) = train, selection
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    standard, selection_standard = (x - mean) / scale, (sx - mean) / scale
    losses: dict[str, float] = {}
    best: tuple[float, Any] | None = None
    for strength in LINEAR_STRENGTHS:
        fitted = LogisticRegression(
            C=strength, max_iter=2000, class_weight="balanced" if balanced else None
        ).fit(standard, y)
        loss = _log_loss(_full_probabilities(fitted, selection_standard, n_classes), sy)
        losses[f"{strength:g}"] = loss
        if best is None or loss < best[0] - 1e-9:
            best = (loss, fitted)
    assert best is not None
    chosen = best[1]
    weights = np.zeros((n_classes, x.shape[1]), np.float64)
    intercept = np.zeros(n_classes, np.float64)
    rows = [1] if n_classes == 2 else list(chosen.classes_)
    weights[rows] = chosen.coef_
    intercept[rows] = chosen.intercept_
    kernel = (weights / scale).T.astype(np.float32)
    bias = (intercept - weights @ (mean / scale)).astype(np.float32)
    model = _dense_probe(kernel, bias, "breastcls_probe_linear")
    history = _one_row(model, train, selection)
    return ProbeFit(
        model=model,
        choice={"probe": "linear", "C": float(chosen.C), "selection_log_loss_by_C": losses},
        history=history,
    )


def _full_probabilities(fitted: Any, x: FloatArray, n_classes: int) -> npt.NDArray[Any]:
    """``predict_proba`` with a column for every class (a class absent from training: 0)."""
    found = np.zeros((len(x), n_classes))
    found[:, fitted.classes_] = fitted.predict_proba(x)
    return found


def _one_row(
    model: Any, train: tuple[FloatArray, Labels], selection: tuple[FloatArray, Labels]
) -> dict[str, list[float]]:
    from breastcls.embeddings.runtime import probe_probabilities

    columns: dict[str, list[float]] = {}
    for prefix, (x, y) in (("", train), ("val_", selection)):
        probabilities = probe_probabilities(model, x)
        columns[f"{prefix}loss"] = [_log_loss(probabilities, y)]
        columns[f"{prefix}accuracy"] = [_accuracy(probabilities, y)]
    return columns


def fit_mlp_probe(
    train: tuple[FloatArray, Labels],
    selection: tuple[FloatArray, Labels],
    *,
    n_classes: int,
    epochs: int,
    seed: int,
    class_weight: Mapping[int, float] | None = None,
) -> ProbeFit:
    """One hidden layer of :data:`_MLP_HIDDEN` ReLU units (dropout 0.3) on standardised
    embeddings, Adam at 1e-3, stopped and restored at the lowest selection-set loss."""
    import keras

    keras.utils.set_random_seed(seed)
    (x, y), (sx, sy) = train, selection
    inputs = keras.Input(shape=(x.shape[1],), name="embedding")
    hidden = keras.layers.Normalization(
        mean=x.mean(axis=0), variance=x.var(axis=0) + 1e-6, name="probe_standardise"
    )(inputs)
    hidden = keras.layers.Dense(_MLP_HIDDEN, activation="relu", name="probe_hidden")(hidden)
    hidden = keras.layers.Dropout(0.3, name="probe_dropout")(hidden)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probe_probabilities")(
        hidden
    )
    model = keras.Model(inputs, outputs, name="breastcls_probe_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=_MLP_PATIENCE, restore_best_weights=True
    )
    fitted = model.fit(
        x, y, validation_data=(sx, sy), epochs=epochs, batch_size=64, verbose=0,
        callbacks=[stop], class_weight=dict(class_weight) if class_weight else None,
    )  # fmt: skip
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    return ProbeFit(
        model=model,
        choice={"probe": "mlp", "hidden": _MLP_HIDDEN, "best_epoch": best_epoch},
        history=history,
    )


def fit_probe_run(
    run_dir: Path,
    config: RunConfig,
    split: Split,
    *,
    class_names: Sequence[str],
    image_info: Mapping[Path, ImageInfo],
    extractor: FrozenExtractor,
    class_weight: Mapping[int, float] | None,
) -> dict[str, list[float]]:
    """Embed the training and selection sets through the cache, fit the probe, and save it as
    the run's ``best.keras`` with a model record naming the extractor and ``probe.json``
    saying what the selection set chose; return the history."""
    embedder = CachedEmbedder(extractor)
    index = {name: i for i, name in enumerate(class_names)}

    def embedded(samples: Sequence[Sample]) -> tuple[FloatArray, Labels]:
        found = embed_samples(
            embedder, samples, image_size=config.data.image_size,
            batch_size=config.train.batch_size, image_info=image_info,
        )  # fmt: skip
        return found, np.array([index[s.label] for s in samples], dtype=np.int64)

    train, selection = embedded(split.train), embedded(split.selection)
    if config.model.head == "linear":
        fit = fit_linear_probe(
            train, selection, n_classes=len(class_names), balanced=class_weight is not None
        )
    else:
        fit = fit_mlp_probe(
            train, selection, n_classes=len(class_names), epochs=config.train.epochs,
            seed=config.train.seed, class_weight=class_weight,
        )  # fmt: skip
    run = RunFolder(run_dir)
    with atomic_path(run.best_model) as temporary:
        fit.model.save(temporary)
    atomic_write_json(
        run_dir / "probe.json",
        {**fit.choice, "chosen_on": "selection set", "embeddings": {
            "computed": embedder.computed, "from_cache": embedder.reused,
            "cache": str(embedder.cache.folder),
        }},
    )  # fmt: skip
    _write_probe_record(run_dir, config, class_names, embedder, train[0].shape[1])
    return fit.history


def _write_probe_record(
    run_dir: Path,
    config: RunConfig,
    class_names: Sequence[str],
    embedder: CachedEmbedder,
    dimension: int,
) -> None:
    """The record the end of training loads the probe with (calibrated there, rewritten)."""
    from breastcls.inference.record import training_record, upgrade_record, write_record

    record = upgrade_record(
        run_dir, n_outputs=len(class_names), image_size=config.data.image_size
    )
    # The file by its absolute path: the record is read from other folders (evaluate, export).
    spec = dataclasses.replace(embedder.spec, file=str(embedder.spec.path.resolve()))
    extractor = ExtractorRecord(
        extractor=spec, sha256=embedder.sha256, dimension=dimension,
        probe=config.model.head,
    )  # fmt: skip
    write_record(
        run_dir,
        training_record(
            dataclasses.replace(record, extractor=extractor, preprocessing="extractor")
        ),
    )
