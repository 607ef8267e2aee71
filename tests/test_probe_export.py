"""Export of a probe on a frozen extractor (issue 30): one ONNX graph for either extractor kind,
SavedModel and TFLite for a Keras extractor, a one-line refusal of those for an ONNX extractor;
the export folder loads through the one door and predicts what the run's model predicts on real
images. The probes here are fitted on a few real images' embeddings without a training run;
tests/test_foundation_probe.py checks a trained run's predictions.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breastcls.conversion import EXPORT_TOLERANCE, run_exported
from breastcls.embeddings.cache import CachedEmbedder
from breastcls.embeddings.extractor import ExtractorRecord, FrozenExtractor, extractor_calls
from breastcls.embeddings.probe import embed_samples, fit_linear_probe, fit_mlp_probe
from breastcls.errors import ConfigError
from breastcls.export import export_model
from breastcls.inference import InferenceModel
from breastcls.inference.record import ModelRecord, write_record
from breastcls.interfaces import DataRole, Sample
from breastcls.runs.folder import RunFolder
from breastcls.testing.extractors import write_keras_extractor, write_onnx_extractor

SIZE = 32
NAMES = ("benign", "malignant")


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_CACHE_DIR", str(tmp_path / "cache"))


def _real_samples(data: Path, per_class: int) -> list[Sample]:
    return [
        Sample(path=path, label=label)
        for label in NAMES
        for path in sorted((data / label).glob("*.png"))[::7][:per_class]
    ]


def _probe_run(folder: Path, spec: FrozenExtractor, head: str, samples: list[Sample]) -> Path:
    """A run folder holding a probe fitted on the real images' embeddings and its record (a
    temperature of 1.5, so the calibration travels with the export)."""
    from breastcls.inference.calibration import Calibration

    embedder = CachedEmbedder(spec)
    x = embed_samples(embedder, samples, image_size=SIZE, batch_size=8, image_info={})
    y = np.array([NAMES.index(s.label) for s in samples], dtype=np.int64)
    data = ((x[::2], y[::2]), (x[1::2], y[1::2]))
    fit = (
        fit_linear_probe(*data, n_classes=2)
        if head == "linear"
        else fit_mlp_probe(*data, n_classes=2, epochs=5, seed=0)
    )
    folder.mkdir(parents=True)
    fit.model.save(folder / "best.keras")
    extractor = ExtractorRecord(
        extractor=spec, sha256=embedder.sha256, dimension=x.shape[1], probe=head
    )
    calibration = Calibration(tta="none", temperature=1.5, fitted_on=DataRole.SELECTION)
    record = ModelRecord(
        class_names=NAMES, image_size=SIZE, preprocessing="extractor", backbone=spec.kind,
        extractor=extractor, calibrations={"none": calibration},
    )  # fmt: skip
    write_record(folder, record)
    return folder


def _feature_map_extractor(path: Path) -> Path:
    """A ``.keras`` extractor whose output is a feature map ``(n, h, w, c)``: averaged over
    the positions, in ONNX by tf2onnx's opset 17 (ReduceMean's axes as an attribute)."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    outputs = keras.layers.Conv2D(12, 5, strides=4, activation="relu")(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


CASES = [
    ("onnx", "pooled", "pooled", "linear"),
    ("onnx", "class_token", "tokens", "mlp"),
    ("onnx", "pooled", "tokens", "linear"),  # the tokens averaged
    ("keras", "pooled", "", "mlp"),
    ("keras-map", "pooled", "", "linear"),
]


@pytest.mark.parametrize(("kind", "embedding", "output", "head"), CASES)
def test_the_onnx_export_of_a_probe_predicts_as_the_run_on_real_images(
    tmp_path: Path, breakhis_dev: Path, kind: str, embedding: str, output: str, head: str
) -> None:
    if kind == "keras-map":
        kind, model = "keras", _feature_map_extractor(tmp_path / "map.keras")
    else:
        files = {"onnx": write_onnx_extractor, "keras": write_keras_extractor}
        model = files[kind](tmp_path / f"extractor.{kind}", input_size=SIZE)
    spec = FrozenExtractor(
        kind=kind,
        file=str(model),
        input_size=SIZE,
        embedding=embedding,
        output=output,
        mean=(0.7, 0.58, 0.7),
        std=(0.21, 0.23, 0.18),
    )  # type: ignore[arg-type]
    samples = _real_samples(breakhis_dev, per_class=8)
    run = _probe_run(tmp_path / "run", spec, head, samples)
    result = export_model(run, format="onnx", out_dir=tmp_path / "first" / "onnx")
    moved = tmp_path / "moved"
    result.out_dir.rename(moved)
    assert sorted(p.name for p in moved.iterdir()) == [
        "export.json",
        "model.onnx",
        "model_card.md",
        "model_record.json",
    ]
    exported = InferenceModel.load(moved)
    assert exported.runtime.name == "onnx" and exported.record.extractor is not None
    assert exported.record.extractor.extractor.file == "model.onnx"
    before = extractor_calls()
    scores = exported.score_files(samples)
    assert extractor_calls() == before  # the extractor runs inside the one graph
    expected = InferenceModel.load(run).score_files(samples)
    assert np.max(np.abs(scores.calibrated - expected.calibrated)) <= EXPORT_TOLERANCE
    assert np.max(np.abs(scores.raw - expected.raw)) <= EXPORT_TOLERANCE
    assert not np.allclose(scores.calibrated, scores.raw)  # the temperature is applied
    record = RunFolder(moved).read_export_record()
    assert record.format == "onnx" and record.extractor is None
    assert record.max_difference is not None and record.max_difference <= EXPORT_TOLERANCE
    assert record.holds is not None and f"the {kind} extractor and the {head} probe" in record.holds
    assert "[0.7, 0.58, 0.7]" in record.holds and "float16" in record.holds


def test_savedmodel_and_tflite_of_a_probe_on_a_keras_extractor(
    tmp_path: Path, breakhis_dev: Path
) -> None:
    model = write_keras_extractor(tmp_path / "cnn.keras", input_size=SIZE)
    spec = FrozenExtractor(kind="keras", file=str(model), input_size=SIZE)
    samples = _real_samples(breakhis_dev, per_class=8)
    run = _probe_run(tmp_path / "run", spec, "mlp", samples)
    loaded = InferenceModel.load(run)
    images = np.concatenate([batch.numpy() for batch in loaded.file_batches(samples)])
    expected = loaded.score_files(samples)
    for format, name in (("savedmodel", "saved_model"), ("tflite", "model.tflite")):
        result = export_model(run, format=format, out_dir=tmp_path / format)
        assert result.model == tmp_path / format / name
        raw = run_exported(result.model, images)
        assert np.max(np.abs(raw - expected.raw)) <= EXPORT_TOLERANCE
        calibrated = loaded.calibration().apply(raw.astype(np.float64))
        assert np.max(np.abs(calibrated - expected.calibrated)) <= EXPORT_TOLERANCE
        written = json.loads((tmp_path / format / "export.json").read_text())
        assert written["format"] == format and written["extractor"] is None
        assert written["max_difference_to_run_model"] <= EXPORT_TOLERANCE


@pytest.mark.parametrize("format", ["savedmodel", "tflite"])
def test_a_probe_on_an_onnx_extractor_refuses_savedmodel_and_tflite_in_one_line(
    tmp_path: Path, breakhis_dev: Path, format: str
) -> None:
    from typer.testing import CliRunner

    from breastcls.cli.app import app

    model = write_onnx_extractor(tmp_path / "vit.onnx", input_size=SIZE)
    spec = FrozenExtractor(kind="onnx", file=str(model), input_size=SIZE)
    run = _probe_run(tmp_path / "run", spec, "linear", _real_samples(breakhis_dev, per_class=4))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=f"cannot be exported as {format}"):
        export_model(run, format=format, out_dir=out)
    result = CliRunner().invoke(app, ["export", str(run), "--format", format, "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no ONNX-to-TensorFlow converter is installed" in lines[0]
    assert "use --format onnx" in lines[0] and "or --format keras" in lines[0]
    assert not out.exists()  # refused before anything is created
