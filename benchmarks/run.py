"""breastcls versus the seed blog's pipeline, side by side, on the same images and models.

Usage (from the repository root)::

    python -m benchmarks.run            # the full CPU run (20 minutes or more on 2 cores)
    python -m benchmarks.run --quick    # a smoke run (about 7 minutes on 2 cores)
    python -m benchmarks.run --gpu-only # only float32 vs mixed vs mixed + XLA on the GPU
    python -m benchmarks.run --gpu-only --keras-backend jax  # the same on a GPU without TensorFlow
    python -m benchmarks.run --gpu-only --gpu-backbone densenet201  # one backbone of it
    python -m benchmarks.run --gpu-only --gpu-variant mixed_xla     # one configuration of it
    python -m benchmarks.run --only slide  # the whole-slide section alone
    python -m benchmarks.run --only foundation  # the frozen-extractor section alone
    python -m benchmarks.run --json results.json

Each measurement runs in its own process (:mod:`benchmarks.workers`). The output is a table of
measurements, a table of the targets, and last one ``ratio <name> = <value>`` line per ratio, so
runs can be compared with ``grep ^ratio``. The images are the real BreakHis development set
(``shared/data/breakhis-dev``, 269 images) repeated in order until there are N.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.environment import cpu_name

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    cpu: bool  # measure on the CPU (False: only the GPU section)
    n: int  # images for training
    light: str  # the light backbone
    light_size: int
    warmup: int
    steps: int
    rounds: int  # rounds of the headline seed/breastcls training pair
    extra_rounds: int  # rounds of the other training configurations (DenseNet201 included)
    extras: bool  # model-alone, seed-on-BFC, --cache memory, bfloat16 and smallcnn rows
    densenet: bool
    densenet_size: int
    densenet_steps: int
    decode_n: int
    decode_repeats: int
    rss_n: int  # N of the memory measurement (and 4N)
    rss_size: int
    infer_n: int
    infer_size: int
    infer_rounds: int  # plain and TTA-8 passes, in turn; each keeps its best
    gpu_backbones: tuple[str, ...] = ("mobilenetv3small", "densenet201")  # at 224 px
    gpu_variants: tuple[str, ...] | None = None  # labels of GPU_VARIANTS to measure (None: all)
    stain_backbone: str = "mobilenetv3small"  # the stain augmentation's step cost
    stain_size: int = 224
    stain_seconds: float = 4.0  # per augmentation and round
    stain_rounds: int = 3
    # The whole-slide pipeline: a slide of slide_columns x slide_rows 224-pixel cells of real
    # images (one tile each) and one of 4x the area, mobilenetv3small at slide_size.
    slide_size: int = 224
    slide_columns: int = 32
    slide_rows: int = 16
    # TensorFlow ran whole calls at about half speed now and then (docs/performance.md,
    # "TensorFlow's slow mode": tf.data's autotuning, now off in the library's pipelines);
    # five rounds still give each measurement several chances of a quiet moment.
    slide_rounds: int = 5
    # The slide model is trained this many epochs from random weights (benchmarks/workers.py,
    # task_slide_model): its probabilities vary with the class, so int8's agreement means
    # something.
    slide_model_epochs: int = 12
    # The foundation-model section (benchmarks/foundation.py): images, side, folds, and the
    # epochs of the fine-tuned comparison.
    foundation_n: int = 269
    foundation_size: int = 224
    foundation_folds: int = 5
    foundation_epochs: int = 3
    # embed_vs_model's extractor (benchmarks/foundation.py, task_embed_rates): ResNet50 (random
    # weights), about 4 GFLOPs an image, as much as or less than a frozen pathology foundation
    # model (UNI, Phikon, CONCH: 4-60). The section's MobileNetV3Small (0.06 GFLOPs) gives
    # embed_vs_model_small_extractor beside it: there decoding the PNGs bounds the ratio.
    foundation_embed_network: str = "resnet50"
    foundation_embed_n: int = 96
    foundation_embed_size: int = 224


FULL = Sizes(
    cpu=True,
    n=538,
    light="mobilenetv3small",
    light_size=224,
    warmup=3,
    steps=16,
    rounds=3,
    extra_rounds=2,
    extras=True,
    densenet=True,
    densenet_size=64,
    densenet_steps=8,
    decode_n=2152,  # 8 passes over the development images: 3-6 s per timed pass
    decode_repeats=3,
    rss_n=269,
    rss_size=224,
    infer_n=269,
    infer_size=224,
    infer_rounds=3,
)
QUICK = Sizes(
    cpu=True,
    n=200,
    light="mobilenetv3small",
    light_size=128,
    warmup=2,
    steps=8,
    rounds=1,
    extra_rounds=1,
    extras=False,
    densenet=False,
    densenet_size=64,
    densenet_steps=4,
    decode_n=1076,  # shorter passes weigh each new iterator's set-up (about 0.1 s) too much
    decode_repeats=2,
    rss_n=128,
    rss_size=224,
    infer_n=96,
    infer_size=128,
    infer_rounds=1,
    stain_backbone="smallcnn",
    stain_size=96,
    stain_seconds=2.0,
    stain_rounds=2,
    slide_size=128,
    slide_columns=24,
    slide_rows=12,
    slide_rounds=2,
    foundation_n=96,
    foundation_size=128,
    foundation_epochs=1,
    foundation_embed_n=32,
    foundation_embed_size=128,
)
GPU_ONLY = dataclasses.replace(FULL, cpu=False)
BATCH = 16  # the seed's batch size


def training_images(warmup: int, steps: int) -> int:
    """The fewest images that give every step a full batch in both pipelines: the seed trains
    on 80% of them (its 80/20 split)."""
    return math.ceil((warmup + steps) * BATCH / 0.8)


# The GPU section's configurations of breastcls, per Keras backend: (label, precision, jit).
GPU_VARIANTS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "tensorflow": (
        ("float32", "float32", False),
        ("mixed", "mixed", False),
        ("mixed_xla", "mixed", True),
    ),
    # JAX compiles every training step with XLA: it has no uncompiled graph mode to compare.
    "jax": (
        ("float32_xla", "float32", True),
        ("mixed_xla", "mixed_float16", True),
        ("mixed_bf16_xla", "mixed_bfloat16", True),
    ),
}
# Which breastcls pipeline the GPU section trains: tf.data needs TensorFlow; elsewhere the
# images are decoded into memory first, as `--cache memory` holds them after the first epoch.
GPU_PIPELINE = {"tensorflow": "breastcls", "jax": "memory"}


def work(
    task: str,
    *,
    gpu: bool = False,
    tf_defaults: bool = False,
    keras_backend: str = "tensorflow",
    **arguments: Any,
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its result.

    Unless ``gpu``, the process sees no GPU, so that CPU figures stay CPU figures on a machine
    with a GPU. With ``tf_defaults`` it runs on TensorFlow's default CPU allocator, as the seed's
    script does; otherwise on the BFC allocator that breastcls' entry points select
    (:func:`breastcls.environment.prepare_tensorflow`).
    """
    command = [sys.executable, "-m", "benchmarks.workers", task, json.dumps(arguments)]
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": python_path,
        "KERAS_BACKEND": keras_backend,
    }
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    if tf_defaults:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "false"
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"benchmark task {task} {arguments} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def _gpu_variants(keras_backend: str, sizes: Sizes) -> list[tuple[str, str, bool]]:
    """The GPU section's configurations of breastcls that ``sizes`` asks for."""
    return [
        variant
        for variant in GPU_VARIANTS[keras_backend]
        if sizes.gpu_variants is None or variant[0] in sizes.gpu_variants
    ]


def measure(
    sizes: Sizes, progress: bool = True, keras_backend: str = "tensorflow", only: str | None = None
) -> dict[str, Any]:
    """Run every measurement (with ``only``, one section of :data:`SECTIONS` alone); return
    the raw results.

    The CPU section needs TensorFlow (breastcls' ``tf.data`` loader); the GPU section also runs
    on ``keras_backend="jax"``, for a GPU machine without TensorFlow.
    """
    if sizes.cpu and keras_backend != "tensorflow":
        raise ValueError("the CPU section needs TensorFlow: use the GPU section alone")
    results: dict[str, Any] = {"keras_backend": keras_backend}

    def step(
        key: str, task: str, *, gpu: bool = False, tf_defaults: bool | None = None, **arguments: Any
    ) -> None:
        """Measure ``task`` into ``results[key]``; the seed runs on TensorFlow's defaults unless
        ``tf_defaults`` says otherwise."""
        if progress:
            print(f"... {key}", file=sys.stderr, flush=True)
        if tf_defaults is None:
            tf_defaults = arguments.get("pipeline") == "seed"
        started = time.perf_counter()
        results[key] = work(
            task, gpu=gpu, tf_defaults=tf_defaults, keras_backend=keras_backend, **arguments
        )
        results[key]["wall_s"] = time.perf_counter() - started
        if progress and "images_per_s" in results[key]:
            print(
                f"    {results[key]['images_per_s']:.1f} images/s, first step after "
                f"{results[key]['first_step_s']:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def in_turn(runs: dict[str, dict[str, Any]], rounds: int) -> None:
        """Measure the training ``runs`` in turn, ``rounds`` times; each keeps its best round.

        On a shared machine this gives every configuration the same chances of a quiet moment,
        and a process that lands in a slow mode (see docs/performance.md) does not decide a
        ratio on its own.
        """
        for round_ in range(rounds):
            for key, arguments in runs.items():
                step(f"{key}_{round_}", "train", **arguments)
        for key in runs:
            measured = [results.pop(f"{key}_{r}") for r in range(rounds)]
            results[key] = {
                **max(measured, key=lambda r: r["images_per_s"]),
                "first_step_s": min(r["first_step_s"] for r in measured),
                "rounds": measured,
            }

    if only is not None:
        SECTIONS[only].steps(sizes, step)
        return results | {"gpus": 0}
    if sizes.cpu:
        train: dict[str, Any] = {
            "n": sizes.n,
            "batch": BATCH,
            "warmup": sizes.warmup,
            "steps": sizes.steps,
        }
        light: dict[str, Any] = {"backbone": sizes.light, "size": sizes.light_size}
        step("decode", "decode", n=sizes.decode_n, size=224, repeats=sizes.decode_repeats)
        in_turn(
            {
                "train_seed_light": {"pipeline": "seed", **light, **train},
                "train_breastcls_light": {"pipeline": "breastcls", **light, **train},
            },
            sizes.rounds,
        )
        if sizes.extras:
            extras: dict[str, dict[str, Any]] = {
                "train_floor_light": {"pipeline": "floor"},
                "train_seed_light_bfc": {"pipeline": "seed", "tf_defaults": False},
                "train_breastcls_light_cached": {"pipeline": "breastcls", "cache": "memory"},
            }
            in_turn({k: {**a, **light, **train} for k, a in extras.items()}, sizes.extra_rounds)
            step(
                "train_breastcls_light_bf16",
                "train",
                pipeline="breastcls",
                precision="mixed",
                **light,
                **train,
            )
            small: dict[str, Any] = {"backbone": "smallcnn", "size": 224, **train}
            in_turn(
                {
                    "train_seed_smallcnn": {"pipeline": "seed", **small},
                    "train_breastcls_smallcnn": {"pipeline": "breastcls", **small},
                },
                sizes.extra_rounds,
            )
        if sizes.densenet:
            dense: dict[str, Any] = {
                "backbone": "densenet201",
                "size": sizes.densenet_size,
                "n": sizes.n,
                "batch": BATCH,
                "warmup": 2,
                "steps": sizes.densenet_steps,
            }
            in_turn(
                {
                    "train_seed_densenet201": {"pipeline": "seed", **dense},
                    "train_breastcls_densenet201": {"pipeline": "breastcls", **dense},
                },
                sizes.extra_rounds,
            )
        for pipeline in ("seed", "breastcls"):
            for factor in (1, 4):
                step(
                    f"rss_{pipeline}_{factor}n",
                    "rss",
                    pipeline=pipeline,
                    n=sizes.rss_n * factor,
                    size=sizes.rss_size,
                    steps=3,
                )
        step(
            "infer",
            "infer",
            backbone=sizes.light,
            size=sizes.infer_size,
            n=sizes.infer_n,
            batch=BATCH,
            rounds=sizes.infer_rounds,
        )
        step(
            "stain",
            "stain",
            backbone=sizes.stain_backbone,
            size=sizes.stain_size,
            batch=BATCH,
            seconds=sizes.stain_seconds,
            rounds=sizes.stain_rounds,
        )
        slide_steps(sizes, step)
        foundation_steps(sizes, step)
    gpus = results["gpus"] = int(work("gpus", gpu=True, keras_backend=keras_backend)["gpus"])
    if gpus:
        gpu_train: dict[str, Any] = {
            "n": training_images(5, 30),
            "batch": BATCH,
            "warmup": 5,
            "steps": 30,
            "size": 224,
        }
        for backbone in sizes.gpu_backbones:
            step(
                f"gpu_seed_{backbone}",
                "train",
                gpu=True,
                pipeline="seed",
                backbone=backbone,
                **gpu_train,
            )
            for label, precision, jit in _gpu_variants(keras_backend, sizes):
                step(
                    f"gpu_breastcls_{backbone}_{label}",
                    "train",
                    gpu=True,
                    pipeline=GPU_PIPELINE[keras_backend],
                    backbone=backbone,
                    precision=precision,
                    jit=jit,
                    **gpu_train,
                )
    return results


def slide_steps(sizes: Sizes, step: Any) -> None:
    """Measure the whole-slide pipeline: write a slide and one of 4x its area and train the
    model briefly (each in its own process), time the larger (``slide``) and take each one's
    peak memory in a fresh process (``slide_rss_1x``, ``slide_rss_4x``)."""
    with tempfile.TemporaryDirectory(prefix="breastcls-slides-") as folder:
        slides = {factor: str(Path(folder) / f"slide-{factor}x.tif") for factor in (1, 4)}
        columns = {1: sizes.slide_columns, 4: 2 * sizes.slide_columns}  # 4x: twice each side
        for factor, path in slides.items():
            step(
                f"slide_file_{factor}x",
                "slide_file",
                path=path,
                columns=columns[factor],
                rows=sizes.slide_rows * (2 if factor == 4 else 1),
            )
        run_folder = Path(folder) / "model"
        run_folder.mkdir()
        step(
            "slide_model", "slide_model", folder=str(run_folder), backbone=sizes.light,
            size=sizes.slide_size, epochs=sizes.slide_model_epochs,
        )  # fmt: skip
        model = {"model": str(run_folder), "size": sizes.slide_size, "batch": BATCH}
        step(
            "slide", "slide", slide=slides[4], columns=columns[4], rounds=sizes.slide_rounds,
            **model,
        )  # fmt: skip
        for factor, path in slides.items():
            step(f"slide_rss_{factor}x", "slide_rss", slide=path, **model)


def ratios(results: dict[str, Any], sizes: Sizes) -> dict[str, float]:
    """Derive the ``ratio`` lines from the raw results."""

    def rate(key: str) -> float:
        return float(results[key]["images_per_s"])

    if not sizes.cpu:
        return _gpu_ratios(results, sizes)
    out: dict[str, float] = {
        "train_speedup_vs_seed": rate("train_breastcls_light") / rate("train_seed_light"),
        "first_step_speedup_vs_seed": results["train_seed_light"]["first_step_s"]
        / results["train_breastcls_light"]["first_step_s"],
    }
    if sizes.extras:
        seed = rate("train_seed_light")
        out["train_speedup_cached_vs_seed"] = rate("train_breastcls_light_cached") / seed
        out["train_speedup_bf16_vs_seed"] = rate("train_breastcls_light_bf16") / seed
        out["train_speedup_vs_seed_on_bfc"] = rate("train_breastcls_light") / rate(
            "train_seed_light_bfc"
        )
        out["train_model_floor_vs_seed"] = rate("train_floor_light") / seed
        out["train_fraction_of_model_floor"] = rate("train_breastcls_light") / rate(
            "train_floor_light"
        )
        out["train_speedup_vs_seed_smallcnn"] = rate("train_breastcls_smallcnn") / rate(
            "train_seed_smallcnn"
        )
    if sizes.densenet:
        out["train_speedup_vs_seed_densenet201"] = rate("train_breastcls_densenet201") / rate(
            "train_seed_densenet201"
        )
        out["first_step_speedup_vs_seed_densenet201"] = (
            results["train_seed_densenet201"]["first_step_s"]
            / results["train_breastcls_densenet201"]["first_step_s"]
        )
    decode = results["decode"]
    out["decode_speedup_vs_seed"] = decode["breastcls_images_per_s"] / decode["seed_images_per_s"]
    out["decode_speedup_normalised_vs_seed"] = (
        decode["breastcls_normalised_images_per_s"] / decode["seed_images_per_s"]
    )
    out["cached_epoch_speedup"] = (
        decode["breastcls_cached_images_per_s"] / decode["breastcls_images_per_s"]
    )
    for pipeline in ("seed", "breastcls"):
        small = results[f"rss_{pipeline}_1n"]["peak_rss"]
        large = results[f"rss_{pipeline}_4n"]["peak_rss"]
        out[f"rss_growth_4n_{pipeline}"] = large / small - 1.0
    infer = results["infer"]
    out["tta8_cost"] = infer["plain_images_per_s"] / infer["tta8_images_per_s"]
    # The share of inference time the domain-shift score adds (its features come from the
    # same model call; the distances are computed per batch in numpy), in CPU time per image.
    out["domain_score_cost"] = (
        infer["domain_cpu_s_per_image"] / infer["plain_cpu_s_per_image"] - 1.0
    )
    # CPU time of a training step with `pathology` over one with `default`: the same geometry
    # (but a milder zoom), so the ratio is what HED and colour jitter add.
    stain = results["stain"]
    out["stain_aug_step_cost"] = stain["pathology_cpu_s"] / stain["default_cpu_s"]
    out |= slide_ratios(results)
    out |= foundation_ratios(results)
    return out | _gpu_ratios(results, sizes)


def foundation_ratios(results: dict[str, Any]) -> dict[str, float]:
    """The frozen-extractor ratios, in CPU time: ``probe_cv_speedup``, ``embed_vs_model``
    (embedding pipeline over the extractor alone, with ResNet50) and, without a target, the same
    with MobileNetV3Small (``embed_vs_model_small_extractor``)."""

    def embed_vs_model(key: str) -> float:
        measured = results[key]
        return float(
            measured["extractor_cpu_s_per_image"] / measured["pipeline_cpu_s_per_image"]
        )

    out: dict[str, float] = {}
    if "foundation" in results:
        foundation = results["foundation"]
        out["probe_cv_speedup"] = (
            foundation["fine_tuned_cv_cpu_s"] / foundation["cached_cv_cpu_s"]
        )
    if "foundation_embed" in results:
        out["embed_vs_model"] = embed_vs_model("foundation_embed")
    if "foundation" in results:
        out["embed_vs_model_small_extractor"] = embed_vs_model("foundation")
    return out


SMALL_EXTRACTOR_NOTE = (
    "embed_vs_model is measured with a ResNet50 extractor (about 4 GFLOPs an image; a frozen "
    "pathology foundation model costs as much or more). embed_vs_model_small_extractor "
    "(MobileNetV3Small, about 0.06 GFLOPs) has no target: there decoding the PNGs (about 2.3 "
    "CPU ms an image, the same for any extractor) is a large share of a 3-10 CPU ms extractor "
    "and bounds the ratio."
)


def slide_ratios(results: dict[str, Any]) -> dict[str, float]:
    """The whole-slide ratios, in CPU time (``time.process_time``: the wall clock of the same
    work on a shared machine varied by 2x): the pipeline over the model alone on the same
    tiles in each runtime, int8 over float32 ONNX, and int8's agreement with float32 on the
    tiles of the images it was not calibrated on."""
    slide = results["slide"]

    def cpu(key: str) -> float:
        return float(slide[f"{key}_cpu_tiles_per_s"])

    out = {
        "slide_tiles_vs_model": cpu("pipeline_tensorflow") / cpu("model_tensorflow"),
        "slide_tiles_vs_model_onnx": cpu("pipeline_onnx") / cpu("model_onnx"),
        "slide_runtime_auto_vs_tensorflow": cpu("pipeline_auto") / cpu("pipeline_tensorflow"),
        "onnx_hard_activations_fused_speedup": cpu("model_onnx") / cpu("model_onnx_plain"),
        "slide_int8_speedup": cpu("pipeline_onnx_int8") / cpu("pipeline_onnx"),
        "slide_int8_max_abs_diff": float(slide["int8_max_abs_diff"]),
        "slide_int8_auc_change": abs(slide["int8_tile_auc"] - slide["onnx_tile_auc"]),
    }
    if "slide_rss_1x" in results:
        out["slide_rss_growth_4x"] = (
            results["slide_rss_4x"]["peak_rss"] / results["slide_rss_1x"]["peak_rss"]
        )
    return out


def _gpu_ratios(results: dict[str, Any], sizes: Sizes) -> dict[str, float]:
    def rate(key: str) -> float:
        return float(results[key]["images_per_s"])

    out: dict[str, float] = {}
    if not results.get("gpus"):
        return out
    keras_backend = results.get("keras_backend", "tensorflow")
    (base, _, _), *others = GPU_VARIANTS[keras_backend]

    def key(backbone: str, configuration: str) -> str:
        """The results key of the seed reference or of one of breastcls' variants."""
        if configuration == "seed":
            return f"gpu_seed_{backbone}"
        return f"gpu_breastcls_{backbone}_{configuration}"

    for backbone in sizes.gpu_backbones:
        pairs = {
            f"gpu_train_speedup_{label}_vs_seed_{backbone}": (label, "seed")
            for label in _mixed_xla_variants(keras_backend)
        }
        for label, _, _ in others:
            pairs[f"gpu_{label}_speedup_vs_{base}_{backbone}"] = (label, base)
        for name, (ours, reference) in pairs.items():
            # A run may measure some variants only (--gpu-variant).
            if key(backbone, ours) in results and key(backbone, reference) in results:
                out[name] = rate(key(backbone, ours)) / rate(key(backbone, reference))
    return out


def _mixed_xla_variants(keras_backend: str) -> list[str]:
    """The GPU variants in mixed precision with XLA: those the GPU target is set for."""
    return [
        label
        for label, precision, jit in GPU_VARIANTS[keras_backend]
        if jit and precision != "float32"
    ]


CPU_TARGETS: list[tuple[str, str, float]] = [
    # (ratio, comparison, bound)
    ("train_speedup_vs_seed", ">=", 1.3),
    ("train_speedup_vs_seed_smallcnn", ">=", 1.3),
    ("train_speedup_vs_seed_densenet201", ">=", 1.3),
    ("decode_speedup_vs_seed", ">=", 1.8),
    ("decode_speedup_normalised_vs_seed", ">=", 1.5),
    ("rss_growth_4n_breastcls", "<=", 0.10),
    ("tta8_cost", "<=", 8.5),
    ("domain_score_cost", "<=", 0.10),
    ("stain_aug_step_cost", "<=", 1.10),
    ("slide_tiles_vs_model", ">=", 0.9),
    ("slide_tiles_vs_model_onnx", ">=", 0.9),
    ("slide_rss_growth_4x", "<=", 1.10),
    ("slide_runtime_auto_vs_tensorflow", ">=", 1.0),
    ("onnx_hard_activations_fused_speedup", ">=", 1.1),
    ("slide_int8_speedup", ">=", 1.5),
    ("slide_int8_auc_change", "<=", 0.005),
    ("probe_cv_speedup", ">=", 20.0),
    ("embed_vs_model", ">=", 0.9),
]


def targets(keras_backend: str = "tensorflow") -> list[tuple[str, str, float]]:
    """The targets, ``(ratio, comparison, bound)``: the GPU ones depend on the Keras backend
    (on JAX both mixed float16 and mixed bfloat16 with XLA are mixed precision + XLA)."""
    gpu = [
        (f"gpu_train_speedup_{label}_vs_seed_{backbone}", ">=", 3.0)
        for backbone in FULL.gpu_backbones
        for label in _mixed_xla_variants(keras_backend)
    ]
    return CPU_TARGETS + gpu


def table(results: dict[str, Any], sizes: Sizes) -> list[str]:
    """Format the measurements as a Markdown table."""
    mib = 1024 * 1024
    rows = [
        "| measurement | seed reference | breastcls |",
        "|---|---|---|",
    ]

    def train_rows(label: str, seed_key: str, ours_key: str) -> None:
        seed, ours = results[seed_key], results[ours_key]
        rows.append(
            f"| train {label}: images/s (steady state) | {seed['images_per_s']:.1f} | "
            f"{ours['images_per_s']:.1f} |"
        )
        rows.append(
            f"| train {label}: time to first step (s) | {seed['first_step_s']:.1f} | "
            f"{ours['first_step_s']:.1f} |"
        )

    if sizes.cpu:
        light = f"{sizes.light} {sizes.light_size}px float32"
        train_rows(light, "train_seed_light", "train_breastcls_light")
        if sizes.extras:
            rows.append(
                f"| train {light}, the seed reference on the BFC allocator: images/s | "
                f"{results['train_seed_light_bfc']['images_per_s']:.1f} | - |"
            )
            rows.append(
                f"| train {light}, the model alone (one batch, no augmentation): images/s | - | "
                f"{results['train_floor_light']['images_per_s']:.1f} |"
            )
            seed = results["train_seed_light"]["images_per_s"]
            for key, option in (
                ("train_breastcls_light_cached", "--cache memory"),
                ("train_breastcls_light_bf16", "--precision mixed (bfloat16)"),
            ):
                rows.append(
                    f"| train {sizes.light} {sizes.light_size}px, breastcls {option}: images/s | "
                    f"{seed:.1f} | {results[key]['images_per_s']:.1f} |"
                )
            train_rows("smallcnn 224px float32", "train_seed_smallcnn", "train_breastcls_smallcnn")
        if sizes.densenet:
            train_rows(
                f"densenet201 {sizes.densenet_size}px float32",
                "train_seed_densenet201",
                "train_breastcls_densenet201",
            )
        decode = results["decode"]
        rows.append(
            f"| decode + resize to 224: images/s ({sizes.decode_n} images) | "
            f"{decode['seed_images_per_s']:.0f} | {decode['breastcls_images_per_s']:.0f} |"
        )
        rows.append(
            f"| decode + resize to 224 + Macenko stain normalisation: images/s | "
            f"{decode['seed_images_per_s']:.0f} | "
            f"{decode['breastcls_normalised_images_per_s']:.0f} |"
        )
        rows.append(
            f"| breastcls one-off check of every image (scan): images/s | - | "
            f"{decode['breastcls_scan_images_per_s']:.0f} |"
        )
        rows.append(
            f"| epoch from --cache memory: images/s | - | "
            f"{decode['breastcls_cached_images_per_s']:.0f} |"
        )
        for factor in (1, 4):
            n = sizes.rss_n * factor
            seed = results[f"rss_seed_{factor}n"]["peak_rss"] / mib
            ours = results[f"rss_breastcls_{factor}n"]["peak_rss"] / mib
            rows.append(
                f"| peak RSS, {n} images at {sizes.rss_size}px (MiB) | {seed:.0f} | {ours:.0f} |"
            )
        infer = results["infer"]
        rows.append(
            f"| inference {sizes.light} {sizes.infer_size}px: images/s plain | - | "
            f"{infer['plain_images_per_s']:.1f} |"
        )
        rows.append(
            f"| inference {sizes.light} {sizes.infer_size}px: images/s TTA-8 (d8) | - | "
            f"{infer['tta8_images_per_s']:.1f} |"
        )
        rows.append(
            f"| inference {sizes.light} {sizes.infer_size}px: images/s with the domain-shift "
            f"score | - | {infer['domain_images_per_s']:.1f} |"
        )
        stain = results["stain"]
        for augmentation in ("none", "default", "pathology"):
            rows.append(
                f"| train step {sizes.stain_backbone} {sizes.stain_size}px, one in-memory batch, "
                f"--augmentation {augmentation}: CPU ms (wall ms) | - | "
                f"{1000 * stain[f'{augmentation}_cpu_s']:.0f} "
                f"({1000 * stain[f'{augmentation}_step_s']:.0f}) |"
            )
        rows += slide_rows(results, sizes)
    rows += foundation_rows(results)
    if results.get("gpus"):
        keras_backend = results.get("keras_backend", "tensorflow")
        on = "" if keras_backend == "tensorflow" else f" (Keras on {keras_backend}, from memory)"
        for backbone in sizes.gpu_backbones:
            seed = results[f"gpu_seed_{backbone}"]["images_per_s"]
            for label, _, _ in _gpu_variants(keras_backend, sizes):
                ours = results[f"gpu_breastcls_{backbone}_{label}"]["images_per_s"]
                rows.append(
                    f"| GPU train {backbone} 224px, breastcls {label}{on}: images/s | "
                    f"{seed:.1f} | {ours:.1f} |"
                )
    else:
        rows.append("| GPU: float32 vs mixed vs mixed + XLA | no GPU: not measured | - |")
    return rows


def slide_rows(results: dict[str, Any], sizes: Sizes) -> list[str]:
    """The whole-slide rows of the measurement table: tiles per CPU second (tiles per
    wall-clock second)."""
    slide = results["slide"]
    model = f"{sizes.light} {sizes.slide_size}px, {slide['tiles']} tiles"
    mib = 1024 * 1024

    def rate(key: str) -> str:
        return f"{slide[f'{key}_cpu_tiles_per_s']:.1f} ({slide[f'{key}_wall_tiles_per_s']:.1f})"

    rows = []
    for runtime, label in (
        ("tensorflow", "TensorFlow"),
        ("onnx", "ONNX Runtime float32"),
        ("onnx_int8", "ONNX Runtime int8"),
    ):
        rows += [
            f"| slide {model}: tiles per CPU s (per wall s), the model alone on the tiles in "
            f"memory, {label} | - | {rate(f'model_{runtime}')} |",
            f"| slide {model}: tiles per CPU s (per wall s), the whole pipeline, {label} | - | "
            f"{rate(f'pipeline_{runtime}')} |",
        ]
    rows.append(
        f"| slide {model}: tiles per CPU s (per wall s), the model alone, ONNX Runtime float32 "
        "on the plain tf2onnx graph (hard activations not fused) | - | "
        f"{rate('model_onnx_plain')} |"
    )
    rows += [
        f"| slide {model}: tiles per CPU s (per wall s), the whole pipeline with --runtime auto "
        f"({slide['auto_runtime']}; probe: onnx {slide['probe_onnx_images_per_s']:.0f}, "
        f"tensorflow {slide['probe_tensorflow_images_per_s']:.0f} images/s) | - | "
        f"{rate('pipeline_auto')} |",
        f"| slide int8 vs float32 ONNX on {slide['int8_check_tiles']} tiles "
        f"({slide['int8_check_malignant_tiles']} malignant), the {slide['int8_set']}: largest "
        f"(mean) probability difference; tile AUC float32, int8 | - | "
        f"{slide['int8_max_abs_diff']:.4f} ({slide['int8_mean_abs_diff']:.4f}); "
        f"{slide['onnx_tile_auc']:.4f}, {slide['int8_tile_auc']:.4f} |",
    ]
    trained = results.get("slide_model")
    if trained is not None:
        rows.append(
            f"| slide model: {sizes.light} {sizes.slide_size}px trained {trained['epochs']} "
            f"epochs from random weights on {trained['training_images']} development images "
            f"(int8 calibrated on {trained['selection_images']} others); on the "
            f"{trained['check_images']} check images (neither): AUC; probabilities from, to | - "
            f"| {trained['check_auc']:.3f}; {trained['check_probability_min']:.3f}, "
            f"{trained['check_probability_max']:.3f} |"
        )
    for factor in (1, 4):
        measured = results.get(f"slide_rss_{factor}x")
        if measured is not None:
            rows.append(
                f"| slide peak RSS, {measured['tiles']} tiles ({factor}x area) (MiB) | - | "
                f"{measured['peak_rss'] / mib:.0f} |"
            )
    return rows


def foundation_rows(results: dict[str, Any]) -> list[str]:
    """The frozen-extractor rows of the measurement table (CPU time), those measured."""
    rows = []
    if "foundation" in results:
        foundation = results["foundation"]
        what = (
            f"mobilenetv3small {foundation['size']}px as a frozen extractor, {foundation['n']} "
            f"images, {foundation['folds']} folds"
        )
        rows += [
            f"| {what}: CPU s, fine-tuned {foundation['epochs']} epochs vs linear probe on "
            f"cached embeddings | {foundation['fine_tuned_cv_cpu_s']:.1f} | "
            f"{foundation['cached_cv_cpu_s']:.1f} |",
            f"| {what}: CPU ms per image, the extractor alone vs the embedding pipeline "
            f"(embed_vs_model_small_extractor, no target) | "
            f"{1000 * foundation['extractor_cpu_s_per_image']:.1f} | "
            f"{1000 * foundation['pipeline_cpu_s_per_image']:.1f} |",
        ]
    if "foundation_embed" in results:
        embed = results["foundation_embed"]
        rows.append(
            f"| {embed['network']} {embed['size']}px (random weights) as a frozen extractor, "
            f"{embed['n']} images: CPU ms per image, the extractor alone vs the embedding "
            f"pipeline (embed_vs_model) | {1000 * embed['extractor_cpu_s_per_image']:.1f} | "
            f"{1000 * embed['pipeline_cpu_s_per_image']:.1f} |"
        )
    return rows


def foundation_steps(sizes: Sizes, step: Callable[..., None]) -> None:
    """Measure the frozen-extractor section: the cross-validations and the small extractor's
    rates in one process, ``embed_vs_model``'s extractor's rates in another."""
    step(
        "foundation",
        "foundation",
        n=sizes.foundation_n,
        size=sizes.foundation_size,
        folds=sizes.foundation_folds,
        epochs=sizes.foundation_epochs,
    )
    step(
        "foundation_embed",
        "embed_rates",
        n=sizes.foundation_embed_n,
        size=sizes.foundation_embed_size,
        network=sizes.foundation_embed_network,
    )


@dataclass(frozen=True)
class Section:
    """A section that ``--only`` measures alone: its steps, its ratios and its table rows."""

    steps: Callable[[Sizes, Callable[..., None]], None]
    ratios: Callable[[dict[str, Any]], dict[str, float]]
    rows: Callable[[dict[str, Any], Sizes], list[str]]


SECTIONS = {
    "slide": Section(steps=slide_steps, ratios=slide_ratios, rows=slide_rows),
    "foundation": Section(
        steps=foundation_steps,
        ratios=foundation_ratios,
        rows=lambda results, _: foundation_rows(results),
    ),
}


def target_rows(values: dict[str, float], keras_backend: str = "tensorflow") -> list[str]:
    """Format the targets and whether this run meets them."""
    rows = ["| target | bound | this run | holds |", "|---|---|---|---|"]
    for name, comparison, bound in targets(keras_backend):
        if name not in values:
            rows.append(f"| {name} | {comparison} {bound} | not measured | - |")
            continue
        value = values[name]
        holds = value >= bound if comparison == ">=" else value <= bound
        shown = f"{value:.3f}" if abs(value) >= 0.01 else f"{value:.2g}"  # e.g. an AUC change
        rows.append(f"| {name} | {comparison} {bound} | {shown} | {'yes' if holds else 'NO'} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the tables and the ratio lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (about 7 minutes on 2 cores)"
    )
    parser.add_argument(
        "--gpu-only", action="store_true", help="only the GPU section (float32, mixed, mixed + XLA)"
    )
    parser.add_argument(
        "--keras-backend",
        choices=sorted(GPU_VARIANTS),
        default="tensorflow",
        help="Keras backend of the GPU section (jax: for a GPU machine without TensorFlow; "
        "needs --gpu-only)",
    )
    parser.add_argument(
        "--gpu-backbone",
        action="append",
        metavar="NAME",
        help="a backbone of the GPU section (repeatable; default: mobilenetv3small and "
        "densenet201), to split the section across shorter runs",
    )
    parser.add_argument(
        "--gpu-variant",
        action="append",
        metavar="LABEL",
        help="a configuration of the GPU section (repeatable; default: all): float32, mixed, "
        "mixed_xla on TensorFlow; float32_xla, mixed_xla, mixed_bf16_xla on JAX",
    )
    parser.add_argument(
        "--only",
        choices=["slide", "foundation"],
        help="measure one section alone: slide (the whole-slide pipeline, its runtimes and "
        "int8; about 10 minutes on 2 cores at the full sizes) or foundation (frozen "
        "extractors: probe_cv_speedup, embed_vs_model)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.keras_backend != "tensorflow" and not args.gpu_only:
        parser.error("--keras-backend jax measures the GPU section only: add --gpu-only")
    sizes = GPU_ONLY if args.gpu_only else QUICK if args.quick else FULL
    if args.gpu_backbone:
        sizes = dataclasses.replace(sizes, gpu_backbones=tuple(args.gpu_backbone))
    if args.gpu_variant:
        known = [label for label, _, _ in GPU_VARIANTS[args.keras_backend]]
        unknown = sorted(set(args.gpu_variant) - set(known))
        if unknown:
            parser.error(
                f"--gpu-variant {', '.join(unknown)}: on {args.keras_backend} use "
                f"{', '.join(known)}"
            )
        sizes = dataclasses.replace(sizes, gpu_variants=tuple(args.gpu_variant))
    started = time.perf_counter()
    results = measure(sizes, keras_backend=args.keras_backend, only=args.only)
    section = SECTIONS[args.only] if args.only else None
    values = section.ratios(results) if section else ratios(results, sizes)
    elapsed = time.perf_counter() - started
    mode = "GPU only" if args.gpu_only else "quick" if args.quick else "full"
    print(
        f"breastcls benchmark ({mode}) on {cpu_name()}, {os.cpu_count()} CPU(s), "
        f"GPUs: {results['gpus']}, Keras backend: {args.keras_backend}; {elapsed / 60:.1f} min"
    )
    print()
    print("\n".join(section.rows(results, sizes) if section else table(results, sizes)))
    print()
    if args.quick:
        print("A smoke run: small sizes and one round each; the targets are set for the full run.")
        print()
    print("\n".join(target_rows(values, args.keras_backend)))
    print()
    if "embed_vs_model_small_extractor" in values:
        print(SMALL_EXTRACTOR_NOTE)
        print()
    if args.json:
        args.json.write_text(
            json.dumps({"sizes": sizes.__dict__, "results": results, "ratios": values}, indent=2),
            encoding="utf-8",
        )
    for name, value in values.items():
        # Two decimals, or two significant digits for the small ones (a probability difference).
        print(f"ratio {name} = {value:.2f}" if abs(value) >= 0.1 else f"ratio {name} = {value:.2g}")


if __name__ == "__main__":
    main()
