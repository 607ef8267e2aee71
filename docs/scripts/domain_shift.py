"""Measure the domain-shift score on shifted sets and draw docs/images/domain_shift.png.

    python docs/scripts/domain_shift.py RUN [--out docs/images/domain_shift.png]

RUN is a run folder trained on the development images (e.g. ``breastcls train --data
../shared/data/breakhis-dev --backbone smallcnn --weights none --image-size 96 --epochs 8
--learning-rate 3e-3``). Its selection set chose the thresholds; the script scores the run's
**test set** (never seen in training or in choosing the thresholds) and shifted copies of the
test images built by :mod:`breastcls.testing.shifts`, prints the flagged fraction of each (the
table in docs/evaluation.md) and draws the score histograms: selection, test, shifted sets.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import breastcls
from breastcls.data.images import decode_image
from breastcls.testing.shifts import shifted_sets

REPO = Path(__file__).resolve().parents[2]


def _role(run: Path, role: str) -> list[Path]:
    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        return [Path(row["path"]) for row in csv.DictReader(handle) if row["role"] == role]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/domain_shift.png")
    args = parser.parse_args()
    model = breastcls.load_model(args.run)
    if model.record.domain is None:
        raise SystemExit(f"{args.run} has no domain reference: train it with this breastcls.")
    scores: dict[str, np.ndarray] = {}
    for role in ("selection", "test"):
        prediction = breastcls.predict(model, _role(args.run, role)).prediction
        assert prediction.domain_score is not None
        scores[f"{role} set"] = prediction.domain_score
    test_images = [decode_image(path) for path in _role(args.run, "test")]
    for name, images in shifted_sets(test_images).items():
        prediction = breastcls.predict(model, images).prediction
        assert prediction.domain_score is not None
        scores[name] = prediction.domain_score
    print(f"{'set':45} images  flagged")
    for name, values in scores.items():
        print(f"{name:45} {len(values):6d}  {np.mean(values > 1):7.1%}")
    print(model.record.domain.describe())
    _draw(scores, args.out)
    print(f"figure: {args.out}")


def _draw(scores: dict[str, np.ndarray], out: Path) -> None:
    from breastcls.evaluation.plots import pyplot, save_figure

    figure, axes = pyplot().subplots(figsize=(8, 4.2))
    bins = np.logspace(-2, 2, 41)
    for name, values in scores.items():
        style = {"linewidth": 2.2} if name.endswith(" set") else {"linewidth": 1.0, "alpha": 0.8}
        axes.hist(np.clip(values, 1e-2, 1e2), bins=bins, histtype="step", label=name, **style)
    axes.axvline(1.0, color="black", linestyle="--", label="threshold (1)")
    axes.set_xscale("log")
    axes.set_xlabel("domain-shift score (log scale; above 1: flagged)")
    axes.set_ylabel("images")
    axes.set_title("Domain-shift scores: selection and test sets, shifted test images", fontsize=10)
    axes.legend(fontsize=7, loc="upper left")
    save_figure(figure, out)


if __name__ == "__main__":
    main()
