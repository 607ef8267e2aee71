"""The bad-input catalogue of issue 3: every item gives a specific error or a recorded skip.

Every fixture is generated in the test. Only Pillow is needed (no TensorFlow) except for the
last test, which checks that the tf.data decoder gives the same pixels as Pillow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastcls import DataConfig, DataError, check_data, load_dataset
from breastcls.data.check import DataReport
from breastcls.data.images import decode_image, inspect_image, scan_samples
from breastcls.data.manifest import ManifestFormat, read_manifest

RED = (200, 30, 40)
BLUE = (30, 40, 200)


def _noise(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _dataset(root: Path, per_class: int = 3) -> Path:
    """Write a valid two-class folder of small, distinct PNGs (no patient ids)."""
    for offset, klass in enumerate(("benign", "malignant")):
        (root / klass).mkdir(parents=True)
        for index in range(per_class):
            image = Image.fromarray(_noise(10 * offset + index))
            image.save(root / klass / f"{klass}-{index}.png")
    return root


def _reasons(report: DataReport) -> dict[str, str]:
    return {item.path.name: item.reason for item in (*report.unreadable, *report.skipped)}


def _check(root: Path) -> DataReport:
    """Check ``root`` keeping no test set: six images are too few for the default
    train/selection/test split (:func:`test_six_images_are_too_few_for_three_roles`), and
    these tests are about files, not splits."""
    return check_data(root, config=DataConfig(path=root, test_fraction=0))


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "data")


def test_six_images_are_too_few_for_three_roles(data: Path) -> None:
    report = check_data(data)
    assert report.split_source == "none" and report.split is None
    (issue,) = report.errors
    assert issue.kind == "split"
    assert issue.message.startswith(
        "No usable split: A stratified 20% selection split of 4 images with 2 classes is impossible"
    )
    assert report.per_split == {"(unsplit)": {"benign": 3, "malignant": 3}}
    # Without a test set, the same six images split into training and selection.
    kept = _check(data)
    assert kept.ok and kept.split_source == "computed" and kept.split_method == "image"
    assert kept.per_split == {
        "train": {"benign": 2, "malignant": 2},
        "selection": {"benign": 1, "malignant": 1},
    }


# --- unreadable files: errors naming the file and the reason ---------------------------------


def test_zero_byte_file(data: Path) -> None:
    (data / "benign" / "empty.png").write_bytes(b"")
    report = _check(data)
    assert _reasons(report)["empty.png"] == "empty file (0 bytes); remove it or copy it again."
    assert not report.ok and [i.kind for i in report.errors] == ["unreadable"]


def _truncated(data: Path, name: str, fmt: str) -> Path:
    path = data / "malignant" / name
    Image.fromarray(_noise(7, 64)).save(path, format=fmt)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


def test_truncated_png(data: Path) -> None:
    path = _truncated(data, "cut.png", "PNG")
    with pytest.raises(DataError, match=r"cut\.png: corrupt or truncated image"):
        decode_image(path)
    assert _reasons(check_data(data))["cut.png"].startswith("corrupt or truncated image")


def test_truncated_jpeg(data: Path) -> None:
    path = _truncated(data, "cut.jpg", "JPEG")
    with pytest.raises(DataError, match=r"cut\.jpg: corrupt or truncated image"):
        decode_image(path)
    assert "truncated" in _reasons(check_data(data))["cut.jpg"]


def test_text_file_named_png(data: Path) -> None:
    (data / "benign" / "notes.png").write_text("not an image", encoding="utf-8")
    reason = _reasons(check_data(data))["notes.png"]
    assert reason == "not a readable image (unknown or corrupt format)."


def test_decompression_bomb_is_refused_before_decoding(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 100x100 image against a 1,000-pixel limit: the same code path as a 200-megapixel file
    # against Pillow's default limit, without writing one. Pillow checks the header's size
    # before it allocates anything, so nothing large is ever decoded.
    Image.fromarray(_noise(1, 100)).save(data / "benign" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    with pytest.raises(DataError, match=r"huge\.png: image is too large to decode safely"):
        decode_image(data / "benign" / "huge.png")
    # Above the limit but under twice it: Pillow only warns; breastcls refuses all the same.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)
    with pytest.raises(DataError, match="too large to decode safely"):
        decode_image(data / "benign" / "huge.png")


def test_unreadable_file_permissions(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests usually run as root here, and root reads a chmod-000 file; then the PermissionError
    # the operating system would raise is simulated at the point Pillow opens the file.
    path = data / "benign" / "benign-1.png"
    if os.geteuid() == 0:
        real_open = Image.open

        def denying_open(fp: object, *args: object, **kwargs: object) -> Image.Image:
            if Path(str(fp)) == path:
                raise PermissionError(13, "Permission denied", str(fp))
            return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Image, "open", denying_open)
    else:
        path.chmod(0)
    try:
        _, bad = scan_samples(load_dataset(DataConfig(path=data)).samples)
    finally:
        path.chmod(0o644)
    assert [(item.path, item.reason) for item in bad] == [
        (path, "permission denied; make the file readable.")
    ]


# --- stray files: skipped and recorded, never an error ------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".DS_Store", "operating-system file"),
        ("Thumbs.db", "operating-system file"),
        ("desktop.ini", "operating-system file"),
        ("readme.txt", "not an image extension"),
        (".hidden.png", "hidden file"),
    ],
)
def test_stray_files_are_skipped_and_reported(data: Path, name: str, reason: str) -> None:
    (data / "benign" / name).write_bytes(b"stray")
    dataset = load_dataset(DataConfig(path=data))
    assert len(dataset.samples) == 6
    assert {item.path.name: item.reason for item in dataset.skipped}[name].startswith(reason)
    report = _check(data)
    assert report.ok
    assert [(i.severity, i.kind) for i in report.issues] == [("warning", "skipped-file")]


def test_hidden_folder_is_skipped(data: Path) -> None:
    (data / "benign" / ".thumbnails").mkdir()
    Image.fromarray(_noise(3)).save(data / "benign" / ".thumbnails" / "a.png")
    dataset = load_dataset(DataConfig(path=data))
    assert [(s.path.name, s.reason) for s in dataset.skipped] == [(".thumbnails", "hidden folder")]
    assert len(dataset.samples) == 6


# --- odd but valid formats: decoded to the right 8-bit RGB pixels -------------------------------


def _write_odd(folder: Path, kind: str) -> tuple[Path, np.ndarray]:
    """Write one odd-format 16x16 image; return its path and the RGB pixels expected."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    if kind == "grayscale":
        path = folder / "gray.png"
        Image.fromarray(ramp, mode="L").save(path)
        return path, np.repeat(ramp[..., None], 3, axis=2)
    if kind == "rgba":
        path = folder / "rgba.png"
        rgba = np.zeros((16, 16, 4), dtype=np.uint8)
        rgba[:, :8] = (*RED, 255)
        rgba[:, 8:] = (*BLUE, 0)  # fully transparent: becomes white (an empty slide)
        Image.fromarray(rgba, mode="RGBA").save(path)
        expected = np.empty((16, 16, 3), dtype=np.uint8)
        expected[:, :8], expected[:, 8:] = RED, (255, 255, 255)
        return path, expected
    if kind == "palette":
        path = folder / "palette.png"
        image = Image.new("P", (16, 16))
        image.putpalette([*RED, *BLUE] + [0] * 762)
        indices = np.zeros((16, 16), dtype=np.uint8)
        indices[8:] = 1
        image.putdata(indices.ravel().tolist())
        image.save(path)
        expected = np.empty((16, 16, 3), dtype=np.uint8)
        expected[:8], expected[8:] = RED, BLUE
        return path, expected
    if kind == "16-bit":
        path = folder / "deep.png"
        values = np.array([0, 257 * 128, 65535], dtype=np.uint16)
        deep = np.resize(values, (16, 16)).astype(np.uint16)
        Image.fromarray(deep).save(path)
        assert Image.open(path).mode == "I;16"
        scaled = np.resize(np.array([0, 128, 255], dtype=np.uint8), (16, 16))
        return path, np.repeat(scaled[..., None], 3, axis=2)
    if kind == "cmyk-jpeg":
        path = folder / "cmyk.jpg"
        cmyk = np.zeros((16, 16, 4), dtype=np.uint8)
        cmyk[..., 0] = 255  # pure cyan ink
        Image.fromarray(cmyk, mode="CMYK").save(path, quality=100)
        return path, np.resize(np.array([0, 255, 255], dtype=np.uint8), (16, 16, 3))
    if kind == "multipage-tiff":
        path = folder / "pages.tif"
        first = Image.new("RGB", (16, 16), RED)
        first.save(path, save_all=True, append_images=[Image.new("RGB", (16, 16), BLUE)])
        return path, np.resize(np.array(RED, dtype=np.uint8), (16, 16, 3))
    if kind == "exif-jpeg":
        # 32 wide x 16 tall, red left half, blue right half, stored with EXIF orientation 6
        # ("rotate 90 degrees clockwise to view"): viewed, it is 16 wide x 32 tall, red on top.
        path = folder / "rotated.jpg"
        stored = np.empty((16, 32, 3), dtype=np.uint8)
        stored[:, :16], stored[:, 16:] = RED, BLUE
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(stored).save(path, exif=exif, quality=100)
        expected = np.empty((32, 16, 3), dtype=np.uint8)
        expected[:16], expected[16:] = RED, BLUE
        return path, expected
    raise AssertionError(kind)


ODD_KINDS = ["grayscale", "rgba", "palette", "16-bit", "cmyk-jpeg", "multipage-tiff", "exif-jpeg"]
_LOSSY = {"cmyk-jpeg", "exif-jpeg"}


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_formats_decode_to_rgb(tmp_path: Path, kind: str) -> None:
    path, expected = _write_odd(tmp_path, kind)
    pixels = decode_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    # JPEG is lossy: allow its rounding, away from the block edges where colours meet.
    tolerance = 6 if kind in _LOSSY else 0
    if kind == "exif-jpeg":
        assert np.abs(pixels[:12].astype(int) - RED).max() <= tolerance
        assert np.abs(pixels[20:].astype(int) - BLUE).max() <= tolerance
    else:
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= tolerance


def test_odd_formats_are_reported_not_rejected(data: Path) -> None:
    for kind in ODD_KINDS:
        _write_odd(data / "benign", kind)
    report = _check(data)
    assert report.ok, [issue.message for issue in report.errors]
    assert report.modes == {"CMYK": 1, "I;16": 1, "L": 1, "P": 1, "RGB": 8, "RGBA": 1}
    assert report.formats == {"JPEG": 2, "PNG": 10, "TIFF": 1}
    assert report.sizes["16x32"] == 1  # the EXIF-rotated JPEG, as viewed
    suspicious = {i.paths[0].name: i.message for i in report.warnings if i.kind == "suspicious"}
    # The 16-pixel test images are flagged as small; the TIFF also for its second page.
    assert len(suspicious) == len(ODD_KINDS)
    assert suspicious["pages.tif"].endswith(
        "pages.tif: 2 pages or frames; only the first is used; only 16x16 pixels."
    )
    assert suspicious["gray.png"].endswith("gray.png: only 16x16 pixels.")
    info = inspect_image(data / "benign" / "rotated.jpg")
    assert (info.width, info.height, info.tf_native) == (16, 32, False)


def test_extension_that_lies_about_the_content(data: Path) -> None:
    Image.fromarray(_noise(5)).save(data / "benign" / "really-a-jpeg.png", format="JPEG")
    report = _check(data)
    assert report.ok
    (warning,) = [i for i in report.warnings if i.kind == "suspicious"]
    assert "extension .png but the content is JPEG" in warning.message


# --- names and layout ----------------------------------------------------------------------------


def test_non_ascii_and_space_names(tmp_path: Path) -> None:
    root = tmp_path / "données lab"
    for klass in ("bénin tumeur", "malin 恶性"):
        (root / klass).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(_noise(index + 10 * len(klass))).save(
                root / klass / f"lame n° {index} 图像.png"
            )
    dataset = load_dataset(DataConfig(path=root))
    assert dataset.class_names == ("bénin tumeur", "malin 恶性")
    assert sorted(s.path.name for s in dataset.samples)[0] == "lame n° 0 图像.png"
    report = check_data(root)  # five images a class: enough for the three default roles
    assert report.ok and report.per_class == {"bénin tumeur": 5, "malin 恶性": 5}
    assert {role: sum(row.values()) for role, row in report.per_split.items()} == {
        "train": 6,
        "selection": 2,
        "test": 2,
    }
    assert all(set(row) == {"bénin tumeur", "malin 恶性"} for row in report.per_split.values())


def test_nested_folders_inside_a_class_folder(data: Path) -> None:
    nested = data / "benign" / "slide-1" / "tiles"
    nested.mkdir(parents=True)
    Image.fromarray(_noise(9)).save(nested / "tile.png")
    dataset = load_dataset(DataConfig(path=data))
    (tile,) = [s for s in dataset.samples if s.path.name == "tile.png"]
    assert tile.label == "benign" and len(dataset.samples) == 7


def test_symlink_loop_is_not_followed(data: Path) -> None:
    (data / "benign" / "loop").symlink_to(data / "benign", target_is_directory=True)
    dataset = load_dataset(DataConfig(path=data))
    assert len(dataset.samples) == 6
    assert [(s.path.name, s.reason) for s in dataset.skipped] == [
        ("loop", "symlink loop; not followed")
    ]


def _split_layout(root: Path, train: tuple[str, ...], validation: tuple[str, ...]) -> Path:
    for split, classes in (("train", train), ("validation", validation)):
        for klass in classes:
            (root / split / klass).mkdir(parents=True)
            Image.fromarray(_noise(len(klass))).save(root / split / klass / f"{klass}.png")
    return root


def test_validation_class_missing_from_training(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "d", ("benign",), ("benign", "malignant"))
    with pytest.raises(DataError, match=r"unexpected: \['malignant'\]\): every split needs"):
        load_dataset(DataConfig(path=root))


def test_training_class_missing_from_validation(tmp_path: Path) -> None:
    root = _split_layout(tmp_path / "d", ("benign", "malignant"), ("benign",))
    with pytest.raises(DataError, match=r"missing: \['malignant'\], unexpected: none"):
        load_dataset(DataConfig(path=root))


def test_manifest_split_without_a_class_on_one_side(tmp_path: Path) -> None:
    from breastcls import RunConfig
    from breastcls.training.train import prepare_data

    # validation rows are the test set: benign-3 and benign-4 only. The train rows (five
    # malignant, three benign) are enough to carve a selection set holding both classes.
    root = _dataset(tmp_path / "d", per_class=5)
    rows = ["path,label,split"]
    for image in sorted(root.rglob("*.png")):
        klass = image.parent.name
        held = klass == "benign" and image.stem[-1] in "34"
        rows.append(f"{image.relative_to(root)},{klass},{'validation' if held else 'train'}")
    (root / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"The test set has no image of class\(es\) \['malignant'\]"
    ):
        prepare_data(RunConfig(data=DataConfig(path=root / "m.csv")))


# --- manifests ------------------------------------------------------------------------------------


def _manifest(root: Path, lines: list[str], name: str = "manifest.csv") -> Path:
    path = root / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(root: Path) -> list[str]:
    return [
        f"{image.relative_to(root).as_posix()},{image.parent.name}"
        for image in sorted(root.rglob("*.png"))
    ]


def test_manifest_with_a_missing_file(data: Path) -> None:
    path = _manifest(data, ["path,label", *_rows(data), "benign/gone.png,benign"])
    with pytest.raises(DataError, match=r"names 1 file\(s\) that do not exist: line 8: "):
        read_manifest(path)


def test_manifest_with_an_unknown_label(data: Path) -> None:
    path = _manifest(data, ["path,label", *_rows(data)[:-1], "malignant/x.png,malgnant"])
    with pytest.raises(DataError, match=r"unknown label\(s\): line 7: 'malgnant' \(allowed: "):
        read_manifest(path, labels=("benign", "malignant"))
    with pytest.raises(DataError, match="unknown label"):
        ManifestFormat(labels=("benign", "malignant")).load(path, config=DataConfig(path=path))


@pytest.mark.parametrize("escaping", ["../outside.png", "/etc/passwd", "benign/../../x.png"])
def test_manifest_path_escaping_its_folder(data: Path, escaping: str) -> None:
    shutil.copy(next((data / "benign").iterdir()), data.parent / "outside.png")
    path = _manifest(data, ["path,label", *_rows(data), f"{escaping},benign"])
    with pytest.raises(DataError, match="absolute or leave its folder: line 8"):
        read_manifest(path)


def test_manifest_with_duplicate_rows(data: Path) -> None:
    rows = _rows(data)
    path = _manifest(data, ["path,label", *rows, rows[0].replace("benign/", "./benign/")])
    with pytest.raises(DataError, match="lists the same image more than once: line 8 repeats"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("file,class", "must start with 'path,label'"),
        ("label,path", "must start with 'path,label'"),
        ("path,label,label", r"repeated column\(s\) \['label'\]"),
    ],
)
def test_manifest_with_a_wrong_header(data: Path, header: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_manifest(_manifest(data, [header, *_rows(data)]))


def test_manifest_errors_reach_the_cli_as_one_line(data: Path) -> None:
    from typer.testing import CliRunner

    from breastcls.cli.app import app

    path = _manifest(data, ["path,label", *_rows(data), "../escape.png,benign"])
    result = CliRunner().invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.startswith("error: Manifest ") and result.output.count("\n") == 1


# --- the tf.data decoder agrees with Pillow -------------------------------------------------------


@pytest.mark.parametrize("kind", [*ODD_KINDS, "rgb-png", "rgb-jpeg"])
def test_tf_pipeline_decodes_like_pillow(tmp_path: Path, kind: str) -> None:
    tf = pytest.importorskip("tensorflow")
    from breastcls.data.pipeline import load_image_tensor

    if kind == "rgb-png":
        path = tmp_path / "plain.png"
        Image.fromarray(_noise(2, 16)).save(path)
    elif kind == "rgb-jpeg":
        path = tmp_path / "plain.jpg"
        Image.fromarray(np.full((16, 16, 3), RED, dtype=np.uint8)).save(path, quality=95)
    else:
        path, _ = _write_odd(tmp_path, kind)
    info = inspect_image(path)
    side = info.width  # resize to the image's own square size: bilinear is then the identity
    if info.width != info.height:
        side = max(info.width, info.height)
    tensor = load_image_tensor(tf.constant(str(path)), tf.constant(info.tf_native), side)
    reference = tf.image.resize(tf.constant(decode_image(path), tf.float32), (side, side))
    assert tensor.shape == (side, side, 3)
    np.testing.assert_array_equal(tensor.numpy(), reference.numpy())


def test_a_manifest_path_that_leaves_its_folder_through_a_symbolic_link_is_refused(
    tmp_path: Path, breakhis_dev: Path
) -> None:
    """The text of the path stays inside; the link it names does not."""
    outside = tmp_path / "outside"
    outside.mkdir()
    images = sorted((breakhis_dev / "benign").glob("*.png"))[:2] + sorted(
        (breakhis_dev / "malignant").glob("*.png")
    )[:2]
    for image in images:
        shutil.copy(image, outside / image.name)
    data = tmp_path / "data"
    data.mkdir()
    (data / "linked").symlink_to(outside, target_is_directory=True)
    rows = [f"linked/{image.name},{image.parent.name}" for image in images]
    (data / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"leave its folder: line 2: 'linked/"):
        read_manifest(data / "manifest.csv")
