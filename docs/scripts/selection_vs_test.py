"""Draw docs/images/selection_vs_test.png: one model's selection-set accuracy beside its test
accuracy, for each fold of a nested 5-fold cross-validation on the development images.

    python docs/scripts/selection_vs_test.py [--data ../shared/data/breakhis-dev] [--epochs 8]

The selection set chose each fold's checkpoint and calibration; the test set was scored once.
The gap between the two bars is how much a report on the selection set would flatter the model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import breastcls

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/selection_vs_test.png")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as runs:
        result = breastcls.cross_validate(
            breastcls.RunConfig(
                data=breastcls.DataConfig(path=args.data, image_size=96, folds=5),
                model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
                train=breastcls.TrainConfig(
                    epochs=args.epochs, batch_size=16, learning_rate=1e-3, verbose=0
                ),
                out_dir=Path(runs),
                name="figure",
            )
        )
        rows = [
            (
                fold.selection_metrics["classification"]["accuracy"],
                fold.metrics["classification"]["accuracy"],
            )
            for fold in result.folds
        ]
        pooled = result.pooled["classification"]["accuracy"]
    _plot(rows, pooled, args.out)
    print("| fold | selection-set accuracy | test accuracy |\n|---|---|---|")
    for index, (selection, test) in enumerate(rows, start=1):
        print(f"| {index} | {selection:.3f} | {test:.3f} |")
    print(f"pooled out-of-fold test accuracy: {pooled:.3f}")
    print(json.dumps({"folds": rows, "pooled": pooled}))


def _plot(rows: list[tuple[float, float]], pooled: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    positions = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(7, 3.6))
    axes.bar(positions - 0.2, [s for s, _ in rows], 0.4, label="selection set (chose the model)")
    axes.bar(positions + 0.2, [t for _, t in rows], 0.4, label="test set (scored once)")
    axes.axhline(pooled, color="black", linestyle="--", linewidth=1, label="pooled test")
    axes.set_xticks(positions, [f"fold {i + 1}" for i in positions])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("accuracy")
    axes.set_title("Same model, two sets: nested 5-fold CV on the development images")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


if __name__ == "__main__":
    main()
