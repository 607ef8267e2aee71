"""One measurement per process: ``python -m benchmarks.workers TASK '{json arguments}'``.

Every measurement runs in a fresh interpreter so that neither pipeline profits from the other's
warmed caches, compiled graphs or memory, and so that peak RSS is the process's own. The last
line printed is ``RESULT {json}``; :mod:`benchmarks.run` collects it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.foundation import task_embed_rates, task_foundation
from breastcls.environment import prepare_tensorflow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# breastcls' own entry points choose TensorFlow's BFC CPU allocator before TensorFlow starts;
# these measurements drive its pieces directly, so they choose it here, as the CLI does.
prepare_tensorflow()

DATA = Path(
    os.environ.get(
        "BREASTCLS_SHARED_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "breakhis-dev",
    )
)


def _samples(n: int) -> tuple[list[Any], tuple[str, ...]]:
    """The real BreakHis images, repeated in order until there are ``n``."""
    from breastcls import DataConfig, load_dataset

    dataset = load_dataset(DataConfig(path=DATA))
    base = sorted(dataset.samples, key=lambda s: str(s.path))
    return [base[i % len(base)] for i in range(n)], dataset.class_names


def _by_class(samples: list[Any]) -> tuple[list[Path], list[Path]]:
    return (
        [s.path for s in samples if s.label == "benign"],
        [s.path for s in samples if s.label == "malignant"],
    )


def _peak_rss() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class _StepTimer:
    """Record the wall-clock time at the end of every training step (synchronised on the loss)."""

    def __init__(self) -> None:
        import keras

        timer = self

        class Callback(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
                if logs and "loss" in logs:
                    float(logs["loss"])  # wait for the step to finish
                timer.times.append(time.perf_counter())

        self.times: list[float] = []
        self.callback = Callback()

    def summary(self, start: float, warmup: int, batch_size: int) -> dict[str, float]:
        """Time to the end of the first step, and the steady-state rate: the batch size over the
        median duration of the steps after ``warmup`` (the median ignores the odd step slowed
        down by another process on a shared machine)."""
        import numpy as np

        durations = np.diff(self.times[warmup - 1 :])
        return {
            "first_step_s": self.times[0] - start,
            "images_per_s": batch_size / float(np.median(durations)),
            "mean_images_per_s": batch_size / float(np.mean(durations)),
            "steps_measured": float(len(durations)),
        }


def _check_full_batches(images: int, warmup: int, steps: int, batch: int) -> None:
    """Fail unless ``images`` fill every timed step with a full batch: a partial last batch, or
    a stream that runs out, would measure other steps than the ones asked for."""
    if images < (warmup + steps) * batch:
        raise ValueError(
            f"{images} training images fill {images // batch} batches of {batch}, fewer than the "
            f"{warmup} warm-up and {steps} measured steps: give the benchmark more images (n)"
        )


def _seed_backbone(name: str, size: int) -> Any:
    from breastcls.plugins import PluginHost

    return PluginHost().backbones.get(name).build(input_shape=(size, size, 3), weights=None)


def _memory_batches(
    samples: list[Any], class_names: tuple[str, ...], size: int, batch: int, steps: int
) -> Any:
    """breastcls' images decoded once into memory and served as shuffled batches by a Keras
    ``PyDataset``: what ``--cache memory`` serves after its first epoch, without ``tf.data``, so
    that it runs on every Keras backend."""
    import cv2
    import keras
    import numpy as np

    from breastcls.data.images import decode_image

    images = np.stack(
        [
            cv2.resize(decode_image(s.path), (size, size), interpolation=cv2.INTER_AREA)
            for s in samples
        ]
    )
    labels = np.eye(len(class_names), dtype=np.float32)[
        [class_names.index(s.label) for s in samples]
    ]
    rng = np.random.default_rng(11)

    class MemoryBatches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.order = rng.permutation(len(images))

        def __len__(self) -> int:
            return steps  # task_train checked that the images fill them

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            chosen = self.order[index * batch : (index + 1) * batch]
            return images[chosen], labels[chosen]

        def on_epoch_end(self) -> None:
            self.order = rng.permutation(len(images))

    return MemoryBatches()


def _precision_policy(precision: str) -> str:
    """The Keras dtype policy: ``mixed`` is breastcls' choice (float16 on a GPU, else bfloat16);
    ``mixed_float16`` and ``mixed_bfloat16`` name one."""
    if precision != "mixed":
        return precision
    from breastcls.training.fit import precision_policy as breastcls_policy

    return breastcls_policy(precision)


def task_train(
    pipeline: str,
    backbone: str,
    size: int,
    n: int,
    batch: int,
    warmup: int,
    steps: int,
    precision: str = "float32",
    jit: bool = False,
    cache: str | None = None,
) -> dict[str, Any]:
    """Training throughput (steady state) and time to first step of one pipeline.

    The clock starts once the libraries are imported and the file list is known: it covers data
    preparation (the seed loads every image; breastcls checks every image, and with ``cache``
    decodes them all into the cache, as its first epoch would), building the model, tracing and
    the first step.

    ``pipeline="floor"`` is the ceiling of any input pipeline: breastcls' model without
    augmentation, fed one decoded batch over and over, so that every step is the model's own
    arithmetic and nothing else. ``pipeline="memory"`` feeds breastcls' model and trainer from
    images decoded into memory (:func:`_memory_batches`): it needs no TensorFlow, so it measures
    breastcls' model on the other Keras backends.
    """
    import keras

    samples, class_names = _samples(n)
    keras.utils.set_random_seed(11)
    timer = _StepTimer()
    start = time.perf_counter()
    if pipeline == "seed":
        from benchmarks.seed_reference import SeedFlow, seed_model, seed_prepare

        x_train, y_train, _, _ = seed_prepare(*_by_class(samples), size)
        _check_full_batches(len(x_train), warmup, steps, batch)
        flow = SeedFlow(x_train, y_train, batch_size=batch, seed=11)
        model = seed_model(
            _seed_backbone(backbone, size), jit_compile=keras.backend.backend() == "jax"
        )
        model.fit(
            flow, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer.callback]
        )
    else:
        from breastcls import ModelConfig, TrainConfig
        from breastcls.model import build_model
        from breastcls.plugins import PluginHost

        _check_full_batches(len(samples), warmup, steps, batch)
        host = PluginHost()
        if pipeline == "memory":
            train_data = _memory_batches(samples, class_names, size, batch, warmup + steps)
        else:
            from breastcls.data.images import scan_samples
            from breastcls.data.pipeline import make_dataset

            image_info, _ = scan_samples(samples)
            stream = make_dataset(
                samples,
                class_names,
                image_size=size,
                batch_size=batch,
                image_info=image_info,
                shuffle=True,
                seed=11,
                cache=cache,
            )
            if cache:
                for _ in stream:  # the first epoch's decoding fills the cache
                    pass
            if pipeline == "floor":
                stream = stream.take(1).cache().repeat()
            train_data = stream.take(warmup + steps)
        policy = _precision_policy(precision)
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(
            ModelConfig(
                backbone=backbone,
                head="seed",
                augmentation="none" if pipeline == "floor" else "seed",
                weights=None,
                preprocessing="none",
            ),
            n_classes=len(class_names),
            image_size=size,
            seed=11,
            host=host,
        )
        config = TrainConfig(
            epochs=1,
            batch_size=batch,
            precision="float32" if policy == "float32" else "mixed",
            jit=jit,
            verbose=0,
        )
        with tempfile.TemporaryDirectory() as run_dir:
            host.trainers.get("keras").fit(
                model,
                train_data,
                None,
                config=config,
                run_dir=Path(run_dir),
                callbacks=[timer.callback],
                class_weight=None,
                initial_epoch=0,
                state={},
            )
    return {**timer.summary(start, warmup, batch), "peak_rss": _peak_rss()}


def task_decode(n: int, size: int, repeats: int) -> dict[str, Any]:
    """Decode + resize throughput: the seed's loop versus breastcls' ``tf.data`` loader, plain
    and with Macenko stain normalisation mapped over its batches: through
    :func:`~breastcls.stain.layer.pipeline_function` (XLA-compiled; the ratio's figure), and the
    layer itself (``breastcls_normalised_layer_images_per_s``).

    Files are read once first so that all read from the page cache. The four are timed in
    turn, ``repeats`` times each, and each one's best time counts: on a shared machine this gives
    them the same chances of a quiet moment. The normaliser is fitted (untimed) to the first 32
    images, as a run fits it before training. Each dataset is built once, as a run builds it
    once for all its epochs, and every timed pass is a new iterator over it, as every epoch is:
    its set-up (about 0.1 s with the normalisation, which instantiates the compiled function
    again) counts once per pass of ``n`` images.
    """
    import numpy as np
    import tensorflow as tf

    from benchmarks.seed_reference import dataset_loader
    from breastcls.data.images import scan_samples
    from breastcls.data.pipeline import make_dataset
    from breastcls.plugins.host import default_host
    from breastcls.stain.fit import fit_stain_normaliser
    from breastcls.stain.layer import pipeline_function

    samples, class_names = _samples(n)
    paths = [s.path for s in samples]
    for path in set(paths):
        path.read_bytes()
    start = time.perf_counter()
    image_info, _ = scan_samples(samples)
    scan_s = time.perf_counter() - start

    def stream(cache: str | None = None) -> Any:
        return make_dataset(
            samples, class_names, image_size=size, batch_size=16, image_info=image_info, cache=cache
        )

    def consume(dataset: Any) -> None:
        for _ in dataset:
            pass

    def timed(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    fitted = fit_stain_normaliser("macenko", paths[:32], role=None, reference="benchmark")
    layer = default_host().stain_normalisers.get("macenko").layer(fitted.parameters)

    def normalised(normalise: Callable[[Any], Any]) -> Any:
        return stream().map(lambda x, y: (normalise(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    plain = stream()
    with_compiled = normalised(pipeline_function(layer))
    with_layer = normalised(layer)
    consume(with_compiled)  # compiles the XLA function for each batch shape (untimed)
    seed_s, breastcls_s, normalised_s = float("inf"), float("inf"), float("inf")
    layer_s = float("inf")
    for _ in range(repeats):
        seed_s = min(seed_s, timed(lambda: np.array(dataset_loader(paths, size))))
        breastcls_s = min(breastcls_s, timed(lambda: consume(plain)))
        normalised_s = min(normalised_s, timed(lambda: consume(with_compiled)))
        layer_s = min(layer_s, timed(lambda: consume(with_layer)))
    cached = stream("memory")
    consume(cached)  # the first epoch fills the cache
    cached_s = min(timed(lambda: consume(cached)) for _ in range(repeats))
    return {
        "seed_images_per_s": n / seed_s,
        "breastcls_images_per_s": n / breastcls_s,
        "breastcls_normalised_images_per_s": n / normalised_s,
        "breastcls_normalised_layer_images_per_s": n / layer_s,
        "breastcls_scan_images_per_s": n / scan_s,
        "breastcls_cached_images_per_s": n / cached_s,
    }


def task_rss(pipeline: str, n: int, size: int, steps: int) -> dict[str, Any]:
    """Peak RSS of preparing ``n`` images and training a few steps of the same small model.

    The seed holds every image in memory (several copies while it prepares them); breastcls
    streams: it reads the whole set once here (a full epoch of decoding) and keeps only the
    batches in flight.
    """
    import keras

    from breastcls import ModelConfig, TrainConfig
    from breastcls.model import build_model
    from breastcls.plugins import PluginHost

    samples, class_names = _samples(n)
    keras.utils.set_random_seed(11)
    baseline = _peak_rss()
    if pipeline == "seed":
        from benchmarks.seed_reference import SeedFlow, seed_model, seed_prepare

        x_train, y_train, _, _ = seed_prepare(*_by_class(samples), size)
        flow = SeedFlow(x_train, y_train, seed=11)
        model = seed_model(_seed_backbone("smallcnn", size))
        model.fit(flow, epochs=1, steps_per_epoch=steps, verbose=0)
    else:
        from breastcls.data.images import scan_samples
        from breastcls.data.pipeline import make_dataset

        host = PluginHost()
        image_info, _ = scan_samples(samples)
        dataset = make_dataset(
            samples,
            class_names,
            image_size=size,
            batch_size=16,
            image_info=image_info,
            shuffle=True,
            seed=11,
        )
        for _ in dataset:
            pass
        model = build_model(
            ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
            n_classes=len(class_names),
            image_size=size,
            seed=11,
            host=host,
        )
        with tempfile.TemporaryDirectory() as run_dir:
            host.trainers.get("keras").fit(
                model,
                dataset.take(steps),
                None,
                config=TrainConfig(epochs=1, verbose=0),
                run_dir=Path(run_dir),
                callbacks=[],
                class_weight=None,
                initial_epoch=0,
                state={},
            )
    return {"baseline_rss": baseline, "peak_rss": _peak_rss()}


def task_infer(backbone: str, size: int, n: int, batch: int, rounds: int = 1) -> dict[str, Any]:
    """Inference throughput, plain, with the ``d8`` TTA plugin (8 dihedral copies per image),
    and plain with the domain-shift score.

    Both stream the same images through breastcls' loader and the one door
    (:meth:`breastcls.InferenceModel.iter_scores`: the runtime's loop and the calibration); the
    clock starts after the first batch (which traces the graph). The two passes run ``rounds``
    times in turn and each keeps its best, so that both get the same chances of a quiet moment
    on a shared machine.
    """
    import dataclasses

    import numpy as np

    from breastcls import InferenceModel, ModelConfig, ModelRecord
    from breastcls.data.images import scan_samples
    from breastcls.data.pipeline import make_dataset
    from breastcls.inference.domain import fit_domain_reference
    from breastcls.inference.runtime import TensorFlowRuntime
    from breastcls.model import build_model
    from breastcls.plugins import PluginHost

    host = PluginHost()
    samples, class_names = _samples(n)
    image_info, _ = scan_samples(samples)
    model = build_model(
        ModelConfig(backbone=backbone, weights=None),
        n_classes=len(class_names),
        image_size=size,
        host=host,
    )
    images = make_dataset(
        samples, class_names, image_size=size, batch_size=batch, image_info=image_info
    ).map(lambda x, _: x)
    door = InferenceModel(
        record=ModelRecord(class_names=tuple(class_names), image_size=size),
        source=Path("model.keras"),
        runtime=TensorFlowRuntime(keras_model=model),
        keras_model=model,
    )

    # The same model with a domain-shift reference (fitted on these images' features: the
    # figures are meaningless, the arithmetic is the one every prediction then pays for).
    features = door.scores(images, host=host, features=True).features
    assert features is not None
    reference = fit_domain_reference(
        features, np.arange(len(features)) % len(class_names), None, features, None,
        n_classes=len(class_names),
    )  # fmt: skip
    scored = dataclasses.replace(door, record=dataclasses.replace(door.record, domain=reference))

    def rate(model: InferenceModel, tta: str) -> tuple[float, float]:
        """Images per second, and the process's CPU seconds per image (all threads: less
        disturbed than the wall clock by other processes on a shared machine)."""
        start, cpu = 0.0, 0.0
        seen = 0
        for i, scores in enumerate(model.iter_scores(images, tta=tta, host=host)):
            if i == 0:
                start, cpu = time.perf_counter(), time.process_time()
            else:
                seen += len(scores.raw)
        return seen / (time.perf_counter() - start), (time.process_time() - cpu) / seen

    best = {"plain": 0.0, "tta8": 0.0, "domain": 0.0}
    cpu = {"plain": math.inf, "domain": math.inf}
    for _ in range(rounds):
        for name, model, tta in (("plain", door, "none"), ("tta8", door, "d8"),
                                 ("domain", scored, "none")):  # fmt: skip
            images_per_s, cpu_s = rate(model, tta)
            best[name] = max(best[name], images_per_s)
            if name in cpu:
                cpu[name] = min(cpu[name], cpu_s)
    return {f"{name}_images_per_s": value for name, value in best.items()} | {
        f"{name}_cpu_s_per_image": value for name, value in cpu.items()
    }


def task_stain(backbone: str, size: int, batch: int, seconds: float, rounds: int) -> dict[str, Any]:
    """What the stain augmentation adds to a training step: ``none``, ``default`` and
    ``pathology`` (``default``'s geometry with a milder zoom, plus HED and colour jitter).

    The same model (random weights) is built with each augmentation, compiled as the built-in
    trainer compiles it (Adam, cross-entropy, no XLA) and trained on one in-memory batch of real
    images, repeated, so that the input pipeline plays no part. After a warm-up, each trains for
    about ``seconds`` per round, in turn, ``rounds`` times; each keeps its fastest round. Both
    the wall-clock and the process's CPU time per step are kept (CPU time, all threads, is less
    disturbed by other processes on a shared machine).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from breastcls import ModelConfig
    from breastcls.data.images import decode_image
    from breastcls.data.pipeline import resize_image
    from breastcls.model import build_model

    samples, class_names = _samples(269)
    chosen = samples[:: len(samples) // batch][:batch]
    images = np.stack(
        [resize_image(tf.constant(decode_image(s.path), tf.float32), size).numpy() for s in chosen]
    )
    labels = np.eye(len(class_names), dtype=np.float32)[
        [class_names.index(s.label) for s in chosen]
    ]
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    models = {}
    for augmentation in ("none", "default", "pathology"):
        model = build_model(
            ModelConfig(backbone=backbone, augmentation=augmentation, weights=None),
            n_classes=len(class_names),
            image_size=size,
            seed=11,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss="categorical_crossentropy",
            jit_compile=False,
        )
        model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
        models[augmentation] = model

    def per_step(model: Any, steps: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    first, _ = per_step(models["default"], 3)
    steps = max(5, int(seconds / first))
    best = {name: (float("inf"), float("inf")) for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            wall, cpu = per_step(model, steps)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return {
        "steps_per_round": steps,
        **{f"{name}_step_s": wall for name, (wall, _) in best.items()},
        **{f"{name}_cpu_s": cpu for name, (_, cpu) in best.items()},
    }


# The benchmark's slides: 224-pixel cells at 0.5 µm/px, every cell a real BreakHis image.
SLIDE_CELL = 224
SLIDE_MPP = 0.5


def task_slide_file(path: str, columns: int, rows: int) -> dict[str, Any]:
    """Write a synthetic slide of ``columns`` x ``rows`` cells, each one of the development
    images in turn (:func:`breastcls.testing.slides.write_mosaic_slide`), with JPEG tiles as
    scanners write them (RGB pixels stored as YCbCr with 2x2 chroma subsampling: white glass
    reads back white), in its own process so that the slide's pixels never count in a
    measured process's memory."""
    from breastcls.testing.slides import write_mosaic_slide

    images = sorted(DATA.glob("*/*.png"))
    cells = {
        (c, r): images[(r * columns + c) % len(images)] for r in range(rows) for c in range(columns)
    }
    write_mosaic_slide(
        Path(path), cells, columns=columns, rows=rows, cell=SLIDE_CELL, mpp=SLIDE_MPP,
        compression="jpeg",
    )  # fmt: skip
    return {"tiles": columns * rows, "bytes": Path(path).stat().st_size}


# The development images' roles for the slide model, by their place in sorted order (the
# slide's cells repeat them in that order): every fourth from the first trains the model, every
# fourth from the third is its "selection" set (what ``--runtime onnx-int8`` calibrates on), and
# the odd-numbered ones are the check set, used for neither: int8's agreement with float32 and
# the tile AUCs are measured on their tiles.
SLIDE_IMAGE_ROLES = ("training", "check", "selection", "check")
# Brief training from random weights: enough for class-related, non-constant probabilities
# (not a good model). The batch normalisation's moving statistics follow the batches with
# momentum 0.8 instead of MobileNetV3's 0.999, which would leave them near their initial values
# after so few steps, and the probabilities meaningless in inference.
SLIDE_MODEL_EPOCHS = 12
SLIDE_MODEL_MOMENTUM = 0.8


def _slide_images(role: str) -> list[Path]:
    """The development images of one of :data:`SLIDE_IMAGE_ROLES`, in sorted order."""
    images = sorted(DATA.glob("*/*.png"))
    return [p for i, p in enumerate(images) if SLIDE_IMAGE_ROLES[i % 4] == role]


def _image_arrays(paths: list[Path], size: int) -> tuple[Any, Any]:
    """0-255 float32 images resized to ``size`` (as the slide's cells are resized) and whether
    each is malignant."""
    import numpy as np
    from PIL import Image

    def pixels(path: Path) -> Any:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.float32)

    malignant = np.array([p.parent.name == "malignant" for p in paths])
    return np.stack([pixels(p) for p in paths]), malignant


def _nested_layers(layer: Any) -> Any:
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _nested_layers(inner)


def task_slide_model(folder: str, backbone: str, size: int, epochs: int) -> dict[str, Any]:
    """Train the slide benchmark's model briefly from random weights on the development
    images of the ``training`` role and save it as a run folder holds it (``model.keras``,
    ``class_names.json``, and a ``split.csv`` naming the ``selection`` images, which
    ``--runtime onnx-int8`` calibrates on). Return its training CPU time and, on the ``check``
    images (used for neither), its AUC and the range of its probabilities: the benchmark's
    int8 agreement means something only on a model whose outputs vary with the class."""
    import keras
    import numpy as np

    from breastcls import ModelConfig
    from breastcls.model import build_model

    keras.utils.set_random_seed(0)
    started = time.process_time()
    images, malignant = _image_arrays(_slide_images("training"), size)
    model = build_model(
        ModelConfig(backbone=backbone, weights=None, augmentation="none"),
        n_classes=2, image_size=size, seed=0,
    )  # fmt: skip
    for layer in _nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = SLIDE_MODEL_MOMENTUM
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, malignant.astype(np.int32), batch_size=16, epochs=epochs, verbose=0)
    train_cpu_s = time.process_time() - started
    run = Path(folder)
    model.save(run / "model.keras")
    (run / "class_names.json").write_text('["benign", "malignant"]', encoding="utf-8")
    rows = ["path,label,patient_id,group,magnification,role,pixel_sha1"]
    rows += [f"{p},{p.parent.name},,,,selection," for p in _slide_images("selection")]
    (run / "split.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    check, positive = _image_arrays(_slide_images("check"), size)
    scores = np.asarray(model.predict(check, batch_size=16, verbose=0))[:, 1]
    return {
        "epochs": epochs,
        "training_images": len(images),
        "selection_images": len(rows) - 1,
        "check_images": len(check),
        "train_cpu_s": train_cpu_s,
        "check_auc": _auc(scores, positive),
        "check_probability_min": float(scores.min()),
        "check_probability_max": float(scores.max()),
    }


def _auc(scores: Any, positive: Any) -> float:
    """The area under the ROC curve of ``scores`` for the ``positive`` tiles (ties count half)."""
    import numpy as np

    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # ties share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# The runtimes of the slide pipeline the benchmark measures; each is timed against the model
# alone on the same tiles in memory, in the same runtime.
SLIDE_RUNTIMES = ("tensorflow", "onnx", "onnx-int8")


def task_slide(
    slide: str, model: str, size: int, columns: int, batch: int, rounds: int
) -> dict[str, Any]:
    """Tiles per CPU second of the whole slide pipeline (:func:`breastcls.predict_slide`:
    opening the slide, the tissue mask, reading and resampling every tile, the model, the
    calibrated table), on TensorFlow, ONNX Runtime (float32) and ONNX Runtime int8, and with
    ``--runtime auto``, each against its model alone on the same tiles held in memory (the
    ceiling of any pipeline), timed after its first batch.

    ``model`` is the run folder :func:`task_slide_model` trained; ``columns`` the slide's
    columns of cells. CPU time (``time.process_time``, every thread of the process): on a
    shared machine the wall clock of the same work varied by 2x, its CPU time by a few per
    cent. Wall-clock rates are kept beside them. One tile per cell; ``auto`` measures and
    remembers its choice, and ``onnx-int8`` quantises the model (calibrated on the run's
    ``selection`` images), in a warm-up call first, as each does once per model and machine;
    each runtime is then set up once (its session), as a job of many slides does.
    The measurements run ``rounds`` times in turn, each round starting with another; each
    keeps its best round. The int8 model's agreement with float32 is measured on the tiles of
    the ``check`` images (:data:`SLIDE_IMAGE_ROLES`), used neither to train nor to calibrate.
    """
    from breastcls import InferenceModel, predict_slide
    from breastcls.inference.runtime import CACHE_VARIABLE, cached_runtime_record

    # The ONNX conversions and the int8 copy of a model trained for this run go into the run's
    # model folder, removed with it, rather than the user's cache.
    os.environ[CACHE_VARIABLE] = str(Path(model) / "cache")
    model_mpp = SLIDE_CELL * SLIDE_MPP / size
    loaded = InferenceModel.load(Path(model) / "model.keras")
    warm = predict_slide(loaded, Path(slide), model_mpp=model_mpp, batch_size=batch, runtime="auto")
    probabilities = {
        runtime: predict_slide(
            loaded, Path(slide), model_mpp=model_mpp, batch_size=batch, runtime=runtime
        ).tiles
        for runtime in ("onnx", "onnx-int8")
    }
    measures = _slide_measures(loaded, Path(slide), model_mpp, size, batch)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
    names = list(measures)
    for round_ in range(rounds):
        # Each round starts with the next one: what runs right after another measurement
        # (its threads and memory still settling) is not always the same.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(measures[name]())
    record = cached_runtime_record(loaded.source)
    (choice,) = record["choices"]
    return {
        "tiles": len(probabilities["onnx"]),
        **{f"{name}_cpu_tiles_per_s": max(cpu for cpu, _ in r) for name, r in rates.items()},
        **{f"{name}_wall_tiles_per_s": max(wall for _, wall in r) for name, r in rates.items()},
        "auto_runtime": warm.summary["runtime"],
        "probe_tensorflow_images_per_s": choice["tensorflow_images_per_s"],
        "probe_onnx_images_per_s": choice["onnx_images_per_s"],
        **_int8_agreement(probabilities["onnx"], probabilities["onnx-int8"], columns),
        "int8_record": record.get("onnx_int8"),
        "rounds": rates,
    }


def _int8_agreement(onnx: Any, int8: Any, columns: int) -> dict[str, Any]:
    """int8's agreement with float32 on the tiles of the ``check`` images (the cell a tile
    lies in says which image it shows, and that image's folder its class): the largest
    difference of a probability and the AUC of the malignant probability on each."""
    import numpy as np

    images = sorted(DATA.glob("*/*.png"))
    cells = onnx.row.astype(np.int64) * columns + onnx.column.astype(np.int64)
    shown = cells % len(images)
    check = np.array([SLIDE_IMAGE_ROLES[i % 4] == "check" for i in shown])
    positive = np.array([images[i].parent.name == "malignant" for i in shown[check]])
    column = 1  # malignant
    difference = np.abs(int8.probabilities[check] - onnx.probabilities[check])
    return {
        "int8_set": "tiles of development images used neither to train nor to calibrate",
        "int8_check_tiles": int(check.sum()),
        "int8_check_malignant_tiles": int(positive.sum()),
        "int8_max_abs_diff": float(difference.max()),
        "int8_mean_abs_diff": float(difference.mean()),
        "onnx_tile_auc": _auc(onnx.probabilities[check, column], positive),
        "int8_tile_auc": _auc(int8.probabilities[check, column], positive),
    }


def _slide_measures(
    model: Any, slide: Path, model_mpp: float, size: int, batch: int
) -> dict[str, Callable[[], tuple[float, float]]]:
    """The measurements of :func:`task_slide`, by name: each gives ``(tiles per CPU second,
    tiles per wall-clock second)``."""
    import tensorflow as tf

    from breastcls import predict_slide
    from breastcls.data.pipeline import without_autotuning
    from breastcls.slides.options import SlideJobOptions
    from breastcls.slides.reading import open_slide, read_tiles
    from breastcls.slides.regions import RegionOptions, region_mask
    from breastcls.slides.tiling import plan_tiles
    from breastcls.slides.tissue import read_thumbnail

    # The tiles predict_slide classifies with its default options: the same thumbnail, tissue
    # detector (a plugin, optical density by default) and share of tissue per tile.
    defaults = SlideJobOptions()
    opened = open_slide(slide)
    try:
        thumbnail = read_thumbnail(opened, max_side=defaults.thumbnail_side)
        mask = region_mask(
            thumbnail, microns_per_pixel=SLIDE_MPP * thumbnail.downsample,
            options=RegionOptions(tissue_detector=defaults.tissue_detector),
        )  # fmt: skip
        plan = plan_tiles(
            opened, slide_mpp=SLIDE_MPP, model_mpp=model_mpp, image_size=size, mask=mask,
            mask_downsample=thumbnail.downsample, overlap=defaults.overlap,
            min_tissue=defaults.min_tissue,
        )  # fmt: skip
        tiles = read_tiles(opened, plan, 0, len(plan))
    finally:
        opened.close()
    in_memory = without_autotuning(
        tf.data.Dataset.from_tensor_slices(tiles)
        .batch(batch)
        .map(lambda images: tf.cast(images, tf.float32))
    )
    # Each runtime is set up once, as `breastcls slide predict` does for all the slides of a
    # job (an ONNX Runtime session, auto's choice): a per-job cost, not a per-slide one. At the
    # warm-up's batch size: auto's choice is kept per batch size, and another would be measured
    # anew.
    ready = {
        name: model.with_runtime(name, batch_size=batch) for name in (*SLIDE_RUNTIMES, "auto")
    }

    def model_alone(runtime: Any) -> tuple[float, float]:
        cpu = wall = 0.0
        seen = 0
        for i, output in enumerate(runtime.iter_outputs(in_memory)):
            if i == 0:
                cpu, wall = time.process_time(), time.perf_counter()
            else:
                seen += len(output.probabilities)
        return seen / (time.process_time() - cpu), seen / (time.perf_counter() - wall)

    def pipeline(ready_model: Any) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        result = predict_slide(ready_model, slide, model_mpp=model_mpp, batch_size=batch)
        n = len(result.tiles)
        return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)

    measures: dict[str, Callable[[], tuple[float, float]]] = {}
    for name in SLIDE_RUNTIMES:
        key = name.replace("-", "_")
        measures[f"model_{key}"] = functools.partial(model_alone, ready[name].runtime)
        measures[f"pipeline_{key}"] = functools.partial(pipeline, ready[name])
    measures["pipeline_auto"] = functools.partial(pipeline, ready["auto"])
    measures["model_onnx_plain"] = functools.partial(model_alone, _plain_onnx_runtime(model))
    return measures


def _plain_onnx_runtime(model: Any) -> Any:
    """The float32 ONNX runtime of ``model`` on its conversion with the hard activations spelled
    out as tf2onnx writes them (``Add``, ``Clip``, ``Mul``): the reference the fused graph
    (:mod:`breastcls.onnx_graph`) is measured against."""
    import onnx

    from breastcls.inference.runtime import OnnxRuntime, cache_dir, model_sha256, onnx_session
    from breastcls.onnx_graph import expand_hard_activations

    (converted,) = (cache_dir() / "runtime").glob(f"{model_sha256(model.source)[:32]}/runtime.onnx")
    graph = onnx.load(str(converted))
    expand_hard_activations(graph)
    plain = converted.with_name("runtime-plain.onnx")
    onnx.save(graph, str(plain))
    return OnnxRuntime(session=onnx_session(plain), reason="the plain tf2onnx graph")


def task_slide_rss(slide: str, model: str, size: int, batch: int) -> dict[str, Any]:
    """Peak RSS of a process that predicts one slide into a slide folder (TensorFlow runtime)
    with the model of the run folder ``model``."""
    from breastcls import predict_slide

    with tempfile.TemporaryDirectory() as folder:
        result = predict_slide(
            Path(model) / "model.keras", Path(slide), model_mpp=SLIDE_CELL * SLIDE_MPP / size,
            batch_size=batch, out=Path(folder) / "slide",
        )  # fmt: skip
    return {"tiles": len(result.tiles), "peak_rss": _peak_rss()}


def task_gpus() -> dict[str, Any]:
    """Count the GPUs the Keras backend sees."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return {"gpus": sum(device.platform == "gpu" for device in jax.devices())}
    import tensorflow as tf

    return {"gpus": len(tf.config.list_physical_devices("GPU"))}


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "gpus": task_gpus,
    "train": task_train,
    "decode": task_decode,
    "rss": task_rss,
    "infer": task_infer,
    "stain": task_stain,
    "slide_file": task_slide_file,
    "slide_model": task_slide_model,
    "slide": task_slide,
    "slide_rss": task_slide_rss,
    "foundation": task_foundation,
    "embed_rates": task_embed_rates,
}


def main(argv: list[str]) -> None:
    """Run one task and print its ``RESULT`` line."""
    task, arguments = argv[0], json.loads(argv[1])
    result = TASKS[task](**arguments)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
