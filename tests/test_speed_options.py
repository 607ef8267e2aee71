"""Speed options: mixed precision on CPU (bfloat16), XLA and the decoded-image cache.

Deterministic mode is tested end to end in ``test_determinism.py``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _runs import read_history, run_watched
from breastcls import (
    DataConfig,
    ModelConfig,
    ModelLoadError,
    RunConfig,
    TrainConfig,
    calibrate,
    evaluate,
    hookimpl,
    load_dataset,
    load_model,
    resume,
    train,
)
from breastcls.data.images import scan_samples
from breastcls.data.pipeline import make_dataset
from breastcls.model import build_model, load_checkpoint
from breastcls.plugins import PluginHost
from breastcls.testing import isolated_host


def _datasets(
    root: Path, *, image_size: int = 32, **options: Any
) -> tuple[Any, Any, tuple[str, ...]]:
    dataset = load_dataset(DataConfig(path=root))
    info, _ = scan_samples(dataset.samples)
    batches = make_dataset(
        dataset.samples,
        dataset.class_names,
        image_size=image_size,
        batch_size=8,
        image_info=info,
        **options,
    )
    return batches, dataset.samples, dataset.class_names


def test_mixed_precision_trains_end_to_end_on_cpu_in_bfloat16(
    small_breakhis: Path, tmp_path: Path
) -> None:
    import keras

    config = RunConfig(
        data=DataConfig(path=small_breakhis, image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
        train=TrainConfig(epochs=2, batch_size=8, precision="mixed", verbose=0),
        out_dir=tmp_path,
    )
    result = train(config)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    assert all(math.isfinite(v) for v in result.history["loss"] + result.history["val_loss"])
    model = load_model(result.best_model).keras_model
    policies = {layer.dtype_policy.name for layer in model.layers}
    assert "mixed_bfloat16" in policies
    # The head's softmax stays float32: the probabilities are float32 and sum to 1.
    assert model.get_layer("head_probabilities").dtype_policy.name == "float32"
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


class InterruptAfterFirstEpoch:
    """A plugin that presses Ctrl-C when the first epoch ends (its checkpoint is written)."""

    @hookimpl
    def breastcls_epoch_end(self, run_dir: Path, epoch: int, logs: Mapping[str, float]) -> None:
        if epoch == 0:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_the_gpu_float16_policy_trains_resumes_and_evaluates_on_cpu(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU, ``--precision mixed`` is float16 with loss scaling; the CPU runs it too, slowly.

    The run starts as on a GPU and resumes on this CPU, where ``mixed`` alone would mean
    bfloat16: the resumed run keeps the float16 it was trained with.
    """
    import keras

    config = RunConfig(
        data=DataConfig(path=small_breakhis, image_size=32, selection_fraction=0.34),
        model=ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
        train=TrainConfig(epochs=3, batch_size=8, precision="mixed", verbose=0),
        out_dir=tmp_path,
        name="run",
    )
    with monkeypatch.context() as on_a_gpu, pytest.raises(KeyboardInterrupt):
        # As on a GPU: `mixed` means float16.
        on_a_gpu.setattr(
            sys.modules["breastcls.training.fit"],
            "precision_policy",
            lambda precision: "mixed_float16",
        )
        train(config, host=isolated_host(("interrupt", InterruptAfterFirstEpoch())))
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "config.json").read_text())["dtype_policy"] == "mixed_float16"
    # Loaded under another precision, the loss-scaled optimizer state would be dropped: refused.
    with pytest.raises(ModelLoadError, match=r"current precision \(float32\).*dtype_policy"):
        load_checkpoint(run_dir / "checkpoints" / "epoch-0001.keras")
    result = resume(run_dir)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    assert [int(row["epoch"]) for row in read_history(result.run_dir)] == [1, 2, 3]
    assert all(math.isfinite(v) for v in result.history["loss"] + result.history["val_loss"])

    model = load_model(result.best_model).keras_model
    backbone_policies = {layer.dtype_policy.name for layer in model.get_layer("smallcnn").layers}
    assert "mixed_float16" in backbone_policies
    assert model.get_layer("head_probabilities").dtype_policy.name == "float32"
    # The resumed run continued the loss-scaled optimizer (Adam's step counter and the loss
    # scale) instead of starting a fresh one: its step counter covers all three epochs.
    with (result.run_dir / "split.csv").open() as handle:
        roles = [row["role"] for row in csv.DictReader(handle)]
    n_train, n_test = roles.count("train"), roles.count("test")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        last = load_checkpoint(max((result.run_dir / "checkpoints").glob("epoch-*.keras")))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(last.optimizer).__name__ == "LossScaleOptimizer"
    assert int(last.optimizer.iterations) == 3 * math.ceil(n_train / 8)

    # Evaluation (TTA and Grad-CAM included) of the float16 model, on the run's test set.
    calibrate(result.run_dir, tta="d8")
    evaluation = evaluate(result.run_dir, tta="d8", out_dir=tmp_path / "evaluation", verbose=0)
    assert evaluation.role == "test"
    assert evaluation.n_images == evaluation.metrics["classification"]["n_images"] == n_test == 6
    assert (evaluation.out_dir / "gradcam_correct.png").is_file()
    probabilities = np.loadtxt(
        evaluation.out_dir / "predictions.csv", delimiter=",", skiprows=1, usecols=(6, 7)
    )
    assert probabilities.shape == (n_test, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=2e-6)


def _fit(root: Path, tmp_path: Path, augmentation: str, *, jit: bool) -> tuple[Any, Any]:
    import keras
    import tensorflow as tf

    batches, _, class_names = _datasets(root, shuffle=True, seed=1)
    model = build_model(
        ModelConfig(backbone="smallcnn", augmentation=augmentation, weights=None),
        n_classes=len(class_names),
        image_size=32,
        seed=1,
    )
    seen: list[object] = []

    class JitState(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: object = None) -> None:
            seen.append(tf.config.optimizer.get_jit())

    history = (
        PluginHost()
        .trainers.get("keras")
        .fit(
            model,
            batches,
            batches,
            config=TrainConfig(epochs=1, batch_size=8, jit=jit, verbose=0),
            run_dir=tmp_path,
            callbacks=[JitState()],
            class_weight=None,
            initial_epoch=0,
            state={},
        )
    )
    assert math.isfinite(history["loss"][0]) and math.isfinite(history["val_loss"][0])
    return model, seen


@pytest.mark.slow
def test_jit_compiles_the_whole_step_with_xla(small_breakhis: Path, tmp_path: Path) -> None:
    model, seen = _fit(small_breakhis, tmp_path, "none", jit=True)
    assert model.jit_compile is True
    assert seen == [""]  # no auto-clustering needed


def test_jit_with_image_augmentation_uses_xla_autoclustering(
    small_breakhis: Path, tmp_path: Path
) -> None:
    import tensorflow as tf

    # The seed augmentation's affine transform has no XLA kernel: a whole-step XLA compile
    # would fail; the trainer compiles the rest of the step with auto-clustering instead.
    model, seen = _fit(small_breakhis, tmp_path, "seed", jit=True)
    assert model.jit_compile is False
    assert seen == ["autoclustering"]
    assert tf.config.optimizer.get_jit() == ""  # restored after the fit


_GPU_FAST_PATH_RUN = """
import json, sys
from pathlib import Path
import breastcls, breastcls.training.fit
breastcls.training.fit.precision_policy = lambda precision: "mixed_float16"
config = breastcls.RunConfig(
    data=breastcls.DataConfig(path=Path(sys.argv[1]), image_size=32, selection_fraction=0.34),
    model=breastcls.ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
    train=breastcls.TrainConfig(epochs=1, batch_size=8, precision="mixed", jit=True, verbose=0),
    out_dir=Path(sys.argv[2]),
)
print("HISTORY", json.dumps(breastcls.train(config).history))
"""


@pytest.mark.slow
def test_the_gpu_fast_path_compiles_float16_xla_clusters_around_the_augmentation(
    small_breakhis: Path, tmp_path: Path
) -> None:
    # `--precision mixed --jit` with the seed augmentation, as on a GPU (float16), with XLA
    # auto-clustering really compiling: on a CPU only TF_XLA_FLAGS turns it on, and TensorFlow
    # reads that when it starts, hence the separate process.
    env = {**os.environ, "TF_XLA_FLAGS": "--tf_xla_cpu_global_jit", "TF_CPP_MIN_LOG_LEVEL": "0"}
    done = run_watched(
        [sys.executable, "-c", _GPU_FAST_PATH_RUN, str(small_breakhis), str(tmp_path)], env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Compiled cluster using XLA" in done.stderr
    history = json.loads(done.stdout.split("HISTORY ", 1)[1])
    assert all(math.isfinite(v) for v in history["loss"] + history["val_loss"])


def _epochs(dataset: Any, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for _ in range(n) for images, labels in dataset]


@pytest.mark.parametrize("shuffle", [False, True])
def test_cache_memory_and_folder_give_the_same_batches(
    small_breakhis: Path, tmp_path: Path, shuffle: bool
) -> None:
    plain = _epochs(_datasets(small_breakhis, shuffle=shuffle, seed=5)[0])
    memory = _epochs(_datasets(small_breakhis, shuffle=shuffle, seed=5, cache="memory")[0])
    folder = _epochs(_datasets(small_breakhis, shuffle=shuffle, seed=5, cache=str(tmp_path))[0])
    assert len(plain) == len(memory) == len(folder) == 2 * math.ceil(20 / 8)
    for ours in (memory, folder):
        for (images, labels), (expected_images, expected_labels) in zip(ours, plain, strict=True):
            np.testing.assert_array_equal(images, expected_images)
            np.testing.assert_array_equal(labels, expected_labels)
    if shuffle:  # the two epochs come in different orders
        assert not np.array_equal(plain[0][0], plain[len(plain) // 2][0])
    assert any(path.name.startswith("images-32-") for path in tmp_path.iterdir())


def test_the_augmented_training_step_is_traced_once_per_run(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras import ops

    # Python runs the augmentation's code only while TensorFlow traces the step.
    traced = []
    affine_transform = ops.image.affine_transform

    def counting(*args: Any, **kwargs: Any) -> Any:
        traced.append(1)
        return affine_transform(*args, **kwargs)

    monkeypatch.setattr(ops.image, "affine_transform", counting)
    batches, _, class_names = _datasets(small_breakhis, shuffle=True, seed=1)  # 8, 8, then 4
    model = build_model(
        ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
        n_classes=len(class_names),
        image_size=32,
        seed=1,
    )
    history = (
        PluginHost()
        .trainers.get("keras")
        .fit(
            model,
            batches,
            batches,
            config=TrainConfig(epochs=3, batch_size=8, verbose=0),
            run_dir=tmp_path,
            callbacks=[],
            class_weight=None,
            initial_epoch=0,
            state={},
        )
    )
    assert len(history["loss"]) == 3
    # Keras' symbolic build and one trace of the training step; the partial last batch of each
    # epoch and the later epochs reuse it (a retrace would call the augmentation again).
    assert len(traced) == 2
