"""Draw docs/images/default_vs_pathology.png: the stain-shift robustness of a model trained with
``default`` augmentation beside the same model trained with ``pathology`` augmentation.

    python docs/scripts/default_vs_pathology.py [--data ../shared/data/breakhis-dev] [--epochs 20]

Both runs share everything but the augmentation: backbone, image size, seed, and the split
(the same patient-disjoint test set). Each is evaluated on its test set as ``breastcls evaluate
RUN --stain-shift hed`` does: unshifted, then with every image's H, E and D amounts shifted at
strengths 0.05 (HED-light), 0.1 and 0.2 (HED-strong), with class-stratified patient bootstrap
intervals. The figure puts both robustness curves side by side; the script prints the table of
docs/stain.md ("Should pathology be the default?") and the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import breastcls

REPO = Path(__file__).resolve().parents[2]
AUGMENTATIONS = ("default", "pathology")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--backbone", default="smallcnn")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/default_vs_pathology.png")
    args = parser.parse_args()

    from breastcls.runs.folder import read_split_csv

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as runs:
        for augmentation in AUGMENTATIONS:
            start = time.perf_counter()
            run = breastcls.train(
                breastcls.RunConfig(
                    data=breastcls.DataConfig(path=args.data, image_size=args.size),
                    model=breastcls.ModelConfig(
                        backbone=args.backbone, augmentation=augmentation, weights=None
                    ),
                    train=breastcls.TrainConfig(
                        epochs=args.epochs,
                        learning_rate=args.learning_rate,
                        seed=args.seed,
                        deterministic=True,
                        verbose=0,
                    ),
                    out_dir=Path(runs),
                    name=augmentation,
                )
            )
            evaluation = breastcls.evaluate(
                run.run_dir, stain_shift="hed", gradcam=False, verbose=0
            )
            test = sorted(
                (str(sample.path), sample.patient_id)
                for sample, _ in read_split_csv(run.run_dir)
                if sample.split == "test"
            )
            results[augmentation] = {
                "role": evaluation.role.value if evaluation.role else None,
                "test_images": [path for path, _ in test],
                "test_patients": sorted({str(patient) for _, patient in test}),
                "robustness": evaluation.metrics["robustness"],
                "seconds": time.perf_counter() - start,
            }
    first, second = (results[name] for name in AUGMENTATIONS)
    if first["test_images"] != second["test_images"]:
        raise SystemExit("The two runs were tested on different images: the comparison is void.")
    _plot(results, args.out, f"{args.backbone}, {args.size} px, seed {args.seed}")
    _print_table(results)
    summary = {
        name: {key: value for key, value in record.items() if key != "test_images"}
        for name, record in results.items()
    }
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **summary}))


def _point(record: dict[str, Any]) -> tuple[float, float, float]:
    """Return (estimate, distance down to the low end, distance up to the high end)."""
    estimate = record["estimate"]
    return estimate, estimate - record["low"], record["high"] - estimate


def _plot(results: dict[str, Any], out: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(9, 3.8), sharex=True)
    for axes, statistic, label in zip(
        panels, ("auc", "accuracy"), ("AUC", "accuracy"), strict=True
    ):
        for offset, (name, record) in zip((-0.003, 0.003), results.items(), strict=True):
            curve = record["robustness"]["curve"]
            points = [_point(point[statistic]) for point in curve]
            axes.errorbar(
                [point["strength"] + offset for point in curve],
                [estimate for estimate, _, _ in points],
                yerr=[[low for _, low, _ in points], [high for _, _, high in points]],
                marker="o",
                capsize=3,
                label=f"--augmentation {name}",
            )
        axes.set_xlabel("HED shift strength (0.05 HED-light, 0.2 HED-strong)")
        axes.set_ylabel(f"test {label} [95% CI]")
        axes.set_ylim(0, 1.02)
        axes.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    panels[0].legend(loc="lower left", fontsize=8)
    first = next(iter(results.values()))
    figure.suptitle(
        f"Stain-shift robustness, default vs pathology augmentation ({subtitle}); "
        f"test set: {len(first['test_images'])} images, {len(first['test_patients'])} patients",
        fontsize=9,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def _format(record: dict[str, Any], *, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if record["estimate"] is None:
        return "n/a"
    return f"{record['estimate']:{sign}.2f} [{record['low']:{sign}.2f}, {record['high']:{sign}.2f}]"


def _print_table(results: dict[str, Any]) -> None:
    header = " | ".join(
        f"`{name}` {what}" for what in ("AUC", "accuracy", "AUC change") for name in results
    )
    print(f"| strength | {header} |")
    print("|---" * (1 + 3 * len(results)) + "|")
    curves = [record["robustness"]["curve"] for record in results.values()]
    for points in zip(*curves, strict=True):
        cells = [
            _format(point[key], signed=key.endswith("change"))
            for key in ("auc", "accuracy", "auc_change")
            for point in points
        ]
        print(f"| {points[0]['strength']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
