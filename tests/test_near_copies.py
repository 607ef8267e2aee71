"""Near copies (a JPEG re-save, a 1-pixel crop) of real BreakHis images are found; distinct
images of one patient are not taken for copies."""

from __future__ import annotations

import io
import itertools
import shutil
from pathlib import Path

import pytest
from PIL import Image

from breastcls import check_data
from breastcls.data.images import inspect_image
from breastcls.data.overlap import SeenImage, find_overlap
from breastcls.data.perceptual import NEAR_COPY_BITS, difference_hash, near_copy_pairs
from breastcls.interfaces import DataRole, Sample

pytestmark = pytest.mark.real_data


def _patient(path: Path) -> str:
    return "-".join(path.name.split("-")[1:3])


def _jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def _distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_resaved_and_cropped_copies_are_near_and_distinct_images_are_not(
    breakhis_dev: Path,
) -> None:
    # Every image of three patients: each copy is near its original, and no two distinct
    # images of one patient are (the docs give the figures over all 269 images).
    by_patient: dict[str, list[Path]] = {}
    for path in sorted(breakhis_dev.glob("*/*.png")):
        by_patient.setdefault(_patient(path), []).append(path)
    chosen = [paths for paths in by_patient.values() if len(paths) >= 4][:3]
    for paths in chosen:
        hashes = []
        for path in paths:
            image = Image.open(path).convert("RGB")
            width, height = image.size
            original = difference_hash(image)
            hashes.append(original)
            assert _distance(original, difference_hash(_jpeg(image))) <= NEAR_COPY_BITS
            cropped = image.crop((1, 0, width, height))
            assert _distance(original, difference_hash(cropped)) <= NEAR_COPY_BITS
        assert near_copy_pairs(hashes) == []
        closest = min(_distance(a, b) for a, b in itertools.combinations(hashes, 2))
        assert closest > 2 * NEAR_COPY_BITS


def test_near_copy_pairs_compares_two_lists_and_passes_over_unknown_hashes() -> None:
    zero, one_bit, far = "0" * 64, "0" * 63 + "1", "f" * 64
    assert near_copy_pairs([zero, far, ""], [one_bit, ""]) == [(0, 0, 1)]
    assert near_copy_pairs([zero, one_bit, far]) == [(0, 1, 1)]


def test_find_overlap_reports_a_resaved_training_image(breakhis_dev: Path, tmp_path: Path) -> None:
    train, other = sorted((breakhis_dev / "benign").glob("*.png"))[:2]
    resaved = tmp_path / "resaved.jpg"
    _jpeg(Image.open(train).convert("RGB")).save(resaved, quality=95)
    info = {p: inspect_image(p) for p in (train, other, resaved)}
    seen = [
        SeenImage(
            path=str(train),
            role=DataRole.TRAIN,
            group=None,
            pixel_sha1=info[train].pixel_sha1,
            dhash=info[train].dhash,
        )
    ]
    candidates = [Sample(path=p, label="benign") for p in (resaved, other)]
    overlap = find_overlap(seen, candidates, info)
    assert overlap.same_image == ()
    assert [(path, role) for path, _, role, _ in overlap.near_image] == [(resaved, DataRole.TRAIN)]
    assert "near copies" in overlap.describe() and str(resaved) in overlap.describe()


def test_data_check_reports_near_copies_across_roles(small_breakhis: Path, tmp_path: Path) -> None:
    root = tmp_path / "split"
    for label in ("benign", "malignant"):
        images = sorted((small_breakhis / label).glob("*.png"))
        patients = sorted({_patient(p) for p in images})
        for image in images:
            role = "test" if _patient(image) == patients[-1] else "train"
            (root / role / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / role / label / image.name)
    source = sorted((root / "train" / "benign").glob("*.png"))[0]
    image = Image.open(source).convert("RGB")
    _jpeg(image).save(root / "test" / "benign" / "resaved.jpg", quality=95)
    image.crop((0, 0, image.width - 1, image.height)).save(root / "test" / "benign" / "cut.png")
    report = check_data(root)
    near = {
        frozenset(path.name for path in issue.paths): issue
        for issue in report.issues
        if issue.kind == "near-copy"
    }
    copies = ("cut.png", "resaved.jpg")
    assert set(near) == {frozenset({source.name, copy}) for copy in copies} | {frozenset(copies)}
    for copy in copies:  # a training image's copies in test: leaks
        leak = near[frozenset({source.name, copy})]
        assert leak.severity == "error" and leak.message.startswith("LEAK: near copies")
        assert "in the train and test sets" in leak.message
    # The two copies are near each other too, both in test: the image counts twice.
    assert near[frozenset(copies)].severity == "warning"


def test_flat_images_have_no_hash_and_are_no_near_copies() -> None:
    red, blue = Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 200))
    assert difference_hash(red) == difference_hash(blue) == ""
    assert near_copy_pairs([difference_hash(red), difference_hash(blue)]) == []


def test_a_split_csv_without_difference_hashes_is_still_read(tmp_path: Path) -> None:
    from breastcls.runs.folder import read_split_csv

    (tmp_path / "split.csv").write_text(
        "path,label,patient_id,group,magnification,role,pixel_sha1\n"
        "/d/benign/a.png,benign,14-1,14-1,200,train,abc\n"
    )
    ((sample, seen),) = read_split_csv(tmp_path)
    assert (seen.pixel_sha1, seen.dhash, seen.role) == ("abc", "", DataRole.TRAIN)
    assert sample.label == "benign"
