"""``--protocol spanhol`` with a probe on a frozen extractor (issue 30): the five random 70/30
patient splits of BreakHis each fit a probe, the figures are each fold's own, and the extractor
embeds every image once over the five folds (the cache serves the rest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import breastcls
from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.data.split import sample_groups
from breastcls.embeddings.cache import pixel_keys
from breastcls.embeddings.extractor import LoadedExtractor
from breastcls.runs.folder import read_split_csv
from breastcls.testing.extractors import write_onnx_extractor
from conftest import copy_patients

SIZE = 32
# Five folds of a probe run, reports included: over a minute on two shared cores.
pytestmark = [pytest.mark.real_data, pytest.mark.slow]


def test_the_spanhol_protocol_with_a_probe_embeds_each_image_once(
    breakhis_dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy_patients(breakhis_dev, tmp_path / "data", patients=8, images_per_patient=3)
    n_images = len(list(data.glob("*/*.png")))
    monkeypatch.setenv("BREASTCLS_CACHE_DIR", str(tmp_path / "cache"))
    embedded: list[str] = []  # the key of every image the extractor itself embeds
    original = LoadedExtractor.embed

    def counting(self: LoadedExtractor, images: np.ndarray) -> np.ndarray:
        embedded.extend(pixel_keys(images))
        return original(self, images)

    monkeypatch.setattr(LoadedExtractor, "embed", counting)
    model = write_onnx_extractor(tmp_path / "vit.onnx", input_size=SIZE)
    result = breastcls.cross_validate(
        RunConfig(
            data=DataConfig(path=data, image_size=SIZE, protocol="spanhol"),
            model=ModelConfig(
                backbone="onnx",
                backbone_options={"file": str(model), "input_size": str(SIZE)},
                head="linear",
            ),
            train=TrainConfig(batch_size=8),
            out_dir=tmp_path / "runs",
            name="spanhol",
        )
    )
    assert len(embedded) == len(set(embedded)) == n_images  # each image once, across folds
    assert len(result.folds) == 5
    aggregate = json.loads((result.run_dir / "aggregate.json").read_text())
    accuracies, tested = [], set()
    for number, fold in enumerate(result.folds, start=1):
        probe = json.loads((fold.run_dir / "probe.json").read_text())
        assert probe["probe"] == "linear" and probe["chosen_on"] == "selection set"
        if number > 1:  # the first fold embedded every image: its test set at evaluation
            assert probe["embeddings"]["computed"] == 0
        samples = [s for s, _ in read_split_csv(fold.run_dir)]
        roles: dict[str, set[str]] = {}
        classes: dict[str, set[str]] = {}
        for sample, patient in zip(samples, sample_groups(samples) or [], strict=True):
            roles.setdefault(str(sample.split), set()).add(patient)
            classes.setdefault(sample.label, set()).add(patient)
        assert roles["test"].isdisjoint(roles["train"] | roles["selection"])  # by patient
        # 30% of each class's patients tested (at least one; two left for the other roles).
        assert len(roles["test"]) == sum(
            min(len(c) - 2, max(1, round(0.3 * len(c)))) for c in classes.values()
        )
        test_images = [s for s in samples if s.split == "test"]
        tested |= {str(s.path) for s in test_images}
        metrics = json.loads((fold.run_dir / "metrics.json").read_text())
        assert metrics["evaluated_on"]["role"] == "test"
        assert metrics["evaluated_on"]["images"] == len(test_images)
        accuracies.append(metrics["classification"]["accuracy"])
    assert aggregate["folds"] == [f"fold-{k}" for k in range(1, 6)]
    accuracy = result.aggregate["classification.accuracy"]
    assert accuracy["values"] == pytest.approx(accuracies)
    assert accuracy["mean"] == pytest.approx(np.mean(accuracies)) and accuracy["n"] == 5
    assert aggregate["interval"]["method"].startswith("corrected resampled t")
    pooled = json.loads((result.run_dir / "pooled" / "metrics.json").read_text())
    assert pooled["classification"]["n_images"] == len(tested)  # one row per tested image
