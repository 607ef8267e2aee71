"""Frozen feature extractors (issue 30): stand-in foundation models, the embedding cache, the
``embed`` command and the errors of a model that does not fit."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _runs import start_cli, wait_for_exit, wait_on_progress
from breastcls.cli.app import app
from breastcls.embeddings.cache import CachedEmbedder
from breastcls.embeddings.extractor import FrozenExtractor, extractor_calls
from breastcls.errors import ModelLoadError
from breastcls.testing.extractors import write_keras_extractor, write_onnx_extractor

SIZE = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("extractors")
    return {
        "onnx": write_onnx_extractor(folder / "vit.onnx", input_size=SIZE),
        "keras": write_keras_extractor(folder / "cnn.keras", input_size=SIZE),
    }


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_CACHE_DIR", str(tmp_path / "cache"))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "embedding", "output", "dimension"),
    [("onnx", "pooled", "pooled", 16), ("onnx", "class_token", "tokens", 16),
     ("keras", "pooled", "", 16)],
)  # fmt: skip
def test_cached_embeddings_equal_fresh_ones_to_float16_precision(
    models: dict[str, Path], kind: str, embedding: str, output: str, dimension: int
) -> None:
    spec = FrozenExtractor(
        kind=kind, file=str(models[kind]), input_size=SIZE, embedding=embedding, output=output
    )  # type: ignore[arg-type]
    images = _images(6)
    fresh = spec.load().embed(images)
    assert fresh.shape == (6, dimension) and np.ptp(fresh) > 0
    first = CachedEmbedder(spec)
    computed = first.embeddings(images)
    calls = extractor_calls()
    reopened = CachedEmbedder(spec)  # a new process would read the shards the same way
    cached = reopened.embeddings(images)
    assert extractor_calls() == calls, "a cached image must not reach the extractor"
    assert (first.computed, reopened.computed, reopened.reused) == (6, 0, 6)
    np.testing.assert_array_equal(cached, computed)
    np.testing.assert_allclose(cached, fresh, rtol=2**-10, atol=1e-4)
    assert next(first.cache.folder.glob("shard-*.npz")).is_file()
    stored = np.load(next(first.cache.folder.glob("shard-*.npz")))["embeddings"]
    assert stored.dtype == np.float16


def test_a_keras_extractor_runs_compiled_and_gives_the_model_s_embeddings(
    models: dict[str, Path],
) -> None:
    import keras

    mean, std = (0.6, 0.5, 0.4), (0.2, 0.25, 0.3)
    spec = FrozenExtractor(
        kind="keras", file=str(models["keras"]), input_size=SIZE, mean=mean, std=std
    )
    extractor = spec.load()
    network = keras.saving.load_model(models["keras"])
    for n in (5, 2):  # a whole batch, then a smaller last one (the same compiled step)
        images = _images(n, seed=n)
        normalised = (images / 255.0 - np.array(mean)) / np.array(std)
        eager = np.asarray(network(normalised.astype(np.float32), training=False))
        found = extractor.embed(images)
        assert found.shape == (n, 16) and found.dtype == np.float32
        np.testing.assert_allclose(found, eager, rtol=1e-5, atol=1e-5)


def test_a_changed_preprocessing_is_another_cache(models: dict[str, Path]) -> None:
    spec = FrozenExtractor(kind="onnx", file=str(models["onnx"]), input_size=SIZE)
    other = dataclasses.replace(spec, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert CachedEmbedder(spec).cache.folder != CachedEmbedder(other).cache.folder
    images = _images(2)
    CachedEmbedder(spec).embeddings(images)
    assert CachedEmbedder(other).embeddings(images).shape == (2, 16)


def test_a_wrong_input_size_or_no_usable_output_is_one_line(models: dict[str, Path]) -> None:
    for kind in ("onnx", "keras"):
        with pytest.raises(ModelLoadError, match=rf"takes {SIZE}x{SIZE} px images but input_size is 64; pass --backbone-option input_size={SIZE}"):  # noqa: E501
            FrozenExtractor(kind=kind, file=str(models[kind]), input_size=64).load()  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match=r"output has rank 2, not \(n, tokens, d\)"):
        FrozenExtractor(
            kind="onnx", file=str(models["onnx"]), input_size=SIZE, embedding="class_token",
            output="pooled",
        ).load()  # fmt: skip
    with pytest.raises(ModelLoadError, match="has no output 'cls'"):
        FrozenExtractor(
            kind="onnx", file=str(models["onnx"]), input_size=SIZE, output="cls"
        ).load()


def test_embed_cli_says_a_wrong_input_size_in_one_line(
    models: dict[str, Path], small_breakhis: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["embed", "--backbone", "onnx", "--data", str(small_breakhis),
         "--backbone-option", f"file={models['onnx']}", "--backbone-option", "input_size=64"],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: The onnx extractor"), lines
    assert f"input_size={SIZE}" in lines[0]


def test_train_refuses_a_frozen_extractor_with_a_network_head(
    models: dict[str, Path], small_breakhis: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(small_breakhis), "--out", str(tmp_path / "runs"),
         "--backbone", "onnx", "--backbone-option", f"file={models['onnx']}",
         "--backbone-option", f"input_size={SIZE}", "--image-size", str(SIZE)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "its head is a probe on the embeddings, --head linear or mlp" in result.output
    assert not (tmp_path / "runs").exists()


def _embed_args(model: Path, data: Path) -> list[str]:
    return [
        "embed", "--backbone", "onnx", "--backbone-option", f"file={model}",
        "--backbone-option", f"input_size={SIZE}", "--data", str(data), "--batch-size", "2",
    ]  # fmt: skip


def _counts(log: Path) -> tuple[int, int]:
    found = re.search(r"(\d+) embeddings computed, (\d+) from the cache", log.read_text())
    assert found, log.read_text()
    return int(found[1]), int(found[2])


@pytest.mark.real_data
@pytest.mark.slow  # two command-line processes over 269 images: about 100 s on two shared cores
def test_a_killed_embed_resumes_from_its_shards(
    models: dict[str, Path], breakhis_dev: Path, tmp_path: Path
) -> None:
    log = tmp_path / "first.log"
    process = start_cli(_embed_args(models["onnx"], breakhis_dev / "manifest.csv"), log)
    wait_on_progress(
        process, [log], what="the first chunk", until=lambda: "embedded " in log.read_text()
    )
    process.kill()
    process.wait()
    shards = list((tmp_path / "cache" / "embeddings").glob("*/shard-*.npz"))
    assert shards, "the first chunk's shard is written before its progress line"
    for shard in shards:  # complete: the kill may only cut the hidden temporary of the next one
        with np.load(shard) as stored:
            assert stored["embeddings"].shape[0] == stored["keys"].shape[0] > 0
    second = tmp_path / "second.log"
    process = start_cli(_embed_args(models["onnx"], breakhis_dev / "manifest.csv"), second)
    assert wait_for_exit(process, second) == 0, second.read_text()
    computed, reused = _counts(second)
    assert reused >= 8, "the chunks the killed run wrote are reused"
    assert computed + reused == 269
