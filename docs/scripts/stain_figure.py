"""Draw docs/images/stain_augmentation.png: one real image under a few draws of the ``hed`` and
``pathology`` augmentations, as the model sees them in training.

    python docs/scripts/stain_figure.py [--data ../shared/data/breakhis-dev] [--draws 5]

The image is the centre square of the first benign image of the development set, at 256 px.
Each draw is one image of a batch (every image of a batch gets its own random draw).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE = 256


def _image(data: Path) -> Any:
    path = sorted((data / "benign").glob("*.png"))[0]
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        side = min(rgb.size)
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        square = rgb.crop((left, top, left + side, top + side))
        return path.name, np.asarray(square.resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/stain_augmentation.png")
    args = parser.parse_args()

    import keras
    import matplotlib

    from breastcls.plugins import PluginHost

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, image = _image(args.data)
    batch = keras.ops.convert_to_tensor(np.repeat(image[None].astype("float32"), args.draws, 0))
    host = PluginHost()
    rows = {
        augmentation: np.asarray(
            host.augmentations.get(augmentation)(seed=args.seed)(batch, training=True)
        )
        for augmentation in ("hed", "pathology")
    }
    figure, axes = plt.subplots(
        len(rows), args.draws + 1, figsize=(1.7 * (args.draws + 1), 2.0 * len(rows) + 0.4)
    )
    for row, (augmentation, images) in zip(axes, rows.items(), strict=True):
        row[0].imshow(image)
        row[0].set_title("original", fontsize=9)
        row[0].set_ylabel(augmentation, fontsize=10)
        for index, (axis, drawn) in enumerate(zip(row[1:], images, strict=True), start=1):
            axis.imshow(np.clip(drawn, 0, 255).astype("uint8"))
            axis.set_title(f"draw {index}", fontsize=9)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{name} (centre square, {SIZE} px)", fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
