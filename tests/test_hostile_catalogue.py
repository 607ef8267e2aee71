"""The hostile-input catalogue, through the real command line in a subprocess: every case ends
with exit code 2, one line ``error: ...`` on stderr, no traceback, and nothing half-written.

The cases that need a trained run live in test_hostile_run_inputs.py and test_locks.py; these
need none, so each costs one process start. docs/reliability.md lists them all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from conftest import copy_patients

CLI = [sys.executable, "-c", "from breastcls.cli.app import main; main()"]
Case = Callable[[Path, Path], tuple[list[str], str]]
"""Given a scratch folder and real images, write the hostile input; return the command line and
a fragment the error line must contain."""


def _an_image(tmp: Path, images: Path) -> str:
    folder = tmp / "images"
    folder.mkdir()
    source = next((images / "benign").glob("*.png"))
    shutil.copy(source, folder / source.name)
    return str(folder)


def _model_bomb(tmp: Path, images: Path) -> tuple[list[str], str]:
    model = tmp / "bomb.keras"
    with zipfile.ZipFile(model, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as entry:
            for _ in range(256):
                entry.write(b"\0" * (1 << 20))
        archive.writestr("metadata.json", "{}")
    out = str(tmp / "out" / "p.csv")
    return ["predict", str(model), _an_image(tmp, images), "--out", out], "bomb.keras"


def _lambda_model(tmp: Path, images: Path) -> tuple[list[str], str]:
    import keras

    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Flatten()]
    )
    path = tmp / "lambda.keras"
    model.save(path)
    out = str(tmp / "out" / "p.csv")
    return ["predict", str(path), _an_image(tmp, images), "--out", out], "Lambda"


def _not_a_model(tmp: Path, images: Path) -> tuple[list[str], str]:
    path = tmp / "fake.keras"
    path.write_bytes(b"this is not a zip archive")
    out = str(tmp / "out" / "p.csv")
    return ["predict", str(path), _an_image(tmp, images), "--out", out], "fake.keras"


def _missing_data(tmp: Path, _: Path) -> tuple[list[str], str]:
    return ["train", "--data", str(tmp / "nowhere"), "--out", str(tmp / "out")], "does not exist"


def _one_class(tmp: Path, images: Path) -> tuple[list[str], str]:
    (tmp / "data" / "benign").mkdir(parents=True)
    for image in sorted((images / "benign").glob("*.png"))[:4]:
        shutil.copy(image, tmp / "data" / "benign" / image.name)
    return ["train", "--data", str(tmp / "data"), "--out", str(tmp / "out")], "two"


def _manifest_traversal(tmp: Path, images: Path) -> tuple[list[str], str]:
    (tmp / "data").mkdir()
    manifest = tmp / "data" / "m.csv"
    manifest.write_text(f"path,label\n../../{images.name}/x.png,benign\nb.png,malignant\n")
    return ["train", "--data", str(manifest), "--out", str(tmp / "out")], "leave its folder"


def _manifest_symlink(tmp: Path, images: Path) -> tuple[list[str], str]:
    (tmp / "data").mkdir()
    (tmp / "data" / "linked").symlink_to(images, target_is_directory=True)
    found = sorted(images.rglob("*.png"))
    rows = [f"linked/{p.parent.name}/{p.name},{p.parent.name}" for p in found]
    (tmp / "data" / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return ["train", "--data", str(tmp / "data" / "m.csv"), "--out", str(tmp / "out")], "linked/"


def _manifest_bom_and_bad_split(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    rows = [f"{p.parent.name}/{p.name},{p.parent.name},somewhere" for p in data.rglob("*.png")]
    manifest = data / "m.csv"
    manifest.write_text("\ufeffpath,label,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return ["train", "--data", str(manifest), "--out", str(tmp / "out")], "somewhere"


def _unknown_backbone(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    args = ["train", "--data", str(data), "--backbone", "densenet2O1", "--out", str(tmp / "out")]
    return args, "densenet201"


def _missing_weights_file(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    weights = str(tmp / "nowhere.h5")
    return ["train", "--data", str(data), "--weights", weights, "--out", str(tmp / "out")], (
        "nowhere.h5"
    )


def _unwritable_out(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    blocker = tmp / "file"
    blocker.write_text("a file where the output folder should be")
    return ["train", "--data", str(data), "--out", str(blocker / "runs")], "file"


def _bad_trainer_option(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    args = ["train", "--data", str(data), "--trainer-option", "lr_factor=7", "--out"]
    return [*args, str(tmp / "out")], "lr_factor"


def _cmyk_and_16_bit_named_like_a_run(tmp: Path, images: Path) -> tuple[list[str], str]:
    """Odd but readable images are not the problem here; a missing run folder is."""
    folder = tmp / "images"
    folder.mkdir()
    source = Image.open(next((images / "benign").glob("*.png")))
    source.convert("CMYK").save(folder / "cmyk.tif")
    source.convert("I;16").save(folder / "sixteen.png")
    return ["predict", str(tmp / "no-run"), str(folder), "--out", str(tmp / "out" / "p.csv")], (
        "no-run"
    )


def _evaluate_a_cross_validation_folder(tmp: Path, _: Path) -> tuple[list[str], str]:
    run = tmp / "cv"
    run.mkdir()
    (run / "cross_validation.json").write_text('{"folds": 5, "config": {}}')
    return ["evaluate", str(run), "--out", str(tmp / "out")], "cross-validation"


CASES: dict[str, Case] = {
    "a .keras zip bomb": _model_bomb,
    "a model with a Lambda layer (code)": _lambda_model,
    "a .keras file that is not a zip": _not_a_model,
    "a missing data folder": _missing_data,
    "a data folder with one class": _one_class,
    "a manifest path with ..": _manifest_traversal,
    "a manifest path through a symbolic link": _manifest_symlink,
    "a BOM manifest with a bad split value": _manifest_bom_and_bad_split,
    "an unknown backbone id": _unknown_backbone,
    "a missing local weights file": _missing_weights_file,
    "an output folder under a file": _unwritable_out,
    "a trainer option out of range": _bad_trainer_option,
    "predict with a run folder that does not exist": _cmyk_and_16_bit_named_like_a_run,
    "evaluate on a cross-validation folder": _evaluate_a_cross_validation_folder,
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_is_one_line_and_nothing_is_written(
    case: str, tmp_path: Path, breakhis_dev: Path
) -> None:
    args, fragment = CASES[case](tmp_path, breakhis_dev)
    before = sorted(p for p in tmp_path.rglob("*"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    # Progress (``loading TensorFlow…``) may come first; the error is one line.
    lines = [line for line in result.stderr.splitlines() if line.strip() and "…" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p for p in tmp_path.rglob("*")) == before, "something was written"
