"""Files breastcls writes get the permissions a user expects: ``0o666`` less the umask when
new, their own mode when replaced (a lab's shared run folders stay readable to colleagues)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from breastcls.io import atomic_path, atomic_write_json, atomic_write_text
from breastcls.runs.folder import create_run_dir, write_status


@pytest.fixture(params=[0o022, 0o002], ids=["umask-022", "umask-002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    mask: int = request.param
    previous = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_0666_less_the_umask(tmp_path: Path, umask: int) -> None:
    atomic_write_text(tmp_path / "report.html", "<p>")
    atomic_write_json(tmp_path / "sub" / "metrics.json", {})
    with atomic_path(tmp_path / "best.keras") as temporary:
        temporary.write_bytes(b"PK")
    for name in ("report.html", "sub/metrics.json", "best.keras"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(tmp_path / "sub") == 0o777 & ~umask


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask: int) -> None:
    for mode in (0o664, 0o600, 0o640):
        target = tmp_path / f"shared-{mode:o}.json"
        target.write_text("{}")
        os.chmod(target, mode)
        atomic_write_json(target, {"new": True})
        assert _mode(target) == mode
        assert target.read_text().startswith("{\n")


def test_a_writer_that_recreates_the_temporary_file_gets_the_same_mode(
    tmp_path: Path, umask: int
) -> None:
    # Some writers (a library saving a model) delete and recreate the file they are given.
    target = tmp_path / "samples.png"
    with atomic_path(target) as temporary:
        temporary.unlink()
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(handle)
    assert _mode(target) == 0o666 & ~umask


def test_run_folder_records_follow_the_umask(tmp_path: Path, umask: int) -> None:
    with create_run_dir(tmp_path, "run", default_stem="x") as lock:
        write_status(lock.path, "running")
        assert _mode(lock.file) == 0o666 & ~umask
    assert _mode(tmp_path / "run") == 0o777 & ~umask
    assert _mode(tmp_path / "run" / "status.json") == 0o666 & ~umask
