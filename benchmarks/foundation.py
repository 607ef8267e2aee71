"""The foundation-model measurements (issue 30), in CPU time: ``probe_cv_speedup`` and
``embed_vs_model``.

The extractor is a Keras application with random weights (no download here) saved as a
``.keras`` feature extractor with a pooled output, run as the ``keras`` frozen-extractor
backbone: MobileNetV3Small for the cross-validations (:func:`task_foundation`), ResNet50 for
``embed_vs_model`` (:func:`task_embed_rates`), as costly as or less than a frozen pathology
foundation model. The images are the real BreakHis development set, in a fixed shuffled order,
repeated until there are ``n``.

* ``probe_cv_speedup``: a ``folds``-fold cross-validation, each fold a training, selection and
  test set, two ways. Cached: every image embedded once into an empty cache, then in every fold
  the images decoded again and looked up in the cache, and the linear probe fitted (its
  strength chosen on the selection set) and applied to the test set. Fine-tuned: in every fold
  the same extractor with a Dense softmax head trained end to end for ``epochs`` epochs on the
  training set, then the selection and test sets predicted. The ratio is the fine-tuned CPU
  time over the cached one; the reports, identical in both, are left out.
* ``embed_vs_model``: images/s of the embedding pipeline into an empty cache (decoding from
  the files, resizing, hashing, the extractor, the float16 shards) over the extractor alone on
  the same images already decoded and resized in memory, both in CPU time, each the least of 3
  measurements taken in turn. With ResNet50 (about 4 GFLOPs an image) this is the headline
  ``embed_vs_model``; :func:`task_foundation` also measures it with MobileNetV3Small (about
  0.06 GFLOPs), ``embed_vs_model_small_extractor``, which has no target: decoding the PNGs
  (about 2.3 CPU ms an image whatever the extractor) is a large share of a 3-10 CPU ms
  extractor and bounds it.

``python -m benchmarks.foundation`` measures ``embed_vs_model`` alone (:func:`main`), with
ResNet50 or MobileNetV3Small.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["task_foundation"]


def _extractor(folder: Path, size: int, network: str = "mobilenetv3small") -> Path:
    """A random-weight Keras application saved as a pooled ``.keras`` feature extractor:
    MobileNetV3Small (the benchmark's), or ResNet50 (about 70 times its arithmetic per image,
    nearer a foundation model's: a ViT-B/16 is about 300 times)."""
    import keras

    shape = (size, size, 3)
    if network == "resnet50":
        model = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=shape, pooling="avg"
        )
    else:
        model = keras.applications.MobileNetV3Small(
            include_top=False, weights=None, input_shape=shape, pooling="avg",
            include_preprocessing=False,
        )  # fmt: skip
    path = folder / "extractor.keras"
    model.save(path)
    return path


def _folds(n: int, folds: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Each fold's training, selection and test indices (every ``folds``-th image tested; a
    fifth of the rest for selection)."""
    found = []
    for fold in range(folds):
        test = [i for i in range(n) if i % folds == fold]
        rest = [i for i in range(n) if i % folds != fold]
        found.append(([i for k, i in enumerate(rest) if k % 5], rest[::5], test))
    return found


def _cached_cv(spec: Any, samples: list[Any], labels: Any, info: Any, folds: int) -> float:
    """CPU seconds of the cross-validation with cached embeddings (the cache empty at first)."""
    from breastcls.embeddings.cache import CachedEmbedder
    from breastcls.embeddings.probe import embed_samples, fit_linear_probe
    from breastcls.embeddings.runtime import probe_probabilities

    start = time.process_time()
    embed_samples(
        CachedEmbedder(spec), samples, image_size=spec.input_size, batch_size=16, image_info=info
    )
    for train, selection, test in _folds(len(samples), folds):
        embedded = embed_samples(
            CachedEmbedder(spec), samples, image_size=spec.input_size, batch_size=16,
            image_info=info,
        )  # fmt: skip
        fit = fit_linear_probe(
            (embedded[train], labels[train]), (embedded[selection], labels[selection]),
            n_classes=2,
        )  # fmt: skip
        probe_probabilities(fit.model, embedded[test])
    return time.process_time() - start


def _fine_tuned_cv(
    path: Path, samples: list[Any], class_names: Any, info: Any, folds: int, epochs: int, size: int
) -> float:
    """CPU seconds of the same cross-validation with the extractor trained end to end."""
    import keras

    from breastcls.data.pipeline import make_dataset

    start = time.process_time()
    for train, selection, test in _folds(len(samples), folds):

        def batches(indices: list[int], *, shuffle: bool = False) -> Any:
            chosen = [samples[i] for i in indices]
            return make_dataset(
                chosen, class_names, image_size=size, batch_size=16, image_info=info,
                shuffle=shuffle, seed=0,
            )  # fmt: skip

        extractor = keras.saving.load_model(path)
        inputs = keras.Input(shape=(size, size, 3))
        scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        outputs = keras.layers.Dense(2, activation="softmax")(extractor(scaled))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
        model.fit(batches(train, shuffle=True), validation_data=batches(selection),
                  epochs=epochs, verbose=0)  # fmt: skip
        model.predict(batches(test), verbose=0)
    return time.process_time() - start


def _embedding_rates(
    spec: Any, samples: list[Any], info: Any, repeats: int = 3
) -> dict[str, float]:
    """CPU seconds per image of the embedding pipeline (empty cache) and the extractor alone,
    each the least of ``repeats`` measurements taken in turn: other jobs on the shared cores
    inflate a CPU time (caches, hyperthreads) by 10-20% now and then, never deflate it."""
    from breastcls.data.pipeline import make_dataset
    from breastcls.embeddings.cache import CachedEmbedder
    from breastcls.embeddings.probe import embed_samples

    extractor = spec.load()
    resized = np.concatenate(
        [images.numpy() for images, _ in make_dataset(
            samples, ("benign", "malignant"), image_size=spec.input_size, batch_size=16,
            image_info=info)]
    )  # fmt: skip
    extractor.embed(resized[:16])  # traces the model's call once, for both
    alone, pipeline = [], []
    for _ in range(repeats):
        start = time.process_time()
        for first in range(0, len(resized), 16):
            extractor.embed(resized[first : first + 16])
        alone.append((time.process_time() - start) / len(resized))
        with tempfile.TemporaryDirectory() as empty:
            embedder = CachedEmbedder(spec, root=Path(empty), extractor=extractor)
            start = time.process_time()
            embed_samples(embedder, samples, image_size=spec.input_size, batch_size=16,
                          image_info=info)  # fmt: skip
            pipeline.append((time.process_time() - start) / len(samples))
    return {"extractor_cpu_s_per_image": min(alone), "pipeline_cpu_s_per_image": min(pipeline)}


def task_foundation(n: int, size: int, folds: int, epochs: int) -> dict[str, Any]:
    """The two measurements (see the module); every cache lies in a temporary folder."""
    import os

    from benchmarks.workers import DATA
    from breastcls import DataConfig, load_dataset
    from breastcls.data.images import scan_samples
    from breastcls.embeddings.extractor import FrozenExtractor

    base = sorted(load_dataset(DataConfig(path=DATA)).samples, key=lambda s: str(s.path))
    order = np.random.default_rng(0).permutation(len(base))  # both classes in every fold
    samples = [base[order[i % len(base)]] for i in range(n)]
    class_names = ("benign", "malignant")
    labels = np.array([class_names.index(s.label) for s in samples])
    info, _ = scan_samples(samples)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["BREASTCLS_CACHE_DIR"] = str(Path(folder) / "cache")
        path = _extractor(Path(folder), size)
        spec = FrozenExtractor(kind="keras", file=str(path), input_size=size)
        rates = _embedding_rates(spec, samples, info)
        cached = _cached_cv(spec, samples, labels, info, folds)
        fine_tuned = _fine_tuned_cv(path, samples, class_names, info, folds, epochs, size)
    return {
        "n": n, "size": size, "folds": folds, "epochs": epochs,
        "cached_cv_cpu_s": cached, "fine_tuned_cv_cpu_s": fine_tuned, **rates,
    }  # fmt: skip


def task_embed_rates(n: int, size: int, network: str = "mobilenetv3small") -> dict[str, Any]:
    """``embed_vs_model`` alone (see the module): its two CPU times per image, without the
    cross-validations."""
    import os

    from benchmarks.workers import DATA
    from breastcls import DataConfig, load_dataset
    from breastcls.data.images import scan_samples
    from breastcls.embeddings.extractor import FrozenExtractor

    base = sorted(load_dataset(DataConfig(path=DATA)).samples, key=lambda s: str(s.path))
    order = np.random.default_rng(0).permutation(len(base))
    samples = [base[order[i % len(base)]] for i in range(n)]
    info, _ = scan_samples(samples)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["BREASTCLS_CACHE_DIR"] = str(Path(folder) / "cache")
        path = _extractor(Path(folder), size, network)
        spec = FrozenExtractor(kind="keras", file=str(path), input_size=size)
        return {"n": n, "size": size, "network": network, **_embedding_rates(spec, samples, info)}


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.foundation [--n N] [--size PX] [--rounds R] [--network NAME]``:
    measure ``embed_vs_model`` alone, ``rounds`` times, and print each round's figures."""
    import argparse

    parser = argparse.ArgumentParser(description="embed_vs_model alone, in CPU time")
    parser.add_argument("--n", type=int, default=96, help="images (default 96)")
    parser.add_argument("--size", type=int, default=224, help="the extractor's side in px")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--network", choices=["mobilenetv3small", "resnet50"], default="resnet50",
        help="the extractor (random weights; default: embed_vs_model's, resnet50)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for round_number in range(1, args.rounds + 1):
        found = task_embed_rates(args.n, args.size, args.network)
        alone, pipeline = found["extractor_cpu_s_per_image"], found["pipeline_cpu_s_per_image"]
        print(
            f"round {round_number}: {args.network}, {args.n} images at {args.size} px: "
            f"extractor alone {1000 * alone:.1f} CPU ms per image, pipeline {1000 * pipeline:.1f}: "
            f"embed_vs_model = {alone / pipeline:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
