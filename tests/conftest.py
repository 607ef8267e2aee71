"""Shared fixtures: the real BreakHis development images and isolated plugin hosts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The runtime cache (ONNX conversions) of the tests' models, kept out of the user's own cache;
# subprocesses of the CLI inherit it.
os.environ.setdefault("BREASTCLS_CACHE_DIR", tempfile.mkdtemp(prefix="breastcls-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("BREASTCLS_SHARED_DATA", REPO.parent / "shared" / "data" / "breakhis-dev")
)


REAL_DATA_FIXTURES = frozenset({"breakhis_dev"})


def in_ci() -> bool:
    """Whether the tests run in CI (``CI`` set, as every CI service does), where the real
    images must be there."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_shared_data() -> Path:
    """Return the real images' folder; without it, skip (fail in CI) saying where it was looked
    for and how to point the tests at it.

    Every caller skips from this one line, so ``-ra`` folds the skips into one summary line.
    """
    if not (SHARED_DATA / "manifest.csv").is_file():
        message = (
            f"real BreakHis images not found at {SHARED_DATA} (no manifest.csv): set "
            "BREASTCLS_SHARED_DATA=/path/to/breakhis-dev (see ../shared/data/README.md)"
        )
        if in_ci():
            pytest.fail(f"{message}; CI needs them", pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the real images, through any fixture, is marked `real_data`.
    for item in items:
        if REAL_DATA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("real_data") is not None:
        require_shared_data()


@pytest.fixture(scope="session")
def breakhis_dev() -> Path:
    """The 269 real BreakHis images of ``../shared/data/breakhis-dev`` (read-only; tests using
    it are marked ``real_data``)."""
    return require_shared_data()


def copy_patients(source: Path, root: Path, *, patients: int, images_per_patient: int) -> Path:
    """Copy the first ``patients`` patients of each class of ``source`` (BreakHis names give the
    patient ids), ``images_per_patient`` images each, to ``root/{benign,malignant}/``."""
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        by_patient: dict[str, list[Path]] = {}
        for image in sorted((source / label).glob("*.png")):
            patient = "-".join(image.name.split("-")[1:3])
            by_patient.setdefault(patient, []).append(image)
        for images in list(by_patient.values())[:patients]:
            for image in images[:images_per_patient]:
                shutil.copy(image, root / label / image.name)
    return root


@pytest.fixture()
def small_breakhis(tmp_path: Path, breakhis_dev: Path) -> Path:
    """A writable copy of a few real images per class: ``root/{benign,malignant}/*.png``.

    Five patients per class, two images each (patient ids come from the BreakHis names).
    """
    return copy_patients(breakhis_dev, tmp_path / "small", patients=5, images_per_patient=2)


@pytest.fixture()
def host() -> Iterator[object]:
    """A fresh plugin host with the installed plugins (no state shared between tests)."""
    from breastcls.plugins import PluginHost

    yield PluginHost()
