"""Stain statistics in ``breastcls data check``: Macenko's vectors on real images, and a planted
batch effect (one role re-stained) that the check warns about."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastcls import check_data
from breastcls.cli.app import app
from breastcls.cli.data_report import format_report
from breastcls.data.breakhis import accession_number
from breastcls.data.check import estimate_stain
from breastcls.layers import RGB_FROM_HED

runner = CliRunner()


def _accession(path: Path) -> str:
    return accession_number("-".join(path.name.split("-")[1:3]))


def _angle(u: tuple[float, ...], v: tuple[float, ...]) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


def _two_labs(breakhis_dev: Path, root: Path, *, restain: bool) -> Path:
    """The real images in ``train/`` and ``test/`` folders (a third of each class's accessions in
    ``test/``); with ``restain``, every ``test/`` image re-stained as another laboratory's."""
    from breastcls.layers import adjust_hed

    for label in ("benign", "malignant"):
        images = sorted((breakhis_dev / label).glob("*.png"))
        accessions = sorted({_accession(p) for p in images})
        held_out = set(accessions[::3])
        for image in images:
            role = "test" if _accession(image) in held_out else "train"
            target = root / role / label / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if role == "test" and restain:
                pixels = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32)
                # A strong re-staining: twice the haematoxylin, half the eosin, and more of
                # every stain everywhere (HED-strong is 0.2): a batch effect the size of the
                # classes' own stain difference on these images.
                restained = adjust_hed(
                    pixels[None], np.array([[2.0, 0.5, 1.0]]), np.array([[0.3, 0.3, 0.2]])
                )
                Image.fromarray(np.asarray(restained)[0].round().astype(np.uint8)).save(target)
            else:
                shutil.copy(image, target)
    return root


def test_macenko_recovers_the_stain_vectors_of_a_synthetic_image() -> None:
    # Pixels mixing the Ruifrok-Johnston haematoxylin and eosin in random amounts.
    rng = np.random.default_rng(0)
    stains = np.array(RGB_FROM_HED[:2], dtype=np.float64)
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    amounts = rng.uniform(0.0, 1.5, (5000, 2)) * (rng.uniform(size=(5000, 1)) < 0.5)
    amounts[:2500] += rng.uniform(0.2, 1.0, (2500, 1)) * [1.0, 0.0]  # nuclei
    amounts[2500:] += rng.uniform(0.2, 1.0, (2500, 1)) * [0.0, 1.0]  # stroma
    od = amounts @ stains
    estimated = estimate_stain(od[(od >= 0.15).all(axis=1)])
    assert estimated is not None
    haematoxylin, eosin = estimated
    assert _angle(haematoxylin, tuple(stains[0])) < 5
    assert _angle(eosin, tuple(stains[1])) < 5
    assert estimate_stain(od[:50]) is None  # too little tissue: no vectors, never a NaN


def test_the_development_images_stain_per_role_and_class(breakhis_dev: Path) -> None:
    report = check_data(breakhis_dev)
    stain = report.stain
    assert stain is not None
    assert list(stain.per_role) == ["train", "selection", "test"]
    assert list(stain.per_class) == ["benign", "malignant"]
    for stats in (*stain.per_role.values(), *stain.per_class.values()):
        assert stats.images == 32 and 0.2 < stats.tissue_fraction <= 1
        assert stats.mean_od is not None and all(0.1 < v < 1.5 for v in stats.mean_od)
        assert stats.haematoxylin is not None and stats.eosin is not None
        # Haematoxylin absorbs red more than eosin does; eosin mostly green (its pink).
        assert stats.haematoxylin[0] > stats.eosin[0]
        assert max(stats.eosin) == stats.eosin[1]
        assert np.linalg.norm(stats.haematoxylin) == pytest.approx(1.0)
    # A random patient split of one laboratory's images: the classes differ more.
    assert stain.role_distance is not None and stain.class_distance is not None
    assert stain.role_distance < stain.class_distance
    assert not stain.batch_effect
    assert "stain-batch-effect" not in {issue.kind for issue in report.issues}
    text = format_report(report)
    assert (
        "role test" in text and "class malignant" in text and "stain distance between roles" in text
    )
    # The distance's scale: the classes' own difference.
    ratio = stain.role_distance / stain.class_distance
    assert f"the roles' stain lies {ratio:.2f} times as far apart as the classes'" in text
    stored = json.loads(json.dumps(report.to_dict()))["stain"]
    assert stored["batch_effect"] is False
    assert set(stored["per_role"]["train"]) == {
        "images",
        "tissue_fraction",
        "mean_od",
        "haematoxylin",
        "eosin",
    }


def test_a_role_from_another_laboratory_is_a_stain_warning(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    same_lab = check_data(_two_labs(breakhis_dev, tmp_path / "same", restain=False))
    assert same_lab.stain is not None and not same_lab.stain.batch_effect
    two_labs = check_data(_two_labs(breakhis_dev, tmp_path / "two", restain=True))
    stain = two_labs.stain
    assert stain is not None and stain.batch_effect
    assert "test" in stain.roles_apart
    assert stain.role_distance is not None and same_lab.stain.role_distance is not None
    assert stain.role_distance > 1.3 * same_lab.stain.role_distance
    (warning,) = [issue for issue in two_labs.issues if issue.kind == "stain-batch-effect"]
    assert warning.severity == "warning" and two_labs.ok  # a warning, not an error
    assert "differ in stain more than the classes do" in warning.message
    result = runner.invoke(app, ["data", "check", str(tmp_path / "two")])
    assert result.exit_code == 0, result.output
    assert "[stain-batch-effect]" in result.output
