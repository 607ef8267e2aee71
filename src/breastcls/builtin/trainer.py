"""The built-in Keras trainer: the seed's optimiser, loss and learning-rate schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from breastcls.config import TrainConfig
from breastcls.interfaces import Trainer
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


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
    """

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

        from breastcls.callbacks import StatefulReduceLROnPlateau

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
            patience=config.lr_patience,
            factor=config.lr_factor,
            min_lr=config.min_lr,
            verbose=1 if config.verbose else 0,
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
