"""Draw docs/images/stain_normalisation.png: development images from four patients, as they are
and after Reinhard and Macenko normalisation to one reference image.

    python docs/scripts/stain_normalisation_figure.py [--data ../shared/data/breakhis-dev]

The reference is the first malignant image of the development set; each normaliser is fitted to
it alone (as ``--stain-reference IMAGE`` does) and applied by its in-model layer. Every image is
its centre square at 256 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE = 256


def _square(path: Path) -> npt.NDArray[np.uint8]:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        side = min(rgb.size)
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        square = rgb.crop((left, top, left + side, top + side))
        return np.asarray(square.resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/breakhis-dev")
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/stain_normalisation.png")
    args = parser.parse_args()

    import matplotlib

    from breastcls.plugins import PluginHost

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference_path = sorted((args.data / "malignant").glob("*.png"))[0]
    reference = _square(reference_path)
    images = sorted(args.data.glob("*/*.png"))
    patients: dict[str, Path] = {}
    for path in images:  # the first image of every fourth patient, up to four
        patients.setdefault("-".join(path.name.split("-")[1:3]), path)
    chosen = list(patients.values())[::4][:4]
    batch = np.stack([_square(path) for path in chosen]).astype(np.float32)
    host = PluginHost()
    rows = {"as scanned": batch}
    for name in ("reinhard", "macenko"):
        normaliser = host.stain_normalisers.get(name)
        layer = normaliser.layer(normaliser.fit(reference.reshape(-1, 3)))
        rows[name] = np.asarray(layer(batch))
    figure, axes = plt.subplots(len(rows), len(chosen) + 1, figsize=(2.0 * (len(chosen) + 1), 6.6))
    for row, (label, pictures) in enumerate(rows.items()):
        axes[row, 0].imshow(reference if row == 0 else np.full_like(reference, 255))
        axes[row, 0].set_title("reference" if row == 0 else "", fontsize=8)
        axes[row, 1].set_ylabel(label, fontsize=9)
        for column, picture in enumerate(pictures, start=1):
            axes[row, column].imshow(np.clip(picture, 0, 255).astype(np.uint8))
            if row == 0:
                axes[row, column].set_title(chosen[column - 1].name[:22], fontsize=6)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)
    figure.suptitle(f"Stain normalisation to {reference_path.name}", fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
