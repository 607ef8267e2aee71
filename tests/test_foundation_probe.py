"""Probes on a frozen extractor's cached embeddings (issue 30): cross-validation reuses the cache,
and the one inference door gives the run's calibrated probabilities."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import breastcls
from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.embeddings.extractor import extractor_calls
from breastcls.errors import ConfigError
from breastcls.export import export_model
from breastcls.inference import InferenceModel
from breastcls.interfaces import Sample
from breastcls.runs.folder import read_split_csv
from breastcls.testing.extractors import write_onnx_extractor
from breastcls.training.crossval import CrossValidationResult

SIZE = 32
# Six runs of cross-validation folds, reports included: minutes on two shared cores.
pytestmark = [pytest.mark.real_data, pytest.mark.slow]


@dataclass(frozen=True)
class Runs:
    first: CrossValidationResult
    second: CrossValidationResult
    calls_of_second: int
    extractor: Path


def _config(data: Path, out: Path, model: Path, *, head: str, name: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(path=data, image_size=SIZE, folds=3, selection_fraction=0.3),
        model=ModelConfig(
            backbone="onnx",
            backbone_options={"file": str(model), "input_size": str(SIZE), "mpp": "0.5"},
            head=head,
        ),
        train=TrainConfig(batch_size=4, epochs=30),
        out_dir=out,
        name=name,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("probe")
    data = breakhis_dev  # read-only: the cache lies elsewhere
    model = write_onnx_extractor(root / "vit.onnx", input_size=SIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BREASTCLS_CACHE_DIR", str(root / "cache"))
        first = breastcls.cross_validate(
            _config(data, root / "runs", model, head="linear", name="linear")
        )
        before = extractor_calls()
        second = breastcls.cross_validate(
            _config(data, root / "runs", model, head="mlp", name="mlp")
        )
        yield Runs(first, second, extractor_calls() - before, model)


def test_a_second_cross_validation_makes_no_extractor_call(runs: Runs) -> None:
    assert extractor_calls() > 0
    assert runs.calls_of_second == 0
    for fold in runs.second.folds:
        probe = json.loads((fold.run_dir / "probe.json").read_text())
        assert probe["probe"] == "mlp" and probe["embeddings"]["computed"] == 0
        assert probe["embeddings"]["from_cache"] > 0
    assert len(runs.second.folds) == 3 and "classification.accuracy" in runs.second.aggregate


def test_the_linear_probe_chooses_its_strength_on_the_selection_set(runs: Runs) -> None:
    probe = json.loads((runs.first.folds[0].run_dir / "probe.json").read_text())
    losses = probe["selection_log_loss_by_C"]
    assert probe["chosen_on"] == "selection set"
    assert losses[f"{probe['C']:g}"] == min(losses.values())


def test_the_record_names_the_extractor(runs: Runs) -> None:
    raw = json.loads((runs.first.folds[0].run_dir / "model_record.json").read_text())
    extractor = raw["extractor"]
    assert extractor["file"] == str(runs.extractor.resolve())
    assert len(extractor["sha256"]) == 64 and extractor["dimension"] == 16
    assert extractor["input_size"] == SIZE and extractor["mpp"] == 0.5
    assert extractor["mean"] == [0.485, 0.456, 0.406] and extractor["embedding"] == "pooled"
    assert raw["calibrations"]["none"]["fitted_on"] == "selection"


def _written_and_tested(fold: Path) -> tuple[np.ndarray, list[Sample]]:
    """The calibrated test-set probabilities the run wrote, and its test images in that order."""
    with open(fold / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    written = np.array([[float(r["p_benign"]), float(r["p_malignant"])] for r in rows])
    tested = [s for s, _ in read_split_csv(fold) if s.split == "test"]
    by_path = {str(s.path): s for s in tested}
    return written, [by_path[r["path"]] for r in rows]


@pytest.mark.parametrize("which", ["first", "second"])
def test_the_loaded_model_gives_the_runs_calibrated_probabilities(
    runs: Runs, which: str
) -> None:
    written, samples = _written_and_tested(getattr(runs, which).folds[1].run_dir)
    loaded = InferenceModel.load(getattr(runs, which).folds[1].run_dir)
    assert loaded.record.extractor is not None and loaded.runtime.name == "onnx"
    before = extractor_calls()
    scores = loaded.score_files(samples)
    assert extractor_calls() == before
    np.testing.assert_allclose(scores.calibrated, written, rtol=0, atol=1e-6)
    assert scores.calibration.temperature is not None


def test_the_exported_model_gives_the_runs_calibrated_probabilities(
    runs: Runs, tmp_path: Path
) -> None:
    fold = runs.first.folds[0].run_dir
    with pytest.raises(ConfigError, match="no ONNX-to-TensorFlow converter is installed"):
        export_model(fold, format="savedmodel", out_dir=tmp_path / "savedmodel")
    result = export_model(fold, format="keras", out_dir=tmp_path / "moved" / "export")
    moved = tmp_path / "elsewhere"
    result.out_dir.rename(moved)  # the export names its extractor relative to its folder
    assert sorted(p.name for p in moved.iterdir()) == [
        "export.json", "extractor.onnx", "model.keras", "model_card.md", "model_record.json",
    ]
    written, samples = _written_and_tested(fold)
    exported = InferenceModel.load(moved)
    assert exported.record.extractor is not None
    assert exported.record.extractor.sha256 == InferenceModel.load(fold).record.extractor.sha256
    np.testing.assert_allclose(
        exported.score_files(samples).calibrated, written, rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("which", ["first", "second"])
def test_the_onnx_export_gives_the_runs_calibrated_probabilities(
    runs: Runs, which: str, tmp_path: Path
) -> None:
    fold = getattr(runs, which).folds[2].run_dir
    result = export_model(fold, format="onnx", out_dir=tmp_path / "first" / "onnx")
    moved = tmp_path / "elsewhere"
    result.out_dir.rename(moved)  # one graph: the extractor and the probe
    written, samples = _written_and_tested(fold)
    exported = InferenceModel.load(moved)
    assert exported.runtime.name == "onnx" and exported.record.extractor is not None
    before = extractor_calls()
    calibrated = exported.score_files(samples).calibrated
    assert extractor_calls() == before
    assert np.max(np.abs(calibrated - written)) <= 1e-5  # predictions.csv's figures
    assert exported.record.calibrations["none"].temperature is not None


def test_grad_cam_is_not_available_for_a_probe_in_one_line(runs: Runs, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from breastcls.cli.app import app

    fold = runs.first.folds[0].run_dir
    result = CliRunner().invoke(app, ["evaluate", str(fold), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Grad-CAM is not available for this backbone. Pass --no-gradcam" in result.output
