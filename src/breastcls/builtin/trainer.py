"""The built-in Keras trainer: the seed's optimiser, loss and learning-rate schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.config import TrainConfig
from breastcls.errors import ConfigError
from breastcls.interfaces import Trainer
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class KerasTrainer:
    """Adam, (binary) cross-entropy, accuracy, ReduceLROnPlateau: the seed recipe.

    Binary cross-entropy on the two one-hot outputs for two classes (as the seed), categorical
    cross-entropy for more. A model that arrives compiled (a resumed run) keeps its optimizer
    state, and the ReduceLROnPlateau counters (wait, cooldown, best) are kept in ``state`` so a
    resumed run reduces the learning rate exactly when the uninterrupted run would have.

    With ``config.jit`` the whole training step is compiled with XLA when every layer supports
    it; otherwise (the image augmentations' affine transform has no XLA kernel) TensorFlow's XLA
    auto-clustering compiles every supported part of the step during the fit, which on a GPU is
    the backbone and head. CPU auto-clustering is off unless
    ``TF_XLA_FLAGS=--tf_xla_cpu_global_jit`` is set.

    Attributes:
        lr_patience: ReduceLROnPlateau patience, in epochs without a better ``monitor``.
        lr_factor: Factor the learning rate is multiplied by on a plateau.
        min_lr: Lowest learning rate ReduceLROnPlateau goes to.
    """

    lr_patience: int = 5
    lr_factor: float = 0.2
    min_lr: float = 1e-7

    def __post_init__(self) -> None:
        if isinstance(self.lr_patience, bool) or self.lr_patience < 0:
            raise ConfigError(f"lr_patience={self.lr_patience} must be 0 or more epochs.")
        if not 0.0 < self.lr_factor < 1.0:
            raise ConfigError(
                f"lr_factor={self.lr_factor} must lie strictly between 0 and 1 (the seed uses 0.2)."
            )
        if self.min_lr < 0:
            raise ConfigError(f"min_lr={self.min_lr} must be 0 or more (the seed uses 1e-7).")

    def fit(
        self,
        model: Any,
        train: Any,
        selection: Any,
        *,
        config: TrainConfig,
        run_dir: Path,
        callbacks: Sequence[Any],
        class_weight: Mapping[int, float] | None,
        initial_epoch: int,
        state: dict[str, Any],
    ) -> dict[str, list[float]]:
        """Compile (unless already compiled) and fit; return the history of these epochs."""
        import keras

        from breastcls.training.callbacks import StatefulReduceLROnPlateau

        if not getattr(model, "compiled", False):
            n_classes = int(model.output_shape[-1])
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                loss="binary_crossentropy" if n_classes == 2 else "categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=config.jit and _supports_xla(model),
            )
        schedule = StatefulReduceLROnPlateau(
            state=state,
            monitor=config.monitor,
            patience=self.lr_patience,
            factor=self.lr_factor,
            min_lr=self.min_lr,
        )
        with _xla_autoclustering(config.jit and not getattr(model, "jit_compile", False)):
            history = model.fit(
                train,
                # Keras calls it validation data: the selection set, which picks the checkpoint.
                validation_data=selection,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                callbacks=[schedule, *callbacks],
                class_weight=dict(class_weight) if class_weight else None,
                verbose=config.verbose,
                shuffle=False,  # the tf.data pipeline shuffles (seeded), Keras cannot
            )
        return {key: [float(v) for v in values] for key, values in history.history.items()}


def _layers(layer: Any) -> Iterator[Any]:
    yield layer
    for child in getattr(layer, "layers", ()):  # nested models (Sequential, Functional)
        yield from _layers(child)


def _supports_xla(model: Any) -> bool:
    """Whether every layer of ``model`` can be compiled with XLA (Keras' ``supports_jit``)."""
    return all(getattr(layer, "supports_jit", True) for layer in _layers(model))


@contextlib.contextmanager
def _xla_autoclustering(enabled: bool) -> Iterator[None]:
    """Turn TensorFlow's XLA auto-clustering on for the duration of the block."""
    if not enabled:
        yield
        return
    import tensorflow as tf

    previous = tf.config.optimizer.get_jit()
    tf.config.optimizer.set_jit("autoclustering")
    try:
        yield
    finally:
        tf.config.optimizer.set_jit(previous or False)


@hookimpl
def breastcls_register_trainers(registry: PluginRegistry[Trainer]) -> None:
    """Register the ``keras`` trainer."""
    registry.add(
        "keras",
        KerasTrainer(),
        summary="Adam 1e-4, cross-entropy, ReduceLROnPlateau on val_accuracy (the seed's)",
    )
