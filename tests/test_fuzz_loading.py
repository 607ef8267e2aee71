"""Property tests of the loading path: any file or manifest gives a decoded image, a dataset, or
a clear DataError; never another exception, never a hang.

Corrupted inputs are made from the real BreakHis images (PNG, and the same pixels re-encoded as
JPEG and TIFF so every decoder gets fuzzed). Examples are few and small so the module runs in
seconds; the deadline turns a near-hang into a failure.
"""

from __future__ import annotations

import io
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from _runs import timeout_scale
from breastcls import DataError
from breastcls.data.images import decode_image, inspect_image
from breastcls.data.manifest import read_manifest

# Pillow warns about some corrupt metadata before it raises or decodes; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

FUZZ = settings(
    max_examples=40,
    deadline=timedelta(seconds=3 * timeout_scale()),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
REAL_IMAGES = (
    "benign/SOB_B_A-14-22549AB-40-001.png",
    "malignant/SOB_M_DC-14-2523-200-001.png",
)


def _real_images() -> dict[str, bytes]:
    from conftest import require_shared_data

    shared_data = require_shared_data()
    encoded: dict[str, bytes] = {}
    for relative in REAL_IMAGES:
        path = shared_data / relative
        if not path.is_file():
            path = sorted((shared_data / relative.split("/")[0]).glob("*.png"))[0]
        data = path.read_bytes()
        encoded[f"{path.stem}.png"] = data
        with Image.open(io.BytesIO(data)) as image:
            small = image.convert("RGB").resize((96, 64))
        for file_format, suffix in (("JPEG", ".jpg"), ("TIFF", ".tif")):
            buffer = io.BytesIO()
            small.save(buffer, format=file_format)
            encoded[f"{path.stem}{suffix}"] = buffer.getvalue()
    return encoded


ORIGINALS = _real_images()
WORK = Path(tempfile.mkdtemp(prefix="breastcls-fuzz-"))


def _decode_or_data_error(data: bytes, suffix: str) -> None:
    """The property: decode and inspect give an (h, w, 3) uint8 image, or raise DataError."""
    path = WORK / f"fuzzed{suffix}"
    path.write_bytes(data)
    try:
        image = decode_image(path)
    except DataError as error:
        assert str(path) in str(error)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] > 0 and image.shape[1] > 0
    try:
        info = inspect_image(path)
    except DataError as error:
        assert str(path) in str(error)
    else:
        assert info.width > 0 and info.height > 0


def test_the_real_images_decode() -> None:
    for name, data in ORIGINALS.items():
        path = WORK / name
        path.write_bytes(data)
        assert decode_image(path).shape[2] == 3


@FUZZ
@given(
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"BM"]),
    body=st.binary(max_size=2048),
    suffix=st.sampled_from([".png", ".jpg", ".tif", ".bmp"]),
)
def test_random_bytes(prefix: bytes, body: bytes, suffix: str) -> None:
    _decode_or_data_error(prefix + body, suffix)


@FUZZ
@given(name=st.sampled_from(sorted(ORIGINALS)), fraction=st.floats(0.0, 0.999))
def test_truncated_real_images(name: str, fraction: float) -> None:
    data = ORIGINALS[name]
    _decode_or_data_error(data[: int(len(data) * fraction)], Path(name).suffix)


@FUZZ
@given(
    name=st.sampled_from(sorted(ORIGINALS)),
    flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_bit_flipped_real_images(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(ORIGINALS[name])
    for position, bit in flips:
        # Most flips land in the header and first chunks, where decoders are most fragile.
        index = int(len(data) * position**3)
        data[index] ^= 1 << bit
    _decode_or_data_error(bytes(data), Path(name).suffix)


@pytest.fixture(scope="module")
def manifest_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("manifest")
    for name, data in ORIGINALS.items():
        (folder / name).write_bytes(data)
    return folder


CELL = st.one_of(
    st.sampled_from(sorted(ORIGINALS)),
    st.sampled_from(["", "missing.png", "../escape.png", "/etc/passwd", "a\\..\\..\\b.png"]),
    st.sampled_from(["benign", "malignant", "40", "200", "-1", "x" * 300, "train", "test"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
HEADER = st.lists(
    st.sampled_from(
        ["path", "label", "patient_id", "magnification", "subtype", "split", "biopsy", "", "path"]
    ),
    min_size=0,
    max_size=7,
)


@settings(FUZZ, max_examples=60)
@given(
    header=HEADER,
    rows=st.lists(st.lists(CELL, max_size=8), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
    bom=st.booleans(),
)
def test_odd_manifests(
    manifest_folder: Path, header: list[str], rows: list[list[str]], delimiter: str, bom: bool
) -> None:
    lines = [delimiter.join(header)] + [
        delimiter.join(f'"{cell}"' if "," in cell or '"' in cell else cell for cell in row)
        for row in rows
    ]
    text = ("\ufeff" if bom else "") + "\n".join(lines) + "\n"
    path = manifest_folder / "manifest.csv"
    path.write_text(text, encoding="utf-8")
    try:
        dataset = read_manifest(path)
    except DataError as error:
        assert str(error).strip() and "\n" not in str(error).strip()
    else:
        for sample in dataset.samples:
            assert sample.path.is_file() and manifest_folder in sample.path.resolve().parents
            assert sample.label in dataset.class_names


@settings(FUZZ, max_examples=20)
@given(data=st.binary(min_size=0, max_size=512))
def test_binary_garbage_as_a_manifest(manifest_folder: Path, data: bytes) -> None:
    path = manifest_folder / "garbage.csv"
    path.write_bytes(data)
    try:
        read_manifest(path)
    except DataError:
        pass
    finally:
        os.remove(path)
