"""Draw docs/images/slide_heatmap.png: a heat map of a synthetic slide made of real images.

    python docs/scripts/slide_heatmap.py [--data ../shared/data/breakhis-dev] [--epochs 12]

No whole-slide image can be downloaded where breastcls is built, so the slide is a pyramidal
TIFF of white glass with real BreakHis 200X images as tissue: one benign patient's images in a
block on the left, two malignant patients' images in a block on the right. The model is a small
CNN trained on the 200X images of every *other* patient, so no tile of the slide was seen in
training. ``breastcls slide predict`` then tiles the slide at the model's recorded scale with
half-tile overlap and draws the heat map; the script copies it to the docs and prints each
region's mean probability of malignancy (the figures quoted in docs/slides.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import breastcls
from breastcls.testing.slides import write_mosaic_slide

REPO = Path(__file__).resolve().parents[2]
CELL = 224  # level-0 pixels of one image cell
SLIDE_MPP = 0.5
BENIGN_PATIENT = "14-29960CD"
MALIGNANT_PATIENTS = ("14-10147", "14-11031")
# A 12 x 7 grid: a 4 x 4 benign block (columns 1-4) and a 4 x 4 malignant block (columns 7-10).
COLUMNS, ROWS = 12, 7
BENIGN_CELLS = sorted((c, r) for c in range(1, 5) for r in range(2, 6))
MALIGNANT_CELLS = sorted((c, r) for c in range(7, 11) for r in range(1, 5))


def _patient(image: Path) -> str:
    return "-".join(image.name.split("-")[1:3])


def _images_200x(data: Path, label: str) -> list[Path]:
    return sorted(p for p in (data / label).glob("*.png") if "-200-" in p.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/slide_heatmap.png")
    args = parser.parse_args()

    on_slide = {BENIGN_PATIENT, *MALIGNANT_PATIENTS}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "data"
        for label in ("benign", "malignant"):
            (root / label).mkdir(parents=True)
            for image in _images_200x(args.data, label):
                if _patient(image) not in on_slide:
                    shutil.copy(image, root / label / image.name)
        benign = [p for p in _images_200x(args.data, "benign") if _patient(p) == BENIGN_PATIENT]
        malignant = [
            p for p in _images_200x(args.data, "malignant") if _patient(p) in MALIGNANT_PATIENTS
        ]
        # Fewer images than cells: the block repeats them, as neighbouring fields of one lesion.
        cells = {
            **{cell: benign[i % len(benign)] for i, cell in enumerate(BENIGN_CELLS)},
            **{cell: malignant[i % len(malignant)] for i, cell in enumerate(MALIGNANT_CELLS)},
        }
        slide = write_mosaic_slide(
            Path(work) / "synthetic.tif", cells, columns=COLUMNS, rows=ROWS, cell=CELL,
            mpp=SLIDE_MPP,
        )  # fmt: skip

        run = breastcls.train(
            breastcls.RunConfig(
                data=breastcls.DataConfig(path=root, image_size=args.size),
                model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
                train=breastcls.TrainConfig(
                    epochs=args.epochs, batch_size=16, learning_rate=3e-3, seed=args.seed, verbose=0
                ),
                out_dir=Path(work) / "runs",
                name="slide-model",
            )
        ).run_dir
        # The model's scale: one 224-pixel cell of the slide per model input, as in the tests.
        model_mpp = CELL * SLIDE_MPP / args.size
        result = breastcls.predict_slide(
            run, slide, model_mpp=model_mpp, overlap=0.5, out=Path(work) / "slide", batch_size=16
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(work) / "slide" / "heatmap.png", args.out)

    tiles = result.tiles
    centre_x = (tiles.x + tiles.size / 2) / CELL
    regions = {
        "benign block": (centre_x >= 1) & (centre_x < 5),
        "malignant block": (centre_x >= 7) & (centre_x < 11),
    }
    figures = {
        name: {"tiles": int(mask.sum()), "mean score": round(float(tiles.score[mask].mean()), 3)}
        for name, mask in regions.items()
    }
    print(json.dumps({"model_mpp": model_mpp, "tissue tiles": len(tiles), **figures}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
