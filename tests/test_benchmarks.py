"""The benchmark harness: the seed reference's maths and the ratio lines (``benchmarks/``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `benchmarks` is a top-level folder, not part of the package

from benchmarks import run  # noqa: E402


def _train(rate: float, first: float = 10.0) -> dict[str, float]:
    return {"images_per_s": rate, "first_step_s": first}


def _rates(key: str, cpu: float) -> dict[str, float]:
    """A slide measurement's tiles per CPU second, and per wall second (twice as many: two
    cores)."""
    return {f"{key}_cpu_tiles_per_s": cpu, f"{key}_wall_tiles_per_s": 2 * cpu}


def _results(gpus: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "train_seed_light": _train(50.0, 20.0),
        "train_seed_light_bfc": _train(60.0),
        "train_floor_light": _train(100.0),
        "train_breastcls_light": _train(75.0, 10.0),
        "train_breastcls_light_cached": _train(80.0),
        "train_breastcls_light_bf16": _train(40.0),
        "train_seed_smallcnn": _train(100.0),
        "train_breastcls_smallcnn": _train(150.0),
        "train_seed_densenet201": _train(10.0, 60.0),
        "train_breastcls_densenet201": _train(12.0, 30.0),
        "decode": {
            "seed_images_per_s": 600.0,
            "breastcls_images_per_s": 1200.0,
            "breastcls_normalised_images_per_s": 960.0,
            "breastcls_scan_images_per_s": 900.0,
            "breastcls_cached_images_per_s": 24000.0,
        },
        "rss_seed_1n": {"peak_rss": 1000 * 2**20},
        "rss_seed_4n": {"peak_rss": 1500 * 2**20},
        "rss_breastcls_1n": {"peak_rss": 1000 * 2**20},
        "rss_breastcls_4n": {"peak_rss": 1050 * 2**20},
        "infer": {
            "plain_images_per_s": 200.0,
            "tta8_images_per_s": 25.0,
            "domain_images_per_s": 190.0,
            "plain_cpu_s_per_image": 0.010,
            "domain_cpu_s_per_image": 0.0105,
        },
        "stain": {
            "steps_per_round": 8,
            "none_step_s": 0.9,
            "default_step_s": 1.0,
            "pathology_step_s": 1.2,
            "none_cpu_s": 1.8,
            "default_cpu_s": 2.0,
            "pathology_cpu_s": 2.1,
        },
        "slide": {
            "tiles": 2048,
            **_rates("model_tensorflow", 400.0),
            **_rates("pipeline_tensorflow", 380.0),
            **_rates("model_onnx", 600.0),
            **_rates("model_onnx_plain", 400.0),
            **_rates("pipeline_onnx", 510.0),
            **_rates("model_onnx_int8", 1000.0),
            **_rates("pipeline_onnx_int8", 816.0),
            **_rates("pipeline_auto", 570.0),
            "int8_set": "tiles of development images used neither to train nor to calibrate",
            "int8_check_tiles": 1024,
            "int8_check_malignant_tiles": 666,
            "int8_max_abs_diff": 0.0042,
            "int8_mean_abs_diff": 0.0011,
            "onnx_tile_auc": 0.8125,
            "int8_tile_auc": 0.8100,
            "auto_runtime": "onnx",
            "probe_tensorflow_images_per_s": 420.0,
            "probe_onnx_images_per_s": 700.0,
        },
        "slide_model": {
            "epochs": 12,
            "training_images": 68,
            "selection_images": 67,
            "check_images": 134,
            "train_cpu_s": 60.0,
            "check_auc": 0.91,
            "check_probability_min": 0.02,
            "check_probability_max": 0.99,
        },
        "slide_rss_1x": {"tiles": 512, "peak_rss": 1000 * 2**20},
        "slide_rss_4x": {"tiles": 2048, "peak_rss": 1020 * 2**20},
        "foundation": {
            "n": 269, "size": 224, "folds": 5, "epochs": 3,
            "cached_cv_cpu_s": 10.0, "fine_tuned_cv_cpu_s": 250.0,
            "extractor_cpu_s_per_image": 0.009, "pipeline_cpu_s_per_image": 0.010,
        },
        "foundation_embed": {
            "n": 96, "size": 224, "network": "resnet50",
            "extractor_cpu_s_per_image": 0.120, "pipeline_cpu_s_per_image": 0.125,
        },
        "gpus": gpus,
    }
    if gpus:
        for backbone in ("mobilenetv3small", "densenet201"):
            results[f"gpu_seed_{backbone}"] = _train(100.0)
            for label, rate in (("float32", 200.0), ("mixed", 300.0), ("mixed_xla", 400.0)):
                results[f"gpu_breastcls_{backbone}_{label}"] = _train(rate)
    return results


def test_ratios_and_targets_from_results() -> None:
    values = run.ratios(_results(gpus=0), run.FULL)
    assert values["train_speedup_vs_seed"] == pytest.approx(1.5)
    assert values["first_step_speedup_vs_seed"] == pytest.approx(2.0)
    assert values["train_speedup_cached_vs_seed"] == pytest.approx(1.6)
    assert values["train_speedup_bf16_vs_seed"] == pytest.approx(0.8)
    assert values["train_speedup_vs_seed_on_bfc"] == pytest.approx(1.25)
    assert values["train_model_floor_vs_seed"] == pytest.approx(2.0)
    assert values["train_fraction_of_model_floor"] == pytest.approx(0.75)
    assert values["train_speedup_vs_seed_smallcnn"] == pytest.approx(1.5)
    assert values["train_speedup_vs_seed_densenet201"] == pytest.approx(1.2)
    assert values["decode_speedup_vs_seed"] == pytest.approx(2.0)
    assert values["decode_speedup_normalised_vs_seed"] == pytest.approx(1.6)
    assert values["cached_epoch_speedup"] == pytest.approx(20.0)
    assert values["rss_growth_4n_seed"] == pytest.approx(0.5)
    assert values["rss_growth_4n_breastcls"] == pytest.approx(0.05)
    assert values["tta8_cost"] == pytest.approx(8.0)
    assert values["domain_score_cost"] == pytest.approx(0.05)  # CPU time, not wall (0.053)
    assert values["stain_aug_step_cost"] == pytest.approx(1.05)  # CPU time, not wall (1.2)
    assert values["slide_tiles_vs_model"] == pytest.approx(0.95)  # CPU time
    assert values["slide_tiles_vs_model_onnx"] == pytest.approx(0.85)
    assert values["slide_int8_speedup"] == pytest.approx(1.6)
    assert values["slide_int8_max_abs_diff"] == pytest.approx(0.0042)
    assert values["slide_int8_auc_change"] == pytest.approx(0.0025)
    assert values["slide_runtime_auto_vs_tensorflow"] == pytest.approx(1.5)
    assert values["onnx_hard_activations_fused_speedup"] == pytest.approx(1.5)
    assert values["slide_rss_growth_4x"] == pytest.approx(1.02)
    assert values["probe_cv_speedup"] == pytest.approx(25.0)
    assert values["embed_vs_model"] == pytest.approx(0.96)  # ResNet50
    assert values["embed_vs_model_small_extractor"] == pytest.approx(0.9)  # MobileNetV3Small
    assert not any(name.startswith("gpu_") for name in values)
    rows = "\n".join(run.target_rows(values))
    assert "| train_speedup_vs_seed | >= 1.3 | 1.500 | yes |" in rows
    assert "| train_speedup_vs_seed_densenet201 | >= 1.3 | 1.200 | NO |" in rows
    assert "| gpu_train_speedup_mixed_xla_vs_seed_densenet201 | >= 3.0 | not measured | - |" in rows
    table = "\n".join(run.table(_results(gpus=0), run.FULL))
    assert "no GPU: not measured" in table
    assert "| stain_aug_step_cost | <= 1.1 | 1.050 | yes |" in rows
    assert "| decode_speedup_normalised_vs_seed | >= 1.5 | 1.600 | yes |" in rows
    assert "+ Macenko stain normalisation: images/s | 600 | 960 |" in table
    assert "--augmentation pathology: CPU ms (wall ms) | - | 2100 (1200) |" in table
    assert "| slide_tiles_vs_model | >= 0.9 | 0.950 | yes |" in rows
    assert "| slide_rss_growth_4x | <= 1.1 | 1.020 | yes |" in rows
    assert "| slide_tiles_vs_model_onnx | >= 0.9 | 0.850 | NO |" in rows
    assert "| slide_int8_speedup | >= 1.5 | 1.600 | yes |" in rows
    assert "| slide_int8_auc_change | <= 0.005 | 0.0025 | yes |" in rows
    assert (
        "--runtime auto (onnx; probe: onnx 700, tensorflow 420 images/s) | - | 570.0 (1140.0) |"
        in table
    )
    assert "the whole pipeline, ONNX Runtime int8 | - | 816.0 (1632.0) |" in table
    assert "| onnx_hard_activations_fused_speedup | >= 1.1 | 1.500 | yes |" in rows
    assert "graph (hard activations not fused) | - | 400.0 (800.0) |" in table
    assert (
        "int8 vs float32 ONNX on 1024 tiles (666 malignant), the tiles of development images "
        "used neither to train nor to calibrate: largest (mean) probability difference; tile AUC "
        "float32, int8 | - | 0.0042 (0.0011); 0.8125, 0.8100 |" in table
    )
    assert (
        "| slide model: mobilenetv3small 224px trained 12 epochs from random weights on 68 "
        "development images (int8 calibrated on 67 others); on the 134 check images (neither): "
        "AUC; probabilities from, to | - | 0.910; 0.020, 0.990 |" in table
    )
    assert "| slide peak RSS, 2048 tiles (4x area) (MiB) | - | 1020 |" in table
    assert "| probe_cv_speedup | >= 20.0 | 25.000 | yes |" in rows
    assert "linear probe on cached embeddings | 250.0 | 10.0 |" in table
    assert "| embed_vs_model | >= 0.9 | 0.960 | yes |" in rows
    assert "embed_vs_model_small_extractor" not in rows  # no target
    assert (
        "| resnet50 224px (random weights) as a frozen extractor, 96 images: CPU ms per image, "
        "the extractor alone vs the embedding pipeline (embed_vs_model) | 120.0 | 125.0 |" in table
    )
    assert (
        "the extractor alone vs the embedding pipeline (embed_vs_model_small_extractor, no "
        "target) | 9.0 | 10.0 |" in table
    )


def test_quick_mode_reports_only_what_it_measured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {
        key: value
        for key, value in _results(gpus=0).items()
        if "smallcnn" not in key and "densenet" not in key and "light_" not in key
    }
    monkeypatch.setattr(run, "measure", lambda sizes, **_: results if sizes == run.QUICK else {})
    run.main(["--quick"])
    assert "the targets are set for the full run" in capsys.readouterr().out
    values = run.ratios(results, run.QUICK)
    assert set(values) == {
        "train_speedup_vs_seed",
        "first_step_speedup_vs_seed",
        "decode_speedup_vs_seed",
        "decode_speedup_normalised_vs_seed",
        "cached_epoch_speedup",
        "rss_growth_4n_seed",
        "rss_growth_4n_breastcls",
        "tta8_cost",
        "domain_score_cost",
        "stain_aug_step_cost",
        "slide_tiles_vs_model",
        "slide_tiles_vs_model_onnx",
        "slide_rss_growth_4x",
        "slide_runtime_auto_vs_tensorflow",
        "onnx_hard_activations_fused_speedup",
        "slide_int8_speedup",
        "slide_int8_max_abs_diff",
        "slide_int8_auc_change",
        "probe_cv_speedup",
        "embed_vs_model",
        "embed_vs_model_small_extractor",
    }
    assert "| train_speedup_vs_seed_densenet201 | >= 1.3 | not measured | - |" in "\n".join(
        run.target_rows(values)
    )
    assert "train smallcnn" not in "\n".join(run.table(results, run.QUICK))  # no extras


# The canned result that stands for a task whose results key is not its name.
_CANNED_AS = {
    "rss": "rss_seed_1n",
    "slide_rss": "slide_rss_1x",
    "slide_file": "slide_rss_1x",
    "embed_rates": "foundation_embed",
}


def test_the_seed_runs_on_tensorflow_defaults_and_breastcls_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any], bool]] = []
    canned = _results(gpus=0)

    def fake_work(
        task: str, *, gpu: bool = False, tf_defaults: bool = False, **arguments: Any
    ) -> dict[str, Any]:
        calls.append((task, arguments, tf_defaults))
        if task == "train":  # a different rate and first step every time
            return _train(float(len(calls)), 100.0 - len(calls))
        return {"gpus": 0} if task == "gpus" else dict(canned[_CANNED_AS.get(task, task)])

    monkeypatch.setattr(run, "work", fake_work)
    results = run.measure(run.FULL, progress=False)
    seed_on_bfc = [a for _, a, d in calls if a.get("pipeline") == "seed" and not d]
    ours = [d for _, a, d in calls if a.get("pipeline") in ("breastcls", "floor")]
    # Every seed measurement runs as the blog's script would, but the labelled extra row.
    assert len(seed_on_bfc) == 2 == len(results["train_seed_light_bfc"]["rounds"])
    assert ours and not any(ours)
    # Training configurations run in turn, three rounds for the headline pair and two for the
    # others, and keep their best round.
    for key, count in (
        ("train_seed_light", 3),
        ("train_floor_light", 2),
        ("train_breastcls_smallcnn", 2),
        ("train_seed_densenet201", 2),
    ):
        rounds = results[key]["rounds"]
        assert len(rounds) == count
        assert results[key]["images_per_s"] == max(r["images_per_s"] for r in rounds)
        assert results[key]["first_step_s"] == min(r["first_step_s"] for r in rounds)
        assert rounds[0]["images_per_s"] < rounds[-1]["images_per_s"]
    assert [a["rounds"] for t, a, _ in calls if t == "infer"] == [3]
    # The slide pipeline is timed on the larger slide, and each slide's memory is measured in
    # a process of its own.
    written = {a["path"]: a["columns"] * a["rows"] for t, a, _ in calls if t == "slide_file"}
    timed = [a["slide"] for t, a, _ in calls if t == "slide"]
    assert sorted(written.values()) == [32 * 16, 4 * 32 * 16]
    assert timed == [max(written, key=lambda path: written[path])]
    assert sorted(a["slide"] for t, a, _ in calls if t == "slide_rss") == sorted(written)
    # One model, trained in a process of its own, is timed and measured; the check tiles are
    # told apart by the timed slide's columns.
    (trained,) = [a["folder"] for t, a, _ in calls if t == "slide_model"]
    assert {a["model"] for t, a, _ in calls if t in ("slide", "slide_rss")} == {trained}
    assert [a["columns"] for t, a, _ in calls if t == "slide"] == [2 * 32]
    # embed_vs_model's extractor costs a foundation model's or less; the cross-validations
    # fine-tune the small one.
    assert [a for t, a, _ in calls if t == "embed_rates"] == [
        {"n": 96, "size": 224, "network": "resnet50", "keras_backend": "tensorflow"}
    ]
    assert [a["size"] for t, a, _ in calls if t == "foundation"] == [224]
    assert run.ratios(results, run.FULL)["embed_vs_model"] == pytest.approx(0.96)


@pytest.mark.parametrize(
    ("only", "measured", "not_measured"),
    [
        ("foundation", ["foundation", "foundation_embed"], ["slide", "slide_model"]),
        ("slide", ["slide", "slide_model"], ["foundation", "foundation_embed"]),
    ],
)
def test_one_section_alone_measures_and_reports_only_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    only: str,
    measured: list[str],
    not_measured: list[str],
) -> None:
    canned = _results(gpus=0)
    tasks: list[str] = []

    def fake_work(task: str, **_: Any) -> dict[str, Any]:
        tasks.append(task)
        return dict(canned[_CANNED_AS.get(task, task)])

    monkeypatch.setattr(run, "work", fake_work)
    results = run.measure(run.FULL, progress=False, only=only)
    assert all(key in results for key in measured)
    assert not any(key in results for key in not_measured)
    assert "train" not in tasks and "decode" not in tasks
    monkeypatch.setattr(run, "measure", lambda *_, **__: results)
    run.main(["--only", only])
    out = capsys.readouterr().out
    if only == "foundation":
        assert "ratio embed_vs_model = 0.96" in out
        assert "ratio embed_vs_model_small_extractor = 0.90" in out
        assert "ratio probe_cv_speedup = 25.00" in out
        assert "decoding the PNGs" in out  # why the small extractor's ratio has no target
        assert "| slide_tiles_vs_model | >= 0.9 | not measured | - |" in out
    else:
        assert "ratio slide_tiles_vs_model = 0.95" in out
        assert "embed_vs_model" not in out.split("| target |")[0]
        assert "decoding the PNGs" not in out


def test_gpu_ratios_when_a_gpu_was_measured() -> None:
    values = run.ratios(_results(gpus=1), run.FULL)
    assert values["gpu_train_speedup_mixed_xla_vs_seed_densenet201"] == pytest.approx(4.0)
    assert values["gpu_mixed_speedup_vs_float32_mobilenetv3small"] == pytest.approx(1.5)
    assert values["gpu_mixed_xla_speedup_vs_float32_densenet201"] == pytest.approx(2.0)
    assert "GPU train densenet201 224px, breastcls mixed_xla: images/s | 100.0 | 400.0 |" in (
        "\n".join(run.table(_results(gpus=1), run.FULL))
    )


def test_gpu_only_mode_reports_the_gpu_section_alone() -> None:
    results = {key: value for key, value in _results(gpus=1).items() if key.startswith("gpu")}
    values = run.ratios(results, run.GPU_ONLY)
    assert values and all(name.startswith("gpu_") for name in values)
    table = "\n".join(run.table(results, run.GPU_ONLY))
    assert "decode" not in table and "GPU train mobilenetv3small 224px" in table


def test_the_gpu_section_trains_each_backbone_in_float32_mixed_and_mixed_xla(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any], bool]] = []

    def fake_work(
        task: str, *, gpu: bool = False, tf_defaults: bool = False, **arguments: Any
    ) -> dict[str, Any]:
        calls.append((task, arguments, gpu))
        return {"gpus": 1} if task == "gpus" else _train(100.0)

    monkeypatch.setattr(run, "work", fake_work)
    results = run.measure(run.GPU_ONLY, progress=False)
    trained = [
        (a["pipeline"], a["backbone"], a.get("precision"), a.get("jit")) for _, a, _ in calls[1:]
    ]
    assert all(gpu for _, _, gpu in calls) and all(a["size"] == 224 for _, a, _ in calls[1:])
    for backbone in ("mobilenetv3small", "densenet201"):
        assert ("seed", backbone, None, None) in trained
        for precision, jit in (("float32", False), ("mixed", False), ("mixed", True)):
            assert ("breastcls", backbone, precision, jit) in trained
    assert set(run.ratios(results, run.GPU_ONLY)) >= {
        "gpu_train_speedup_mixed_xla_vs_seed_densenet201",
        "gpu_train_speedup_mixed_xla_vs_seed_mobilenetv3small",
    }


def test_the_gpu_section_on_jax_trains_from_memory_with_xla(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any], str]] = []

    def fake_work(
        task: str, *, gpu: bool = False, keras_backend: str = "tensorflow", **arguments: Any
    ) -> dict[str, Any]:
        calls.append((task, arguments, keras_backend))
        if task == "gpus":
            return {"gpus": 1}
        rates = {"float32": 200.0, "mixed_float16": 500.0, "mixed_bfloat16": 400.0}
        return _train(rates.get(arguments.get("precision", ""), 100.0))

    monkeypatch.setattr(run, "work", fake_work)
    results = run.measure(run.GPU_ONLY, progress=False, keras_backend="jax")
    assert {backend for _, _, backend in calls} == {"jax"}
    trained = {
        (a["pipeline"], a["backbone"], a.get("precision"), a.get("jit")) for _, a, _ in calls[1:]
    }
    for backbone in ("mobilenetv3small", "densenet201"):
        assert ("seed", backbone, None, None) in trained
        for precision in ("float32", "mixed_float16", "mixed_bfloat16"):
            assert ("memory", backbone, precision, True) in trained
    values = run.ratios(results, run.GPU_ONLY)
    assert values["gpu_train_speedup_mixed_xla_vs_seed_densenet201"] == pytest.approx(5.0)
    assert values["gpu_train_speedup_mixed_bf16_xla_vs_seed_densenet201"] == pytest.approx(4.0)
    assert values["gpu_mixed_bf16_xla_speedup_vs_float32_xla_mobilenetv3small"] == pytest.approx(2)
    # Both are mixed precision + XLA, so the GPU target covers both on JAX (TensorFlow: float16).
    rows = "\n".join(run.target_rows(values, "jax"))
    assert "| gpu_train_speedup_mixed_bf16_xla_vs_seed_densenet201 | >= 3.0 | 4.000 | yes |" in rows
    assert "mixed_bf16" not in "\n".join(run.target_rows(values))
    assert values["gpu_mixed_xla_speedup_vs_float32_xla_densenet201"] == pytest.approx(2.5)
    table = "\n".join(run.table(results, run.GPU_ONLY))
    assert "| GPU train densenet201 224px, breastcls mixed_xla (Keras on jax, from memory)" in table


def test_the_gpu_section_can_measure_one_backbone_and_one_variant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A GPU lent for minutes runs the section in parts: here DenseNet201 in mixed + XLA alone.
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_work(task: str, **arguments: Any) -> dict[str, Any]:
        calls.append((task, arguments))
        return {"gpus": 1} if task == "gpus" else _train(50.0 * len(calls))

    monkeypatch.setattr(run, "work", fake_work)
    monkeypatch.setattr(run, "cpu_name", lambda: "test CPU")
    run.main(["--gpu-only", "--gpu-backbone", "densenet201", "--gpu-variant", "mixed_xla"])
    trained = [(a["pipeline"], a["backbone"], a.get("jit")) for _, a in calls[1:]]
    assert trained == [("seed", "densenet201", None), ("breastcls", "densenet201", True)]
    ratio_lines = [line for line in capsys.readouterr().out.splitlines() if line[:6] == "ratio "]
    assert ratio_lines == ["ratio gpu_train_speedup_mixed_xla_vs_seed_densenet201 = 1.50"]
    with pytest.raises(SystemExit):
        run.main(["--gpu-only", "--keras-backend", "jax", "--gpu-variant", "mixed"])
    assert "on jax use float32_xla, mixed_xla, mixed_bf16_xla" in capsys.readouterr().err


def test_the_cpu_section_needs_tensorflow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="CPU section needs TensorFlow"):
        run.measure(run.FULL, progress=False, keras_backend="jax")
    with pytest.raises(SystemExit):
        run.main(["--keras-backend", "jax"])
    assert "add --gpu-only" in capsys.readouterr().err


def test_memory_batches_serve_decoded_images_with_their_labels(breakhis_dev: Path) -> None:
    import cv2
    from benchmarks.workers import _memory_batches

    from breastcls import DataConfig, load_dataset
    from breastcls.data.images import decode_image

    dataset = load_dataset(DataConfig(path=breakhis_dev))
    samples = sorted(dataset.samples, key=lambda s: str(s.path))[:: len(dataset.samples) // 12]
    batches = _memory_batches(samples, dataset.class_names, 40, 4, steps=2)
    assert len(batches) == 2
    images, labels = batches[1]
    assert images.shape == (4, 40, 40, 3) and images.dtype == np.uint8
    assert labels.shape == (4, 2) and (labels.sum(axis=1) == 1).all()
    first_epoch = batches.order.copy()
    assert sorted(first_epoch) == list(range(len(samples)))
    for image, label, index in zip(images, labels, first_epoch[4:8], strict=True):
        sample = samples[index]
        expected = cv2.resize(decode_image(sample.path), (40, 40), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(image, expected)
        assert dataset.class_names[int(label.argmax())] == sample.label
    batches.on_epoch_end()
    assert not np.array_equal(batches.order, first_epoch)


# One GPU-option worker runs on every test run; the other two pipelines with the slow cases.
@pytest.mark.parametrize(
    "pipeline",
    ["breastcls", *(pytest.param(p, marks=pytest.mark.slow) for p in ("seed", "memory"))],
)
def test_a_training_worker_runs_with_the_gpu_options(pipeline: str) -> None:
    # On this CPU, mixed means bfloat16; the worker path is the one the GPU section takes.
    options: dict[str, Any] = {
        "seed": {},
        "breastcls": {"precision": "mixed", "jit": True},
        "memory": {"precision": "mixed_bfloat16", "jit": True},
    }[pipeline]
    result = run.work(
        "train",
        pipeline=pipeline,
        backbone="smallcnn",
        size=32,
        n=269,  # both classes (the images come in path order)
        batch=4,
        warmup=1,
        steps=2,
        **options,
    )
    assert result["steps_measured"] == 2
    assert result["images_per_s"] > 0 and result["first_step_s"] > 0


def test_every_timed_step_gets_a_full_batch() -> None:
    from benchmarks.workers import _check_full_batches

    for sizes in (run.FULL, run.QUICK):
        assert sizes.n >= run.training_images(sizes.warmup, sizes.steps)
    assert run.training_images(5, 30) == 700  # the GPU section: the seed trains on 560 of them
    _check_full_batches(560, 5, 30, 16)
    with pytest.raises(ValueError, match="538 training images fill 33 batches of 16, fewer"):
        _check_full_batches(538, 5, 30, 16)


def test_seed_reference_transform_is_keras_preprocessing_maths() -> None:
    from benchmarks.seed_reference import apply_affine_transform, random_transform

    x = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(apply_affine_transform(x, 0.0, 1.0, 1.0), x)
    # Zoom factors of -1 mirror both axes about keras_preprocessing's centre, w / 2 + 0.5 (one
    # pixel past the true centre): the mirror image shifted by two pixels.
    mirrored = apply_affine_transform(x, 0.0, -1.0, -1.0)
    np.testing.assert_allclose(mirrored[2:, 2:], x[::-1, ::-1][:-2, :-2], atol=1e-4)
    out = random_transform(x, np.random.RandomState(0))
    assert out.shape == x.shape and out.dtype == np.float32


def test_seed_reference_pipeline_holds_every_image(breakhis_dev: Path) -> None:
    from benchmarks.seed_reference import SeedFlow, seed_prepare

    benign = sorted((breakhis_dev / "benign").glob("*.png"))[:10]
    malignant = sorted((breakhis_dev / "malignant").glob("*.png"))[:10]
    x_train, y_train, x_val, y_val = seed_prepare(benign, malignant, 48)
    assert x_train.shape == (16, 48, 48, 3) and x_train.dtype == np.uint8
    assert x_val.shape == (4, 48, 48, 3)
    assert y_train.shape == (16, 2) and y_val.sum() == 4
    flow = SeedFlow(x_train, y_train, batch_size=6)
    assert len(flow) == 3
    images, labels = flow[2]
    assert images.shape == (4, 48, 48, 3) and images.dtype == np.float32
    assert labels.shape == (4, 2)
    assert flow.x.dtype == np.float32  # ImageDataGenerator.flow keeps a float32 copy


@pytest.mark.slow
def test_the_stain_worker_times_each_augmentation() -> None:
    result = run.work("stain", backbone="smallcnn", size=32, batch=4, seconds=0.2, rounds=1)
    for augmentation in ("none", "default", "pathology"):
        assert result[f"{augmentation}_step_s"] > 0 and result[f"{augmentation}_cpu_s"] > 0
    assert result["steps_per_round"] >= 5
    assert "stain_aug_step_cost" in run.ratios({**_results(gpus=0), "stain": result}, run.FULL)
