"""The hostile-input catalogue, through the real command line in a subprocess: every case ends
with exit code 2, one line ``error: ...`` on stderr, no traceback, and nothing half-written.

The cases that need a trained run live in test_hostile_run_inputs.py and test_locks.py; these
need none, so each costs one process start. docs/reliability.md lists them all.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from _runs import (
    CLI,
    TIMEOUT_SCALE_VARIABLE,
    run_cli,
    run_signals,
    run_watched,
    timeout_scale,
    tiny_train_options,
)
from breastcls.evaluation.metrics import read_predictions
from breastcls.runs.folder import read_split_csv
from conftest import copy_patients

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


def _manifest_with_a_line_break(cell: str) -> Case:
    def case(tmp: Path, images: Path) -> tuple[list[str], str]:
        data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
        benign, malignant = sorted(data.glob("benign/*.png"))[0], sorted(data.glob("malign*/*"))[0]
        # Before: the reader split the text into lines first, so "ben\nign" became "benign"
        # and "benign/x\ny.png" the path "benign/xy.png" (another file, if it exists).
        (data / "benign" / "xy.png").write_bytes(benign.read_bytes())
        rows = {
            "label": f'path,label\nbenign/{benign.name},"ben\nign"\n',
            "path": f'path,label\n"benign/x\ny.png",benign\nbenign/{benign.name},benign\n',
        }[cell]
        manifest = data / "m.csv"
        manifest.write_text(f"{rows}malignant/{malignant.name},malignant\n", encoding="utf-8")
        return ["train", "--data", str(manifest), "--out", str(tmp / "out")], ("line 2: the value")

    return case


def _run_name_with_a_line_break(tmp: Path, images: Path) -> tuple[list[str], str]:
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    args = ["train", "--data", str(data), "--out", str(tmp / "out"), "--name", "run\nname"]
    return args, "holds a line break"


def _group_by_path(tmp: Path, images: Path) -> tuple[list[str], str]:
    # Before: "4 of 4 images have no path", when every image has one.
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    args = ["train", "--data", str(data), "--group-by", "path", "--out", str(tmp / "out")]
    return args, "group_by='path': every image has a path of its own, so each would be a group"


def _train_batch_beyond_memory(batch_size: int, image_size: int) -> Case:
    def case(tmp: Path, images: Path) -> tuple[list[str], str]:
        data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
        args = ["train", "--data", str(data), "--backbone", "smallcnn", "--weights", "none"]
        args += ["--batch-size", str(batch_size), "--image-size", str(image_size)]
        return [*args, "--out", str(tmp / "out")], (
            f"training smallcnn: --batch-size {batch_size} at --image-size {image_size} needs about"
        )

    return case


def _train_at_2048_with_the_default_batch(tmp: Path, images: Path) -> tuple[list[str], str]:
    """The largest --image-size with the default --batch-size (16): before, training started
    and was killed for memory at 24 GB, without a word. smallcnn needs about 55 GB there."""
    from breastcls.limits import machine_memory_bytes

    if machine_memory_bytes() > 50e9:
        pytest.skip("this machine may hold smallcnn's batch of 16 at 2048 px")
    data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
    args = ["train", "--data", str(data), "--backbone", "smallcnn", "--weights", "none"]
    return [*args, "--image-size", "2048", "--out", str(tmp / "out")], (
        "training smallcnn: --batch-size 16 at --image-size 2048 needs about"
    )


def _predict_batch_beyond_memory(tmp: Path, images: Path) -> tuple[list[str], str]:
    from breastcls import ModelConfig
    from breastcls.model import build_model

    model = tmp / "model.keras"
    build_model(ModelConfig(backbone="smallcnn", weights=None), n_classes=2, image_size=32).save(
        model
    )
    out = str(tmp / "out" / "p.csv")
    args = ["predict", str(model), _an_image(tmp, images), "--batch-size", "1000000000"]
    return [*args, "--out", out], "predict: --batch-size 1000000000 at --image-size 32 needs"


def _slide_predict_unknown_tta(tmp: Path, _: Path) -> tuple[list[str], str]:
    # The model is not there: the option is checked before the model is loaded.
    args = ["slide", "predict", str(tmp / "no-model"), str(tmp / "slides"), "--tta", "bogus"]
    return [*args, "--out", str(tmp / "out")], "'bogus'"


def _tiff_chain(path: Path, pages: int) -> None:
    """A little-endian TIFF: the pixel of a 1x1 grey image, then ``pages`` identical IFDs."""
    entries = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8)]
    entries += [(278, 3, 1), (279, 4, 1)]  # one row per strip, one byte at offset 8
    ifd_bytes = 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 10) + b"\x80\x00")
    for page in range(pages):
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            out += struct.pack("<HHII", tag, kind, 1, value)
        following = 10 + (page + 1) * ifd_bytes
        out += struct.pack("<I", following if page + 1 < pages else 0)
    path.write_bytes(bytes(out))


def _png_16_bit(path: Path, side: int) -> None:
    """A black 16-bit grey PNG of ``side`` x ``side`` pixels: a few hundred KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 2 * side)  # filter byte, then two bytes a pixel
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    path.write_bytes(signature + chunks)


def _training_data_with(hostile: Callable[[Path], None], fragment: str) -> Case:
    def case(tmp: Path, images: Path) -> tuple[list[str], str]:
        data = copy_patients(images, tmp / "data", patients=2, images_per_patient=1)
        hostile(data / "benign" / "hostile")
        args = ["train", "--data", str(data), "--backbone", "smallcnn", "--weights", "none"]
        return [*args, "--image-size", "32", "--out", str(tmp / "out")], fragment

    return case


def _a_long_ifd_chain(folder: Path) -> None:
    _tiff_chain(folder.with_suffix(".tif"), 3000)


def _a_16_bit_9400_square_png(folder: Path) -> None:
    _png_16_bit(folder.with_suffix(".png"), 9400)


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
    "a manifest label with a quoted line break": _manifest_with_a_line_break("label"),
    "a manifest path with a quoted line break": _manifest_with_a_line_break("path"),
    "a run name with a line break": _run_name_with_a_line_break,
    "train --group-by path": _group_by_path,
    "train --batch-size 10**6": _train_batch_beyond_memory(10**6, 48),
    "train --batch-size 2**63": _train_batch_beyond_memory(2**63, 48),
    "train --image-size 2048 --batch-size 10**4": _train_batch_beyond_memory(10**4, 2048),
    "train --image-size 2048 (default batch)": _train_at_2048_with_the_default_batch,
    "predict --batch-size 10**9": _predict_batch_beyond_memory,
    "slide predict --tta bogus": _slide_predict_unknown_tta,
    "a TIFF with a chain of 3000 IFDs": _training_data_with(
        _a_long_ifd_chain, "a TIFF with more than 1000 pages (IFDs)"
    ),
    "a 16-bit 9400x9400 PNG (330 KB)": _training_data_with(
        _a_16_bit_9400_square_png, "decoding this 9400x9400 I;16 image would take about"
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_is_one_line_and_nothing_is_written(
    case: str, tmp_path: Path, breakhis_dev: Path
) -> None:
    args, fragment = CASES[case](tmp_path, breakhis_dev)
    _assert_refused_in_one_line(args, fragment, tmp_path)


def _assert_refused_in_one_line(
    args: list[str], fragment: str, tmp_path: Path, *, python_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    before = sorted(p for p in tmp_path.rglob("*"))
    env = {
        **(_with_plugins(python_path) if python_path else os.environ),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = run_watched([*CLI, *args], env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    # Progress (``loading TensorFlow…``) may come first; the error is one line.
    lines = [line for line in result.stderr.splitlines() if line.strip() and "…" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p for p in tmp_path.rglob("*")) == before, "something was written"
    return result


# A plugin distribution, installed by putting its folder on PYTHONPATH: a module of hostile
# components and a .dist-info whose entry points name the ones a test picks.
HOSTILE_PLUGINS = """
import keras
from breastcls import KerasBackbone, hookimpl

def _features(output):
    def factory(*, input_shape, weights):
        if output == "text":
            return "features"
        inputs = keras.Input(input_shape)
        outputs = {
            "flat": keras.layers.GlobalAveragePooling2D()(inputs),
            "zero-channels": inputs[..., :0],
            "two-outputs": [inputs, inputs],
        }[output]
        return keras.Model(inputs, outputs)
    return factory

class Backbones:
    @hookimpl
    def breastcls_register_backbones(self, registry):
        for name in ("flat", "zero-channels", "two-outputs", "text"):
            backbone = KerasBackbone(factory=_features(name))
            registry.add(name, backbone, summary=f"hostile: {name}")

class RaisingRegistration:
    @hookimpl
    def breastcls_register_heads(self, registry):
        raise KeyError("no such head")

class FailingObserver:
    @hookimpl
    def breastcls_train_end(self, run_dir, metrics):
        raise RuntimeError("the dashboard is down")

class FailingEpochObserver:
    @hookimpl
    def breastcls_epoch_end(self, run_dir, epoch, logs):
        raise RuntimeError("the dashboard is down")

backbones, raising, observer = Backbones(), RaisingRegistration(), FailingObserver()
epoch_observer = FailingEpochObserver()
"""


def _with_plugins(site: Path) -> dict[str, str]:
    """The environment with ``site`` (see :func:`_install_plugins`) first on PYTHONPATH."""
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _install_plugins(tmp: Path, entry_points: dict[str, str]) -> Path:
    site = tmp.parent / f"{tmp.name}-site"  # beside tmp: the catalogue checks tmp is unchanged
    dist = site / "breastcls_hostile-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "hostile_plugins.py").write_text(HOSTILE_PLUGINS)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: breastcls-hostile\nVersion: 0.1\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (dist / "entry_points.txt").write_text("[breastcls]\n" + "\n".join(lines) + "\n")
    return site


@pytest.mark.parametrize(
    ("backbone", "fragment"),
    [
        ("flat", "outputs shape (None, 3), not (batch, h, w, channels > 0)"),
        ("zero-channels", "outputs shape (None, 32, 32, 0), not (batch, h, w, channels > 0)"),
        ("two-outputs", "has 2 outputs, not one feature map"),
        ("text", "returns str, not a keras.Model"),
    ],
)
def test_a_backbone_with_the_wrong_output_is_refused_before_decoding(
    backbone: str, fragment: str, tmp_path: Path, breakhis_dev: Path
) -> None:
    site = _install_plugins(tmp_path, {"hostile_backbones": "hostile_plugins:backbones"})
    data = copy_patients(breakhis_dev, tmp_path / "data", patients=2, images_per_patient=1)
    # An unreadable image: decoding it would be a different error, so the backbone came first.
    (data / "benign" / "broken.png").write_bytes(b"\x89PNG not really")
    args = ["train", "--data", str(data), "--backbone", backbone, "--weights", "none"]
    args += ["--image-size", "32", "--out", str(tmp_path / "out")]
    result = _assert_refused_in_one_line(args, fragment, tmp_path, python_path=site)
    assert f"Backbone {backbone!r} (plugin 'hostile_backbones')" in result.stderr


def test_a_raising_registration_hook_is_named_and_the_rest_is_listed(tmp_path: Path) -> None:
    site = _install_plugins(
        tmp_path,
        {"hostile_raising": "hostile_plugins:raising", "hostile_missing": "no_such_module:x"},
    )
    before = sorted(p for p in tmp_path.rglob("*"))
    env = _with_plugins(site)
    result = run_watched([*CLI, "plugins"], env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Progress (``loading TensorFlow…``, when a plugin imports it) may come first.
    errors = [line for line in result.stderr.splitlines() if "…" not in line]
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors), errors
    assert "plugin 'hostile_missing' (no_such_module:x) failed to load" in errors[0]
    assert "ModuleNotFoundError" in errors[0]
    assert (
        "Plugin 'hostile_raising' failed in breastcls_register_heads: KeyError: 'no such head'"
        in errors[1]
    )
    listed = result.stdout.split()
    assert {"densenet201", "smallcnn", "seed", "keras"} <= set(listed)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_a_failing_train_end_observer_does_not_fail_a_finished_run(
    small_breakhis: Path, tmp_path: Path
) -> None:
    site = _install_plugins(tmp_path, {"hostile_observer": "hostile_plugins:observer"})
    env = _with_plugins(site)
    out = tmp_path / "runs"
    args = ["train", "--data", str(small_breakhis), "--out", str(out), "--name", "observed"]
    result = run_watched(
        [*CLI, *args, *tiny_train_options(1)], env=env, watched=run_signals(out / "observed")
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(
        "error: Plugin 'hostile_observer' failed in breastcls_train_end: RuntimeError: the "
        "dashboard is down. The run itself finished: "
    )
    status = json.loads((out / "observed" / "status.json").read_text())
    assert status["status"] == "finished" and "headline" in status


@pytest.mark.slow  # about 20 s of CPU: reading and checking 10^6 rows is the point
def test_a_manifest_of_a_million_rows_says_so_before_checking_them(tmp_path: Path) -> None:
    """Before: 137 s without a line, then the error. Now the row count comes first (seconds
    after the start), then the check (a progress bar on a terminal), several times faster."""
    rows = 10**6
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write("path,label\n")
        handle.writelines(
            f"{label}/image-{row:07d}.png,{label}\n"
            for row, label in zip(range(rows), itertools.cycle(("benign", "malignant")))
        )
    args = ["train", "--data", str(manifest), "--out", str(tmp_path / "out")]
    result = run_watched([*CLI, *args], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [
        "m.csv: 1000000 rows; checking them…",
        f"error: Manifest {str(manifest)!r} names 1000000 file(s) that do not exist: line 2: "
        "'benign/image-0000000.png'; line 3: 'malignant/image-0000001.png'; line 4: "
        "'benign/image-0000002.png'; line 5: 'malignant/image-0000003.png'; line 6: "
        f"'benign/image-0000004.png' (and 999995 more). Paths are relative to {str(tmp_path)!r}; "
        "fix or remove those rows.",
    ]
    assert not (tmp_path / "out").exists()


def test_a_failing_epoch_end_observer_stops_the_run_naming_the_plugin(
    small_breakhis: Path, tmp_path: Path
) -> None:
    site = _install_plugins(tmp_path, {"hostile_epochs": "hostile_plugins:epoch_observer"})
    out = tmp_path / "runs"
    args = ["train", "--data", str(small_breakhis), "--out", str(out), "--name", "observed"]
    result = run_watched(
        [*CLI, *args, *tiny_train_options(1)],
        env=_with_plugins(site),
        watched=run_signals(out / "observed"),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(
        "error: Plugin 'hostile_epochs' failed in breastcls_epoch_end: RuntimeError: the "
        "dashboard is down"
    ), line
    status = json.loads((out / "observed" / "status.json").read_text())
    assert status["status"] == "failed" and "hostile_epochs" in status["reason"]


FORMULA_LABELS = ('=HYPERLINK("http://example.com/x","x")', "+cmd|' /C calc'!A0")


def _cells(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def _assert_no_formula(path: Path) -> None:
    starts = ("=", "+", "-", "@", "\t", "\r")
    for cell in (cell for row in _cells(path) for cell in row):
        number = cell.lstrip("+-").replace(".", "", 1).replace("e-", "").isdigit()
        assert number or not cell.startswith(starts), (path.name, cell)


def test_labels_that_are_formulas_are_written_as_text_and_read_back(
    small_breakhis: Path, tmp_path: Path
) -> None:
    """OWASP CSV injection: cells starting with = + - @ tab CR get a leading quote in every CSV
    breastcls writes (split.csv, predictions.csv, predict's CSV), and breastcls reads them back
    as the labels they were."""
    benign, malignant = sorted(FORMULA_LABELS)[1], sorted(FORMULA_LABELS)[0]
    manifest = small_breakhis / "m.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for image in sorted(small_breakhis.rglob("*.png")):
            label = benign if image.parent.name == "benign" else malignant
            writer.writerow([f"{image.parent.name}/{image.name}", label])
    out = tmp_path / "runs"
    args = ["train", "--data", str(manifest), "--out", str(out), "--name", "f"]
    log = tmp_path / "train.log"
    assert run_cli([*args, *tiny_train_options(1)], log) == 0, log.read_text()
    run_dir = out / "f"
    image = next(small_breakhis.glob("benign/*.png"))
    shutil.copy(image, tmp_path / "@SUM(1+1).png")
    predict = run_watched(
        [*CLI, "predict", str(run_dir), "@SUM(1+1).png", "--out", "p.csv"], cwd=tmp_path
    )
    assert predict.returncode == 0, predict.stderr

    for written in (run_dir / "split.csv", run_dir / "predictions.csv", tmp_path / "p.csv"):
        _assert_no_formula(written)
    split_labels = {row[1] for row in _cells(run_dir / "split.csv")[1:]}
    assert split_labels == {"'" + label for label in FORMULA_LABELS}
    assert _cells(tmp_path / "p.csv")[1][0] == "'@SUM(1+1).png"
    # Read back by breastcls, each label is the label it was.
    assert {sample.label for sample, _ in read_split_csv(run_dir)} == set(FORMULA_LABELS)
    predictions = read_predictions(run_dir / "predictions.csv")
    assert predictions.class_names == tuple(sorted(FORMULA_LABELS))


def test_runs_lists_every_run_when_one_status_is_malformed_or_a_fifo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad status.json is one line about that run; a FIFO is never opened for a blocking read
    (before: a traceback for every run, and a hang)."""
    records: dict[str, object] = {
        "good": {
            "status": "finished",
            "updated": "2026-12-01T10:00:00+00:00",
            "headline": {"accuracy": 0.875, "auc": 0.9, "role": "test"},
        },
        "number-date": {"status": "finished", "updated": 12345},
        "text-headline": {"status": "finished", "headline": "oops"},
    }
    for name, record in records.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "status.json").write_text(json.dumps(record))
    (tmp_path / "fifo").mkdir()
    (tmp_path / "fifo" / "config.json").write_text("{}")
    os.mkfifo(tmp_path / "fifo" / "status.json")
    # A running run whose lock file is a FIFO: checking the lock must not block either.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "status.json").write_text('{"status": "running"}')
    os.mkfifo(tmp_path / "locked" / ".breastcls-lock.json")
    # `runs` imports no TensorFlow: a tenth of the usual quiet limit is plenty.
    monkeypatch.setenv(TIMEOUT_SCALE_VARIABLE, str(timeout_scale() / 10))
    monkeypatch.setenv("COLUMNS", "100")  # one line per run
    result = run_watched([*CLI, "runs", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stdout.splitlines()
    table, notes = lines[:7], " ".join(line.strip() for line in lines[7:])  # unwrapped
    assert [[cells[0], cells[2]] for cells in map(str.split, table[2:])] == [
        ["fifo", "unknown"], ["good", "finished"], ["locked", "killed"],
        ["number-date", "unknown"], ["text-headline", "unknown"],
    ]  # fmt: skip
    assert "0.875" in table[3]
    assert "fifo: " in notes and "is a FIFO, not a regular file" in notes
    assert "'updated' is 12345, not str or null" in notes
    assert "'headline' is 'oops', not dict or null" in notes
