"""Measure what the stain augmentation adds to a training step (the figures in docs/stain.md).

    python docs/scripts/stain_step_cost.py [--backbone smallcnn] [--size 96] [--seconds 4]

For each augmentation (``none``, ``default``, ``hed``, ``pathology``) it builds the same model
(random weights), compiles it as the built-in trainer does (Adam, cross-entropy, no XLA) and
times ``model.fit`` over one in-memory batch of real images repeated, after a warm-up. The
augmentations are measured in turn, ``--rounds`` times, and each keeps its fastest round, so a
busy moment of the machine does not land on one of them only. It prints wall-clock and CPU
milliseconds per step (CPU time of the process, all threads: less disturbed than wall time when
other processes share the cores) and the ratio of each to ``default``; then the augmentation
block alone, called in training mode on the same batch, which isolates its cost from the noise
of whole steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
AUGMENTATIONS = ("none", "default", "hed", "pathology")


def _batch(data: Path, size: int, batch: int) -> tuple[Any, Any]:
    every = sorted(data.glob("*/*.png"))
    paths = every[:: max(1, len(every) // batch)]
    images = []
    for path in paths[:batch]:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        images.append(np.asarray(rgb, dtype=np.float32))
    labels = np.eye(2, dtype=np.float32)[np.arange(len(images)) % 2]
    return np.stack(images), labels


def _per_step(model: Any, dataset: Any, steps: int) -> tuple[float, float]:
    """Return (wall seconds, CPU seconds of this process) per training step over ``steps``."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def _alone(block: Any, images: Any, seconds: float) -> tuple[float, float]:
    """Return (wall, CPU) seconds per batch of the augmentation block alone, in training mode."""
    import tensorflow as tf

    run = tf.function(lambda x: block(x, training=True))
    batch = tf.constant(images)
    run(batch)  # trace
    start = time.perf_counter()
    run(batch).numpy()
    repeats = max(10, int(seconds / max(time.perf_counter() - start, 1e-4)))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        out = run(batch)
    out.numpy()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--backbone", default="smallcnn")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from breastcls.config import ModelConfig
    from breastcls.model import build_model

    images, labels = _batch(args.data, args.size, args.batch)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    models = {}
    for name in AUGMENTATIONS:
        config = ModelConfig(backbone=args.backbone, augmentation=name, weights=None)
        model = build_model(config, n_classes=2, image_size=args.size, seed=0)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=False
        )
        model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
        models[name] = model
    wall_step, _ = _per_step(models["default"], dataset, 5)
    steps = max(5, int(args.seconds / wall_step))
    wall = {name: float("inf") for name in AUGMENTATIONS}
    cpu = {name: float("inf") for name in AUGMENTATIONS}
    for _ in range(args.rounds):
        for name in AUGMENTATIONS:
            seconds, cpu_seconds = _per_step(models[name], dataset, steps)
            wall[name], cpu[name] = min(wall[name], seconds), min(cpu[name], cpu_seconds)
    print(
        f"{args.backbone} {args.size}px, batch {args.batch}, {steps} steps a round, "
        f"best of {args.rounds} rounds:"
    )
    print("| augmentation | ms per step | vs default | CPU ms per step | vs default |")
    print("|---|---|---|---|---|")
    for name in AUGMENTATIONS:
        print(
            f"| `{name}` | {1000 * wall[name]:.1f} | {wall[name] / wall['default']:.3f} "
            f"| {1000 * cpu[name]:.1f} | {cpu[name] / cpu['default']:.3f} |"
        )
    alone = {name: (float("inf"), float("inf")) for name in AUGMENTATIONS}
    for _ in range(args.rounds):
        for name in AUGMENTATIONS:
            measured = _alone(models[name].get_layer("augmentation"), images, args.seconds / 3)
            alone[name] = (min(alone[name][0], measured[0]), min(alone[name][1], measured[1]))
    print("\nThe augmentation alone (training=True, one batch), and its share of a default step:")
    print("| augmentation | ms per batch | CPU ms per batch | CPU share of a step |")
    print("|---|---|---|---|")
    for name in AUGMENTATIONS:
        print(
            f"| `{name}` | {1000 * alone[name][0]:.2f} | {1000 * alone[name][1]:.2f} "
            f"| {alone[name][1] / cpu['default']:.3f} |"
        )
    extra = (alone["pathology"][1] - alone["default"][1]) / cpu["default"]
    print(f"pathology minus default, augmentation alone, CPU: {extra:+.3f} of a default step")
    print(
        json.dumps(
            {"backbone": args.backbone, "size": args.size, "wall": wall, "cpu": cpu, "alone": alone}
        )
    )


if __name__ == "__main__":
    main()
