"""Train a classifier with breastcls' Python API (the same run `breastcls train` makes).

    python examples/train_api.py                       # synthetic demo images, ~1 minute on a CPU
    python examples/train_api.py --data DIR --epochs 20 --image-size 128

DIR is ``root/<class>/*.png`` (or ``root/{train,validation}/<class>/*``) or a CSV manifest.
The small CNN trains from scratch; pass ``--backbone densenet201 --weights imagenet`` on a GPU for
the seed blog's model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import breastcls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="image folder or manifest (default: demo data)")
    parser.add_argument("--backbone", default="smallcnn")
    parser.add_argument("--weights", default="none", help="imagenet, none or a weights file")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args()

    data = args.data or breastcls.make_demo_dataset(args.out / "demo-data")
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=data, image_size=args.image_size),
        model=breastcls.ModelConfig(backbone=args.backbone, weights=args.weights),
        train=breastcls.TrainConfig(epochs=args.epochs, learning_rate=1e-3, verbose=2),
        out_dir=args.out,
    )
    try:
        result = breastcls.train(config)
    except breastcls.BreastclsError as error:  # bad input: one line, exit code 2
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    classification = result.metrics["classification"]
    print(f"run folder: {result.run_dir}")
    print(f"test-set accuracy: {classification['accuracy']:.3f}")
    for name, row in classification["per_class"].items():
        print(f"  {name}: precision {row['precision']:.3f}, recall {row['recall']:.3f}")

    model = breastcls.load_model(result.run_dir)  # safe mode: no code from the file runs
    print(f"best model: {model.source} ({model.keras_model.count_params():,} parameters)")


if __name__ == "__main__":
    main()
