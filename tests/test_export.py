"""Export to every shipped format, the model card, TensorBoard logs and the lifecycle hooks,
all on one tiny smallcnn run trained on real BreakHis images."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

import breastcls
from breastcls import hookimpl
from breastcls.conversion import EXPORT_TOLERANCE, run_exported
from breastcls.data.images import decode_image
from breastcls.plugins import PluginHost
from breastcls.records import ConfigRecord, EpochRecord, MetricsRecord
from breastcls.runs import RunFolder
from breastcls.testing import isolated_host
from conftest import copy_patients

IMAGE_SIZE = 32


class Recorder:
    """A plugin that records the lifecycle hooks it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def breastcls_train_start(self, run_dir: Path, config: ConfigRecord) -> None:
        self.events.append(("train_start", (run_dir, (run_dir / "config.json").is_file(), config)))

    @hookimpl
    def breastcls_epoch_end(self, run_dir: Path, epoch: int, logs: EpochRecord) -> None:
        self.events.append(("epoch_end", (epoch, logs)))

    @hookimpl
    def breastcls_train_end(self, run_dir: Path, metrics: MetricsRecord) -> None:
        self.events.append(("train_end", metrics))


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path
) -> tuple[breastcls.RunResult, Recorder]:
    root = copy_patients(
        breakhis_dev, tmp_path_factory.mktemp("export") / "data", patients=5, images_per_patient=2
    )
    recorder = Recorder()
    config = breastcls.RunConfig(
        # Five benign slides, three accessions: 0.34 puts both classes in the selection set.
        data=breastcls.DataConfig(path=root, image_size=IMAGE_SIZE, selection_fraction=0.34),
        model=breastcls.ModelConfig(backbone="smallcnn", augmentation="default", weights=None),
        train=breastcls.TrainConfig(epochs=2, batch_size=8, verbose=0, tensorboard=True),
        out_dir=root.parent / "runs",
        name="tiny",
    )
    result = breastcls.train(config, host=isolated_host(("recorder", recorder)))
    return result, recorder


def _real_batch(run_dir: Path) -> npt.NDArray[np.float32]:
    import cv2

    paths = [line.split(",")[0] for line in (run_dir / "split.csv").read_text().splitlines()[1:]]
    images = [cv2.resize(decode_image(Path(p)), (IMAGE_SIZE, IMAGE_SIZE)) for p in paths]
    return np.asarray(images[:6], dtype=np.float32)


@pytest.mark.parametrize("format", ["keras", "savedmodel", "onnx", "tflite"])
def test_each_format_predicts_the_same_probabilities(
    trained: tuple[breastcls.RunResult, Recorder], format: str, tmp_path: Path
) -> None:
    if format == "onnx":
        pytest.importorskip("tf2onnx", reason="the onnx extra is not installed")
    run_dir = trained[0].run_dir
    result = breastcls.export_model(run_dir, format=format, out_dir=tmp_path / format)
    assert result.model.exists()
    assert result.max_difference <= EXPORT_TOLERANCE
    images = _real_batch(run_dir)
    expected = breastcls.load_model(run_dir).keras_model.predict(images, verbose=0)
    exported = run_exported(result.model, images)
    assert exported.shape == (6, 2)
    assert float(np.max(np.abs(exported - expected))) <= EXPORT_TOLERANCE
    assert (result.out_dir / "model_card.md").read_text() == (run_dir / "model_card.md").read_text()
    model_record = json.loads((result.out_dir / "model_record.json").read_text())
    assert model_record["class_names"] == ["benign", "malignant"]
    assert model_record["input"]["shape"] == [None, IMAGE_SIZE, IMAGE_SIZE, 3]
    assert json.loads((result.out_dir / "export.json").read_text())["format"] == format


def test_the_exported_keras_model_has_no_augmentation(
    trained: tuple[breastcls.RunResult, Recorder], tmp_path: Path
) -> None:
    import keras

    run_dir = trained[0].run_dir
    original = breastcls.load_model(run_dir).keras_model
    assert "augmentation" in [layer.name for layer in original.layers]
    model = breastcls.load_model(
        breastcls.export_model(run_dir, format="keras", out_dir=tmp_path).model
    ).keras_model

    def names(layer: Any) -> list[str]:
        inner = layer.layers if isinstance(layer, keras.Model) else []
        return [layer.name, *[n for child in inner for n in names(child)]]

    assert "augmentation" not in names(model)
    images = _real_batch(run_dir)
    # Dropout and BatchNorm are in inference mode: two calls agree exactly.
    np.testing.assert_array_equal(model(images, training=False), model(images, training=False))


def test_the_run_folder_has_a_model_card(trained: tuple[breastcls.RunResult, Recorder]) -> None:
    result = trained[0]
    card = (result.run_dir / "model_card.md").read_text(encoding="utf-8")
    assert "Not a medical device" in card
    assert "0. `benign`" in card and "1. `malignant`" in card
    assert f"RGB images of {IMAGE_SIZE}×{IMAGE_SIZE} pixels" in card
    assert "tf: pixels scaled to [-1, 1]" in card  # smallcnn declares "tf"
    accuracy = result.metrics["classification"]["accuracy"]
    assert f"- Accuracy: {accuracy:.4f}" in card
    if "bootstrap" in result.metrics:
        interval = result.metrics["bootstrap"]["intervals"]["accuracy"]
        low = interval["low"]
        # A tiny test set can give an interval of zero width, which the card marks.
        name = "accuracy (zero width)" if low == interval["high"] else "accuracy"
        assert f"| {name} | {accuracy:.4f} | {low:.4f} |" in card


def test_tensorboard_logs_are_written_in_the_run(
    trained: tuple[breastcls.RunResult, Recorder],
) -> None:
    logs = trained[0].run_dir / "tensorboard"
    for part in ("train", "validation"):
        events = list((logs / part).glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0


def test_lifecycle_hooks_arrive_in_order(trained: tuple[breastcls.RunResult, Recorder]) -> None:
    result, recorder = trained
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["train_start", "epoch_end", "epoch_end", "train_end"]
    run_dir, config_written, config = recorder.events[0][1]
    assert (run_dir, config_written) == (result.run_dir, True)
    # Typed records, as the run folder holds them.
    assert config == RunFolder(result.run_dir).read_config_record()
    assert config.run_config.model.backbone == "smallcnn"
    assert config.run_config.data.image_size == IMAGE_SIZE
    epochs = [payload for kind, payload in recorder.events if kind == "epoch_end"]
    assert [epoch for epoch, _ in epochs] == [0, 1]
    assert [logs.epoch for _, logs in epochs] == [0, 1]
    assert [logs.val_accuracy for _, logs in epochs] == result.history["val_accuracy"]
    assert [logs["loss"] for _, logs in epochs] == result.history["loss"]
    metrics = recorder.events[-1][1]
    assert metrics == result.metrics == RunFolder(result.run_dir).read_metrics()
    assert metrics.evaluated_on is not None and metrics.evaluated_on.role is result.role
    assert metrics.section("classification") == result.metrics["classification"]


def test_cli_export_and_its_errors(
    trained: tuple[breastcls.RunResult, Recorder], tmp_path: Path
) -> None:
    from breastcls.cli.app import app

    runner = CliRunner()
    run_dir = trained[0].run_dir
    ok = runner.invoke(app, ["export", str(run_dir), "--format", "tflite", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "model.tflite").stat().st_size > 0
    bad = runner.invoke(app, ["export", str(run_dir), "--format", "pickle", "--out", str(tmp_path)])
    assert bad.exit_code == 2
    assert "Invalid value for '--format'" in bad.output
    missing = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    assert not (tmp_path / "nope").exists()


def _another_run(
    source: Path,
    out_dir: Path,
    *,
    augmentation: str = "default",
    precision: Literal["float32", "mixed"] = "float32",
    host: PluginHost,
) -> Path:
    """Train one epoch on the data (and split) of the run ``source`` into ``out_dir/run``."""
    data = json.loads((source / "config.json").read_text())["data"]
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(
            path=Path(data["path"]),
            image_size=IMAGE_SIZE,
            selection_fraction=data["selection_fraction"],
        ),
        model=breastcls.ModelConfig(backbone="smallcnn", augmentation=augmentation, weights=None),
        train=breastcls.TrainConfig(epochs=1, batch_size=8, verbose=0, precision=precision),
        out_dir=out_dir,
        name="run",
    )
    return breastcls.train(config, host=host).run_dir


class FlipsOnly:
    """A third-party augmentation whose layer is not called ``augmentation``."""

    @hookimpl
    def breastcls_register_augmentations(self, registry: Any) -> None:
        import keras

        def flips(*, seed: int | None) -> Any:
            return keras.layers.RandomFlip(seed=seed, name="plugin_flips")

        registry.add("flips_only", flips, summary="random flips")


def test_a_third_party_augmentation_is_removed_whatever_its_name(
    trained: tuple[breastcls.RunResult, Recorder], tmp_path: Path
) -> None:
    run_dir = _another_run(
        trained[0].run_dir,
        tmp_path,
        augmentation="flips_only",
        host=isolated_host(("flips_only", FlipsOnly())),
    )
    original = breastcls.load_model(run_dir).keras_model
    assert "plugin_flips" in [layer.name for layer in original.layers]
    result = breastcls.export_model(run_dir, format="keras", out_dir=tmp_path / "keras")
    exported = breastcls.load_model(result.model).keras_model
    assert "plugin_flips" not in [layer.name for layer in exported.layers]
    assert "plugin_flips" not in [layer.name for layer in exported.layers[-1].layers]
    images = _real_batch(run_dir)
    np.testing.assert_allclose(
        exported(images, training=False), original(images, training=False), atol=1e-6
    )


def test_a_mixed_precision_run_exports_as_float32(
    trained: tuple[breastcls.RunResult, Recorder], tmp_path: Path
) -> None:
    run_dir = _another_run(trained[0].run_dir, tmp_path, precision="mixed", host=isolated_host())
    formats = ["tflite", "onnx"] if importlib.util.find_spec("tf2onnx") else ["tflite"]
    for format in formats:
        result = breastcls.export_model(run_dir, format=format, out_dir=tmp_path / format)
        record = json.loads((result.out_dir / "export.json").read_text())
        assert record["computes_in"] == "float32"
        assert result.max_difference <= EXPORT_TOLERANCE
        # bfloat16 keeps ~3 significant digits: the float32 export is close, not identical.
        assert 0 < record["max_difference_to_run_model"] < 0.05


def test_a_failed_conversion_is_one_error_and_leaves_nothing(
    trained: tuple[breastcls.RunResult, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import breastcls.conversion

    def broken(model: Any, path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("op Foo is neither a custom op nor a flex op\nmore details")

    monkeypatch.setattr(breastcls.conversion, "_write_tflite", broken)
    with pytest.raises(breastcls.OutputError, match="op Foo is neither a custom op nor a flex op"):
        breastcls.export_model(trained[0].run_dir, format="tflite", out_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_tensorboard_without_the_package_is_a_config_error(
    small_breakhis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tensorboard" else real(name, *args),
    )
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=small_breakhis, image_size=IMAGE_SIZE),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        train=breastcls.TrainConfig(epochs=1, tensorboard=True),
        out_dir=tmp_path / "runs",
    )
    with pytest.raises(breastcls.ConfigError, match=r"pip install 'breastcls\[tensorboard\]'"):
        breastcls.train(config)
    assert not (tmp_path / "runs").exists()


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_full_disk_keeps_the_previous_export_whole(
    trained: tuple[breastcls.RunResult, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    import breastcls.model_card
    from breastcls.cli.app import app

    run_dir, out = trained[0].run_dir, tmp_path / "keras"
    breastcls.export_model(run_dir, format="keras", out_dir=out)
    before = _tree(out)
    assert set(before) == {"model.keras", "model_record.json", "model_card.md", "export.json"}

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # The disk fills up after the model is written, while its sidecars are.
    monkeypatch.setattr(breastcls.model_card, "write_model_card", full)
    result = CliRunner().invoke(
        app, ["export", str(run_dir), "--format", "keras", "--out", str(out)]
    )
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: The keras export could not be written into")
    assert "the disk is full" in line and "previous export there, if any, is kept" in line
    assert _tree(out) == before  # no half export, no staging folder left


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 KB tmpfs (needs root; skipped otherwise): smaller than the run's ONNX model."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _export_onnx_line(run_dir: Path, out: Path) -> str:
    from breastcls.cli.app import app

    args = ["export", str(run_dir), "--format", "onnx", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    return line


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="no onnx extra")
def test_a_full_disk_during_the_onnx_conversion_says_so(
    trained: tuple[breastcls.RunResult, Recorder], tiny_disk: Path
) -> None:
    """A real full disk while tf2onnx writes the model. Before: "Could not convert ...: Its
    layers may have no equivalent in this format: try --format savedmodel or keras"."""
    line = _export_onnx_line(trained[0].run_dir, tiny_disk / "onnx")
    assert line.startswith("error: The onnx export could not be written into ")
    assert "(the disk is full)" in line and "no equivalent" not in line
    assert [p.name for p in tiny_disk.rglob("*")] == ["onnx"]  # an empty folder, no staging


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="no onnx extra")
def test_a_conversion_that_fails_on_a_layer_says_so(
    trained: tuple[breastcls.RunResult, Recorder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: not a word about free space (before: the conversion's reason
    wrapped in "could not be written ... Free space or choose another --out")."""
    import tf2onnx.convert

    def unsupported(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Unsupported ops: Counter({'ImageProjectiveTransformV3': 1})")

    monkeypatch.setattr(tf2onnx.convert, "from_function", unsupported)
    line = _export_onnx_line(trained[0].run_dir, tmp_path / "onnx")
    assert line.startswith("error: Could not convert ")
    assert "(ValueError: Unsupported ops: " in line and "no equivalent in this format" in line
    assert "space" not in line


def test_a_folder_replaces_a_folder_in_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breastcls import io

    for exchange in (True, False):  # renameat2's swap, and the fallback elsewhere
        if not exchange:
            monkeypatch.setattr(io, "_exchange", lambda a, b: False)
        old, new = tmp_path / f"saved_model-{exchange}", tmp_path / f"staged-{exchange}"
        (old / "variables").mkdir(parents=True)
        (old / "saved_model.pb").write_bytes(b"old")
        (old / "variables" / "v").write_bytes(b"old")
        new.mkdir()
        (new / "saved_model.pb").write_bytes(b"new")
        io.replace_path(new, old)
        assert _tree(old) == {"saved_model.pb": b"new"} and not new.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# A SavedModel export takes ~20 s on 2 cores; the parametrized export test writes one on every run.
@pytest.mark.slow
def test_a_savedmodel_export_again_replaces_the_previous_one(
    trained: tuple[breastcls.RunResult, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from breastcls import io

    run_dir, out = trained[0].run_dir, tmp_path / "savedmodel"
    breastcls.export_model(run_dir, format="savedmodel", out_dir=out)
    first = _tree(out)
    swaps: list[tuple[str, str]] = []
    exchange = io._exchange
    monkeypatch.setattr(
        io, "_exchange", lambda a, b: swaps.append((a.name, b.name)) or exchange(a, b)
    )
    again = breastcls.export_model(run_dir, format="savedmodel", out_dir=out)
    assert swaps == [("saved_model", "saved_model")]  # the staged folder swapped in whole
    assert set(_tree(out)) == set(first) and not list(out.glob(".*"))
    images = _real_batch(run_dir)
    expected = breastcls.load_model(run_dir).keras_model.predict(images, verbose=0)
    assert float(np.max(np.abs(run_exported(again.model, images) - expected))) <= EXPORT_TOLERANCE
